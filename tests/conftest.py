"""Shared helpers: build experiments in memory and run them without touching the disk."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from sim.config import Experiment
from sim.deployment import build
from sim.simulation import simulate

REPO_EXPERIMENT = "experiments/podcast10h.toml"


def experiment(deployments: dict, **workload) -> Experiment:
    """An experiment of these deployments; keyword arguments are [workload] keys, but for the seed and an
    [energy] table (energy={...})."""
    return Experiment.from_dict({
        "run": {"name": "test", "seed": workload.pop("seed", 7)},
        "energy": workload.pop("energy", {}),
        "workload": {"duration_h": 0.25, **workload},
        "deployments": deployments,
    })


def run_all(exp: Experiment, bulk: bool = True):
    return [simulate(exp, build("test.toml", name, spec), bulk=bulk) for name, spec in exp.deployments.items()]


def script(name: str):
    """A module of scripts/ by file name (scripts/ is not a package)."""
    path = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module   # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


LLAMA8B_H100 = {"model": "llama31_8b", "gpu": "h100_sxm", "nodes": 1, "tp": 8}


@pytest.fixture(scope="session")
def podcast10h():
    """The shipped experiment, run once for every test that reads it."""
    from sim.run import run_experiment
    return run_experiment(REPO_EXPERIMENT)
