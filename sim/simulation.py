"""Run one deployment: session processes speak, a router (sim.serving.router) feeds replica engines."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable

import simpy

from sim.config import Experiment
from sim.context import Conversation, Prompt, Segment
from sim.deployment import BuiltDeployment
from sim.energy.baseline import BaselineShares
from sim.energy.ledger import Boundary
from sim.energy.views import set_dedicated
from sim.engine import EngineLimits, ReplicaEngine, SessionState
from sim.faults.injector import FaultLog, Injector
from sim.faults.rates import scenario
from sim.faults.recovery import recovery_time
from sim.kv import KVPool
from sim.records import NS_PER_S, StepLog, TurnRecord
from sim.serving.offload import TierStore
from sim.serving.disaggregation import KVTransfer
from sim.serving.router import Router
from workloads.background import chats, gaps_s, session_plan
from workloads.benchmark import requests
from workloads.podcast import exchanges, speech_stall_s


@dataclass
class DeploymentResult:
    deployment: BuiltDeployment
    turns: list[TurnRecord]
    steps: StepLog
    engines: list[ReplicaEngine]    # the deployment's replicas, then its prefill pool's, then its hot spares
    end_ns: int
    boundary: Boundary           # one of the deployment's replicas' (they are alike)
    faults: FaultLog | None = None   # its faults, when the experiment has any (sim.faults)

    @property
    def baselines(self) -> float:
        """The replicas' baselines in the boundary's: one each, a prefill pool's by its size (sim.energy.baseline)."""
        return sum(e.baseline.weight for e in self.engines)

    def ledger(self) -> dict[str, float]:
        """The deployment's energy over the run by layer (sim.energy.ledger), its total at the facility
        boundary, and the baseline no session held (unallocated_j; in `total_j`, on no request)."""
        dynamic_j = sum(e.dynamic_j for e in self.engines)
        layers = self.boundary.layers(dynamic_j, self.baselines * self.end_ns / NS_PER_S)
        unallocated_s = sum(e.baseline.unallocated_s for e in self.engines)
        return {**layers, "total_j": layers["gpu_j"] + layers["node_j"] + layers["facility_j"],
                "unallocated_j": self.boundary.facility_j(0.0, unallocated_s)}


def _ns(seconds: float) -> int:
    return int(round(seconds * NS_PER_S))


# progress(done, total, unit): the conversations' simulated hours against the podcast's horizon, or the
# benchmark requests that have ended against all of them.
Progress = Callable[[float, float, str], None]
PROGRESS_SLICES = 200    # progress is reported as the clock passes each of this many slices of the horizon ...
PROGRESS_EVENTS = 20_000  # ... and every this many events


def simulate(experiment: Experiment, built: BuiltDeployment, bulk: bool | None = None,
             progress: Progress | None = None) -> DeploymentResult:
    spec, workload = built.spec, experiment.workload
    bulk = experiment.run.mode == "bulk" if bulk is None else bulk
    env = simpy.Environment()
    steps = StepLog()
    limits = EngineLimits(spec.max_batched_tokens, spec.max_seqs, spec.max_context, spec.prefix_caching,
                          spec.chunked_prefill, spec.kv_allocation, spec.kv_load_layerwise)
    deadline_ns = _ns(workload.reply_deadline_s)
    # The API server's time per request (tokenise on the way in, the first token's way out), before the
    # scheduler sees it; it adds to the time to first token and to the end of the reply alike.
    api_ns = _ns(built.replicas[0].cost.engine.request_host_s) if spec.api_server else 0
    reference_gpus = len(built.replicas[0].placement.gpus)
    fault_log = FaultLog() if experiment.faults.enabled else None
    places = built.places
    engines = [
        ReplicaEngine(env, r, rep.cost, [_pool(rep, spec.block_tokens) for _ in range(rep.placement.layout.dp)],
                      limits, bulk, len(rep.placement.gpus), steps,
                      BaselineShares(rep.memory.kv_pool_bytes / rep.cost.accel.hbm_bytes,
                                     len(rep.placement.gpus) / reference_gpus), faults=fault_log)
        for r, rep in enumerate(places)]
    # Sessions are placed on the deployment's replicas; a prefill pool's follow them there (sim.serving.router).
    n_decode, n_prefill = len(built.replicas), len(built.prefill)
    decode_engines, prefill_engines = engines[:n_decode], engines[n_decode:n_decode + n_prefill]
    retries = experiment.faults.retries
    router = Router(decode_engines, spec.router, spec.queue_limit)
    prefill_router = Router(prefill_engines, spec.router, keeps_homes=True) if prefill_engines else None
    transfers = {}   # (prefill replica, decode replica) -> their KV transfer (sim.serving.disaggregation)
    turns: list[TurnRecord] = []
    podcast = workload.podcast_spec()
    ended = [0]   # benchmark requests that have ended (the progress bar's count)

    def settle_idle():
        """Charge every replica's idle time up to now before a new request takes its share of it."""
        for e in engines:
            e.settle_idle(env.now)

    def begin(index: int) -> None:
        """A session begins: the replicas that bill it share their baseline with it from now on."""
        states[index].start_ns = env.now
        for engine in billers[index]:
            engine.baseline.start(states[index])

    def end(index: int, retire: bool = True) -> None:
        """A session ends: it shares no more baseline, and (`retire`) its replicas will never read its prefix
        again."""
        state = states[index]
        state.ended, state.ended_ns = True, env.now
        for engine in billers[index]:
            engine.baseline.end(state)
            if retire:
                engine.retire(index)

    def serve_on(state: SessionState, engine: ReplicaEngine) -> None:
        """The session's turns go to `engine` from now on (its replica): a replica it is new to shares its
        baseline with it from now on too. A session not yet begun (a benchmark request, which begins when
        admitted) leaves the replica it was placed on, unless that one bills every session (an idle replica
        spread over them all)."""
        placed = engines[state.replica]
        if state.start_ns is None and placed is not engine and placed.sessions is not states:
            del placed.sessions[state.index]
            billers[state.index] = [e for e in billers[state.index] if e is not placed]
        state.replica = engine.index
        bill_on(state, engine)

    def bill_on(state: SessionState, engine: ReplicaEngine) -> None:
        """`engine` serves the session: a replica new to it shares its baseline with it from now on."""
        if engine not in billers[state.index]:
            billers[state.index].append(engine)
            engine.sessions[state.index] = state
            if state.start_ns is not None and not state.ended:
                engine.baseline.start(state, env.now)

    def ask(state: SessionState, record: TurnRecord, prompt, reply_tokens: int, cache_key: int | None = None):
        """Send a request (`attempt`) and, while its replica dies under it (status `hardware`), send it again, up
        to [faults] retries times while a replica is up. Its `fault_lost_s`: the time its failed attempts took,
        and, failed for good, the rest of its wait and the reply never spoken."""
        turns.append(record)
        first_ns = env.now
        until_ns = first_ns + deadline_ns
        while True:
            sent_ns = env.now
            seq = yield from attempt(state, record, prompt, reply_tokens, cache_key, until_ns)
            if record.status != "hardware" or record.retries >= retries or not serving():
                break
            record.again()
        if record.retries or record.status == "hardware":
            record.fault_lost_s = (sent_ns - first_ns) / NS_PER_S
            if record.status == "hardware":
                record.fault_lost_s += (record.end_ns - sent_ns) / NS_PER_S + record.reply_speech_s
        return seq

    def serving() -> bool:
        """Whether a replica of each pool is up to take a turn."""
        return all(any(e.up for e in pool) for pool in (decode_engines, prefill_engines) if pool)

    def attempt(state: SessionState, record: TurnRecord, prompt, reply_tokens: int, cache_key: int | None,
                until_ns: int):
        """Route a request (sim.serving.router), pass it through the API server to its replica's engine and
        wait for it (up to the deadline `until_ns`); yields its sequence's end, or None when every replica
        refused it or is down. Its prompt's prefix is cached under `cache_key` (default: its session). With a
        prefill pool it is routed to a replica of each pool and prefilled first (sim.serving.disaggregation)."""
        engine = router.route(state, prompt.reusable_tokens, prompt.tokens + reply_tokens, cache_key) \
            if serving() else None
        if engine is None:
            record.end_ns, record.replica = env.now, None
            if serving():
                record.status = "rejected"
                record.reason = f"every replica's queue holds {spec.queue_limit} turns (queue_limit)"
            else:
                record.status, record.reason = "hardware", "every replica is down (sim.faults)"
                if record.fault is None:   # the latest fault that took a replica of the pools down
                    record.fault = max((e.down_by for e in decode_engines + prefill_engines if not e.up),
                                       key=lambda row: row.time_ns).fault
            return None
        serve_on(state, engine)
        record.replica = engine.index
        prefill = prefill_router.route(state, prompt.reusable_tokens, prompt.tokens + 1, cache_key) \
            if prefill_router else None
        if prefill is not None:
            bill_on(state, prefill)
            record.prefill_replica = prefill.index
        if api_ns:
            yield env.timeout(api_ns)
        if prefill is not None:
            seq = yield from prefill_then_decode(record, prompt, reply_tokens, cache_key, prefill, engine, until_ns)
        else:
            router.handed(engine)
            seq = engine.submit(record, prompt.tokens, reply_tokens, prompt.reusable_tokens, cache_key)
            yield from wait(engine, seq, until_ns)
        router.ended(engine, prompt.tokens + reply_tokens)
        return seq

    def wait(engine: ReplicaEngine, seq, until_ns: int):
        """Wait for a sequence to end, aborting it at `until_ns` with a reply deadline."""
        if deadline_ns and not seq.done.triggered:
            yield seq.done | env.timeout(max(until_ns - env.now, 0))
            if not seq.done.triggered:
                engine.abort(seq, f"no reply within the {workload.reply_deadline_s:g} s deadline; dropped")
        yield seq.done

    def prefill_then_decode(record: TurnRecord, prompt, reply_tokens: int, cache_key, prefill: ReplicaEngine,
                            engine: ReplicaEngine, until_ns: int):
        """Disaggregated: the prefill replica computes the prompt and the first token; the decode replica, sent
        the KV it lacks, decodes the rest (sim.serving.disaggregation). The first sequence, if the turn ends
        there (it failed, or its reply is one token), else the decode replica's."""
        prefill_router.handed(prefill)
        first = prefill.submit(record, prompt.tokens, 1, prompt.reusable_tokens, cache_key)
        yield from wait(prefill, first, until_ns)
        prefill_router.ended(prefill, prompt.tokens + 1)
        router.handed(engine)
        if record.status != "ok" or reply_tokens == 1:
            if record.status == "ok":   # a one-token reply ends where it was prefilled
                record.replica = prefill.index
            return first
        link = transfers.get((prefill, engine))
        if link is None:
            link = transfers[prefill, engine] = KVTransfer.between(
                built.cluster, built.prefill[prefill.index - len(decode_engines)], built.replicas[engine.index],
                spec.architecture.n_layers)
        handoff_ns, prefill_s = env.now, (record.end_ns - first.started_ns) / NS_PER_S

        def transfer(tokens: int) -> float:
            """Seconds the decode replica, admitting the turn now, waits for the KV of `tokens` tokens, sent as
            the prefill computed them from its pre-allocated blocks."""
            return max(0.0, (handoff_ns - env.now) / NS_PER_S + link.exposed_s(tokens, prefill_s))

        record.status, record.first_token_ns, record.finish_ns, record.end_ns = "pending", None, None, None
        record.output_tokens = 0   # the first token counts once the reply ends ok
        record.first_step = record.last_step = None
        seq = engine.submit(record, prompt.tokens, reply_tokens, prompt.reusable_tokens, cache_key, transfer)
        yield from wait(engine, seq, until_ns)
        return seq

    def summarise(state: SessionState, conv: Conversation, index: int, turn: int, start_ns: int):
        """Compact the history into a summary: a request of its own, served like any other."""
        prompt = conv.summary_prompt()
        tokens = spec.context.summary_tokens
        record = TurnRecord(
            run=experiment.run.name, deployment=built.name, session=index, turn=turn, kind="summary",
            conversation_s=(env.now - start_ns) / NS_PER_S, conversation_tokens=conv.said_tokens,
            context_tokens=prompt.context_tokens, new_tokens=0,
            reply_tokens=tokens, reply_speech_s=0.0, arrival_ns=env.now, replica=state.replica)
        seq = yield from ask(state, record, prompt, tokens)
        if seq is not None and seq.admitted:
            conv.served(prompt, ("summary of", turn) if record.status == "ok" else None, tokens)
        if record.status == "ok":
            conv.summarised()

    def speak(record: TurnRecord, reply) -> int:
        """Record when the model starts speaking the reply and how long its voice stalls; the time its
        speech ends."""
        if workload.speech == "streamed":
            record.speech_start_ns = record.first_token_ns
            record.stall_s = speech_stall_s(record.output_tokens, reply.speech_s,
                                            (record.finish_ns - record.first_token_ns) / NS_PER_S)
        else:
            record.speech_start_ns, record.stall_s = record.finish_ns, 0.0
        return max(env.now, record.speech_start_ns + _ns(reply.speech_s + record.stall_s))

    def session(index: int):
        state = states[index]
        start_ns = _ns(starts_s[index])
        end_ns = start_ns + _ns(podcast.duration_s)
        yield env.timeout(start_ns)
        settle_idle()
        begin(index)
        conv = Conversation(spec.context, spec.max_context)
        summary = None
        for ex in exchanges(podcast, experiment.run.seed, index):
            yield env.timeout(_ns(ex.human.speech_s))
            if env.now > end_ns and ex.index > 0:  # the podcast ended while the human was speaking
                break
            arrival_ns = env.now
            if summary is not None:  # the model reads the history only once its summary is done
                yield summary
                summary = None
            settle_idle()
            prompt = conv.prompt(ex.index, ex.human.tokens, ex.reply.tokens)
            record = TurnRecord(
                run=experiment.run.name, deployment=built.name, session=index, turn=ex.index,
                conversation_s=(arrival_ns - start_ns) / NS_PER_S, conversation_tokens=conv.said_tokens,
                context_tokens=prompt.context_tokens,
                retrieved_tokens=prompt.retrieved_tokens, new_tokens=ex.human.tokens, reply_tokens=ex.reply.tokens,
                reply_speech_s=ex.reply.speech_s, arrival_ns=arrival_ns, replica=state.replica)
            state.bills.add(record, env.now)   # from now on the phrase takes its session's baseline share
            if prompt.retrieved_tokens:
                record.energy_retrieval_j = spec.context.retrieval_j
                yield env.timeout(_ns(spec.context.retrieval_s))
            seq = yield from ask(state, record, prompt, ex.reply.tokens)
            ok = record.status == "ok"
            if seq is not None and seq.admitted:
                conv.served(prompt, ("model", ex.index) if ok else None, ex.reply.tokens)
            conv.said(ex.index, ex.human.tokens, ex.reply.tokens if ok else None)
            if ok:
                if conv.wants_summary:  # compacted while the reply is spoken
                    summary = env.process(summarise(state, conv, index, ex.index, start_ns))
                yield env.timeout(speak(record, ex.reply) - env.now)
            elif workload.on_failure == "stop":
                break
        if summary is not None:
            yield summary
        end(index)

    def request(req):
        """One benchmark request: its own session, its prompt the input tokens. A trace's request that continues
        an earlier one's prompt (req.follows) may find the shared tokens in the cache that conversation's
        requests leave under one key; the key's prefix is never read again once its last request has ended."""
        index, shared, key = req.index, req.shared_tokens, cache_keys[req.index]
        state = states[index]
        record = TurnRecord(
            run=experiment.run.name, deployment=built.name, session=index, turn=0, conversation_s=env.now / NS_PER_S,
            context_tokens=shared, new_tokens=req.input_tokens - shared, reply_tokens=req.output_tokens,
            reply_speech_s=0.0, arrival_ns=env.now, replica=state.replica)
        settle_idle()
        state.bills.add(record, env.now)   # its session begins when the engine admits it
        prompt = Prompt((Segment(("request", index), req.input_tokens),), shared, 0, shared, req.input_tokens)
        yield from ask(state, record, prompt, req.output_tokens, key)
        end(index, retire=False)
        readers[key] -= 1
        if not readers[key]:
            for engine in engines:
                engine.retire(key)
        ended[0] += 1

    def chat(lengths):
        """One background chat session, a session of its own, on the next replica in turn: its first request a
        trace row's prompt and reply; each later one, after the user's think time, the conversation so far and
        a new message (workloads.background.session_plan), until a turn fails or the session's turns are done."""
        index = len(states)
        replicas = len(decode_engines)
        state = states[index] = SessionState(index, index % replicas, (index // replicas) % spec.dp)
        engines[state.replica].sessions[index] = state
        billers[index] = [e for e in engines if index in e.sessions]
        background = spec.background
        n_turns, thinks_s = session_plan(experiment.run.seed, index, background.turns, background.think_s)
        settle_idle()
        begin(index)
        history, start_ns = 0, env.now
        for turn in range(n_turns):
            prompt_tokens, reply_tokens = next(lengths)
            if turn:
                yield env.timeout(_ns(thinks_s[turn - 1]))
                prompt_tokens = history + background.message_tokens
                settle_idle()
            record = TurnRecord(
                run=experiment.run.name, deployment=built.name, session=index, turn=turn, kind="chat",
                conversation_s=(env.now - start_ns) / NS_PER_S, conversation_tokens=history, context_tokens=history,
                new_tokens=prompt_tokens - history, reply_tokens=reply_tokens, reply_speech_s=0.0,
                arrival_ns=env.now, replica=state.replica)
            state.bills.add(record, env.now)
            prompt = Prompt((Segment(("chat", index), prompt_tokens),), history, 0, history, prompt_tokens)
            yield from ask(state, record, prompt, reply_tokens)
            if record.status != "ok":
                break
            history = prompt_tokens + reply_tokens
        end(index)

    def chat_client(lengths, until_ns: int):
        """A background client: its next chat as soon as its last one ended, until the podcasts end; while every
        replica is down (sim.faults), once one is back."""
        while env.now < until_ns:
            yield from chat(lengths)
            if not serving():
                yield env.any_of([e.recovered for e in decode_engines + prefill_engines if not e.up])

    def chat_arrivals(lengths, gaps, until_ns: int):
        """Background chats arriving at random (Poisson) until the podcasts end."""
        while True:
            yield env.timeout(_ns(next(gaps)))
            if env.now >= until_ns:
                return
            env.process(chat(lengths))

    def arrive(req):
        yield env.timeout(_ns(req.arrival_s))
        yield from request(req)

    def client(mine):
        """A client of a fixed-concurrency benchmark: its next request as soon as its last one ended."""
        for req in mine:
            yield from request(req)

    if workload.kind == "podcast":
        sessions = workload.sessions
        starts_s = workload.session_starts_s(experiment.run.seed).tolist()
        processes = [session(i) for i in range(sessions)]
        background = spec.background
        if background:   # chats share the deployment until the last podcast ends
            until_ns = _ns(starts_s[-1] + podcast.duration_s if starts_s else podcast.duration_s)
            lengths = chats(experiment.run.seed)
            processes += ([chat_client(lengths, until_ns) for _ in range(background.clients)] if background.clients
                          else [chat_arrivals(lengths, gaps_s(experiment.run.seed, background.rate_per_s), until_ns)])
    else:
        reqs = (workload.replay() if workload.kind == "trace" else
                requests(workload.kind, workload.requests, *workload.lengths(), experiment.run.seed,
                         workload.rate_per_s, workload.trace()))
        sessions = len(reqs)
        # A request continuing an earlier one's prompt reads and leaves the prefix under its conversation's key
        # (its first request's index), and starts on that request's replica and attention group.
        cache_keys = list(range(sessions))
        for req in reqs:
            if req.follows >= 0:
                cache_keys[req.index] = cache_keys[req.follows]
        readers = Counter(cache_keys)    # requests of each key that have not ended
        processes = ([client(reqs[c::workload.clients]) for c in range(workload.clients)]
                     if workload.kind == "concurrency" else [arrive(r) for r in reqs])
    # Sessions go round the replicas, then round each replica's attention groups.
    home = cache_keys if workload.kind != "podcast" else range(sessions)
    replicas = len(decode_engines)
    states = {i: SessionState(i, home[i] % replicas, (home[i] // replicas) % spec.dp) for i in range(sessions)}
    for i, state in states.items():
        engines[state.replica].sessions[i] = state
    for engine in engines:
        # A replica no session reaches still idles: on the deployment's sessions' bill, or unallocated.
        if not engine.sessions and experiment.energy.idle_capacity == "spread":
            engine.sessions = states
    billers = {i: [e for e in engines if i in e.sessions] for i in states}
    if workload.kind != "podcast":
        # A benchmark request shares its replica's baseline from its admission: a queue of thousands
        # (offline) is not served yet.
        for engine in engines:
            engine.begin = begin
    for p in processes:
        env.process(p)
    bounds = boundary(experiment, built)
    if fault_log is not None:
        faults, cluster = experiment.faults, built.cluster
        Injector(env, engines, [rep.placement.gpus for rep in places], built.pools,
                 [recovery_time(cluster, rep.placement.gpus, rep.cost.weights_bytes_per_gpu(), faults.weights_from,
                                spec.fabric) for rep in places],
                 cluster.gpus, cluster.host_of, scenario(faults.rates, faults.scale), experiment.run.seed,
                 lambda e: bounds.facility_j(0.0, e.baseline.weight), lambda: all(s.ended for s in states.values()),
                 fault_log)
    if workload.kind == "podcast":
        horizon_ns = _ns(starts_s[-1] + podcast.duration_s if starts_s else podcast.duration_s)
        report = (lambda: progress(min(env.now, horizon_ns) / NS_PER_S / 3600, horizon_ns / NS_PER_S / 3600,
                                   "h simulated")) if progress else None
    else:
        horizon_ns = _ns(reqs[-1].arrival_s) if workload.kind in ("poisson", "trace") else 0
        report = (lambda: progress(ended[0], sessions, "requests")) if progress else None
    _run(env, report, horizon_ns)
    # The run ends when the last session has ended and the last step has run. Not env.now: a bulk run cut
    # short by an arrival leaves its planned timeout in the queue, firing after the work is done.
    end_ns = max([s.ended_ns for s in states.values()] + [e.last_end_ns for e in engines])
    for engine in engines:
        engine.settle_idle(end_ns)
        engine.baseline.close()
    result = DeploymentResult(built, turns, steps, engines, end_ns, bounds, fault_log)
    set_dedicated(result, states)
    return result


def _pool(replica, block_tokens: int) -> KVPool:
    """One attention group's KV pool, with the tiers below it where the deployment offloads (sim.serving.offload)."""
    pool = KVPool(replica.kv_capacity_blocks, block_tokens, replica.footprint)
    if replica.offload is not None:
        pool.offload = TierStore(replica.offload)
    return pool


def boundary(experiment: Experiment, built: BuiltDeployment) -> Boundary:
    """One replica's ledger boundary: its GPUs, its share of its nodes' hosts and of the fabric, the
    experiment's facility."""
    cluster = built.cluster
    return Boundary.of(cluster.accelerator, cluster.node_type, cluster.fabric, len(built.replicas[0].placement.gpus),
                       experiment.energy.pue_value, experiment.energy.gco2e_per_kwh)


def _run(env: simpy.Environment, report: Callable[[], None] | None, horizon_ns: int) -> None:
    """Run every event; with `report`, event by event as env.run does, calling it each time the clock
    passes another PROGRESS_SLICES-th of the horizon (at least a second), and every PROGRESS_EVENTS
    events besides, for runs so crowded that a slice takes long: the events and their order are the
    same either way."""
    if report is None:
        env.run()
        return
    slice_ns = max(horizon_ns // PROGRESS_SLICES, NS_PER_S)
    next_ns, events = slice_ns, 0
    try:
        while True:
            env.step()
            events += 1
            if env.now >= next_ns:
                report()
                next_ns = env.now + slice_ns
            elif events % PROGRESS_EVENTS == 0:
                report()
    except simpy.core.EmptySchedule:
        report()
