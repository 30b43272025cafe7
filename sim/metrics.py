"""Benchmark metrics from a run, in the vocabulary of serving benchmarks (vLLM, TensorRT-LLM, MLPerf, NIM).

Over the requests that succeeded (after any warm-up requests), the run spanning from the first
measured arrival to the last finish:
- output_tokens_per_s, input_tokens_per_s (whole prompts, cached tokens included), requests_per_s: totals / span;
- ttft_*: first token - arrival; tpot_*: (finish - first token) / (output tokens - 1) per request
  (MLPerf's TPOT); itl_mean_s: the mean of the per-request TPOT (NIM's ITL);
- e2e_mean_s: finish - arrival;
- energy_per_output_token_j: the GPU energy charged to the measured requests, failed ones included
  (turns.gpu_j: their share of the steps' energy above idle and of the idle GPUs, which over all
  requests sum to the GPUs' energy; benchmarks measure GPU energy only) / the
  output tokens of those that succeeded; warm-up and cool-down requests' energy stays out as their
  tokens do;
- in_flight_mean: requests in the system on average, sum of E2E / span (Little's law).
Percentiles are numpy's linear interpolation. A key with nothing to measure is left out: no request
succeeded (all of them), or none had a second token (TPOT and ITL).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sim.records import NS_PER_S

KEYS = ("output_tokens_per_s", "input_tokens_per_s", "requests_per_s", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s",
        "ttft_mean_s", "tpot_p50_s", "tpot_p99_s", "tpot_mean_s", "itl_mean_s", "e2e_mean_s",
        "energy_per_output_token_j", "in_flight_mean")
FAMILIES = {"throughput": ("output_tokens_per_s", "input_tokens_per_s", "requests_per_s", "in_flight_mean"),
            "ttft": ("ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "ttft_mean_s"),
            "tpot_itl": ("tpot_p50_s", "tpot_p99_s", "tpot_mean_s", "itl_mean_s", "e2e_mean_s"),
            "energy": ("energy_per_output_token_j",)}


def family(key: str) -> str:
    return next(f for f, keys in FAMILIES.items() if key in keys)


def benchmark_metrics(result, warmup_requests: int = 0, cooldown_requests: int = 0) -> dict[str, float]:
    """Every key of KEYS for one deployment's DeploymentResult (see metrics_of)."""
    turns = result.turns
    return metrics_of({
        "session": np.array([t.session for t in turns]), "status": np.array([t.status for t in turns]),
        "arrival_s": np.array([t.arrival_ns for t in turns]) / NS_PER_S,
        "first_token_s": np.array([np.nan if t.first_token_ns is None else t.first_token_ns for t in turns]) / NS_PER_S,
        "finish_s": np.array([np.nan if t.finish_ns is None else t.finish_ns for t in turns]) / NS_PER_S,
        "output_tokens": np.array([t.output_tokens for t in turns], dtype=float),
        "prompt_tokens": np.array([t.context_tokens + t.new_tokens for t in turns], dtype=float),
        "energy_j": np.array([t.energy(result.boundary)["gpu_j"] for t in turns]),
    }, warmup_requests, cooldown_requests)


def table_metrics(turns: pa.Table, deployment: str, warmup_requests: int = 0,
                  cooldown_requests: int = 0) -> dict[str, float]:
    """Every key of KEYS for one deployment of a run's turns table (what `simrun report` re-reads)."""
    mine = turns.filter(pc.equal(turns["deployment"], deployment))
    columns = {k: np.array(mine[k].to_pylist(), dtype=float) for k in (
        "arrival_s", "first_token_s", "finish_s", "output_tokens", "context_tokens", "new_tokens", "gpu_j")}
    columns["energy_j"] = columns.pop("gpu_j")
    columns["prompt_tokens"] = columns.pop("context_tokens") + columns.pop("new_tokens")
    return metrics_of({**columns, "session": np.array(mine["session"].to_pylist()),
                       "status": np.array(mine["status"].to_pylist())}, warmup_requests, cooldown_requests)


def metrics_of(turns: dict[str, np.ndarray], warmup_requests: int, cooldown_requests: int) -> dict[str, float]:
    """Every key of KEYS from per-request columns (session, status, arrival_s, first_token_s, finish_s,
    output_tokens, prompt_tokens, energy_j), leaving out the first `warmup_requests` and the last
    `cooldown_requests` requests sent (sessions are numbered in sending order); the span runs from the
    first measured arrival to the last measured finish."""
    session = turns["session"]
    measured = (session >= warmup_requests) & (session < len(session) - cooldown_requests)
    ok = measured & (turns["status"] == "ok")
    if not ok.any():
        return {}
    arrival, first, finish = turns["arrival_s"][ok], turns["first_token_s"][ok], turns["finish_s"][ok]
    out = turns["output_tokens"][ok]
    span = finish.max() - turns["arrival_s"][measured].min()
    ttft, e2e = first - arrival, finish - arrival
    multi = out > 1
    tpot = (finish - first)[multi] / (out[multi] - 1)
    per_token = {"tpot_p50_s": float(np.percentile(tpot, 50)), "tpot_p99_s": float(np.percentile(tpot, 99)),
                 "tpot_mean_s": float(tpot.mean()), "itl_mean_s": float(tpot.mean())} if len(tpot) else {}
    return {
        "output_tokens_per_s": out.sum() / span,
        "input_tokens_per_s": turns["prompt_tokens"][ok].sum() / span,
        "requests_per_s": ok.sum() / span,
        "ttft_p50_s": float(np.percentile(ttft, 50)), "ttft_p90_s": float(np.percentile(ttft, 90)),
        "ttft_p99_s": float(np.percentile(ttft, 99)), "ttft_mean_s": float(ttft.mean()),
        **per_token,
        "e2e_mean_s": float(e2e.mean()),
        "energy_per_output_token_j": turns["energy_j"][measured].sum() / out.sum(),
        "in_flight_mean": float(e2e.sum() / span),
    }
