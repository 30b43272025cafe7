"""The most load a deployment holds within its SLO (`simrun capacity`): concurrent podcasts, or a Poisson
benchmark's request rate (sim.serving.slo).

Each point is a whole run of the experiment on one deployment at one load (workload `sessions`, or
`rate_per_s`). From the experiment's own load the search doubles it until a point misses the SLO or reaches the
most asked, then bisects between the last load within and the first not: to one session, or to RATE_STEP of
the rate. It assumes attainment falls as load grows, as a queue's does; near the edge one run's randomness can
break that, so every point tried is kept in the table it writes.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from sim.config import Experiment
from sim.deployment import BuiltDeployment
from sim.output import turns_table
from sim.serving.slo import slo_of
from sim.simulation import simulate

RATE_STEP = 0.05            # a rate's search stops when the loads within and not within differ by 5%
MAX_POINTS = 24             # and any search after this many runs
KNOBS = {"podcast": "sessions", "poisson": "rate_per_s"}


@dataclass(frozen=True)
class Point:
    deployment: str
    knob: str
    load: float
    within: bool
    attainment: float
    goodput_per_s: float
    turns: int
    met: int


def point(experiment: Experiment, built: BuiltDeployment, load: float) -> Point:
    """One run of `built` with the workload's load set to `load`, against the experiment's SLO."""
    knob = KNOBS[experiment.workload.kind]
    value = int(load) if knob == "sessions" else float(load)
    at_load = experiment.model_copy(update={"workload": experiment.workload.model_copy(update={knob: value})})
    turns = turns_table([simulate(at_load, built)])
    slo = experiment.slo
    s = slo_of(turns, built.name, slo.targets)
    return Point(built.name, knob, value, s["attainment"] >= slo.attainment, s["attainment"], s["goodput_per_s"],
                 s["turns"], s["met"])


def search(experiment: Experiment, built: BuiltDeployment, most: float,
           tick: Callable[[Point], None] | None = None) -> list[Point]:
    """Every point tried for one deployment, in the order tried (the module docstring's search)."""
    knob = KNOBS[experiment.workload.kind]
    integer = knob == "sessions"
    tried: list[Point] = []

    def run(load: float) -> bool:
        p = point(experiment, built, load)
        tried.append(p)
        if tick:
            tick(p)
        return p.within

    load = min(max(float(getattr(experiment.workload, knob)), 1.0 if integer else 0.0), most)
    within, beyond = 0.0, None
    while len(tried) < MAX_POINTS:
        if not run(load):
            beyond = load
            break
        within = load
        if load >= most:
            return tried
        load = min(2 * load, most)
    while beyond is not None and len(tried) < MAX_POINTS:
        if integer and beyond - within <= 1 or not integer and within and beyond / within <= 1 + RATE_STEP:
            break
        mid = (within + beyond) // 2 if integer else (within + beyond) / 2
        if integer and mid < 1:
            break
        if run(mid):
            within = mid
        else:
            beyond = mid
    return tried


def capacity_of(points: list[Point]) -> float:
    """The largest load tried that was within the SLO (0 if none was)."""
    return max((p.load for p in points if p.within), default=0)


def rows(points: list[Point]) -> list[dict]:
    return [asdict(p) for p in points]
