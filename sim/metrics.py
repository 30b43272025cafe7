"""Benchmark metrics from a run, in the vocabulary of serving benchmarks (vLLM, TensorRT-LLM, MLPerf, NIM).

Over the requests that succeeded (after any warm-up requests), the run spanning from the first
measured arrival to the last finish:
- output_tokens_per_s, input_tokens_per_s, requests_per_s: totals / span;
- ttft_*: first token - arrival; tpot_*: (finish - first token) / (output tokens - 1) per request
  (MLPerf's TPOT); itl_mean_s: the mean of the per-request TPOT (NIM's ITL);
- e2e_mean_s: finish - arrival;
- energy_per_output_token_j: the GPU energy charged to the measured requests, failed ones included
  (their prefill, decode and idle shares, which over all requests sum to the cluster's energy) / the
  output tokens of those that succeeded; warm-up and cool-down requests' energy stays out as their
  tokens do;
- in_flight_mean: requests in the system on average, sum of E2E / span (Little's law).
Percentiles are numpy's linear interpolation.
"""
from __future__ import annotations

import numpy as np

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
    """Every key of KEYS for one deployment's DeploymentResult, leaving out the first `warmup_requests`
    and the last `cooldown_requests` requests sent (sessions are numbered in sending order); the span
    runs from the first measured arrival to the last measured finish."""
    last = len(result.turns) - cooldown_requests
    measured = [t for t in result.turns if warmup_requests <= t.session < last]
    ok = [t for t in measured if t.status == "ok"]
    if not ok:
        return {}
    arrival = np.array([t.arrival_ns for t in ok]) / NS_PER_S
    first = np.array([t.first_token_ns for t in ok]) / NS_PER_S
    finish = np.array([t.finish_ns for t in ok]) / NS_PER_S
    out = np.array([t.output_tokens for t in ok], dtype=float)
    span = finish.max() - min(t.arrival_ns for t in measured) / NS_PER_S
    ttft, e2e = first - arrival, finish - arrival
    multi = out > 1
    tpot = (finish - first)[multi] / (out[multi] - 1)
    return {
        "output_tokens_per_s": out.sum() / span,
        "input_tokens_per_s": sum(t.new_tokens for t in ok) / span,
        "requests_per_s": len(ok) / span,
        "ttft_p50_s": float(np.percentile(ttft, 50)), "ttft_p90_s": float(np.percentile(ttft, 90)),
        "ttft_p99_s": float(np.percentile(ttft, 99)), "ttft_mean_s": float(ttft.mean()),
        "tpot_p50_s": float(np.percentile(tpot, 50)) if len(tpot) else float("nan"),
        "tpot_p99_s": float(np.percentile(tpot, 99)) if len(tpot) else float("nan"),
        "tpot_mean_s": float(tpot.mean()) if len(tpot) else float("nan"),
        "itl_mean_s": float(tpot.mean()) if len(tpot) else float("nan"),
        "e2e_mean_s": float(e2e.mean()),
        "energy_per_output_token_j": sum(t.gpu_energy_j for t in measured) / out.sum(),
        "in_flight_mean": float(e2e.sum() / span),
    }
