"""Benchmark workloads, as serving benchmarks drive an engine: independent requests, no shared history.

- offline: `requests` requests all queued at t = 0 (trtllm-bench throughput, MLPerf Offline);
- poisson: `requests` requests arriving at `rate_per_s` on average (MLPerf Server);
- concurrency: `clients` clients, each sending its next request when its last one finished
  (NIM / genai-perf at fixed concurrency).
Input and output lengths are `fixed`, or `lognormal` around the given length with log-sd `log_sigma`,
capped at `max_tokens`, or a trace's rows replayed (workloads.traces); drawn from a numpy Generator
seeded with the run seed, so the requests never depend on the simulation. A trace replay (`replay`) sends a
trace's requests at their own arrivals instead.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workloads.traces import MOONCAKE_BLOCK_TOKENS, Trace, continuations


@dataclass(frozen=True)
class Lengths:
    """Token lengths: `tokens` exactly (fixed), or lognormal with that mean (log-sd `log_sigma`), capped."""

    tokens: int
    dist: str = "fixed"
    log_sigma: float = 0.0
    max_tokens: int = 0

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.dist == "fixed":
            return np.full(n, self.tokens, dtype=np.int64)
        # A lognormal's mean is exp(mu + sigma^2 / 2): mu places the mean at `tokens`.
        mu = np.log(self.tokens) - self.log_sigma ** 2 / 2
        drawn = np.maximum(1, np.rint(rng.lognormal(mu, self.log_sigma, n))).astype(np.int64)
        return np.minimum(drawn, self.max_tokens) if self.max_tokens else drawn


@dataclass(frozen=True)
class Request:
    index: int
    arrival_s: float          # offline and poisson; concurrency clients send when they are free
    input_tokens: int
    output_tokens: int
    follows: int = -1          # the earlier request whose whole prompt begins this one's (-1: none)
    shared_tokens: int = 0     # the tokens of its prompt that request's prompt holds


def replay(trace: Trace, n: int) -> list[Request]:
    """The first `n` requests of a trace at their arrivals. With Mooncake's block ids each follows the latest
    earlier request whose whole prompt begins its own (traces.continuations), sharing those blocks' tokens: no
    more than that request's prompt (its last block may be partial), and all of its own prompt's but the last
    at most (a prompt found whole in the cache still computes its last token to sample from: vLLM's
    KVCacheManager caps a cache hit at the prompt's length - 1)."""
    follows, blocks = (continuations(trace.hash_ids[:n]) if trace.hash_ids is not None
                       else (np.full(n, -1), np.zeros(n, dtype=np.int64)))
    inputs, outputs = trace.input_tokens[:n], trace.output_tokens[:n]
    shared = np.where(follows >= 0, np.minimum(np.minimum(blocks * MOONCAKE_BLOCK_TOKENS, inputs[follows]),
                                               inputs - 1), 0)
    return [Request(i, float(trace.arrival_s[i]), int(inputs[i]), int(outputs[i]), int(follows[i]), int(shared[i]))
            for i in range(n)]


def requests(kind: str, n: int, inputs: Lengths, outputs: Lengths, seed: int,
             rate_per_s: float = 0.0, trace: tuple[np.ndarray, np.ndarray] | None = None) -> list[Request]:
    """`n` requests; their lengths drawn from `inputs` and `outputs`, or with a `trace` (prompt and reply
    tokens per row) its rows in order, cycled."""
    rng = np.random.default_rng([seed, 1])
    if trace is not None:
        rows = np.arange(n) % len(trace[0])
        ins, outs = trace[0][rows], trace[1][rows]
    else:
        ins, outs = inputs.draw(rng, n), outputs.draw(rng, n)
    if kind == "poisson":
        arrivals = np.cumsum(rng.exponential(1.0 / rate_per_s, n))
    else:
        arrivals = np.zeros(n)
    return [Request(i, float(arrivals[i]), int(ins[i]), int(outs[i])) for i in range(n)]
