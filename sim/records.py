"""What a run records: one row per model turn, and per-step columns appended in blocks (the columns
and their null rules: sim.contract)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.energy.ledger import Boundary

NS_PER_S = 1_000_000_000


def accumulate(start: float, values: np.ndarray) -> float:
    """start + values[0] + values[1] + ... added left to right, so that adding a run of steps at once
    and adding them one per step give the same float."""
    total = start
    for v in values.tolist():
        total += v
    return total


def add_by_column(records: list, name: str, values: np.ndarray) -> None:
    """accumulate for many records at once: column j of `values` (steps, records) added, step by step in
    order, to records[j].name (numpy's cumulative sum is sequential: the same floats)."""
    if records and len(values) == 1:   # one step: start + value, the same float as the sum below
        for record, value in zip(records, values[0].tolist()):
            setattr(record, name, getattr(record, name) + value)
    elif records:
        start = np.array([getattr(r, name) for r in records], dtype=float)
        totals = np.cumsum(np.vstack([start[None, :], values]), axis=0)[-1].tolist()
        for record, total in zip(records, totals):
            setattr(record, name, total)


@dataclass
class TurnRecord:
    run: str
    deployment: str
    session: int
    turn: int
    conversation_s: float      # the conversation's clock at the request's arrival
    context_tokens: int
    new_tokens: int
    reply_tokens: int          # the reply the model gives if the turn succeeds
    reply_speech_s: float
    arrival_ns: int
    replica: int | None           # the replica it was sent to; None: refused by every replica
    kind: str = "reply"            # reply: answers a phrase; summary: compacts the history (context policy)
    conversation_tokens: int = 0   # everything said before this phrase, whatever the model still sees
    retrieved_tokens: int = 0      # retrieved chunks in the prompt (context policy `retrieve`)
    energy_retrieval_j: float = 0.0  # the retrieval's own energy, outside the GPU cluster
    cached_tokens: int = 0
    recomputed_tokens: int = 0
    reloaded_tokens: int = 0         # history read back from the KV tiers below HBM (sim.serving.offload) ...
    reload_s: float = 0.0            # ... and the seconds the read took
    history_tier: str | None = None  # where its reused history came from: the slowest tier read, or hbm
    prefill_replica: int | None = None   # disaggregated: the prefill pool's replica that prefilled it ...
    transferred_tokens: int = 0          # ... the prompt tokens whose KV it sent to the decode replica ...
    transfer_s: float = 0.0              # ... and the seconds the turn waited for them (sim.serving.disaggregation)
    output_tokens: int = 0
    retries: int = 0                 # times it was sent again after its replica died (sim.faults)
    fault: int | None = None         # the first fault that hit it: its replica died under it, or took its history
    lost_tokens: int = 0             # KV tokens it held on replicas that died under it
    fault_lost_s: float = 0.0        # seconds of conversation the faults cost it (sim.simulation.ask)
    first_token_ns: int | None = None
    finish_ns: int | None = None     # its last token: set only when the turn ends ok
    end_ns: int | None = None        # when it ended, whatever its status
    first_step: int | None = None    # the replica's first and last steps it took part in
    last_step: int | None = None
    dynamic_prefill_j: float = 0.0   # GPU energy above idle: its share of the steps that prefilled it ...
    dynamic_decode_j: float = 0.0    # ... and that decoded its reply
    dynamic_kv_j: float = 0.0        # ... of which reading and writing its KV
    kv_read_s: float = 0.0           # its share of those steps' KV time
    baseline_s: float = 0.0          # seconds of its replica's baseline it takes (sim.energy.baseline)
    dedicated_j: float | None = None  # the whole deployment's energy over its interval (sim.energy.views)
    speech_start_ns: int | None = None   # when the model began to speak the reply (a podcast turn, ok)
    stall_s: float | None = None         # seconds its voice waited for tokens while speaking
    status: str = "pending"
    reason: str | None = None

    def again(self) -> None:
        """Sent again after its replica died (sim.faults): what the attempt set is set anew; its energy, lost
        tokens and first fault stay."""
        self.status, self.reason, self.retries, self.output_tokens = "pending", None, self.retries + 1, 0
        self.first_token_ns = self.finish_ns = self.end_ns = self.first_step = self.last_step = None
        self.cached_tokens = self.recomputed_tokens = self.reloaded_tokens = self.transferred_tokens = 0
        self.reload_s = self.transfer_s = 0.0
        self.history_tier = self.prefill_replica = None

    def energy(self, boundary: Boundary) -> dict[str, float]:
        """Its attributed energy by layer and view (sim.energy.ledger): what its own FLOPs and bytes added
        (marginal) and its share of the baseline, at the facility boundary."""
        marginal = boundary.facility_j(1.0, 0.0)     # facility joules per joule of GPU dynamic energy
        layers = boundary.layers(self.dynamic_prefill_j + self.dynamic_decode_j, self.baseline_s)
        prefill, decode = self.dynamic_prefill_j * marginal, self.dynamic_decode_j * marginal
        baseline = boundary.facility_j(0.0, self.baseline_s)
        return {"energy_j": layers["gpu_j"] + layers["node_j"] + layers["facility_j"], **layers,
                "marginal_j": prefill + decode, "dedicated_j": self.dedicated_j, "energy_prefill_j": prefill,
                "energy_decode_j": decode, "energy_kv_j": self.dynamic_kv_j * marginal, "energy_baseline_j": baseline}

    def row(self, boundary: Boundary) -> dict:
        arrival_s = self.arrival_ns / NS_PER_S
        first = None if self.first_token_ns is None else self.first_token_ns / NS_PER_S
        finish = None if self.finish_ns is None else self.finish_ns / NS_PER_S
        decode_steps = self.output_tokens - 1
        tpot = ((self.finish_ns - self.first_token_ns) / NS_PER_S / decode_steps
                if first is not None and decode_steps > 0 else None)
        return {
            "run": self.run, "deployment": self.deployment, "session": self.session, "turn": self.turn,
            "kind": self.kind, "conversation_s": self.conversation_s,
            "conversation_tokens": self.conversation_tokens, "context_tokens": self.context_tokens,
            "retrieved_tokens": self.retrieved_tokens,
            "new_tokens": self.new_tokens, "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens, "recomputed_tokens": self.recomputed_tokens,
            "reloaded_tokens": self.reloaded_tokens, "reload_s": self.reload_s, "history_tier": self.history_tier,
            "transferred_tokens": self.transferred_tokens, "transfer_s": self.transfer_s,
            "arrival_s": arrival_s, "first_token_s": first, "finish_s": finish, "end_s": self.end_ns / NS_PER_S,
            "ttft_s": None if first is None else first - arrival_s,
            "tpot_s": tpot,
            "e2e_s": None if finish is None else finish - arrival_s,
            "reply_speech_s": self.reply_speech_s,
            "time_to_speech_s": None if self.speech_start_ns is None else self.speech_start_ns / NS_PER_S - arrival_s,
            "stall_s": self.stall_s,
            **self.energy(boundary), "kv_read_s": self.kv_read_s,
            "energy_retrieval_j": self.energy_retrieval_j, "replica": self.replica, "prefill_replica": self.prefill_replica,
            "first_step": self.first_step, "last_step": self.last_step, "retries": self.retries, "fault": self.fault,
            "lost_tokens": self.lost_tokens, "fault_lost_s": self.fault_lost_s, "status": self.status,
            "reason": self.reason,
        }


STEP_COLUMNS = ("replica", "step", "start_s", "duration_s", "prefill_tokens", "decode_seqs", "kv_tokens",
                "replica_flops", "replica_hbm_bytes", "replica_comm_bytes", "bound", "replica_power_w",
                "replica_energy_j", "replica_dynamic_j", "bubble_s")
INTEGER_COLUMNS = {"replica", "step", "prefill_tokens", "decode_seqs", "kv_tokens", "bound"}


class StepLog:
    """Per-step columns, appended a block of steps at a time into growing arrays (doubled when full): a run
    of one step costs a slot in each column, not a numpy object per column."""

    def __init__(self, capacity: int = 1024):
        self._n = 0
        self._columns = {c: np.empty(capacity, np.int64 if c in INTEGER_COLUMNS else float) for c in STEP_COLUMNS}

    def append(self, **columns) -> None:
        n = len(columns["start_s"])
        if self._n + n > len(self._columns["start_s"]):
            size = max(2 * len(self._columns["start_s"]), self._n + n)
            for name, array in self._columns.items():
                grown = np.empty(size, array.dtype)
                grown[:self._n] = array[:self._n]
                self._columns[name] = grown
        for name in STEP_COLUMNS:
            self._columns[name][self._n:self._n + n] = columns[name]
        self._n += n

    def columns(self) -> dict:
        return {c: array[:self._n] for c, array in self._columns.items()}
