"""One deployment's faults in SimPy (DESIGN.md, 'Failures').

Faults arrive (sim.faults.arrivals) on every GPU of the deployment's replicas, its prefill pool and its hot spares.
Each takes down the replicas in its component's scope (the one holding the GPU, or every one on its host) at once
(sim.engine.ReplicaEngine.die): their turns fail and are sent again (sim.simulation), their KV is lost. A replica is
down for its recovery (sim.faults.recovery), or, when a hot spare is free, for the fault's detection alone: the
spare takes its place and the dead GPUs, once recovered, become the spare (every replica alike, the simulation
keeps the replica's index and lends the spare's its recovery). A fault on a replica already down extends its
recovery. Every replica a fault hits is a row of the faults table.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import simpy

from sim.faults.arrivals import arrivals, rng_for
from sim.faults.rates import FaultRates, exposed
from sim.faults.recovery import RecoveryTime
from sim.records import NS_PER_S


@dataclass(eq=False)
class FaultRow:
    fault: int            # the fault's index in the deployment (a host's fault hits each replica there: one row each)
    time_ns: int
    cause: str
    component: str
    scope: str
    gpu: str              # the GPU it arrived on
    replica: int
    pool: str             # what the replica serves: both, decode, prefill, or a standby spare
    down_s: float = 0.0   # from the fault until the replica serves again (for a replica already down: what it adds)
    spare: bool = False   # a hot spare took the replica's place after detection
    turns_affected: int = 0    # turns in flight or queued on the replica when it died
    kv_lost_tokens: int = 0    # KV tokens of live sessions lost (HBM, and the tiers that died with it)
    tokens_recomputed: int = 0  # of those, what the sessions' next turns prefilled again
    recovery_j: float = 0.0    # the replica's baseline energy over down_s, at the facility boundary


@dataclass
class FaultLog:
    rows: list[FaultRow] = field(default_factory=list)
    pending: dict[int, tuple[FaultRow, int]] = field(default_factory=dict)   # cache key -> fault, KV tokens lost

    def lost(self, row: FaultRow, kv_tokens: Counter, records: list) -> None:
        """A replica carried out `row`'s fault: the turns it ended and the KV tokens each key lost."""
        row.turns_affected += len(records)
        row.kv_lost_tokens += sum(kv_tokens.values())
        for record in records:
            if record.fault is None:
                record.fault = row.fault
        for key, tokens in kv_tokens.items():
            if tokens:
                self.pending[key] = (row, tokens)

    def admitted(self, key: int, record) -> None:
        """A turn of `key` was admitted: what it prefills again of the KV a fault lost is that fault's."""
        hit = self.pending.pop(key, None)
        if hit is not None:
            row, tokens = hit
            row.tokens_recomputed += min(tokens, record.recomputed_tokens)
            if record.fault is None:
                record.fault = row.fault


class Injector:
    """Runs a deployment's faults: `engines` (each at its index) with their GPUs, pools and recovery times (a pool
    `spare`: standing by). Faults arrive on every GPU of the engines' hosts (`cluster_gpus` filtered, sim.faults.rates.exposed): a
    gpu-scoped one on a GPU no engine holds hits nothing, a host-scoped one there takes its host's replicas."""

    def __init__(self, env: simpy.Environment, engines: list, gpus: list[list[str]], pools: list[str],
                 recovery: list[RecoveryTime], cluster_gpus: list[str], host_of: Callable[[str], object],
                 rates: FaultRates, seed: int, baseline_j_per_s: Callable[[object], float], done: Callable[[], bool],
                 log: FaultLog):
        self.env, self.pools, self.recovery = env, pools, recovery
        self.rates, self.seed, self.baseline_j_per_s, self.done, self.log = rates, seed, baseline_j_per_s, done, log
        self.host_of = host_of
        holder = {gpu: engine for engine, names in zip(engines, gpus) for gpu in names}
        self.gpus = [(gpu, holder.get(gpu)) for gpu in exposed(list(holder), cluster_gpus, host_of)]
        self.spares = [e for e, pool in zip(engines, pools) if pool == "spare"]
        self.until_ns = {id(e): 0 for e in engines}
        self.scopes = rates.scopes
        env.process(self._run())

    def _run(self):
        faults = 0
        for arrival in arrivals(self.rates, len(self.gpus), rng_for(self.seed)):
            yield self.env.timeout(max(1, round(arrival.gap_s * NS_PER_S)))
            if self.done():
                return
            gpu, engine = self.gpus[arrival.gpu]
            scope = self.scopes[arrival.cause]
            hit = ([engine] if engine else []) if scope == "gpu" else [
                e for e in dict.fromkeys(e for g, e in self.gpus if e and self.host_of(g) == self.host_of(gpu))]
            if not hit:
                continue
            was_up = [e.up for e in hit]
            for e in hit:   # all down at once: a spare on the same host is no spare
                self._down_until(e, self.env.now)
            for e, up in zip(hit, was_up):
                self._hit(e, up, FaultRow(faults, self.env.now, self.rates.causes[arrival.cause],
                                          self.rates.components[arrival.cause], scope, gpu, e.index,
                                          self.pools[e.index]))
            faults += 1

    def _hit(self, engine, was_up: bool, row: FaultRow) -> None:
        """`engine` (up before the fault if `was_up`) is down until its recovery, or its detection when a spare is
        free: a standby replica of the deployment's own pool (a prefill pool's replicas have none)."""
        now, recovery = self.env.now, self.recovery[engine.index]
        free = [s for s in self.spares if s.up] if row.pool in ("both", "decode") and was_up else []
        if free:   # the spare serves once the fault is detected; the dead GPUs recover as the spare
            row.spare = True
            self._down_until(free[0], now + round(recovery.total_s * NS_PER_S))
            until = now + round(recovery.detect_s * NS_PER_S)
        else:
            until = now + round(recovery.total_s * NS_PER_S)
        before = max(self.until_ns[id(engine)], now)
        self._down_until(engine, until)
        row.down_s = (self.until_ns[id(engine)] - before) / NS_PER_S
        row.recovery_j = self.baseline_j_per_s(engine) * row.down_s
        self.log.rows.append(row)
        if was_up and row.pool != "spare":
            engine.die(row)

    def _down_until(self, engine, until_ns: int) -> None:
        """`engine` is down until `until_ns` at least; a replica that was up starts its recovery."""
        if engine.up:
            engine.up = False
            self.until_ns[id(engine)] = until_ns
            self.env.process(self._recover(engine))
        else:
            self.until_ns[id(engine)] = max(self.until_ns[id(engine)], until_ns)

    def _recover(self, engine):
        while self.env.now < self.until_ns[id(engine)]:
            yield self.env.timeout(self.until_ns[id(engine)] - self.env.now)
        engine.recover()
