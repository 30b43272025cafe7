"""Results as Parquet tables plus run.json, written whole or not at all (temporary folder, then rename).

Parquet because pyarrow, pandas, polars and DuckDB all read it without extensions.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sim import __version__, contract
from sim.cost.step import BOUND_NAMES
from sim.records import NS_PER_S
from sim.simulation import DeploymentResult

def tables(results: list[DeploymentResult], replicate: int = 0) -> dict[str, pa.Table]:
    """Every table of a run, each row marked with its `replicate`."""
    made = {"turns": turns_table(results), "steps": steps_table(results), "gpus": gpus_table(results),
            "faults": faults_table(results)}
    return {name: with_replicate(table, replicate) for name, table in made.items()}


def with_replicate(table: pa.Table, replicate: int) -> pa.Table:
    """`table` with its `replicate` column set to `replicate` on every row."""
    i = table.schema.get_field_index("replicate")
    return table.set_column(i, table.schema.field(i), pa.array(np.full(table.num_rows, replicate, dtype=np.int64)))


def turns_table(results: list[DeploymentResult]) -> pa.Table:
    rows = [t.row(r.boundary) for r in results for t in r.turns]
    return pa.Table.from_pylist(rows, schema=contract.schema(contract.TURNS))


def faults_table(results: list[DeploymentResult]) -> pa.Table:
    """One row per replica a fault hit (sim.faults.injector), in order of arrival."""
    rows = [{"deployment": r.deployment.name, "fault": f.fault, "time_s": f.time_ns / NS_PER_S, "cause": f.cause,
             "component": f.component, "scope": f.scope, "gpu": f.gpu, "replica": f.replica, "pool": f.pool,
             "down_s": f.down_s, "spare": f.spare, "turns_affected": f.turns_affected,
             "kv_lost_tokens": f.kv_lost_tokens, "tokens_recomputed": f.tokens_recomputed,
             "recovery_j": f.recovery_j}
            for r in results if r.faults is not None for f in r.faults.rows]
    return pa.Table.from_pylist(rows, schema=contract.schema(contract.FAULTS))


def steps_table(results: list[DeploymentResult]) -> pa.Table:
    parts = []
    for r in results:
        cols = r.steps.columns()
        n = len(cols["start_s"])
        replica = cols["replica"].astype(np.int64)
        gpus = np.array([e.n_gpus for e in r.engines], dtype=float)
        parts.append({
            **{c: cols[c].astype(np.int64) for c in ("step", "prefill_tokens", "decode_seqs", "kv_tokens")},
            **{c: cols[c].astype(float) for c in ("start_s", "duration_s", "replica_flops", "replica_hbm_bytes",
                                                  "replica_comm_bytes", "replica_power_w", "replica_energy_j",
                                                  "replica_dynamic_j", "bubble_s")},
            "replicate": np.zeros(n, dtype=np.int64), "deployment": [r.deployment.name] * n, "replica": replica,
            "bound": [BOUND_NAMES[b] for b in cols["bound"].astype(int)],
            "mean_gpu_power_w": cols["replica_power_w"].astype(float) / gpus[replica],
        })
    schema = contract.schema(contract.STEPS)
    table = pa.concat_tables([pa.table({f.name: part[f.name] for f in schema}, schema=schema) for part in parts])
    # Replicas log their steps as they go; sort so that the table does not depend on how the engines
    # interleaved (bulk and per-step modes interleave differently).
    return table.sort_by([("deployment", "ascending"), ("replica", "ascending"), ("step", "ascending")])


def gpus_table(results: list[DeploymentResult]) -> pa.Table:
    rows = []
    for r in results:
        built = r.deployment
        for engine, rep, serves in zip(r.engines, built.places, built.pools):
            cost, accel = rep.cost, rep.cost.accel
            tp = rep.placement.layout.tp
            for s, stage_gpus in enumerate(rep.placement.stages):
                for position, gpu in enumerate(stage_gpus):
                    pool = engine.pools[position // tp]  # the attention group this GPU serves
                    peak_kv_tokens = pool.peak_used_blocks * pool.block_tokens
                    rows.append({
                        "deployment": r.deployment.name, "gpu": gpu, "replica": engine.index, "pool": serves, "stage": s,
                        "accelerator": accel.name,
                        "energy_j": float(engine.stage_energy_j[s]) + accel.idle_w * engine.idle_s,
                        "busy_s": float(engine.stage_busy_s[s]),
                        "peak_hbm_bytes": cost.stage_weights_bytes(s) + rep.memory.activation_bytes
                        + peak_kv_tokens * cost.stage_kv_bytes_per_token(s),
                        "kv_pool_bytes": rep.memory.kv_pool_bytes,
                    })
    return pa.Table.from_pylist(rows, schema=contract.schema(contract.GPUS))


def output_problem(out_dir: Path) -> str | None:
    """Why results could not be written to `out_dir`, or None: checked before any simulation runs.

    A folder is replaced whole, so only an empty one or an earlier run's (it holds run.json) may be, and
    never the current folder or one holding it (the shell would be left in a deleted folder).
    """
    try:
        out_dir = out_dir.resolve()
        if out_dir.exists() and not out_dir.is_dir():
            return "it exists and is not a folder"
        if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "run.json").is_file():
            return "it holds files that are not a simrun run (no run.json), which writing would replace"
        if Path.cwd().is_relative_to(out_dir):
            return "it is or holds the current folder, which writing would replace"
        ancestor = out_dir.parent
        while not ancestor.exists():
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            return f"{ancestor} is not a folder"
        if not os.access(ancestor, os.W_OK | os.X_OK):
            return f"no permission to write in {ancestor}"
    except OSError as e:
        return e.strerror or str(e)
    return None


class ResultsError(ValueError):
    """A results folder this simrun cannot read, and why."""


def read(run_dir: str | Path) -> tuple[pa.Table, dict]:
    """A written run's turns table and run.json; a run an other simrun version wrote is refused, since
    its tables may follow another contract."""
    run_dir = Path(run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    version = info.get("simrun_version") if isinstance(info, dict) else None
    if version is None:
        raise ResultsError("not a simrun results folder (its run.json names no simrun version); valid: a folder "
                           "`simrun` wrote")
    if version != __version__:
        raise ResultsError(f"written by simrun {version}, whose tables differ from simrun {__version__}'s; "
                           f"valid: run the experiment again")
    return pq.read_table(run_dir / "turns.parquet"), info


def read_faults(run_dir: str | Path) -> pa.Table:
    """A written run's faults table."""
    return pq.read_table(Path(run_dir) / "faults.parquet")


TEMPORARY = re.compile(r"^\..+\.simrun-(\d+)-")   # .NAME.simrun-PID-... : a folder a run is writing


def write(out_dir: str | Path, tables: dict[str, pa.Table], run_info: dict,
          extras: Callable[[Path], object] | None = None, timing: dict | None = None) -> Path:
    """Write every table, run.json, timing.json and whatever `extras(folder)` adds into `out_dir`,
    replacing it only once all are complete.

    Each table's schema metadata and run.json hold `run_info`, which the config and seed determine, so
    the same config and seed give byte-identical Parquet files; what they do not determine (wall time)
    goes to timing.json. The folder is written under a temporary name holding this process's id, and
    such folders left by a run that was killed (its process gone) are removed first. The folder gets
    the permissions the user's umask gives, as a plain mkdir would.
    """
    out_dir = Path(out_dir).resolve()
    made = next((p for p in reversed(out_dir.parents) if not p.exists()), None)  # the topmost folder made here
    old = out_dir.with_name(f".{out_dir.name}.simrun-{os.getpid()}-old")
    tmp = None
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(out_dir.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.simrun-{os.getpid()}-", dir=out_dir.parent))
        tmp.chmod(0o777 & ~_umask())
        meta = {b"simrun": json.dumps(run_info).encode()}
        for name, table in tables.items():
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
            pq.write_table(table, tmp / f"{name}.parquet")
        (tmp / "run.json").write_text(json.dumps(run_info, indent=2) + "\n")
        if timing is not None:
            (tmp / "timing.json").write_text(json.dumps(timing, indent=2) + "\n")
        if extras:
            extras(tmp)
        if out_dir.exists():
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        if old.exists() and not out_dir.exists():
            os.replace(old, out_dir)   # stopped between the two renames: the earlier results go back
        if made or tmp:
            shutil.rmtree(made or tmp, ignore_errors=True)  # `made`, when set, holds `tmp`
        raise
    return out_dir


def remove_stale(folder: Path) -> list[Path]:
    """Remove the temporary folders in `folder` that runs killed while writing left behind: named by
    `write` with the id of a process that no longer runs. Returns what was removed."""
    removed = []
    for path in folder.iterdir():
        found = TEMPORARY.match(path.name)
        if found and path.is_dir() and not path.is_symlink() and not _running(int(found.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True   # another user's process (or an id beyond any process's): not ours to judge
    return True


def _umask() -> int:
    """The process's umask (read by setting it, then setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
