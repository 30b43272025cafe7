"""One sweep point's results as rows: the swept parameters as columns of its tables, and its summary, one
row per deployment of what a capacity planner compares across points.

Summary columns (null where a workload has no such figure):
- status `ok` or `failed` (then `error` holds the line that says why, and no other figure);
- turns, failed_turns (status not ok), output_tokens;
- the deployment's energy from run.json's ledger: total_kwh (facility boundary), gpu_kwh, co2e_kg;
- a podcast's replies: time_to_speech_p50_s / _p99_s, stall_s (summed), reply_wh (mean attributed Wh of a
  reply), last_reply_wh (its last ok reply's, where growth shows), max_context_tokens, first_failure_min
  (the conversation minute of its first failed reply);
- a benchmark workload's keys of sim.metrics.KEYS.
"""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sim.metrics import KEYS, table_metrics

J_PER_KWH = 3.6e6
J_PER_WH = 3600.0
PODCAST = ("time_to_speech_p50_s", "time_to_speech_p99_s", "stall_s", "reply_wh", "last_reply_wh",
           "max_context_tokens", "first_failure_min")
FIGURES = ("turns", "failed_turns", "output_tokens", "total_kwh", "gpu_kwh", "co2e_kg", *PODCAST, *KEYS)


def column_types(rows: list[dict]) -> dict[str, pa.DataType]:
    """One Arrow type per swept parameter over all points: bool, int64, float64 (numbers of both kinds),
    string, or a JSON string for anything else (tables, lists, mixed kinds)."""
    types = {}
    for path in rows[0]:
        kinds = {type(row[path]) for row in rows}
        if kinds == {bool}:
            types[path] = pa.bool_()
        elif kinds == {int}:
            types[path] = pa.int64()
        elif kinds <= {int, float}:
            types[path] = pa.float64()
        elif kinds == {str}:
            types[path] = pa.string()
        else:
            types[path] = pa.string()   # as JSON
    return types


def _value(value, kind: pa.DataType):
    if kind == pa.string() and not isinstance(value, str):
        return json.dumps(value, sort_keys=True)
    return float(value) if kind == pa.float64() else value


def with_params(table: pa.Table, params: dict, types: dict[str, pa.DataType]) -> pa.Table:
    """`table` with a column per swept parameter, its value on every row."""
    for path, value in params.items():
        table = table.append_column(pa.field(path, types[path]),
                                    pa.array([_value(value, types[path])] * table.num_rows, types[path]))
    return table


def schema(types: dict[str, pa.DataType]) -> pa.Schema:
    return pa.schema([*(pa.field(p, t) for p, t in types.items()), pa.field("deployment", pa.string()),
                      pa.field("status", pa.string()), pa.field("error", pa.string()),
                      *(pa.field(f, pa.float64()) for f in FIGURES)])


def failed(params: dict, types: dict[str, pa.DataType], error: str) -> pa.Table:
    """The summary of a point that did not run to the end: one row naming the error."""
    row = {**{p: _value(v, types[p]) for p, v in params.items()}, "deployment": None, "status": "failed",
           "error": error}
    return pa.Table.from_pylist([row], schema=schema(types))


def rows(turns: pa.Table, info: dict, params: dict, types: dict[str, pa.DataType]) -> pa.Table:
    """A point's summary, one row per deployment."""
    workload = info["config"]["workload"]
    out = []
    for name, ledger in info["ledger_j"].items():
        mine = turns.filter(pc.equal(turns["deployment"], name))
        status = np.array(mine["status"].to_pylist(), dtype=object)
        row = {**{p: _value(v, types[p]) for p, v in params.items()}, "deployment": name, "status": "ok",
               "error": None, "turns": len(status), "failed_turns": int((status != "ok").sum()),
               "output_tokens": float(pc.sum(mine["output_tokens"]).as_py() or 0),
               "total_kwh": ledger["total_j"] / J_PER_KWH, "gpu_kwh": ledger["gpu_j"] / J_PER_KWH,
               "co2e_kg": ledger["co2e_g"] / 1000.0}
        if workload["kind"] == "podcast":
            row.update(_podcast(mine))
        else:
            row.update(table_metrics(turns, name, workload["warmup_requests"], workload["cooldown_requests"]))
        out.append(row)
    return pa.Table.from_pylist(out, schema=schema(types))


def _podcast(turns: pa.Table) -> dict:
    replies = turns.filter(pc.equal(turns["kind"], "reply"))
    ok = replies.filter(pc.equal(replies["status"], "ok"))
    lost = replies.filter(pc.not_equal(replies["status"], "ok"))
    speech = np.array(ok["time_to_speech_s"].to_pylist(), dtype=float)
    energy = np.array(ok["energy_j"].to_pylist(), dtype=float)
    figures = {"stall_s": float(np.sum(ok["stall_s"].to_pylist())),
               "max_context_tokens": float(pc.max(replies["context_tokens"]).as_py() or 0),
               "first_failure_min": (float(pc.min(lost["conversation_s"]).as_py()) / 60.0 if lost.num_rows else None)}
    if ok.num_rows:
        figures.update(time_to_speech_p50_s=float(np.percentile(speech, 50)),
                       time_to_speech_p99_s=float(np.percentile(speech, 99)),
                       reply_wh=float(energy.mean()) / J_PER_WH, last_reply_wh=float(energy[-1]) / J_PER_WH)
    return figures
