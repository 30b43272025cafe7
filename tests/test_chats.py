"""Background chat sessions of several turns (deployments.NAME.background turns, think_s, message_tokens):
their plans against their distributions, and each turn's prompt, arrival and cache hits by hand."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import experiment, run_all
from workloads.background import session_plan


def test_a_single_turn_session_is_one_request():
    assert session_plan(7, 3, 1.0, 0.0) == (1, [])


def test_session_plans_follow_their_geometric_and_exponential_laws():
    """20,000 sessions of mean 4 turns: a geometric's sd is sqrt(1 - p) / p = sqrt(0.75) / 0.25 = 3.46 turns,
    so the mean is within 3 x 3.46 / sqrt(20,000) = 0.073 of 4; the think times (mean 30 s, sd 30 s) within
    three standard errors of 30 s."""
    plans = [session_plan(11, i, 4.0, 30.0) for i in range(20_000)]
    turns = np.array([n for n, _ in plans])
    thinks = np.concatenate([t for _, t in plans])
    assert turns.min() == 1 and abs(turns.mean() - 4.0) < 3 * np.sqrt(0.75) / 0.25 / np.sqrt(len(turns))
    assert len(thinks) == (turns - 1).sum() and abs(thinks.mean() - 30.0) < 3 * 30.0 / np.sqrt(len(thinks))
    assert session_plan(11, 5, 4.0, 30.0) == plans[5]      # the same seed and index, the same plan


def test_each_turn_sends_the_conversation_so_far_after_the_think_time():
    background = {"clients": 1, "turns": 3, "think_s": 5.0, "message_tokens": 50}
    exp = experiment({"d": {"model": "llama31_8b", "gpu": "h100_sxm", "nodes": 1, "tp": 8,
                            "background": background}}, duration_h=5 / 60, seed=4)
    (result,) = run_all(exp)
    chats = [t for t in result.turns if t.kind == "chat"]
    sessions = sorted({t.session for t in chats})
    assert len(sessions) >= 2 and all(t.status == "ok" for t in chats)
    for s in sessions:
        mine = sorted((t for t in chats if t.session == s), key=lambda t: t.turn)
        n_turns, thinks_s = session_plan(4, s, 3.0, 5.0)
        assert len(mine) == n_turns or s == sessions[-1]     # the last may be cut by the run's end
        for before, turn in zip(mine, mine[1:]):
            history = before.context_tokens + before.new_tokens + before.output_tokens
            assert (turn.context_tokens, turn.new_tokens) == (history, 50)
            assert turn.arrival_ns == before.end_ns + round(thinks_s[turn.turn - 1] * 1e9)
            # The last turn left its prompt and reply but the last token cached, whole 16-token blocks.
            assert turn.cached_tokens == (history - 1) // 16 * 16
            assert turn.recomputed_tokens == history - turn.cached_tokens


def test_several_turns_need_a_think_time_and_a_message():
    with pytest.raises(ValueError, match="background turns 3 needs think_s, message_tokens > 0"):
        run_all(experiment({"d": {"model": "llama31_8b", "gpu": "h100_sxm", "nodes": 1, "tp": 8,
                                  "background": {"clients": 1, "turns": 3}}}))


def test_chats_alone_run_the_whole_horizon_and_keep_the_books():
    """sessions = 0: no podcast, the background's multi-turn chats (two replicas, Poisson arrivals) are the load,
    new ones arriving until the workload's duration; every turn ends ok, joules add up, bulk and per-step agree."""
    from test_engine import assert_same_run, check_invariants
    background = {"rate_per_s": 0.2, "turns": 3, "think_s": 5.0, "message_tokens": 50}
    exp = experiment({"d": {"model": "llama31_8b", "gpu": "h100_sxm", "nodes": 1, "tp": 4, "background": background}},
                     sessions=0, duration_h=1 / 60, seed=3)
    bulk = run_all(exp)
    check_invariants(bulk)
    assert_same_run(bulk, run_all(exp, bulk=False))
    (result,) = bulk
    assert result.turns and {t.kind for t in result.turns} == {"chat"}
    assert {t.replica for t in result.turns} == {0, 1}
    assert max(t.arrival_ns for t in result.turns if t.turn == 0) < 60e9   # (a chat begun goes on)
    assert max(t.turn for t in result.turns) >= 1


def test_chats_alone_need_a_background_on_every_deployment():
    from sim.config import parse
    from sim.errors import ConfigError
    dep = {"model": "llama31_8b", "gpu": "h100_sxm", "nodes": 1, "tp": 8}
    with pytest.raises(ConfigError) as e:
        parse("x.toml", {"workload": {"sessions": 0}, "deployments": {
            "a": {**dep, "background": {"clients": 1}}, "b": dep}})
    assert (e.value.table, e.value.key) == ("deployments.b", "background")
    assert "sessions = 0 leaves the chats alone" in e.value.message
