"""Which replica serves a turn, and admission control (DESIGN.md, 'Serving behaviour to model': routing).

Each turn (a podcast phrase, a chat turn, a benchmark request) is routed when it arrives:

- `session_affinity`: the replica that served the session's last turn, where its history's KV is cached
  (vLLM production stack's SessionRouter, by session id); when that replica is full, the least loaded of
  the others with room, which becomes the session's replica;
- `round_robin`: the next replica in turn, turn by turn (production stack's RoundRobinRouter);
- `least_outstanding_tokens`: the least loaded replica;
- `prefix_aware`: the replica holding the longest cached prefix of the turn's prompt (production stack's
  prefix-aware routing; SGLang's and vLLM's routers' cache_aware policy), the least loaded among equals.

A router sees what it has sent: a replica's load is the prompt and reply tokens of the turns sent to it that
have not ended, and its queue the turns waiting in its scheduler plus those its API server has not handed
over yet. Ties go to the first replica in the router's list. With a prefill pool each pool has its router
(sim.serving.disaggregation), whose sessions' homes are their replicas in that pool. A replica is full for a turn when its queue holds
`queue_limit` turns (admission control; 0: no limit), or when the turn beside its load would pass its KV
pool's tokens. A turn for which every replica's queue is at the limit is refused (status `rejected`); a
replica without room may still take it when none with room has space in its queue. A replica down after a fault
(sim.faults) takes no turn: a session whose replica is down moves to another.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sim.engine import ReplicaEngine, SessionState

POLICIES = ("session_affinity", "round_robin", "least_outstanding_tokens", "prefix_aware")


@dataclass
class Router:
    engines: list[ReplicaEngine]
    policy: str = "session_affinity"
    queue_limit: int = 0
    # Whether it keeps each session's home itself: a prefill pool's router does, a session's `replica` being its
    # replica in the deployment's own pool (which serve_on keeps).
    keeps_homes: bool = False
    _turn: int = field(default=0, repr=False)   # round_robin: the replica next in turn (its place in the list)
    _sending: list[int] = field(default_factory=list, repr=False)   # per replica: turns sent, not yet handed over
    _load: list[int] = field(default_factory=list, repr=False)      # ... tokens of the turns sent, not yet ended
    _homes: dict = field(default_factory=dict, repr=False)          # session -> the replica that served it last
    _place: dict = field(default_factory=dict, repr=False)          # id(replica) -> its place in the list

    def __post_init__(self):
        self._sending = [0] * len(self.engines)
        self._load = [0] * len(self.engines)
        self._place = {id(e): i for i, e in enumerate(self.engines)}

    def route(self, state: SessionState, reusable_tokens: int, total_tokens: int,
              cache_key: int | None = None) -> ReplicaEngine | None:
        """The replica to serve a turn of session `state` (`reusable_tokens` of its prompt possibly cached under
        `cache_key`, by default the session's; `total_tokens` its prompt and reply), or None when no replica's
        queue has room for it. The turn is sent to it: call `handed` when it reaches the scheduler and `ended`
        when it ends."""
        open_ = [e for e in self.engines if e.up and (not self.queue_limit or self.queued(e) < self.queue_limit)]
        if not open_:
            return None
        key = state.index if cache_key is None else cache_key
        chosen = self._choose(open_, state, key, reusable_tokens, total_tokens)
        self._sending[self._place[id(chosen)]] += 1
        self._load[self._place[id(chosen)]] += total_tokens
        if self.keeps_homes:
            self._homes[state.index] = chosen
        return chosen

    def handed(self, engine: ReplicaEngine) -> None:
        """A turn sent to `engine` has reached its scheduler."""
        self._sending[self._place[id(engine)]] -= 1

    def ended(self, engine: ReplicaEngine, total_tokens: int) -> None:
        """A turn sent to `engine` (`total_tokens` its prompt and reply) has ended, whatever its status."""
        self._load[self._place[id(engine)]] -= total_tokens

    def queued(self, engine: ReplicaEngine) -> int:
        """Turns waiting for the replica: in its scheduler's queue, or sent and not yet handed over."""
        return len(engine.waiting) + self._sending[self._place[id(engine)]]

    def load(self, engine: ReplicaEngine) -> int:
        """Prompt and reply tokens of the turns sent to the replica that have not ended."""
        return self._load[self._place[id(engine)]]

    def has_room(self, engine: ReplicaEngine, total_tokens: int) -> bool:
        """Whether a turn of `total_tokens` beside the replica's load fits its KV pools' tokens (always, for
        pools that count sequences, not tokens)."""
        capacity = engine.kv_capacity_tokens
        return capacity is None or self.load(engine) + total_tokens <= capacity

    def _choose(self, open_: list[ReplicaEngine], state: SessionState, cache_key: int, reusable_tokens: int,
                total_tokens: int) -> ReplicaEngine:
        if self.policy == "round_robin":
            n = len(self.engines)
            open_places = {self._place[id(e)] for e in open_}
            place = next(p for p in ((self._turn + k) % n for k in range(n)) if p in open_places)
            self._turn = (place + 1) % n
            return self.engines[place]
        if self.policy == "least_outstanding_tokens":
            return self._least_loaded(open_)
        if self.policy == "prefix_aware":
            cached = {e.index: e.cached_tokens(state, cache_key, reusable_tokens) for e in open_}
            most = max(cached.values())
            return self._least_loaded([e for e in open_ if cached[e.index] == most])
        # A prefill pool's router: where it was placed (its replica's place, in a pool of another size) until first
        # routed.
        home = self._homes.get(state.index) or self.engines[state.replica % len(self.engines)]
        if home in open_ and self.has_room(home, total_tokens):
            return home
        roomy = [e for e in open_ if e is not home and self.has_room(e, total_tokens)]
        if roomy:
            return self._least_loaded(roomy)
        return home if home in open_ else self._least_loaded(open_)

    def _least_loaded(self, engines: list[ReplicaEngine]) -> ReplicaEngine:
        return min(engines, key=lambda e: (self.load(e), self._place[id(e)]))
