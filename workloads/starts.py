"""When each of N conversations begins, seconds from the start of the run.

- staggered: session i at i x gap (gap 0: all at once);
- poisson: a Poisson process of mean gap `gap_s`, the first at 0 (the gaps exponential);
- uniform: each start drawn uniformly over [0, window_s), independently (a window's worth of sessions
  arriving at random: the order statistics of a Poisson process conditioned on N arrivals in the window).
The random kinds are drawn from a numpy Generator seeded with (run seed, 4), so the starts never depend on
the simulation; session i keeps the i-th start in time order.
"""
from __future__ import annotations

import numpy as np

KINDS = ("staggered", "poisson", "uniform")


def session_starts_s(kind: str, n: int, gap_s: float = 0.0, window_s: float = 0.0, seed: int = 0) -> np.ndarray:
    """The start of each of `n` sessions, in seconds, in time order."""
    if n == 0:
        return np.zeros(0)
    if kind == "staggered":
        return np.arange(n) * gap_s
    rng = np.random.default_rng([seed, 4])
    if kind == "poisson":
        return np.concatenate(([0.0], np.cumsum(rng.exponential(gap_s, n - 1))))
    if kind == "uniform":
        return np.sort(rng.uniform(0.0, window_s, n))
    raise ValueError(f"unknown session start kind '{kind}'; valid: {', '.join(KINDS)}")
