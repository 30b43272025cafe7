"""`simrun validate`: run every validation case and compare its prediction with the published measurement.

A case is an ordinary experiment file (one deployment, a benchmark workload) plus two tables, which
sim.config reads like every other: [case] (name, source, trust tier, notes) and [measured] (keys of
sim.metrics.KEYS, each a number or { value = x, tolerance = 0.2 }).
Error % = (predicted - measured) / measured x 100. A third of the cases are held out of calibration by a
fixed rule (crc32 of the case name mod 3 == 0), and the summary reports the held-out split, the rest, and
the whole set.
"""
from __future__ import annotations

import multiprocessing
import statistics
import time
import zlib
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from sim import config
from sim.deployment import build
from sim.errors import ConfigError
from sim.metrics import KEYS, benchmark_metrics, family
from sim.pool import die_on_interrupt
from sim.simulation import simulate

DEFAULT_DIR = Path("experiments") / "validation"


@dataclass(frozen=True)
class Case:
    path: str
    experiment: config.Experiment   # an experiment with its [case] and [measured] tables

    @property
    def name(self) -> str:
        return self.experiment.case.name

    @property
    def measured(self) -> dict[str, tuple[float, float]]:
        """key -> (value, tolerance as a fraction)."""
        return self.experiment.measurements

    @property
    def split(self) -> str:
        return "held_out" if zlib.crc32(self.name.encode()) % 3 == 0 else "fit"


def load_case(path: str) -> Case:
    """A validation case: an experiment file that has [case] and [measured] tables, and whose layout fits."""
    experiment = config.load(path)
    if experiment.case is None:
        raise ConfigError(path, "case", None, "not a validation case: a [case] table (name, source) and a "
                          f"[measured] table are needed; valid measured keys: {', '.join(KEYS)}")
    (name, spec), = experiment.deployments.items()
    build(path, name, spec)   # a layout that does not fit is refused here, before any case runs
    return Case(path, experiment)


def discover(dirs: list[str]) -> list[str]:
    paths = []
    for d in dirs or [str(DEFAULT_DIR)]:
        p = Path(d)
        if p.is_file():
            paths.append(str(p))
        elif p.is_dir():
            paths += sorted(str(f) for f in p.rglob("*.toml"))
        else:
            raise ConfigError(d, "top level", None, "no such case file or folder")
    return paths


def run_case(path: str) -> tuple[list[dict], float]:
    """Simulate one case; its rows (one per measured key) and the wall time it took."""
    started = time.perf_counter()
    case = load_case(path)
    (name, spec), = case.experiment.deployments.items()
    predicted = benchmark_metrics(simulate(case.experiment, build(path, name, spec)),
                                  case.experiment.workload.warmup_requests, case.experiment.workload.cooldown_requests)
    rows = []
    for key, (measured, tolerance) in case.measured.items():
        value = predicted.get(key)   # None: the run had nothing to measure it by (no request succeeded)
        error = None if value is None else (value - measured) / measured * 100.0
        rows.append({"case": case.name, "key": key, "family": family(key), "measured": measured, "predicted": value,
                     "error_pct": error, "tolerance_pct": tolerance * 100.0,
                     "within": error is not None and abs(error) <= tolerance * 100,
                     "split": case.split, "trust": case.experiment.case.trust,
                     "source": case.experiment.case.source})
    return rows, time.perf_counter() - started


def run_all(paths: list[str], jobs: int, progress=None) -> list[dict]:
    """Every case, in parallel over `jobs` processes; rows in the order of `paths`. Interrupted, the
    pool's exit terminates its workers, whichever process the signal reached."""
    results: dict[str, list[dict]] = {}
    with multiprocessing.Pool(jobs, initializer=die_on_interrupt) if jobs > 1 else nullcontext() as pool:
        done = pool.imap_unordered(_run_case_of, paths) if pool else map(_run_case_of, paths)
        for i, (path, rows, wall) in enumerate(done, 1):
            results[path] = rows
            if progress:
                progress(f"[{i}/{len(paths)}] {Path(path).stem} ({wall:.1f} s)")
    return [row for p in paths for row in results[p]]


def _run_case_of(path: str) -> tuple[str, list[dict], float]:
    return path, *run_case(path)


def summary(rows: list[dict]) -> list[dict]:
    """Median and maximum |error| per key family and split (held_out, fit, all), over the keys predicted."""
    out = []
    for split in ("held_out", "fit", "all"):
        chosen = [r for r in rows if split == "all" or r["split"] == split]
        for fam in ("throughput", "ttft", "tpot_itl", "energy", "all"):
            errors = [abs(r["error_pct"]) for r in chosen
                      if (fam == "all" or r["family"] == fam) and r["error_pct"] is not None]
            if errors:
                out.append({"split": split, "family": fam, "keys": len(errors), "median_abs_error_pct":
                            statistics.median(errors), "max_abs_error_pct": max(errors)})
    return out


def render(rows: list[dict], sums: list[dict]) -> str:
    lines = [f"{'case':<48} {'key':<26} {'measured':>11} {'predicted':>11} {'error':>8}  split"]
    for r in rows:
        flag = "" if r["within"] else "  !"
        predicted = "-" if r["predicted"] is None else f"{r['predicted']:.4g}"
        error = "-" if r["error_pct"] is None else f"{r['error_pct']:+.1f}%"
        lines.append(f"{r['case']:<48} {r['key']:<26} {r['measured']:>11.4g} {predicted:>11} {error:>8}  "
                     f"{r['split']}{flag}")
    outside = sum(not r["within"] for r in rows)
    lines += ["", f"{outside} of {len(rows)} measured keys outside their tolerance (marked !)",
              "", f"{'split':<9} {'family':<11} {'keys':>5} {'median |error|':>15} {'max |error|':>12}"]
    for s in sums:
        lines.append(f"{s['split']:<9} {s['family']:<11} {s['keys']:>5} {s['median_abs_error_pct']:>14.1f}% "
                     f"{s['max_abs_error_pct']:>11.1f}%")
    return "\n".join(lines)


def knee(rows: list[dict], prefix: str = "nim_llama33_70b_h100_tp2_c", suffix: str = "_5000_500",
         limit_s: float = 2.0) -> tuple[int | None, int | None]:
    """The first concurrency of the NIM sweep whose mean TTFT exceeds `limit_s`: (measured, predicted)."""
    sweep = sorted((int(r["case"][len(prefix):-len(suffix)]), r) for r in rows
                   if r["case"].startswith(prefix) and r["case"].endswith(suffix) and r["key"] == "ttft_mean_s")
    first = lambda col: next((c for c, r in sweep if r[col] > limit_s), None)  # noqa: E731
    return first("measured"), first("predicted")


def tables(rows: list[dict], sums: list[dict]) -> dict[str, pa.Table]:
    return {"validation": pa.Table.from_pylist(rows), "summary": pa.Table.from_pylist(sums)}
