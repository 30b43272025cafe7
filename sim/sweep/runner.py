"""Running a sweep's points: one point in a worker, and the backends that spread them, a local process
pool or a Ray cluster (the optional extra `pip install -e .[ray]`). Both yield each point's outcome as it
finishes; the caller writes it (sim.sweep.store), so workers need not share a disk with it."""
from __future__ import annotations

import json
import multiprocessing
import multiprocessing.connection
import signal
import time
from collections.abc import Iterator
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
        return lost(task, f"{type(e).__name__}: {e}".replace("\n", " "), time.perf_counter() - started)
    tables = {name: summary.with_params(table, task.params, task.types) for name, table in result.tables.items()}
    files = {"run.json": json.dumps(result.info, indent=2) + "\n",
             "timing.json": json.dumps({**result.timing, "sweep_point": task.label}, indent=2) + "\n"}
    return Outcome(task.key, tables, summary.rows(result.tables["turns"], result.info, task.params, task.types),
                   files, time.perf_counter() - started)


def lost(task: Task, error: str, wall_s: float = 0.0) -> Outcome:
    """The outcome of a point whose worker gave no answer."""
    return Outcome(task.key, {}, summary.failed(task.params, task.types, error), {}, wall_s, error)


def _work(task: Task, answer) -> None:
    """A worker process: one point, its outcome sent back through `answer`."""
    die_on_interrupt()
    outcome = run_point(task)
    try:
        answer.send(outcome)
    except BrokenPipeError:   # the sweep was killed meanwhile: nobody to answer, and nothing to say
        return
    answer.close()


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        why = ": out of memory?" if name == "SIGKILL" else ""
        return f"its worker process was killed by {name}{why}"
    return f"its worker process exited with code {exitcode} before answering"


def local(tasks: list[Task], jobs: int) -> Iterator[Outcome]:
    """Points over `jobs` local processes, one process per point (in this one when 1), each yielded as it
    finishes. A worker that dies without answering (the kernel's out-of-memory killer, a signal) fails
    its own point and the others go on, where a shared pool would wait for it forever. Interrupted or
    closed, the workers still running are terminated."""
    if jobs <= 1 or len(tasks) <= 1:
        yield from map(run_point, tasks)
        return
    # pyarrow loads pandas (~0.4 s) the first time it builds an array from Python objects: once here, and
    # every worker forked after starts with it.
    pa.array([0])
    waiting, running = list(reversed(tasks)), {}
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                task = waiting.pop()
                receive, send = multiprocessing.Pipe(duplex=False)
                process = multiprocessing.Process(target=_work, args=(task, send), daemon=True)
                process.start()
                send.close()   # the worker holds the only writing end: its death ends the pipe
                running[receive] = (process, task, time.perf_counter())
            for ready in multiprocessing.connection.wait(list(running)):
                process, task, started = running.pop(ready)
                try:
                    outcome = ready.recv()
                except EOFError:
                    process.join()
                    outcome = lost(task, _death(process.exitcode), time.perf_counter() - started)
                ready.close()
                process.join()
                yield outcome
    finally:
        for process, _, _ in running.values():
            process.terminate()


def _first_line(e: Exception) -> str:
    """An error's kind and the first line of its message (Ray's run to many lines)."""
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"


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
        raise RayMissing(f"cannot start or reach {where} ({_first_line(e)}); valid: the address "
                         f"`ray start --head` printed, or no --address for a local instance") from None
    return ray_lib


def on_ray(ray_lib, tasks: list[Task]) -> Iterator[Outcome]:
    """Points as Ray tasks of one CPU each, each yielded as it finishes; a task Ray could not finish (its
    worker or node lost after Ray's retries, out of memory) fails its own point. Ray is shut down at the end."""
    try:
        remote = ray_lib.remote(num_cpus=1)(run_point)
        refs = {remote.remote(task): task for task in tasks}
        pending = list(refs)
        while pending:
            done, pending = ray_lib.wait(pending, num_returns=1)
            try:
                outcome = ray_lib.get(done[0])
            except Exception as e:   # noqa: BLE001 - Ray raises several kinds; each is the point's failure
                outcome = lost(refs[done[0]], f"Ray could not run it: {_first_line(e)}")
            yield outcome
    finally:
        ray_lib.shutdown()
