"""[run] replicates: the experiment run N times, seeds drawn from its own, over the cores; their tables as one,
each row marked with its `replicate` (DESIGN.md: every figure is one draw of a random process; replicates give
its spread, sim.intervals)."""
from __future__ import annotations

import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pyarrow as pa

from sim import config
from sim.pool import default_jobs, die_on_interrupt
from sim.run import RunResult, build_all, simulate_experiment


def seeds(seed: int, n: int) -> list[int]:
    """Replicate 0 runs `seed` itself (one replicate is the plain run); replicate r > 0 a 63-bit seed drawn
    from numpy's SeedSequence([seed, r]): streams apart from one another, the same for the same seed."""
    return [seed] + [int(np.random.SeedSequence([seed, r]).generate_state(1, np.uint64)[0] >> np.uint64(1))
                     for r in range(1, n)]


def _one(job: tuple[str, config.Experiment, int, int]) -> tuple[dict, dict]:
    """One replicate in a worker: its tables and run.json."""
    path, experiment, replicate, seed = job
    experiment = experiment.model_copy(update={"run": experiment.run.model_copy(update={"seed": seed})})
    result = simulate_experiment(path, experiment, build_all(path, experiment), replicate=replicate)
    return result.tables, result.info


def run_replicates(path: str, experiment: config.Experiment, jobs: int | None = None, done=None,
                   started: float | None = None) -> RunResult:
    """Every replicate of `experiment`, over `jobs` processes (default: the cores), in order of replicate;
    `done(finished, total)` after each. run.json is replicate 0's, with each replicate's seed, ledger and fault
    exposure under `replicates`."""
    started = time.perf_counter() if started is None else started
    n = experiment.run.replicates
    jobs_list = [(path, experiment, r, seed) for r, seed in enumerate(seeds(experiment.run.seed, n))]
    workers = min(jobs or default_jobs(), n)
    outcomes = []
    if workers == 1:
        for job in jobs_list:
            outcomes.append(_one(job))
            done and done(len(outcomes), n)
    else:
        pa.array([0])   # load pandas once, before the workers fork (sim.sweep.runner.local)
        with ProcessPoolExecutor(workers, initializer=die_on_interrupt) as pool:
            for outcome in pool.map(_one, jobs_list):
                outcomes.append(outcome)
                done and done(len(outcomes), n)
    tables = {name: pa.concat_tables([t[name] for t, _ in outcomes]) for name in outcomes[0][0]}
    info = {**outcomes[0][1], "replicates": [
        {"replicate": r, "seed": job[3], "ledger_j": i["ledger_j"], "faults": i["faults"]}
        for r, (job, (_, i)) in enumerate(zip(jobs_list, outcomes))]}
    timing = {"experiment_file": str(path), "wall_s": time.perf_counter() - started, "jobs": workers,
              "python": sys.version.split()[0]}
    return RunResult(experiment, [], tables, info, timing)
