"""Service-level objectives: which turns meet them, attainment and goodput per deployment ([slo] table).

A turn meets the SLO when it ended `ok` and every target set holds on its turns-table columns: time to first
token (ttft_s), time per output token after the first (tpot_s; a one-token reply has none and passes), reply
latency (e2e_s), and the voice's stall while a podcast reply is spoken (stall_s; other turns have none and
pass). A turn that failed misses it. Summaries, the engine's own requests, are not turns a user waits for and
are left out. Attainment is the share of a deployment's turns that meet the SLO; goodput the turns meeting it
per second, from the first arrival to the last end (DistServe, Zhong et al., OSDI 2024: goodput is what is
served within the SLO; a load is within SLO when attainment reaches its goal, 90% in their evaluation).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def slo_of(turns: pa.Table, deployment: str, targets: dict[str, float]) -> dict[str, float]:
    """{'turns', 'met', 'attainment', 'goodput_per_s'} over one deployment's user turns of a turns table."""
    mine = turns.filter(pc.and_(pc.equal(turns["deployment"], deployment), pc.not_equal(turns["kind"], "summary")))
    n = mine.num_rows
    if not n:
        return {"turns": 0, "met": 0, "attainment": float("nan"), "goodput_per_s": 0.0}
    met = np.array(mine["status"].to_pylist()) == "ok"
    for column, target in targets.items():
        values = np.array(mine[column].to_pylist(), dtype=float)   # null -> nan: no such time, nothing to miss
        met &= ~(values > target)
    arrival, end = (np.array(mine[c].to_pylist(), dtype=float) for c in ("arrival_s", "end_s"))
    span_s = float(end.max() - arrival.min())
    return {"turns": n, "met": int(met.sum()), "attainment": float(met.mean()),
            "goodput_per_s": float(met.sum() / span_s) if span_s > 0 else 0.0}


def describe_targets(targets: dict[str, float]) -> str:
    return ", ".join(f"{column} <= {target:g}" for column, target in targets.items()) or "no target set"


def slo_lines(turns: pa.Table, deployments, targets: dict[str, float], goal: float) -> list[str]:
    """The report's SLO paragraph: per deployment, its attainment against the goal and its goodput."""
    lines = ["", f"SLO ({describe_targets(targets)}; within it when at least {goal:.0%} of turns meet it):"]
    for name in deployments:
        s = slo_of(turns, name, targets)
        verdict = "within" if s["attainment"] >= goal else "NOT within"
        lines.append(f"  {name:<28} {s['met']:,} of {s['turns']:,} turns met it ({s['attainment']:.1%}, {verdict}); "
                     f"goodput {s['goodput_per_s']:.4g} turns/s")
    return lines
