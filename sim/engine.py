"""One replica's serving engine in SimPy: continuous batching, chunked prefill, paged KV with prefix caching,
preemption by recompute.

Each step takes every decoding sequence (one token each), then fills the rest of the token budget
with prefill chunks in arrival order, or, with chunked_prefill off, with whole prompts that fit; with
data-parallel attention each group has its own budget and sequence cap. The engine wakes only when
the batch can change: in bulk mode, the steps of a batch whose shape holds are priced at once (numpy
over the growing contexts) and slept through, stopping early at the step in flight when a request
arrives: decodes until the first reply ends, with at most one prompt prefilling beside them chunk by
chunk, until the chunk before its last. Per-step mode runs the same code one step at a time and is the
reference. Time is kept in integer nanoseconds so both modes add up the same durations exactly.

KV allocation (`EngineLimits.kv_allocation`): `reserve` holds blocks for the whole prompt and reply from
admission (TensorRT-LLM's GUARANTEED_NO_EVICT); `on_demand` holds the prompt's blocks and adds one as
each decode crosses a block boundary (vLLM; TensorRT-LLM's MAX_UTILIZATION). Before each step the
decodes get their blocks first; when a pool cannot give them, the most recently admitted running turn
is preempted: its blocks freed (the computed ones kept as cached prefix), it goes back to the head of
the queue and, readmitted, prefills its prompt and the reply so far again (vLLM's recompute preemption).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import simpy

from sim.cost.step import ReplicaCostModel
from sim.energy.baseline import BaselineShares, Bills
from sim.kv import KVPool
from sim.records import NS_PER_S, StepLog, TurnRecord, accumulate, add_by_column
from sim.serving.offload import read_or_recompute


@dataclass
class SessionState:
    index: int
    replica: int
    group: int = 0               # the replica's attention group (data-parallel rank) it is served by
    start_ns: int | None = None  # when the conversation began (a benchmark request: when it was sent)
    ended: bool = False
    ended_ns: int = 0
    bills: Bills = field(default_factory=Bills)   # its phrases, which take its share of the baseline


@dataclass(eq=False)
class Sequence:
    record: TurnRecord
    prompt_tokens: int
    output_tokens: int
    done: simpy.Event
    reusable_tokens: int       # prompt prefix the previous request of the session may have left cached
    cache_key: int       # whose cached prefix it reads and leaves: its session's, or the conversation's it continues
    group: int = 0       # the replica's attention group (data-parallel rank) serving its session
    prefilled: int = 0   # tokens of the prefill target computed so far, cached ones included
    decoded: int = 0     # reply tokens sampled so far
    recompute: int = 0   # reply tokens fed again with the prompt after a preemption
    allocated: int = 0   # tokens its KV blocks are held for
    admitted: bool = False
    decoding: bool = False   # its prefill target computed: it samples a token each step
    ready_ns: int = 0        # admitted, it waits until then for KV read back from the tiers below HBM, or sent
    # Prefilled on another replica (disaggregated serving): seconds to send it the KV of so many prompt tokens.
    transfer: Callable[[int], float] | None = None
    started_ns: int | None = None   # when the first step that computed part of it began

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens

    @property
    def prefill_target(self) -> int:
        """Tokens to prefill before decoding: the prompt, and after a preemption the reply so far."""
        return self.prompt_tokens + self.recompute


@dataclass
class EngineLimits:
    max_batched_tokens: int
    max_seqs: int
    max_context: int
    prefix_caching: bool
    chunked_prefill: bool = True
    kv_allocation: str = "on_demand"    # or "reserve"
    kv_load_layerwise: bool = False     # KV read back from the tiers below HBM layer by layer under the prefill


@dataclass(eq=False)
class ReplicaEngine:
    env: simpy.Environment
    index: int
    cost: ReplicaCostModel
    pools: list[KVPool]          # one per attention group
    limits: EngineLimits
    bulk: bool
    n_gpus: int
    steps: StepLog
    baseline: BaselineShares
    sessions: dict[int, SessionState] = field(default_factory=dict)
    waiting: list[Sequence] = field(default_factory=list)
    running: list[Sequence] = field(default_factory=list)
    last_end_ns: int = 0
    steps_run: int = 0           # steps run so far: the index of the next one
    idle_s: float = 0.0          # seconds with no step running
    dynamic_j: float = 0.0       # its GPUs' energy above idle, over the run
    stage_busy_s: np.ndarray = None
    stage_energy_j: np.ndarray = None
    begin: Callable[[int], None] | None = None   # called with a session not yet begun when first admitted
    # Hardware faults (sim.faults): whether it serves, and the events its process waits on while it does not.
    up: bool = True
    faults: object | None = None   # the deployment's sim.faults.injector.FaultLog, when faults are on
    down_by: object | None = None  # the fault row that last took it down

    def __post_init__(self):
        self.wakeup = self.env.event()
        self._was_running: set[int] = set()   # sessions running at the last report to the baseline
        self._kv_tokens: dict[int, int] = {}  # the KV tokens last reported for each session
        n_stages = len(self.cost.stages)
        self.stage_busy_s = np.zeros(n_stages)
        self.stage_energy_j = np.zeros(n_stages)
        self.fault = self.env.event() if self.faults is not None else None   # fires when it dies
        self.recovered = self.env.event()
        self._lost_to: object | None = None   # the fault its process has yet to carry out
        self.process = self.env.process(self._run())

    # ---- arrivals ------------------------------------------------------------------------------
    def submit(self, record: TurnRecord, prompt_tokens: int, output_tokens: int,
               reusable_tokens: int | None = None, cache_key: int | None = None,
               transfer: Callable[[int], float] | None = None) -> Sequence:
        """Hand a request to the engine; its `done` event fires when it has ended, ok or not. Of its
        prompt, the first `reusable_tokens` (default: the history) may be found in the prefix cache, under
        `cache_key` (default: its session), where it leaves its own prompt and reply. A request whose prompt
        was prefilled on another replica (its first token sampled there) comes with its `transfer`: the seconds
        to send this replica the KV of a number of prompt tokens."""
        reusable = record.context_tokens if reusable_tokens is None else reusable_tokens
        seq = Sequence(record, prompt_tokens, output_tokens, self.env.event(), reusable,
                       record.session if cache_key is None else cache_key,
                       self.sessions[record.session].group % len(self.pools), transfer=transfer)
        total = seq.total_tokens
        if not self.up:   # it died while the turn was on its way: that fault's turn too
            row = self.down_by
            self._fail(seq, "hardware", f"replica {self.index} is down: {row.cause} ({row.component})")
            self.faults.lost(row, Counter(), [seq.record])
        elif self.limits.max_context and total > self.limits.max_context:
            self._fail(seq, "context_overflow",
                       f"prompt {prompt_tokens} + reply {output_tokens} tokens > max context {self.limits.max_context}")
        elif self._pool(seq).footprint.blocks(total) > self._pool(seq).capacity_blocks:
            pool = self._pool(seq)
            holds = f" ({pool.capacity_tokens} tokens)" if pool.capacity_tokens else ""
            self._fail(seq, "kv_oom",
                       f"prompt {prompt_tokens} + reply {output_tokens} tokens need "
                       f"{pool.footprint.blocks(total)} KV blocks; the KV pool serving it holds "
                       f"{pool.capacity_blocks}{holds}")
        else:
            self.waiting.append(seq)
            self._batch_changed()
        return seq

    def abort(self, seq: Sequence, reason: str) -> None:
        """End a turn that missed its deadline: out of the queue or the batch, its reply dropped.

        With prefix caching the prompt blocks it computed stay cached for the session's next turn.
        """
        if seq in self.waiting:
            self.waiting.remove(seq)  # the turns queued behind it may now fit
        elif seq in self.running:
            self.running.remove(seq)
            keep = min(seq.prefilled, seq.prompt_tokens) if self.limits.prefix_caching else 0
            self._pool(seq).release(seq.cache_key, seq.allocated, keep)
        self._batch_changed()
        self._fail(seq, "timeout", reason)

    def retire(self, index: int) -> None:
        """The session's conversation is over: its cached prefix, if any, will never be read again."""
        for pool in self.pools:
            pool.retire(index)

    # ---- what a router sees (sim.serving.router) ------------------------------------------------
    @property
    def kv_capacity_tokens(self) -> int | None:
        """Tokens its KV pools hold together; None when they count sequences, not tokens (recurrent)."""
        per_pool = [pool.capacity_tokens for pool in self.pools]
        return None if None in per_pool else sum(per_pool)

    def cached_tokens(self, state: SessionState, cache_key: int, reusable_tokens: int) -> int:
        """Tokens of a prompt (of its first `reusable_tokens`) this replica holds in its prefix cache under
        `cache_key`, in the session's attention group."""
        pool = self.pools[state.group % len(self.pools)]
        return pool.cached_tokens(cache_key, reusable_tokens) if self.limits.prefix_caching else 0

    def _pool(self, seq: Sequence) -> KVPool:
        return self.pools[seq.group]

    def _batch_changed(self) -> None:
        if not self.wakeup.triggered:
            self.wakeup.succeed()

    def _fail(self, seq: Sequence, status: str, reason: str) -> None:
        seq.record.status, seq.record.reason = status, reason
        seq.record.end_ns = self.env.now
        seq.done.succeed()

    # ---- the baseline ------------------------------------------------------------------------
    def settle_idle(self, now_ns: int) -> None:
        """Share the replica's baseline over its idle time up to `now_ns` among the sessions it holds."""
        if now_ns <= self.last_end_ns:
            return
        gap_s = (now_ns - self.last_end_ns) / NS_PER_S
        self.idle_s += gap_s
        self.baseline.update(self._kv_changes())
        self.baseline.share(np.array([now_ns]), np.array([gap_s]))
        self.last_end_ns = now_ns

    def _kv_changes(self) -> dict[int, int]:
        """KV bytes held now by the sessions whose holding changed since the last call (of those running now
        or then, and those whose cached prefix a pool changed), among those the baseline is shared with: a
        cached prefix, or a running request's prompt (what it has prefilled so far, or all of it once
        decoding: a reply's own KV is left out, so a run of decode steps holds one figure however it is
        cut). A session is in one pool, cached or running, never both."""
        running = {seq.record.session: seq.prefill_target if seq.decoding else seq.prefilled for seq in self.running}
        touched = self._was_running | running.keys()
        for pool in self.pools:
            touched |= pool.changed
            pool.changed.clear()
        self._was_running = set(running)
        tokens = {i: running[i] if i in running else sum(pool.cached.get(i, 0) for pool in self.pools)
                  for i in touched if self.baseline.holds(i)}
        changed = {i: t for i, t in tokens.items() if self._kv_tokens.get(i) != t}
        self._kv_tokens.update(changed)
        return dict(zip(changed, self._whole_kv_bytes(np.fromiter(changed.values(), np.int64, len(changed))).tolist()))

    def _whole_kv_bytes(self, tokens: np.ndarray) -> np.ndarray:
        """KV bytes sequences of `tokens` hold, rounded to whole bytes (exact sums for the baseline)."""
        return np.rint(self.pools[0].footprint.bytes_array(tokens)).astype(np.int64)

    # ---- the loop ------------------------------------------------------------------------------
    def _admit(self) -> None:
        """First come, first served within each attention group, which schedules like its own engine
        (vLLM / SGLang run one scheduler per data-parallel rank): at most max_seqs running, and a turn
        its KV pool cannot hold yet keeps the turns behind it in that group waiting. A preempted turn,
        readmitted, counts what it prefills again as recomputed."""
        groups = len(self.pools)
        running = Counter(s.group for s in self.running)
        blocked, admitted = set(), set()
        for seq in self.waiting:
            group = seq.group
            if group in blocked:
                continue
            rec, pool = seq.record, self.pools[group]
            cached = pool.cached_tokens(seq.cache_key, seq.reusable_tokens) if self.limits.prefix_caching else 0
            hold = seq.total_tokens if self.limits.kv_allocation == "reserve" else seq.prefill_target
            if running[group] >= self.limits.max_seqs or not pool.try_reserve(seq.cache_key, hold):
                blocked.add(group)
                if len(blocked) == groups:
                    break
                continue
            reloaded = self._reload(seq, pool, cached)
            held = cached + sum(reloaded)
            if seq.transfer is not None and not seq.admitted:
                held = self._receive(seq, held)
            elif seq.admitted:
                rec.recomputed_tokens += seq.prefill_target - held
            else:
                if self.begin and self.sessions[rec.session].start_ns is None:
                    self.begin(rec.session)
                rec.cached_tokens = cached
                rec.recomputed_tokens = (seq.prompt_tokens - rec.new_tokens - rec.retrieved_tokens - cached
                                         - sum(reloaded))
                if self.faults is not None:
                    self.faults.admitted(seq.cache_key, rec)
                tier = pool.offload.plan.slowest(reloaded) if reloaded else None
                rec.history_tier = tier or ("hbm" if cached else None)
            seq.prefilled, seq.allocated, seq.admitted = held, hold, True
            running[group] += 1
            admitted.add(id(seq))
            self.running.append(seq)
        if admitted:
            self.waiting = [s for s in self.waiting if id(s) not in admitted]

    def _reload(self, seq: Sequence, pool: KVPool, cached: int) -> list[int]:
        """An admitted turn reads back what the tiers below HBM hold of its shared prefix, or prefills it again
        where that costs less (sim.serving.offload): the tokens read from each tier. It prefills once the read
        (or, layer by layer, what its first chunk does not hide of it) is done: the engine wakes then."""
        if pool.offload is None:
            return []
        offered = pool.offload.take(seq.cache_key, cached, pool.whole_blocks(seq.reusable_tokens))
        if not sum(offered) or seq.transfer is not None:   # prefilled elsewhere: what HBM lacks is sent instead
            return [0] * len(offered)
        layerwise = self.limits.kv_load_layerwise
        after = cached + sum(offered)
        overlap_s = self._prefill_alone_s(seq, max(1, min(self.limits.max_batched_tokens, seq.prefill_target - after)),
                                          after) if layerwise else 0.0
        reloaded, wait_s = read_or_recompute(
            pool.offload.plan, offered, lambda tokens, k: self._prefill_alone_s(seq, tokens, cached + sum(offered[:k])),
            overlap_s, self.cost.arch.n_layers, layerwise)
        if sum(reloaded):
            seq.ready_ns = self.env.now + max(1, round(wait_s * NS_PER_S))
            seq.record.reloaded_tokens += sum(reloaded)
            seq.record.reload_s += wait_s
            self.env.timeout(seq.ready_ns - self.env.now).callbacks.append(lambda _: self._batch_changed())
        return reloaded

    def _prefill_alone_s(self, seq: Sequence, tokens: int, prior: int) -> float:
        """Seconds to prefill `tokens` of the turn after `prior` cached ones, alone on the replica, in chunks of
        the token budget: what recomputing them costs, or what a layer-by-layer read hides under."""
        chunk = self.limits.max_batched_tokens
        whole, rest = divmod(tokens, chunk)
        seconds = 0.0
        if whole:
            seconds += float(self.cost.step([chunk], [prior], [False], [], whole, [seq.group]).duration_s.sum())
        if rest:
            seconds += float(self.cost.step([rest], [prior + whole * chunk], [False], [], 1, [seq.group]).duration_s[0])
        return seconds

    def _receive(self, seq: Sequence, held: int) -> int:
        """A turn prefilled on another replica, admitted with `held` tokens of its prompt already here: the KV of
        the rest is sent (sim.serving.disaggregation), and it decodes once that and any read from the tiers
        below are in, its first token reaching the client then. Its tokens computed: the whole prompt."""
        rec = seq.record
        sent = seq.prompt_tokens - held
        transfer_s = seq.transfer(sent)
        rec.transferred_tokens, rec.transfer_s = sent, transfer_s
        arrival_ns = self.env.now + round(transfer_s * NS_PER_S)
        rec.first_token_ns = arrival_ns
        # It joins the decodes at the first step after its admission (at least a nanosecond on: the step now
        # being planned counted the decodes before admission), the engine woken then in either mode.
        seq.ready_ns = max(arrival_ns, self.env.now + 1)
        self.env.timeout(seq.ready_ns - self.env.now).callbacks.append(lambda _: self._batch_changed())
        seq.decoded, seq.decoding = 1, True
        return seq.prompt_tokens

    # ---- faults (sim.faults.injector) ---------------------------------------------------------------
    def die(self, fault) -> None:
        """A fault takes the replica down now: its process stops the step in flight (the steps done before
        stand) and carries the fault out (`_lose_everything`); it takes no turn until `recover`."""
        self.up, self._lost_to, self.down_by = False, fault, fault
        if not self.fault.triggered:
            self.fault.succeed()
        self._batch_changed()

    def recover(self) -> None:
        """Back in service, its pools empty."""
        self.up = True
        self.fault = self.env.event()
        self.recovered.succeed()
        self.recovered = self.env.event()

    def _lose_everything(self) -> None:
        """Every turn it holds fails (status `hardware`: sim.simulation retries it elsewhere), and the KV on its
        GPUs is lost, with what the engine's process held in host DRAM; its NVMe tier survives a fault that
        leaves its host up. The fault is told each session's KV lost and the turns it ended."""
        fault, self._lost_to = self._lost_to, None
        self.settle_idle(self.env.now)   # the time before the fault is shared as the KV stood then
        lost: Counter = Counter()
        for seq in self.running:
            held = _kv_held(seq)
            seq.record.lost_tokens += held
            lost[seq.cache_key] += held
        for pool in self.pools:
            lost.update(pool.clear())
        for pool in self.pools:   # (a key's NVMe span is a prefix's tail: of no use once what came before it is lost)
            if pool.offload is not None:
                lost.update(pool.offload.clear(keep_nvme=fault.scope != "host", broken=set(lost)))
        ended = self.waiting + self.running
        self.waiting, self.running = [], []
        for seq in ended:
            self._fail(seq, "hardware", f"replica {self.index} died: {fault.cause} ({fault.component})")
        self.faults.lost(fault, lost, [seq.record for seq in ended])

    def _run(self):
        while True:
            if self._lost_to is not None:
                self._lose_everything()
            if not self.up:
                yield self.recovered
                continue
            if self.wakeup.triggered:
                self.wakeup = self.env.event()
            # Admission adds none now: a turn prefilled elsewhere joins once its KV is in (_receive).
            decode = [s for s in self.running if s.decoding and s.ready_ns <= self.env.now]
            if self.limits.kv_allocation == "on_demand":
                decode = self._grow_decodes(decode)
            self._admit()
            if not self.running:
                yield self.wakeup
                continue
            self.settle_idle(self.env.now)
            chunks = self._prefill_chunks(decode)
            if not chunks and not decode:   # every running turn is still reading its KV back
                yield self.wakeup
                continue
            n = self._run_length(decode, chunks) if self.bulk else 1
            if n > 1 and self.limits.kv_allocation == "on_demand":
                n = self._grow_for_run(decode, n)
            yield from self._steps(decode, chunks, n)
            if n > 1 and self.limits.kv_allocation == "on_demand":
                self._trim(decode)

    def _run_length(self, decode: list[Sequence], chunks: list[tuple[Sequence, int]]) -> int:
        """Steps the batch keeps its shape for, barring an arrival: every decode samples one more token, up
        to the first reply's end; a lone prompt, chunked, takes the same budget at each step, up to the chunk
        before its last (which samples its first token). Two prompts in a step: one step."""
        steps = [s.output_tokens - s.decoded for s in decode]
        if len(chunks) > 1 or (chunks and not self.limits.chunked_prefill):
            return 1
        if chunks:
            (seq, c), = chunks
            steps.append((seq.prefill_target - seq.prefilled - 1) // c)
        return max(1, min(steps, default=1))

    def _grow_decodes(self, decode: list[Sequence]) -> list[Sequence]:
        """on_demand: room in each pool for the token every decoding turn writes next, preempting the most
        recently admitted running turn of the group while the pool cannot give it; the decodes left."""
        kept = []
        for group, pool in enumerate(self.pools):
            mine = [s for s in decode if s.group == group]
            while not _resize(pool, mine, [_kv_held(s) + 1 for s in mine]):
                victim = [s for s in self.running if s.group == group][-1]
                self._preempt(victim)
                mine = [s for s in mine if s is not victim]
            kept += mine
        left = set(map(id, kept))
        return [s for s in decode if id(s) in left]

    def _grow_for_run(self, decode: list[Sequence], n: int) -> int:
        """on_demand: the most steps, up to n, whose new blocks every pool can give its decodes without
        evicting a prefix that may be read again; their blocks are taken now. At least 1 (_grow_decodes
        made room for the first). A run stops short of the step that would evict a live session's prefix,
        so that those are evicted at the step that needs their blocks, as step by step: what sessions hold
        between steps (their share of the baseline, sim.energy.baseline) is the same however the steps are
        priced. Ended sessions' prefixes first in the LRU line (KVPool.retired_front_blocks) may go ahead of
        their step: a run cut short leaves their blocks unused instead, the same room for what comes next."""
        groups = np.array([s.group for s in decode])
        held = np.array([_kv_held(s) for s in decode], dtype=np.int64)
        allocated = np.array([s.allocated for s in decode], dtype=np.int64)
        in_group = [(pool, groups == g) for g, pool in enumerate(self.pools)]
        whole = [pool.growth_blocks(allocated[mine], held[mine] + n) for pool, mine in in_group]
        room = [pool.unused_blocks + pool.retired_front_blocks(need) for (pool, _), need in zip(in_group, whole)]

        def fits(steps: int) -> bool:
            return all(pool.growth_blocks(allocated[mine], held[mine] + steps) <= spare
                       for (pool, mine), spare in zip(in_group, room))
        # Most runs fit whole.
        lo, hi = (n, n) if all(need <= spare for need, spare in zip(whole, room)) else (1, n - 1)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
        for pool, mine in in_group:
            grown = _resize(pool, [s for s, m in zip(decode, mine) if m], held[mine] + lo)
            assert grown
        return lo

    def _trim(self, decode: list[Sequence]) -> None:
        """on_demand, after a run of steps cut short: give back the blocks taken for steps not reached."""
        running = set(map(id, self.running))
        for g, pool in enumerate(self.pools):
            mine = [s for s in decode if id(s) in running and s.group == g]
            shrunk = _resize(pool, mine, [_kv_held(s) for s in mine])
            assert shrunk

    def _preempt(self, seq: Sequence) -> None:
        """Free a running turn's blocks (keeping what it computed as cached prefix) and queue it first."""
        held = _kv_held(seq)
        self.running.remove(seq)
        self._pool(seq).release(seq.cache_key, seq.allocated, held if self.limits.prefix_caching else 0)
        seq.recompute, seq.prefilled, seq.allocated, seq.reusable_tokens = seq.decoded, 0, 0, held
        seq.decoding = False
        self.waiting.insert(0, seq)

    def _prefill_chunks(self, decode: list[Sequence]) -> list[tuple[Sequence, int]]:
        """Each attention group has its own token budget: its decodes first, then prompts in arrival order.
        Chunked, a prompt takes what budget is left. Unchunked, it goes whole if it fits what is left, and
        otherwise it and the prompts behind it wait for the next step (TensorRT-LLM's micro-batch
        scheduler); a prompt larger than the whole budget, which could never fit, goes as the group's
        only prompt of a step."""
        limit = self.limits.max_batched_tokens
        budget = [limit] * len(self.pools)
        for seq in decode:
            budget[seq.group] -= 1
        chunks, closed, prompted = [], set(), set()
        for seq in self.running:
            group, left = seq.group, seq.prefill_target - seq.prefilled
            if left <= 0 or budget[group] <= 0 or group in closed or seq.ready_ns > self.env.now:
                continue
            if self.limits.chunked_prefill:
                c = min(left, budget[group])
            elif left <= budget[group] or (left > limit and group not in prompted):
                c = left
            else:
                closed.add(group)
                continue
            chunks.append((seq, c))
            budget[group] -= c
            prompted.add(group)
        return chunks

    def _steps(self, decode: list[Sequence], chunks: list[tuple[Sequence, int]], n: int):
        """Run up to `n` steps of one batch shape (n > 1 only for decode-only batches)."""
        start = self.env.now
        prior = [s.prefilled for s, _ in chunks]
        sizes = [c for _, c in chunks]
        completes = [s.prefilled + c == s.prefill_target for s, c in chunks]
        decode_ctx = [s.prompt_tokens + s.decoded for s in decode]  # L + 1 positions attended
        # KV tokens held when the run starts; a turn aborted mid-run still held its KV in the steps before.
        kv_before = sum(_kv_held(s) for s in self.running)
        self.baseline.update(self._kv_changes())
        # A prompt prefilling over a run holds more at each step.
        growing = {seq.record.session: self._whole_kv_bytes(seq.prefilled + c * np.arange(n, dtype=np.int64))
                   for seq, c in chunks} if n > 1 else None
        cost = self.cost.step(sizes, prior, completes, decode_ctx, n,
                              [s.group for s, _ in chunks], [s.group for s in decode])
        durations = np.maximum(1, np.rint(cost.duration_s * NS_PER_S).astype(np.int64))
        ends = start + np.cumsum(durations)
        self.last_end_ns = int(ends[-1])
        if n == 1:
            yield self._until_or_fault(int(durations[0]))
        else:
            yield self.env.timeout(int(ends[-1] - start)) | self.wakeup
            if self.env.now < ends[-1] and self.up:
                # The batch changed mid-run (an arrival or an abort): finish the step in flight, re-plan.
                done_at = int(ends[np.searchsorted(ends, self.env.now)])
                if done_at > self.env.now:
                    yield self._until_or_fault(done_at - self.env.now)
        done = int(np.searchsorted(ends, self.env.now, side="right"))
        if not done:   # it died during its first step: that step never ends
            self.last_end_ns = start
            return
        self.last_end_ns = int(ends[done - 1])
        self._apply(decode, chunks, completes, cost, ends, durations, done, kv_before, growing)

    def _until_or_fault(self, delay_ns: int):
        """A step's wait: its end, or a fault that stops it first (sim.faults)."""
        step = self.env.timeout(delay_ns)
        return step if self.fault is None else step | self.fault

    def _apply(self, decode, chunks, completes, cost, ends, durations, done, kv_before, growing) -> None:
        energy, dynamic = cost.energy_j[:done], cost.dynamic_j[:done]
        # Each sequence's share of the steps' dynamic energy, of which its KV's, and of the KV reading time.
        per_seq = cost.shares[:done] * dynamic[:, None]
        per_seq_kv = per_seq * cost.kv_shares[:done]
        kv_read_s = cost.kv_read_s[:done]
        records = [s.record for s, _ in chunks] + [s.record for s in decode]
        prefill, decoding = records[:len(chunks)], records[len(chunks):]
        add_by_column(prefill, "dynamic_prefill_j", per_seq[:, :len(chunks)])
        add_by_column(decoding, "dynamic_decode_j", per_seq[:, len(chunks):])
        add_by_column(records, "dynamic_kv_j", per_seq_kv)
        add_by_column(records, "kv_read_s", kv_read_s)
        self.baseline.share(ends[:done], durations[:done] / NS_PER_S, growing)
        if growing:   # the baseline holds each growing prompt at its last piece's KV now: _kv_changes compares to it
            for seq, c in chunks:
                if self.baseline.holds(seq.record.session):
                    self._kv_tokens[seq.record.session] = seq.prefilled + c * (done - 1)
        end_ns = int(ends[done - 1])
        for (seq, c), complete in zip(chunks, completes):
            if seq.started_ns is None:
                seq.started_ns = int(ends[0] - durations[0])
            seq.prefilled += c * done
            if complete:
                seq.decoded += 1
                seq.decoding = True
                # With an overlap scheduler the token sampled in this step is handed out while the next step
                # runs: a reply's first token reaches its client one step later (TensorRT-LLM PR #4174).
                if (seq.record.status == "pending" and seq.record.first_token_ns is None   # not aborted meanwhile
                        and not self.cost.engine.overlap):
                    seq.record.first_token_ns = end_ns
        for seq in decode:
            rec = seq.record   # (a turn aborted during a bulk run still got the tokens of the steps before)
            if rec.first_token_ns is None and (rec.status == "pending" or int(ends[0]) <= rec.end_ns):
                rec.first_token_ns = int(ends[0])
            seq.decoded += done
        first, last = self.steps_run, self.steps_run + done - 1
        for seq in [s for s, _ in chunks] + decode:
            if seq.record.first_step is None:
                seq.record.first_step = first
            seq.record.last_step = last
        self.steps_run += done
        # KV held after step i: each step's chunks and one more token per decoding turn.
        kv_tokens = kv_before + (np.arange(done) + 1) * (sum(c for _, c in chunks) + len(decode))
        self.steps.append(
            replica=self.index, step=np.arange(first, last + 1), start_s=(ends[:done] - durations[:done]) / NS_PER_S,
            duration_s=durations[:done] / NS_PER_S, prefill_tokens=sum(c for _, c in chunks),
            decode_seqs=len(decode), kv_tokens=kv_tokens, replica_flops=cost.flops[:done],
            replica_hbm_bytes=cost.hbm_bytes[:done], replica_comm_bytes=cost.comm_bytes[:done],
            bound=cost.bound[:done], replica_power_w=energy / cost.duration_s[:done], replica_energy_j=energy,
            replica_dynamic_j=dynamic, bubble_s=cost.bubble_s[:done])
        self.dynamic_j = accumulate(self.dynamic_j, dynamic)
        for s, (busy, e) in enumerate(zip(cost.stage_busy_s, cost.stage_energy_j)):
            self.stage_busy_s[s] += float(busy[:done].sum())
            self.stage_energy_j[s] += float(e[:done].sum())
        for seq in [s for s in self.running if s.decoded >= s.output_tokens]:
            self._finish(seq, end_ns)

    def _finish(self, seq: Sequence, end_ns: int) -> None:
        rec = seq.record
        rec.finish_ns = rec.end_ns = end_ns
        if rec.first_token_ns is None:   # a one-token reply under an overlap scheduler
            rec.first_token_ns = end_ns
        rec.output_tokens, rec.status = seq.output_tokens, "ok"
        self.running.remove(seq)
        keep = seq.total_tokens - 1  # the last sampled token was never fed back
        self._pool(seq).release(seq.cache_key, seq.allocated, keep if self.limits.prefix_caching else 0)
        seq.done.succeed()


def _resize(pool: KVPool, seqs: list[Sequence], tokens) -> bool:
    """Hold blocks in `pool` for `tokens` (a number per sequence) instead of what each of `seqs` holds now;
    False, changing nothing, if the growth does not fit."""
    if not pool.try_resize([s.allocated for s in seqs], tokens):
        return False
    for seq, held in zip(seqs, np.asarray(tokens).tolist()):
        seq.allocated = held
    return True


def _kv_held(seq: Sequence) -> int:
    """KV tokens a running turn holds: while prefilling, what it has computed; decoding, its prompt and
    every sampled token but the last."""
    return seq.prompt_tokens + seq.decoded - 1 if seq.decoding else seq.prefilled
