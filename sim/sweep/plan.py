"""A sweep from its file to the tasks left to run: points validated and built, identical configs run
once, the dataset folder made ready, the points already done skipped."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sim import __version__, config
from sim.errors import ConfigError
from sim.sweep import store
from sim.sweep.points import Point, points
from sim.sweep.runner import Task
from sim.sweep.summary import column_types


@dataclass
class Plan:
    points: list[Point]     # every distinct point, in sweep order
    todo: list[Task]        # those not done yet
    skipped: int            # done by an earlier run of the sweep
    merged: int             # points whose resolved config another point already has


def load(path: str, mode: str | None = None) -> list[Point]:
    """The file's points (every one validated and built), or a ConfigError."""
    data = config.resolve_paths(path, config.read_toml(path))
    experiment = config.parse(path, data)
    if experiment.sweep is None:
        raise ConfigError(path, "sweep", None, "no [sweep] table; valid: a [sweep.grid], [sweep.zip] or "
                          "[sweep.random] table of parameters, or run the experiment once with `simrun`")
    if mode:
        data = {**data, "run": {**data.get("run", {}), "mode": mode}}
    return points(path, data, experiment.sweep)


def prepare(path: str, sweep_dir: Path, every: list[Point]) -> Plan:
    """Make `sweep_dir` ready for the points of the sweep at `path` and list what is left to run."""
    first = {}
    for p in every:
        first.setdefault(p.key, p)   # points of one resolved config run once, as the first of them
    distinct = list(first.values())
    types = column_types([p.params for p in distinct])
    store.open_sweep(sweep_dir, {"simrun_version": __version__, "experiment_file": str(path),
                                 "parameters": list(every[0].params),
                                 "points": [{"key": p.key, "params": p.params} for p in distinct]})
    done = store.done_keys(sweep_dir)
    todo = [Task(p.key, f"{path}: {p.label(len(every))}", p.data, p.params, types)
            for p in distinct if p.key not in done]
    return Plan(distinct, todo, len(distinct) - len(todo), len(every) - len(distinct))
