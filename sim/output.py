"""Results as Parquet tables plus run.json, written whole or not at all (temporary folder, then rename).

Parquet because pyarrow, pandas, polars and DuckDB all read it without extensions.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sim.cost import BOUND_NAMES
from sim.simulation import DeploymentResult

TURN_SCHEMA = pa.schema([
    ("run", pa.string()), ("deployment", pa.string()), ("session", pa.int64()), ("turn", pa.int64()),
    ("speaker", pa.string()), ("kind", pa.string()), ("minute", pa.float64()), ("conversation_tokens", pa.int64()),
    ("context_tokens", pa.int64()),
    ("retrieved_tokens", pa.int64()),
    ("new_tokens", pa.int64()), ("output_tokens", pa.int64()), ("cached_tokens", pa.int64()),
    ("recomputed_tokens", pa.int64()), ("arrival_s", pa.float64()), ("first_token_s", pa.float64()),
    ("finish_s", pa.float64()), ("ttft_s", pa.float64()), ("tpot_s", pa.float64()), ("e2e_s", pa.float64()),
    ("reply_speech_s", pa.float64()), ("energy_j", pa.float64()), ("energy_prefill_j", pa.float64()),
    ("energy_decode_j", pa.float64()), ("energy_idle_j", pa.float64()), ("energy_retrieval_j", pa.float64()),
    ("replica", pa.int64()),
    ("status", pa.string()), ("reason", pa.string()),
])


def turns_table(results: list[DeploymentResult]) -> pa.Table:
    rows = [t.row() for r in results for t in r.turns]
    return pa.Table.from_pylist(rows, schema=TURN_SCHEMA)


def steps_table(results: list[DeploymentResult]) -> pa.Table:
    parts = []
    for r in results:
        cols = r.steps.columns()
        n = len(cols["start_s"])
        parts.append(pa.table({
            "deployment": pa.array([r.deployment.name] * n, pa.string()),
            "replica": cols["replica"].astype(np.int64),
            "start_s": cols["start_s"].astype(float), "duration_s": cols["duration_s"].astype(float),
            "prefill_tokens": cols["prefill_tokens"].astype(np.int64),
            "decode_seqs": cols["decode_seqs"].astype(np.int64), "kv_tokens": cols["kv_tokens"].astype(np.int64),
            "flops": cols["flops"].astype(float), "hbm_bytes": cols["hbm_bytes"].astype(float),
            "comm_bytes": cols["comm_bytes"].astype(float),
            "bound": pa.array([BOUND_NAMES[b] for b in cols["bound"].astype(int)], pa.string()),
            "power_w": cols["power_w"].astype(float), "energy_j": cols["energy_j"].astype(float),
        }))
    # Replicas log their steps as they go; sort so that the table does not depend on how the engines
    # interleaved (bulk and per-step modes interleave differently).
    return pa.concat_tables(parts).sort_by([("deployment", "ascending"), ("replica", "ascending"),
                                            ("start_s", "ascending")])


def gpus_table(results: list[DeploymentResult]) -> pa.Table:
    rows = []
    for r in results:
        for engine, rep in zip(r.engines, r.deployment.replicas):
            cost, accel = rep.cost, rep.cost.accel
            tp = rep.placement.layout.tp
            for s, stage_gpus in enumerate(rep.placement.stages):
                for position, gpu in enumerate(stage_gpus):
                    pool = engine.pools[position // tp]  # the attention group this GPU serves
                    peak_kv_tokens = pool.peak_used_blocks * pool.block_tokens
                    rows.append({
                        "deployment": r.deployment.name, "gpu": gpu, "replica": engine.index, "stage": s,
                        "accelerator": accel.name,
                        "energy_j": float(engine.stage_energy_j[s]) + accel.idle_w * engine.idle_s,
                        "busy_s": float(engine.stage_busy_s[s]),
                        "peak_hbm_bytes": cost.stage_weights_bytes(s) + rep.memory.activation_bytes
                        + peak_kv_tokens * cost.stage_kv_bytes_per_token(s),
                        "kv_pool_bytes": rep.memory.kv_pool_bytes,
                    })
    return pa.Table.from_pylist(rows)


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


def read(run_dir: str | Path) -> tuple[pa.Table, dict]:
    """A written run's turns table and run.json."""
    run_dir = Path(run_dir)
    return pq.read_table(run_dir / "turns.parquet"), json.loads((run_dir / "run.json").read_text())


def write(out_dir: str | Path, tables: dict[str, pa.Table], run_info: dict,
          extras: Callable[[Path], object] | None = None) -> Path:
    """Write every table, run.json and whatever `extras(folder)` adds into `out_dir`, replacing it
    only once all are complete."""
    out_dir = Path(out_dir).resolve()
    made = next((p for p in reversed(out_dir.parents) if not p.exists()), None)  # the topmost folder made here
    tmp = None
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
        meta = {b"simrun": json.dumps(run_info, sort_keys=True).encode()}
        for name, table in tables.items():
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
            pq.write_table(table, tmp / f"{name}.parquet")
        (tmp / "run.json").write_text(json.dumps(run_info, indent=2, sort_keys=True) + "\n")
        if extras:
            extras(tmp)
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        if made or tmp:
            shutil.rmtree(made or tmp, ignore_errors=True)  # `made`, when set, holds `tmp`
        raise
    return out_dir
