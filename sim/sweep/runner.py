"""Running a sweep's points: one point in a worker, and the backends that spread them, a local process
pool or a Ray cluster (the optional extra `pip install -e .[ray]`). Both yield each point's outcome as it
finishes; the caller writes it (sim.sweep.store), so workers need not share a disk with it."""
from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass

import pyarrow as pa

from sim import config
from sim.pool import die_on_interrupt
from sim.run import build_all, simulate_experiment
from sim.sweep import summary


@dataclass
class Task:
    key: str
    label: str          # the file and the point, for error lines
    data: dict          # the point's experiment tables
    params: dict
    types: dict         # swept path -> Arrow type (sim.sweep.summary.column_types)


@dataclass
class Outcome:
    key: str
    tables: dict        # name -> pa.Table with the parameters as columns; empty when it failed
    summary: pa.Table
    files: dict         # run.json, timing.json
    wall_s: float
    error: str | None = None


def run_point(task: Task) -> Outcome:
    """Simulate one point; an error on the way is its outcome (one line), not the sweep's end."""
    started = time.perf_counter()
    try:
        experiment = config.parse(task.label, task.data)
        result = simulate_experiment(task.label, experiment, build_all(task.label, experiment))
    except Exception as e:   # noqa: BLE001 - a point's failure is recorded and the sweep goes on
        error = f"{type(e).__name__}: {e}".replace("\n", " ")
        return Outcome(task.key, {}, summary.failed(task.params, task.types, error), {},
                       time.perf_counter() - started, error)
    tables = {name: summary.with_params(table, task.params, task.types) for name, table in result.tables.items()}
    files = {"run.json": json.dumps(result.info, indent=2) + "\n",
             "timing.json": json.dumps({**result.timing, "sweep_point": task.label}, indent=2) + "\n"}
    return Outcome(task.key, tables, summary.rows(result.tables["turns"], result.info, task.params, task.types),
                   files, time.perf_counter() - started)


def local(tasks: list[Task], jobs: int) -> Iterator[Outcome]:
    """Points over `jobs` local processes (in this one when 1), each yielded as it finishes. Interrupted,
    the pool's exit terminates its workers."""
    with multiprocessing.Pool(jobs, initializer=die_on_interrupt) if jobs > 1 and len(tasks) > 1 \
            else nullcontext() as pool:
        yield from (pool.imap_unordered(run_point, tasks) if pool else map(run_point, tasks))


class RayMissing(RuntimeError):
    """--backend ray without Ray installed, or without a Ray cluster it can reach."""


def connect_ray(jobs: int, address: str | None):
    """Ray, started as a local instance of `jobs` CPUs or connected to the cluster at `address`; a
    RayMissing error says why it cannot be."""
    try:
        import ray as ray_lib
    except ImportError:
        raise RayMissing("--backend ray needs Ray; valid: pip install -e '.[ray]', or --backend local") from None
    try:
        ray_lib.init(address=address, num_cpus=None if address else jobs, include_dashboard=False,
                     log_to_driver=False, logging_level="ERROR", configure_logging=False)
    except Exception as e:   # noqa: BLE001 - Ray raises several kinds; each is one line here
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        first = (str(e).strip().splitlines() or [""])[0]
        raise RayMissing(f"cannot start or reach {where} ({type(e).__name__}: {first}); valid: the address "
                         f"`ray start --head` printed, or no --address for a local instance") from None
    return ray_lib


def on_ray(ray_lib, tasks: list[Task]) -> Iterator[Outcome]:
    """Points as Ray tasks of one CPU each, each yielded as it finishes; Ray is shut down at the end."""
    try:
        remote = ray_lib.remote(num_cpus=1)(run_point)
        pending = [remote.remote(task) for task in tasks]
        while pending:
            done, pending = ray_lib.wait(pending, num_returns=1)
            yield ray_lib.get(done[0])
    finally:
        ray_lib.shutdown()
