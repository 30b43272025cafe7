"""Routing turns over replicas and admission control (sim.serving.router), by hand."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import experiment, run_all
from sim.serving.router import POLICIES, Router
from test_engine import assert_same_run, check_invariants

# Two replicas of Llama-3.1-8B, one H100 each: every KV pool holds far more than a 10-minute podcast.
TWO_REPLICAS = {"model": "llama31_8b", "gpu": "h100_sxm", "nodes": 1, "tp": 1, "replicas": 2}


def fake(index, waiting=0, cached=0, capacity=None, up=True):
    """A replica as the router sees it: its index, its scheduler's queue, the session's cached prefix there, the
    tokens its KV pools hold, and whether it is up (sim.faults)."""
    return SimpleNamespace(index=index, waiting=[None] * waiting, kv_capacity_tokens=capacity,
                           cached_tokens=lambda state, key, reusable: min(cached, reusable), up=up)


SESSION = SimpleNamespace(index=5, replica=1, group=0)


def test_round_robin_takes_the_replicas_in_turn_and_skips_full_queues():
    router = Router([fake(0), fake(1), fake(2, waiting=2)], "round_robin", queue_limit=2)
    # Replica 2's queue is at its limit: 0, 1, 0, 1; then 0 and 1 each have two turns sent and not yet handed
    # over to their schedulers, and the next turn is refused.
    assert [router.route(SESSION, 0, 10).index for _ in range(4)] == [0, 1, 0, 1]
    assert router.route(SESSION, 0, 10) is None
    router.handed(router.engines[1])      # one of replica 1's reached its scheduler (whose queue is fixed here)
    assert router.route(SESSION, 0, 10).index == 1


def test_least_outstanding_tokens_counts_what_was_sent_until_it_ends():
    engines = [fake(0), fake(1)]
    router = Router(engines, "least_outstanding_tokens")
    # Loads (0, 0): replica 0 (the lower index) takes 500; (500, 0): 1 takes 300; (500, 300): 1 takes 400;
    # (500, 700): 0 takes 100; (600, 700).
    assert [router.route(SESSION, 0, tokens).index for tokens in (500, 300, 400, 100)] == [0, 1, 1, 0]
    assert [router.load(e) for e in engines] == [600, 700]
    router.ended(engines[1], 300)          # (600, 400): replica 1 next
    assert router.route(SESSION, 0, 10).index == 1 and router.load(engines[1]) == 410


def test_prefix_aware_prefers_the_longest_cached_prefix_then_the_least_loaded():
    router = Router([fake(0, cached=64), fake(1, cached=128), fake(2, cached=128)], "prefix_aware")
    assert router.route(SESSION, 200, 300).index == 1        # 128 cached on 1 and 2, both idle: the lower index
    # Of 100 reusable tokens 0 holds 64, 1 and 2 hold 100 each; 1 now has the 300 sent to it, 2 nothing.
    assert router.route(SESSION, 100, 300).index == 2


def test_session_affinity_stays_home_until_full_then_goes_to_the_least_loaded():
    engines = [fake(0), fake(1, capacity=1_000), fake(2)]
    router = Router(engines, "session_affinity")
    assert router.route(SESSION, 0, 600).index == 1         # home: 600 <= 1,000 tokens of KV
    assert router.route(SESSION, 0, 600).index == 0         # 600 + 600 > 1,000: the least loaded other
    assert router.route(SESSION, 0, 300).index == 1         # 600 + 300 fits at home
    # Its queue at the limit: the least loaded other replica; every queue at the limit: refused.
    queued = Router([fake(0), fake(1, waiting=2), fake(2)], "session_affinity", queue_limit=2)
    queued.route(SimpleNamespace(index=0, replica=0, group=0), 0, 50)
    assert queued.route(SESSION, 0, 10).index == 2
    assert Router([fake(0, waiting=2), fake(1, waiting=3)], "session_affinity", queue_limit=2).route(
        SESSION, 0, 10) is None


def _podcast_turns(router: str) -> list:
    exp = experiment({"d": {**TWO_REPLICAS, "router": router}}, duration_h=10 / 60)
    (result,) = run_all(exp)
    return sorted(result.turns, key=lambda t: t.turn)


def _cached_after(turn) -> int:
    """Whole 16-token blocks of what a turn leaves cached: its prompt and reply but the last token."""
    return (turn.context_tokens + turn.new_tokens + turn.output_tokens - 1) // 16 * 16


def test_session_affinity_keeps_the_cache_hits_round_robin_loses():
    """One podcast on two replicas. With affinity every turn finds the last one's prompt and reply cached on its
    replica. Round robin alternates replicas, so turn t finds what turn t - 2 left there, and recomputes turn
    t - 1's prompt and reply (the history is everything said: context_t = prompt_(t-1) + reply_(t-1))."""
    sticky, rr = _podcast_turns("session_affinity"), _podcast_turns("round_robin")
    assert len(sticky) == len(rr) >= 8 and all(t.status == "ok" for t in sticky + rr)
    assert {t.replica for t in sticky} == {0} and [t.replica for t in rr] == [t.turn % 2 for t in rr]
    for turns, lag in ((sticky, 1), (rr, 2)):
        for t in turns[lag:]:
            assert t.cached_tokens == min(_cached_after(turns[t.turn - lag]), t.context_tokens // 16 * 16)
            assert t.recomputed_tokens == t.context_tokens - t.cached_tokens
    assert rr[1].cached_tokens == 0            # replica 1's first turn of the session
    # Affinity recomputes at most the history's last partial block; round robin the whole last exchange besides.
    assert all(t.recomputed_tokens < 16 for t in sticky)
    assert all(t.recomputed_tokens > rr[t.turn - 1].new_tokens + rr[t.turn - 1].output_tokens - 16 for t in rr[2:])


def test_prefix_aware_follows_the_cached_history():
    turns = _podcast_turns("prefix_aware")
    assert {t.replica for t in turns} == {0}      # replica 0 first (a tie, lowest index), then its cache
    assert all(t.recomputed_tokens < 16 for t in turns)   # the history's last partial block at most


def test_a_turn_every_replica_refuses_is_rejected():
    """Five requests at t = 0 to one replica with a queue of at most 2: the first two are sent (the API server
    holds them before the scheduler sees them, and the router counts them), the other three are refused."""
    exp = experiment({"d": {**TWO_REPLICAS, "replicas": 1, "queue_limit": 2}}, kind="offline", requests=5,
                     input_tokens=100, output_tokens=10)
    (result,) = run_all(exp)
    by_session = sorted(result.turns, key=lambda t: t.session)
    assert [t.status for t in by_session] == ["ok", "ok", "rejected", "rejected", "rejected"]
    refused = by_session[2]
    assert refused.replica is None and refused.end_ns == refused.arrival_ns == 0 and "queue_limit" in refused.reason
    assert refused.output_tokens == 0 and refused.first_step is None and refused.dynamic_prefill_j == 0.0


@pytest.mark.parametrize("router", ["round_robin", "least_outstanding_tokens", "prefix_aware", "session_affinity"])
def test_every_policy_serves_every_turn_and_conserves_tokens(router):
    exp = experiment({"d": {**TWO_REPLICAS, "router": router}}, kind="poisson", requests=40, rate_per_s=8.0,
                     input_tokens=300, output_tokens=40)
    (result,) = run_all(exp)
    assert all(t.status == "ok" for t in result.turns) and len(result.turns) == 40
    # Every prompt token is prefilled once, and every reply token but the first (sampled by the prompt's last
    # chunk) takes a decode step, on the replica the turn was sent to.
    steps = result.steps.columns()
    for replica in (0, 1):
        mine, on = [t for t in result.turns if t.replica == replica], steps["replica"] == replica
        assert steps["prefill_tokens"][on].sum() == sum(t.new_tokens for t in mine)
        assert steps["decode_seqs"][on].sum() == sum(t.output_tokens - 1 for t in mine)
    if router != "session_affinity":   # each request a session of its own: affinity keeps them where they began
        assert {t.replica for t in result.turns} == {0, 1}


@settings(max_examples=6, deadline=None)
@given(router=st.sampled_from(POLICIES), replicas=st.integers(2, 3), sessions=st.integers(1, 5),
       queue_limit=st.sampled_from([0, 1, 3]), caching=st.booleans(), seed=st.integers(0, 1000),
       memory=st.sampled_from([0.9, 0.26]), poisson=st.booleans())
def test_routing_invariants_over_random_loads(router, replicas, sessions, queue_limit, caching, seed, memory, poisson):
    """Podcasts or Poisson requests over 2-3 replicas (or a 27,280-token KV pool at 26% of HBM), every policy and queue
    limit: every turn ends ok or with a reason, tokens and joules add up per replica, pools never overflow, and
    bulk equals per-step."""
    dep = {**TWO_REPLICAS, "replicas": replicas, "router": router, "queue_limit": queue_limit,
           "prefix_caching": caching, "gpu_memory_utilization": memory}
    load = ({"kind": "poisson", "requests": 30, "rate_per_s": 20.0, "input_tokens": 2000, "output_tokens": 200,
             "length_dist": "lognormal", "input_log_sigma": 0.8, "output_log_sigma": 0.8} if poisson
            else {"sessions": sessions, "duration_h": 3 / 60, "session_stagger_s": 7.0})
    bulk = run_all(experiment({"d": dep}, seed=seed, **load))
    check_invariants(bulk)
    assert_same_run(bulk, run_all(experiment({"d": dep}, seed=seed, **load), bulk=False))


def test_littles_law_on_a_steady_poisson_run():
    """L = lambda W: requests in the system, sampled every 0.5 s over the steady middle of the run (the first
    and last fifth left out), against the configured arrival rate times the mean time in the system of the
    requests that arrived in that window. 3,000 requests at 4 per second on two replicas (round robin), far from
    saturation: the window holds ~1,800 arrivals, whose count's relative sd is 1/sqrt(1,800) = 2.4%, so 5% is
    2.1 sd (the seed is fixed: the figure is reproducible)."""
    import numpy as np
    rate = 4.0
    exp = experiment({"d": {**TWO_REPLICAS, "router": "round_robin"}}, kind="poisson", requests=3000,
                     rate_per_s=rate, input_tokens=800, output_tokens=150, length_dist="lognormal",
                     input_log_sigma=0.5, output_log_sigma=0.5, seed=11)
    (result,) = run_all(exp)
    arrival = np.array([t.arrival_ns for t in result.turns]) / 1e9
    end = np.array([t.end_ns for t in result.turns]) / 1e9
    assert all(t.status == "ok" for t in result.turns)
    lo, hi = np.quantile(arrival, [0.2, 0.8])
    grid = np.arange(lo, hi, 0.5)
    in_system = ((arrival[None, :] <= grid[:, None]) & (grid[:, None] < end[None, :])).sum(axis=1).mean()
    window = (arrival >= lo) & (arrival < hi)
    assert in_system == pytest.approx(rate * (end - arrival)[window].mean(), rel=0.05)


def test_a_request_sent_away_from_where_it_was_placed_is_billed_where_it_runs(monkeypatch):
    """Six requests at t = 0, the first ten times the others' size: least_outstanding_tokens sends the first to
    replica 0 (a tie) and the five small ones to replica 1 (1,010 tokens against 110, 220, ... 550). Requests
    2 and 4, placed on replica 0 (sessions go round the replicas), begin only when admitted, so they move: each
    replica shares its baseline with the requests it ran, and the joules still add up."""
    import sim.simulation as simulation
    from test_engine import check_ledger
    from workloads.benchmark import Request
    sizes = [1000, 100, 100, 100, 100, 100]
    monkeypatch.setattr(simulation, "requests", lambda *args: [Request(i, 0.0, n, 10) for i, n in enumerate(sizes)])
    exp = experiment({"d": {**TWO_REPLICAS, "router": "least_outstanding_tokens"}}, kind="offline", requests=6,
                     input_tokens=100, output_tokens=10)
    (result,) = run_all(exp)
    assert [t.replica for t in sorted(result.turns, key=lambda t: t.session)] == [0, 1, 1, 1, 1, 1]
    assert [set(e.sessions) for e in result.engines] == [{0}, {1, 2, 3, 4, 5}]
    check_ledger(result)


def test_a_replica_down_takes_no_turn_and_its_sessions_move():
    # Session 5's home is replica 1; down after a fault, the turn goes to the least loaded of the others, which
    # becomes its home; with every replica down there is none.
    replicas = [fake(0), fake(1, up=False), fake(2)]
    router = Router(replicas, "session_affinity")
    router.route(SimpleNamespace(index=0, replica=0, group=0), 0, 50)   # replica 0 now carries 50 tokens
    assert router.route(SESSION, 0, 10).index == 2
    for r in replicas:
        r.up = False
    assert router.route(SESSION, 0, 10) is None
