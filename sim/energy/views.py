"""The dedicated view of a phrase's energy (DESIGN.md, 'Attribution'): the whole deployment's energy, at
the facility boundary, over the phrase's interval -- from when it is put to the model (its arrival, or
once a summary it waited for is done) to when the session's next phrase is (its last: to the session's
end); a summary request's, over its own span.

  E(t) = replicas x baseline power x t + (1 + host_slope) x PUE x GPU dynamic energy up to t,
(replicas counted by their baselines: DeploymentResult.baselines)
each step's dynamic energy taken as spread evenly over the step.
"""
from __future__ import annotations

import numpy as np

from sim.records import NS_PER_S


def _dynamic_until(columns: dict, replicas: int, t_s: np.ndarray) -> np.ndarray:
    """GPU dynamic energy of every step of the deployment up to each time in `t_s`."""
    out = np.zeros_like(t_s)
    for r in range(replicas):
        mine = columns["replica"] == r
        start, duration = columns["start_s"][mine], columns["duration_s"][mine]
        dynamic = columns["replica_dynamic_j"][mine]
        if not len(start):
            continue
        order = np.argsort(start, kind="stable")
        start, duration, dynamic = start[order], duration[order], dynamic[order]
        before = np.concatenate(([0.0], np.cumsum(dynamic)))
        i = np.searchsorted(start, t_s, side="right")            # steps started by t
        last = np.maximum(i - 1, 0)
        done = np.clip((t_s - start[last]) / duration[last], 0.0, 1.0)
        out += before[last] + np.where(i > 0, dynamic[last] * done, 0.0)
    return out


def set_dedicated(result, sessions: dict) -> None:
    """Set `dedicated_j` on every request of a finished DeploymentResult; `sessions` maps a session index
    to its SessionState."""
    boundary, replicas = result.boundary, len(result.engines)
    baselines = result.baselines
    end_s = result.end_ns / NS_PER_S
    spans = {}
    for state in sessions.values():
        bills = state.bills
        closes = bills.arrivals_ns[1:] + [state.ended_ns if state.ended else result.end_ns]
        for record, begin, close in zip(bills.records, bills.arrivals_ns, closes):
            spans[id(record)] = (begin / NS_PER_S, close / NS_PER_S)
    turns = result.turns
    begin = np.array([spans.get(id(t), (t.arrival_ns / NS_PER_S, 0.0))[0] for t in turns])
    close = np.array([spans[id(t)][1] if id(t) in spans else (t.end_ns or result.end_ns) / NS_PER_S for t in turns])
    close = np.minimum(close, end_s)
    columns = result.steps.columns()
    until_close, until_begin = np.split(_dynamic_until(columns, replicas, np.concatenate([close, begin])), 2)
    dynamic = until_close - until_begin
    energy = baselines * boundary.baseline_w * (close - begin) + boundary.facility_j(1.0, 0.0) * dynamic
    for turn, joules in zip(turns, energy.tolist()):
        turn.dedicated_j = joules
