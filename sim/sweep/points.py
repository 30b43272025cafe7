"""A sweep's points: the experiment's tables with each point's parameter values set by dotted path.

Points are the product of the [sweep.grid] lists (in the order written, the last varying fastest), the
rows of the [sweep.zip] lists and the [sweep.random] draws. A path's `*` stands for every key of the table
it is in (`deployments.*.gpu` sets every deployment's GPU). Each point is validated and its deployments
built before any runs, and is keyed by a hash of its resolved experiment, so that a point whose config did
not change is found done however the sweep around it was reordered or extended.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
from dataclasses import dataclass

import numpy as np

from sim import __version__, config
from sim.config import set_path
from sim.errors import ConfigError, printable
from sim.run import build_all



@dataclass(frozen=True)
class Point:
    index: int                  # its place in the sweep, from 0
    params: dict                # swept path -> value
    data: dict                  # the experiment's tables, values set, [sweep] removed
    key: str                    # hash of the resolved experiment: its partition in the dataset

    def label(self, n_points: int) -> str:
        shown = ", ".join(f"{p} = {json.dumps(v)}" for p, v in self.params.items())
        return f"point {self.index + 1} of {n_points} ({printable(shown, 200)})"


def parameter_rows(spec: config.SweepSpec) -> list[dict]:
    """The swept values of every point, in order."""
    blocks = [[dict(zip(spec.grid, values)) for values in itertools.product(*spec.grid.values())]]
    if spec.zip:
        blocks.append([dict(zip(spec.zip, values)) for values in zip(*spec.zip.values())])
    if spec.random:
        blocks.append(_draws(spec.random))
    return [{k: v for row in rows for k, v in row.items()} for rows in itertools.product(*blocks)]


def _draws(spec: config.RandomSpec) -> list[dict]:
    """`samples` draws of every random parameter (seeded): a list's values picked uniformly, a range's
    uniform (integers between integer bounds, both included) or log-uniform."""
    rng = np.random.default_rng([spec.seed, 7])
    columns = {}
    for path, values in spec.params.items():
        if isinstance(values, list):
            columns[path] = [values[i] for i in rng.integers(0, len(values), spec.samples).tolist()]
        elif isinstance(values.min, int) and isinstance(values.max, int):
            low, high = (math.log(values.min), math.log(values.max + 1)) if values.log else (values.min, values.max + 1)
            drawn = rng.uniform(low, high, spec.samples)
            columns[path] = np.floor(np.exp(drawn) if values.log else drawn).astype(int).clip(
                values.min, values.max).tolist()
        else:
            drawn = rng.uniform(math.log(values.min), math.log(values.max), spec.samples) if values.log else \
                rng.uniform(values.min, values.max, spec.samples)
            columns[path] = (np.exp(drawn) if values.log else drawn).tolist()
    return [dict(zip(columns, row)) for row in zip(*columns.values())]


def _table_of(path: str, block: str, spec: config.SweepSpec) -> str:
    return "sweep.random" if spec.random and path in spec.random.params else f"sweep.{block}"


def key_of(experiment: config.Experiment) -> str:
    """The hash of a resolved experiment and the simrun that runs it: same config, same key."""
    text = json.dumps({"simrun": __version__, "experiment": experiment.model_dump(mode="json")}, sort_keys=True)
    return "p" + hashlib.sha256(text.encode()).hexdigest()[:15]


def points(path: str, data: dict, spec: config.SweepSpec) -> list[Point]:
    """Every point of the sweep in `data` (the file at `path`), each validated and built; the first that
    cannot be is a ConfigError naming it."""
    base = {k: v for k, v in data.items() if k != "sweep"}
    rows = parameter_rows(spec)
    blocks = {**{p: "grid" for p in spec.grid}, **{p: "zip" for p in spec.zip}}
    for p in rows[0]:   # every path once, on the base, before any point
        try:
            set_path(copy.deepcopy(base), p, rows[0][p])
        except ValueError as e:
            raise ConfigError(path, _table_of(p, blocks.get(p, "random"), spec), p, str(e)) from None
    result = []
    for i, params in enumerate(rows):
        point_data = copy.deepcopy(base)
        for p, value in params.items():
            set_path(point_data, p, value)
        point_data = config.resolve_paths(path, point_data)
        label = f"{path}: {Point(i, params, point_data, '').label(len(rows))}"
        experiment = config.parse(label, point_data)
        build_all(label, experiment)
        result.append(Point(i, params, point_data, key_of(experiment)))
    return result
