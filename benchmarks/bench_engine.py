"""Speed of the engine: the shipped podcast in bulk mode vs the per-step reference, same machine, same run.

    python benchmarks/bench_engine.py [EXPERIMENT]

Prints wall time per deployment and mode, simulated steps per wall second, and the bulk speed-up.
"""
from __future__ import annotations

import sys
import time

from sim import config
from sim.deployment import build
from sim.simulation import simulate


def main(path: str = "experiments/podcast10h.toml") -> None:
    experiment = config.load(path)
    print(f"{'deployment':<24} {'turns':>6} {'steps':>8} {'bulk s':>8} {'per-step s':>11} {'speed-up':>9}")
    totals = [0.0, 0.0]
    for name, spec in experiment.deployments.items():
        built = build(path, name, spec)
        walls = []
        for bulk in (True, False):
            start = time.perf_counter()
            result = simulate(experiment, built, bulk=bulk)
            walls.append(time.perf_counter() - start)
        totals = [t + w for t, w in zip(totals, walls)]
        steps = len(result.steps.columns()["start_s"])
        print(f"{name:<24} {len(result.turns):>6} {steps:>8} {walls[0]:>8.2f} {walls[1]:>11.2f} "
              f"{walls[1] / walls[0]:>8.1f}x")
    print(f"{'all':<24} {'':>6} {'':>8} {totals[0]:>8.2f} {totals[1]:>11.2f} {totals[1] / totals[0]:>8.1f}x")


if __name__ == "__main__":
    main(*sys.argv[1:])
