"""Figures over replicates ([run] replicates, sim.replicates): each replicate's figure, then their mean and a 95%
interval, mean +- t(0.975, N - 1) x s / sqrt(N) (Student's t, s the replicates' sample standard deviation): the
interval narrows as 1 / sqrt(N). And what faults cost a deployment's podcasts (DESIGN.md, 'Failures').
"""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

J_PER_WH = 3600.0


def interval(values) -> tuple[float, float]:
    """The mean of `values` (NaN left out) and the half-width of its 95% interval (NaN under two values)."""
    from scipy.stats import t   # (scipy.stats takes a moment to load: only reports with replicates need it)
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if not len(x):
        return math.nan, math.nan
    if len(x) < 2:
        return float(x.mean()), math.nan
    return float(x.mean()), float(t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))


def _fmt(mean: float, half: float, scale: float = 1.0, digits: int = 3) -> str:
    if math.isnan(mean):
        return "-"
    text = f"{mean * scale:.{digits}f}"
    return text if math.isnan(half) else f"{text} +- {half * scale:.{digits}f}"


def _columns(turns: pa.Table, deployment: str, kind: str = "reply") -> dict[str, np.ndarray]:
    """A deployment's turns of `kind` as numpy columns (nulls as NaN)."""
    mine = turns.filter(pc.and_(pc.equal(turns["deployment"], deployment), pc.equal(turns["kind"], kind)))
    names = ("replicate", "session", "conversation_s", "context_tokens", "time_to_speech_s", "e2e_s", "energy_j",
             "fault_lost_s", "status")
    out = {n: mine[n].to_numpy(zero_copy_only=False) for n in names}
    out["fault"] = mine["fault"].is_valid().to_numpy(zero_copy_only=False)
    for n in ("time_to_speech_s", "e2e_s"):
        out[n] = out[n].astype(float)
    return out


def _per_replicate(col: dict, replicates: int, value: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each replicate, the mean of `value` over its `rows` (NaN where it has none)."""
    out = np.full(replicates, np.nan)
    for r in range(replicates):
        mine = value[rows & (col["replicate"] == r)]
        mine = mine[~np.isnan(mine)]
        if len(mine):
            out[r] = mine.mean()
    return out


def mark_rows(col: dict, mark_min: float) -> np.ndarray:
    """Each (replicate, podcast)'s first phrase arriving at or after minute `mark_min`, as a row mask."""
    at = np.flatnonzero(col["conversation_s"] / 60.0 >= mark_min)
    order = at[np.lexsort((col["conversation_s"][at], col["session"][at], col["replicate"][at]))]
    _, first = np.unique(np.stack([col["replicate"][order], col["session"][order]]), axis=1, return_index=True)
    rows = np.zeros(len(col["session"]), dtype=bool)
    rows[order[first]] = True
    return rows


def minute_lines(turns: pa.Table, deployment: str, minutes: list[float], replicates: int) -> list[str]:
    """Per minute mark, over replicates: each one's mean over its podcasts of the phrase at the mark."""
    col = _columns(turns, deployment)
    lines = [f"over {replicates} replicates (mean +- 95% interval; a replicate's figure: its podcasts' mean)",
             f"{'minute':>6} {'context':>9} {'to speech s':>17} {'reply s':>17} {'attributed Wh':>17} "
             f"{'phrases failed':>14} {'hit by a fault':>14}"]
    for mark in minutes:
        rows = mark_rows(col, mark)
        if not rows.any():
            continue
        context = _per_replicate(col, replicates, col["context_tokens"].astype(float), rows)
        speech = interval(_per_replicate(col, replicates, col["time_to_speech_s"], rows))
        reply = interval(_per_replicate(col, replicates, col["e2e_s"], rows))
        energy = interval(_per_replicate(col, replicates, col["energy_j"].astype(float), rows))
        failed, hit, n = int((col["status"][rows] != "ok").sum()), int(col["fault"][rows].sum()), int(rows.sum())
        lines.append(f"{mark:>6g} {np.nanmean(context):>9,.0f} {_fmt(*speech):>17} {_fmt(*reply):>17} "
                     f"{_fmt(*energy, 1 / J_PER_WH, 4):>17} {failed:>7} of {n:<5} {hit:>7} of {n:<5}")
    return lines


def fault_lines(turns: pa.Table, faults: pa.Table, deployment: str, exposures: list[dict], replicates: int,
                duration_h: float) -> list[str]:
    """Faults per run against the rates' closed form, the chance a podcast meets one (simulated, and for a
    podcast kept on one replica 1 - e^(-rate x T)), and the minutes they cost a podcast."""
    col = _columns(turns, deployment)
    rows = faults.filter(pc.equal(faults["deployment"], deployment))
    counts = [len(set(rows.filter(pc.equal(rows["replicate"], r))["fault"].to_pylist())) for r in range(replicates)]
    expected = float(np.mean([e["expected_faults"] for e in exposures]))
    lines = [f"faults: {_fmt(*interval(counts), digits=2)} per run (the rates expect {expected:.2f}: rate x "
             f"{np.mean([e['gpu_hours'] for e in exposures]):,.4g} GPU-hours)"]
    if not duration_h or not len(col["session"]):   # a benchmark workload, or no podcast served
        return lines
    hit, lost_min = np.zeros(replicates), np.zeros(replicates)
    for r in range(replicates):
        mine = col["replicate"] == r
        sessions = set(col["session"][mine].tolist())
        hit[r] = len(set(col["session"][mine & col["fault"]].tolist())) / max(len(sessions), 1)
        lost_min[r] = col["fault_lost_s"][mine].sum() / 60.0 / max(len(sessions), 1)
    rate_per_h = exposures[0]["replica_faults_per_h"]
    closed = 1.0 - math.exp(-rate_per_h * duration_h)
    lines.append(f"a {duration_h:g}-hour podcast met a fault: {_fmt(*interval(hit), 100, 1)}% of podcasts (kept on "
                 f"one replica, 1 - e^(-{rate_per_h:.3g}/h x {duration_h:g} h) = {closed * 100:.2g}%)")
    lines.append(f"minutes a podcast lost to faults: {_fmt(*interval(lost_min), digits=2)} (a retried phrase's "
                 "failed attempts; a failed one's wait and its unspoken reply)")
    return lines
