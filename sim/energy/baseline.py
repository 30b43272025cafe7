"""A replica's baseline shared among the sessions it holds (DESIGN.md, 'Attribution').

The baseline is what the replica draws doing nothing (idle GPUs with their context, host idle, switch
ports, and the facility's share of them: sim.energy.ledger). It is counted here in seconds of the
replica's baseline, which the ledger turns into joules. Each step (and each idle gap) of d seconds is
split among the sessions the replica holds then (started, not ended):
  a KV share (kv_share x d) in proportion to the KV bytes each holds (its running request's prompt, or
  its cached prefix) -- KV bytes held x seconds;
  the rest (the weights' and the free memory's baseline, or all of it when no KV is held) equally over
  the sessions held -- the weights are there for every session served.
With no session held, the seconds are unallocated capacity.

A session's share goes to the request whose interval holds it: from the moment one of its phrases
(requests that are not summaries) is put to the model to the next; before its first phrase, to its first. Shares are added
in time order, piece by piece (sim.records.accumulate), so a run of steps priced at once
and the same steps priced one by one give the same floats.
"""
from __future__ import annotations

import math

import numpy as np

from sim.records import accumulate, add_by_column


class Bills:
    """The requests of one session that take its baseline share, in arrival order."""

    def __init__(self):
        self.records: list = []
        self.arrivals_ns: list[int] = []
        self.before_first_s = 0.0   # seconds shared before its first phrase arrived

    def add(self, record, now_ns: int) -> None:
        """A phrase is put to the model now (its arrival, or once the summary it waited for is done): its
        interval begins; it takes the seconds shared so far if it is the first."""
        if not self.records:
            record.baseline_s, self.before_first_s = self.before_first_s, 0.0
        self.records.append(record)
        self.arrivals_ns.append(now_ns)

    def charge(self, ends_ns: np.ndarray, seconds: np.ndarray) -> None:
        """Add per-piece seconds (pieces ending at `ends_ns`, in time order) to the requests whose
        intervals hold them."""
        if not self.records:
            self.before_first_s = accumulate(self.before_first_s, seconds)
            return
        # A piece ending after a phrase's arrival is that phrase's; earlier ones the phrase before it's (the
        # first phrase takes those before it too).
        owner = np.maximum(np.searchsorted(self.arrivals_ns, ends_ns, side="left") - 1, 0)
        for index in np.unique(owner):
            record = self.records[index]
            record.baseline_s = accumulate(record.baseline_s, seconds[owner == index])


class BaselineShares:
    """One replica's baseline seconds, shared among the sessions it holds."""

    def __init__(self, kv_share: float):
        self.kv_share = kv_share
        self.live: dict = {}          # session index -> SessionState, started and not yet past its end
        self.unallocated_s = 0.0

    def start(self, session) -> None:
        self.live[session.index] = session

    def share(self, ends_ns: np.ndarray, seconds: np.ndarray, kv_bytes: dict[int, float]) -> None:
        """Share pieces of baseline (`seconds` each, ending at `ends_ns`) among the sessions held at each
        piece's end; `kv_bytes` maps a session to the KV bytes it holds over them (a float), or over each
        (an array, at least as long as `seconds`)."""
        gone = [i for i, s in self.live.items() if s.ended and s.ended_ns < ends_ns[0]]
        for i in gone:
            del self.live[i]
        live = list(self.live.values())
        if not live:
            self.unallocated_s = accumulate(self.unallocated_s, seconds)
            return
        start = np.array([s.start_ns for s in live], dtype=float)
        end = np.array([s.ended_ns if s.ended else math.inf for s in live], dtype=float)
        t = ends_ns.astype(float)[:, None]
        held = (start[None, :] < t) & (end[None, :] >= t)
        n_held = held.sum(axis=1)
        if not n_held.all():
            self.unallocated_s = accumulate(self.unallocated_s, seconds[n_held == 0])
        values = [kv_bytes.get(s.index, 0.0) for s in live]
        kv = held * np.array([v if isinstance(v, float) else 0.0 for v in values])[None, :]
        for j, v in enumerate(values):
            if not isinstance(v, float):   # bytes per piece: a prompt prefilling chunk by chunk
                kv[:, j] = held[:, j] * v[:len(seconds)]
        kv_total = kv.sum(axis=1)
        equal_share = np.where(kv_total > 0, 1.0 - self.kv_share, 1.0) * seconds / np.maximum(n_held, 1)
        kv_part = np.divide(self.kv_share * seconds, kv_total, out=np.zeros_like(seconds), where=kv_total > 0)
        pieces = held * equal_share[:, None] + kv * kv_part[:, None]
        # Most sessions' pieces all fall after their latest phrase arrived: added to it at once, column by column.
        latest, columns = [], []
        for j, session in enumerate(live):
            bills = session.bills
            if bills.records and bills.arrivals_ns[-1] < ends_ns[0]:
                latest.append(bills.records[-1])
                columns.append(j)
            elif held[:, j].any():
                bills.charge(ends_ns, pieces[:, j])
        add_by_column(latest, "baseline_s", pieces[:, columns])
