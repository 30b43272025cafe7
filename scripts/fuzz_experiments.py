"""Mutate the shipped experiments and run every mutant through `simrun`'s command line, in this process.

Each mutant must end one of two ways: refused in one line (`error: ...`, exit code 2, no output folder),
the same line `simrun describe` gives, or run to exit 0 with a finite number in every cell of its tables
and none printed as nan or inf. Anything else (a traceback, another exit code, a refusal of several lines
or one that left a folder, describe disagreeing, a non-finite number) is a finding.

The shipped experiments are first made quick (a 3-minute podcast of at most 2 sessions, at most 40
benchmark requests), then each mutant changes 1 to 3 things: deletes a key or empties a table, puts a
value of the wrong type, a number that is zero, negative, huge, NaN or infinite, an unknown name, a long
or non-ASCII string or key, an unknown key; or replaces the file by garbage (random bytes, a truncated
file, UTF-16, an empty file). The suite runs a few hundred (tests/test_fuzz.py);

    python scripts/fuzz_experiments.py --cases 1000 --seed 1

runs more and prints the counts and every finding.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import math
import re
import shutil
import signal
import sys
import tempfile
import time
import tomllib
from collections import Counter
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import tomli_w

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sim import cli  # noqa: E402

SHIPPED = ["experiments/podcast10h.toml", "experiments/architectures.toml", "experiments/clusters.toml",
           "experiments/validation/mlperf/mlperf41_llama2_70b_h200_server.toml",
           "experiments/validation/nim/nim_llama33_70b_h100_tp2_c050_5000_500.toml",
           "experiments/validation/mlenergy/mlenergy_llama31_8b_h100_batch64.toml"]
NUMBERS = [0, -1, -1e9, 1e300, 10**12, 2**63, math.nan, math.inf, -math.inf, 0.5, 1]
WRONG_TYPES = ["x", True, [1, 2], {"k": 1}, 7, 7.5]
NAMES = ["bogus", "h900", "", "kimi_k3", "NONE"]
STRINGS = ["x" * 10_000, "模型 é ü 😀", "\x00\x01", "a\nb", "'\"[]"]
NONFINITE_TEXT = re.compile(r"\b(nan|inf|-inf)\b", re.IGNORECASE)


@dataclass
class Outcome:
    kind: str   # refused | ran | slow | traceback | describe_differs | bad_refusal | bad_exit | nonfinite
    mutation: str
    detail: str = ""
    wall_s: float = 0.0


@dataclass
class Report:
    counts: Counter = field(default_factory=Counter)
    findings: list[Outcome] = field(default_factory=list)
    slowest: list[Outcome] = field(default_factory=list)
    wall_s: float = 0.0

    def add(self, outcome: Outcome) -> None:
        self.counts[outcome.kind] += 1
        if outcome.kind not in ("refused", "ran", "slow"):
            self.findings.append(outcome)
        self.slowest = sorted([*self.slowest, outcome], key=lambda o: -o.wall_s)[:5]


def quick(data: dict) -> dict:
    """A shipped experiment made quick to run: what a mutant then changes is the only difference."""
    data = deepcopy(data)
    work = data.setdefault("workload", {})
    if work.get("kind", "podcast") == "podcast":
        work["duration_h"] = min(work.get("duration_h", 10), 0.05)
        work["sessions"] = min(work.get("sessions", 1), 2)
    else:
        work["requests"] = min(work.get("requests", 40), 40)
        work["clients"] = min(work.get("clients", 0), 8)
        work["warmup_requests"] = min(work.get("warmup_requests", 0), 4)
        work["cooldown_requests"] = min(work.get("cooldown_requests", 0), 4)
    return data


def _paths(table, prefix=()):
    """Every (path, value) in a nested table, tables included."""
    for key, value in table.items():
        yield prefix + (key,), value
        if isinstance(value, dict):
            yield from _paths(value, prefix + (key,))


def _parent(data: dict, path: tuple) -> dict:
    for key in path[:-1]:
        data = data[key]
    return data


def mutate(data: dict, rng: np.random.Generator) -> tuple[dict, str]:
    """1 to 3 changes to an experiment's tables, and their description."""
    data, done = deepcopy(data), []
    for _ in range(int(rng.integers(1, 4))):
        paths = list(_paths(data))
        if not paths:
            break
        path, value = paths[int(rng.integers(len(paths)))]
        parent, key = _parent(data, path), path[-1]
        kind = str(rng.choice(["delete", "wrong_type", "number", "scale", "scale", "name", "string", "empty",
                               "unknown", "rename"]))
        if kind == "scale" and isinstance(value, (int, float)) and not isinstance(value, bool):
            factor = float(rng.choice([0.1, 0.5, 2.0, 10.0]))   # a plausible variant, more often valid
            parent[key] = type(value)(value * factor) if isinstance(value, float) else max(1, round(value * factor))
        elif kind == "scale":
            continue
        elif kind == "delete":
            del parent[key]
        elif kind == "wrong_type":
            parent[key] = WRONG_TYPES[int(rng.integers(len(WRONG_TYPES)))]
        elif kind == "number":
            parent[key] = NUMBERS[int(rng.integers(len(NUMBERS)))]
        elif kind == "name":
            parent[key] = NAMES[int(rng.integers(len(NAMES)))]
        elif kind == "string":
            parent[key] = STRINGS[int(rng.integers(len(STRINGS)))]
        elif kind == "empty":
            parent[key] = {}
        elif kind == "unknown":
            (value if isinstance(value, dict) else parent)["bogus_key"] = 1
        else:   # a table's name (a deployment, model or cluster) long, non-ASCII or odd
            parent[STRINGS[int(rng.integers(len(STRINGS)))][:300]] = parent.pop(key)
        done.append(f"{kind} {'.'.join(map(str, path))[:60]}")
    return data, "; ".join(done) or "unchanged"


def garbage(text: str, rng: np.random.Generator) -> tuple[bytes, str]:
    kind = str(rng.choice(["bytes", "truncated", "utf16", "empty", "only_tables"]))
    blob = {"bytes": lambda: rng.bytes(int(rng.integers(1, 400))),
            "truncated": lambda: text.encode()[:int(rng.integers(1, len(text)))],
            "utf16": lambda: text.encode("utf-16"),
            "empty": lambda: b"",
            "only_tables": lambda: b"[run]\n[workload]\n[deployments]\n"}[kind]()
    return blob, f"garbage file: {kind}"


class OverBudget(BaseException):
    """A valid mutant still running when its time is up (a default of 10 simulated hours, say)."""


def _over_budget(signum, frame) -> None:
    raise OverBudget()


def run_cli(args: list[str], budget_s: float) -> tuple[int | None, str, str, BaseException | None]:
    """`simrun ARGS` in this process, stopped after `budget_s` of wall time: exit code, stdout, stderr,
    and an exception that escaped main() (OverBudget when stopped)."""
    out, err, code, escaped = io.StringIO(), io.StringIO(), None, None
    handler, argv = signal.getsignal(signal.SIGINT), sys.argv
    sys.argv = ["simrun", *args]
    alarm = signal.signal(signal.SIGALRM, _over_budget)
    signal.setitimer(signal.ITIMER_REAL, budget_s)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            cli.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException as e:   # noqa: BLE001 - a traceback is what this looks for
        escaped = e
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, alarm)
        sys.argv = argv
        signal.signal(signal.SIGINT, handler)
    return code, out.getvalue(), err.getvalue(), escaped


def nonfinite_cells(folder: Path) -> str:
    """The first table column holding NaN or an infinity, or ''."""
    for path in sorted(folder.glob("*.parquet")):
        table = pq.read_table(path)
        for name in table.column_names:
            column = table[name]
            if not pa.types.is_floating(column.type):
                continue
            # (min_count=0: a column with no value at all, e.g. speech times of a benchmark, holds no NaN)
            if not pc.all(pc.is_finite(column.drop_null()), min_count=0).as_py():
                return f"{path.name}:{name}"
    return ""


def judge(blob: bytes, mutation: str, workdir: Path, budget_s: float) -> Outcome:
    """Run the mutant with `simrun` and `simrun describe`: both must refuse it with the same line, or both
    accept it (describe builds every deployment, the run simulates them too). A run still going after
    `budget_s` is stopped and counted as slow, not as a finding: it was valid."""
    exp, out = workdir / "mutant.toml", workdir / "out"
    exp.write_bytes(blob)
    described = run_cli(["describe", str(exp)], budget_s)
    code, stdout, stderr, escaped = run_cli([str(exp), "-o", str(out), "-q", "--no-plots"], budget_s)
    try:
        if isinstance(escaped, OverBudget) or isinstance(described[3], OverBudget):
            return Outcome("slow", mutation, "stopped: over its time budget")
        if escaped is not None or described[3] is not None:
            e = escaped if escaped is not None else described[3]
            return Outcome("traceback", mutation, f"{type(e).__name__}: {str(e)[:200]}")
        if (described[0] == 2 or code == 2) and described[2] != stderr:
            return Outcome("describe_differs", mutation, f"describe: {described[2][:150]} run: {stderr[:150]}")
        if code == 2:
            lines = stderr.splitlines()
            clean = len(lines) == 1 and lines[0].startswith("error: ") and not stdout and not out.exists()
            return Outcome("refused" if clean else "bad_refusal", mutation, stderr[:300])
        if code != 0:
            return Outcome("bad_exit", mutation, f"exit {code}: {stderr[:300]}")
        bad = nonfinite_cells(out) or ("printed" if NONFINITE_TEXT.search(stdout) else "")
        return Outcome("nonfinite" if bad else "ran", mutation, bad)
    finally:
        if out.exists():
            shutil.rmtree(out)


def fuzz(cases: int, seed: int, budget_s: float = 60.0) -> Report:
    """`cases` mutants of the shipped experiments, drawn from `seed`, each run stopped after `budget_s`."""
    rng = np.random.default_rng(seed)
    bases = {p: quick(tomllib.loads((ROOT / p).read_text())) for p in SHIPPED}
    texts = {p: tomli_w.dumps(base) for p, base in bases.items()}
    report, started = Report(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="simrun-fuzz-") as tmp:
        for _ in range(cases):
            source = SHIPPED[int(rng.integers(len(SHIPPED)))]
            if rng.random() < 0.08:
                blob, mutation = garbage(texts[source], rng)
            else:
                data, mutation = mutate(bases[source], rng)
                blob = tomli_w.dumps(data).encode()
            began = time.perf_counter()
            outcome = judge(blob, f"{Path(source).name}: {mutation}", Path(tmp), budget_s)
            outcome.wall_s = time.perf_counter() - began
            report.add(outcome)
    report.wall_s = time.perf_counter() - started
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--budget-s", type=float, default=60.0, help="wall seconds a valid mutant may run")
    args = parser.parse_args()
    report = fuzz(args.cases, args.seed, args.budget_s)
    print(f"{args.cases} mutants (seed {args.seed}) in {report.wall_s:.0f} s: "
          + ", ".join(f"{kind} {n}" for kind, n in sorted(report.counts.items())))
    for finding in report.findings:
        print(f"  {finding.kind}: {finding.mutation}\n    {finding.detail}")
    print("slowest: " + "; ".join(f"{o.mutation} ({o.kind}, {o.wall_s:.1f} s)" for o in report.slowest))
    sys.exit(1 if report.findings else 0)


if __name__ == "__main__":
    main()
