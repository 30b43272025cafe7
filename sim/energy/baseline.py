"""A replica's baseline shared among the sessions it holds (DESIGN.md, 'Attribution').

The baseline is what the replica draws doing nothing (idle GPUs with their context, host idle, switch
ports, and the facility's share of them: sim.energy.ledger). It is counted here in seconds of the
replica's baseline, which the ledger turns into joules. Each step (and each idle gap) of d seconds is
split among the sessions the replica holds then (begun before the piece ends, not ended before it):
  a KV share (kv_share x d) in proportion to the KV bytes each holds (its running request's prompt, or
  its cached prefix) -- KV bytes held x seconds;
  the rest (the weights' and the free memory's baseline, or all of it when no KV is held) equally over
  the sessions held -- the weights are there for every session served.
With no session held, the seconds are unallocated capacity. A replica of another size than the deployment's
(a prefill pool's, sim.serving.disaggregation) counts its seconds at `weight` = its GPUs over theirs, as its
baseline power is in that proportion (sim.energy.ledger: every part of it is per GPU on one node type), so that
seconds from both pools are seconds of one boundary's baseline.

A session's share goes to the request whose interval holds it: from the moment one of its phrases
(requests that are not summaries) is put to the model to the next; before its first phrase, to its first.

Shares are kept lazily, so that a step costs the same however many sessions are held: per piece i the
replica adds up equal_i = (1 - kv_share or 1) d_i / n_i and per_byte_i = kv_share d_i / B_i (n_i sessions
holding B_i KV bytes, integers, so that the total is exact however it is updated) into cumulative sums
E and P. A session holding b bytes over pieces [i, j) has earned E_j - E_i + b (P_j - P_i); it is settled
(added to its phrases) only when b changes, when it ends, and at the end of the run. The engine reports
changes at step boundaries, which both engine modes share, so a run of steps priced at once and the same
steps priced one by one settle at the same pieces and give the same floats.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.records import accumulate


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

    def owners(self, ends_ns: np.ndarray) -> np.ndarray:
        """Index of the request each piece ending at `ends_ns` is charged to: the last phrase that arrived
        before it ended (the first phrase takes those before it)."""
        return np.maximum(np.searchsorted(self.arrivals_ns, ends_ns, side="left") - 1, 0)


@dataclass(eq=False)
class _Holder:
    state: object        # the session's SessionState
    from_ns: int = 0     # counted for the pieces ending after this: its start, or when the replica took it on
    kv_bytes: int = 0    # KV bytes it holds now
    since: int = 0       # the first piece it has not been settled for
    held: bool = False   # begun: counted among the sessions the replica holds


class BaselineShares:
    """One replica's baseline seconds, shared among the sessions it holds."""

    def __init__(self, kv_share: float, weight: float = 1.0):
        self.kv_share = kv_share
        self.weight = weight
        self.unallocated_s = 0.0
        self._holders: dict[int, _Holder] = {}   # session index -> its holder, from begun to ended
        self._starting: list[_Holder] = []       # begun, not yet counted for a piece
        self._ending: list[_Holder] = []         # ended, still counted for pieces ending by its end
        self._held = 0                           # sessions counted now
        self._kv_total = 0                       # their KV bytes
        self._ends_ns = np.zeros(1024, dtype=np.int64)   # each piece's end, and the cumulative sums
        self._equal = np.zeros(1025)                     # E_i: before piece i (E_0 = 0)
        self._per_byte = np.zeros(1025)                  # P_i
        self._pieces = 0

    def start(self, session, now_ns: int | None = None) -> None:
        """The session begins (its start_ns set), or, begun before, comes to this replica at `now_ns` (its home
        replica full or down): counted for every piece ending after then."""
        from_ns = session.start_ns if now_ns is None else max(now_ns, session.start_ns)
        holder = self._holders[session.index] = _Holder(session, from_ns)
        self._starting.append(holder)

    def end(self, session) -> None:
        """The session has ended (its ended_ns set): counted for no piece ending after its end."""
        holder = self._holders.get(session.index)
        if holder is not None:
            self._ending.append(holder)

    def holds(self, index: int) -> bool:
        return index in self._holders

    def update(self, kv_bytes: dict[int, int]) -> None:
        """From now on, the sessions of `kv_bytes` hold these KV bytes (others: what they held)."""
        for index, new in kv_bytes.items():
            holder = self._holders.get(index)
            if holder is None or holder.kv_bytes == new:
                continue
            if holder.held:
                self._settle(holder, self._pieces)
                self._kv_total += new - holder.kv_bytes
            holder.kv_bytes = new

    def share(self, ends_ns: np.ndarray, seconds: np.ndarray, growing: dict[int, np.ndarray] | None = None) -> None:
        """Share pieces of baseline (`seconds` each, ending at `ends_ns`, in time order) among the sessions
        held at each piece's end. `growing` maps a session to the KV bytes it holds over each piece, when
        that changes from piece to piece (a prompt prefilled chunk by chunk over a run of steps)."""
        if self.weight != 1.0:
            seconds = seconds * self.weight
        m, first = len(seconds), self._pieces
        held = np.full(m, self._held, dtype=np.int64)
        kv_total = np.full(m, self._kv_total, dtype=np.int64)
        last_ns = int(ends_ns[-1])
        starting = [h for h in self._starting if h.from_ns < last_ns]
        for holder in starting:   # counted from the first piece ending after its start
            i = int(np.searchsorted(ends_ns, holder.from_ns, side="right"))
            held[i:] += 1
            kv_total[i:] += holder.kv_bytes
            holder.held, holder.since = True, first + i
            self._held += 1
            self._kv_total += holder.kv_bytes
        ending = [(h, int(np.searchsorted(ends_ns, h.state.ended_ns, side="right")))
                  for h in self._ending if h.state.ended_ns < last_ns and h.held]
        for holder, i in ending:  # not counted from the first piece ending after its end
            held[i:] -= 1
            kv_total[i:] -= holder.kv_bytes
        for index, per_piece in (growing or {}).items():
            holder = self._holders.get(index)
            if holder is not None and holder.held:
                kv_total += np.asarray(per_piece[:m], dtype=np.int64) - holder.kv_bytes
        nobody = held == 0
        if nobody.any():
            self.unallocated_s = accumulate(self.unallocated_s, seconds[nobody])
        with_kv = kv_total > 0
        equal = np.where(nobody, 0.0, np.where(with_kv, 1.0 - self.kv_share, 1.0) * seconds / np.maximum(held, 1))
        per_byte = np.divide(self.kv_share * seconds, kv_total, out=np.zeros(m), where=with_kv)
        self._append(ends_ns, equal, per_byte)
        for holder, i in ending:
            self._settle(holder, first + i)
            self._held -= 1
            self._kv_total -= holder.kv_bytes
            del self._holders[holder.state.index]
        if starting:
            self._starting = [h for h in self._starting if not h.held]
        if ending:
            gone = {id(h) for h, _ in ending}
            self._ending = [h for h in self._ending if id(h) not in gone]
        for index, per_piece in (growing or {}).items():
            holder = self._holders.get(index)
            if holder is not None and holder.held:   # settled piece by piece, as step by step
                for k, kv in enumerate(np.asarray(per_piece[:m], dtype=np.int64).tolist()):
                    self._kv_total += kv - holder.kv_bytes
                    holder.kv_bytes = kv
                    self._settle(holder, first + k + 1)

    def close(self) -> None:
        """The run is over: settle every session for the pieces it was held, and let the sums go."""
        for holder in list(self._holders.values()):
            if holder.held:
                self._settle(holder, self._pieces)
        self._holders, self._starting, self._ending = {}, [], []
        self._ends_ns, self._equal, self._per_byte, self._pieces = np.zeros(0, np.int64), np.zeros(1), np.zeros(1), 0

    def _append(self, ends_ns: np.ndarray, equal: np.ndarray, per_byte: np.ndarray) -> None:
        """Add pieces to the cumulative sums, one after another (numpy's cumsum adds in order)."""
        m, n = len(ends_ns), self._pieces
        if n + m >= len(self._ends_ns):
            size = 2 * (n + m)
            self._ends_ns = np.resize(self._ends_ns, size)
            self._equal, self._per_byte = np.resize(self._equal, size + 1), np.resize(self._per_byte, size + 1)
        self._ends_ns[n:n + m] = ends_ns
        self._equal[n + 1:n + m + 1] = np.cumsum(np.concatenate(([self._equal[n]], equal)))[1:]
        self._per_byte[n + 1:n + m + 1] = np.cumsum(np.concatenate(([self._per_byte[n]], per_byte)))[1:]
        self._pieces = n + m

    def _earned(self, holder: _Holder, a: int, b: int) -> float:
        """Seconds a holder of kv_bytes earned over pieces [a, b): E_b - E_a + bytes (P_b - P_a)."""
        return float(self._equal[b] - self._equal[a] + holder.kv_bytes * (self._per_byte[b] - self._per_byte[a]))

    def _settle(self, holder: _Holder, upto: int) -> None:
        """Charge what the holder earned over pieces [since, upto) to the requests whose intervals hold them."""
        a = holder.since
        if upto <= a:
            return
        holder.since = upto
        bills = holder.state.bills
        if not bills.records:
            bills.before_first_s += self._earned(holder, a, upto)
            return
        if bills.arrivals_ns[-1] < self._ends_ns[a]:   # all after its latest phrase arrived
            bills.records[-1].baseline_s += self._earned(holder, a, upto)
            return
        owners = bills.owners(self._ends_ns[a:upto])
        cuts = np.flatnonzero(np.diff(owners)) + 1
        for lo, hi in zip([0, *cuts.tolist()], [*cuts.tolist(), upto - a]):
            record = bills.records[owners[lo]]
            record.baseline_s += self._earned(holder, a + lo, a + hi)
