"""When faults arrive, what they hit: the superposition of every cause's Poisson process on every GPU.

n GPUs each carrying causes at rates r_c make one Poisson process at n x sum(r_c); each arrival is cause c with
probability r_c / sum(r), on a GPU drawn uniformly. The draws come from their own numpy stream of the run's seed,
so a deployment's faults do not move when the workload changes, and deployments of one experiment alike in GPUs
meet the same faults (common random numbers).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from sim.faults.rates import FaultRates

# The faults' stream of the run seed: workloads use [seed, 1..5], [seed, session], [seed, 5, index], [seed, 7]; numpy
# pads a seed list with zeros, so [seed, 6, 0] would be podcast session 6's stream, and a last 1 is none of those.
STREAM = (6, 1)


@dataclass(frozen=True)
class Arrival:
    gap_s: float   # seconds since the previous arrival (or the start)
    cause: int     # index into FaultRates.causes
    gpu: int       # index into the GPUs the faults fall on


def rng_for(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, *STREAM])


def arrivals(rates: FaultRates, n_gpus: int, rng: np.random.Generator) -> Iterator[Arrival]:
    """Fault after fault on `n_gpus` GPUs, for ever (nothing when no cause has a rate)."""
    total_per_s = rates.total_per_gpu_s * n_gpus
    if total_per_s <= 0 or n_gpus <= 0:
        return
    p = rates.per_gpu_s / rates.per_gpu_s.sum()
    while True:
        yield Arrival(float(rng.exponential(1.0 / total_per_s)), int(rng.choice(len(p), p=p)),
                      int(rng.integers(n_gpus)))


def counts(rates: FaultRates, n_gpus: int, horizon_s: float, rng: np.random.Generator) -> np.ndarray:
    """Faults of each cause that arrive within `horizon_s` seconds."""
    out = np.zeros(len(rates.causes), dtype=np.int64)
    clock = 0.0
    for arrival in arrivals(rates, n_gpus, rng):
        clock += arrival.gap_s
        if clock >= horizon_s:
            break
        out[arrival.cause] += 1
    return out
