"""Context policies: what the model sees each turn, what it may reuse from the prefix cache, and the
policies end to end (window, truncate, summarize, retrieve)."""
import pytest

from conftest import experiment, run_all
from sim.config import ContextSpec
from sim.context import Conversation, Segment, common_prefix_tokens, tail
from test_engine import assert_same_run, check_invariants

KIMI = {"model": "kimi_k2", "cluster": "hgx_h200_x2", "tp": 8, "pp": 2, "weights": "fp8"}


def talk(conv, turns, new=100, reply=200):
    """Serve `turns` exchanges that all succeed; return the prompts."""
    prompts = []
    for t in range(turns):
        p = conv.prompt(t, new, reply)
        conv.served(p, ("model", t), reply)
        conv.said(t, new, reply)
        prompts.append(p)
    return prompts


def test_segments_by_hand():
    a, b, c = Segment(("human", 0), 100), Segment(("model", 0), 200), Segment(("human", 1), 50)
    assert tail([a, b, c], 120) == [Segment(("cut", ("model", 0), 70), 70), c]
    assert tail([a, b, c], 1000) == [a, b, c]
    assert common_prefix_tokens([a, b, c], [a, b]) == 300
    assert common_prefix_tokens([a, c], [a, b]) == 100
    # with b's tokens given: a prompt beginning with all of b takes them at once, anything else as before
    assert common_prefix_tokens((a, b, c), (a, b), 300) == 300
    assert common_prefix_tokens((a, c), (a, b), 300) == 100 and common_prefix_tokens((a,), (a, b), 300) == 100


def test_full_history_reuses_everything_said():
    conv = Conversation(ContextSpec(), max_context=100_000)
    prompts = talk(conv, 3)
    # Turn 2 sees 2 x (100 + 200) tokens of history, all of it in the cache the turn before left.
    assert prompts[2].context_tokens == 600 and prompts[2].reusable_tokens == 600 and prompts[2].tokens == 700


def test_window_keeps_the_last_tokens_and_reuses_nothing_once_it_slides():
    conv = Conversation(ContextSpec(policy="window", window_tokens=500), max_context=100_000)
    prompts = talk(conv, 4)
    assert [p.context_tokens for p in prompts] == [0, 300, 500, 500]
    assert [p.reusable_tokens for p in prompts] == [0, 300, 0, 0]   # the front moved: rebuilt


def test_truncate_cuts_the_oldest_history_to_fit():
    conv = Conversation(ContextSpec(on_overflow="truncate"), max_context=1000)
    prompts = talk(conv, 5)
    # Room for history: 1,000 - 100 new - 200 reply = 700 tokens.
    assert [p.context_tokens for p in prompts] == [0, 300, 600, 700, 700]
    assert all(p.tokens + 200 <= 1000 for p in prompts)


def test_retrieve_adds_fresh_chunks_every_turn():
    conv = Conversation(ContextSpec(policy="retrieve", window_tokens=1000, chunks=3, chunk_tokens=64),
                        max_context=100_000)
    prompts = talk(conv, 3)
    assert all(p.retrieved_tokens == 192 for p in prompts)
    # [history][chunks][phrase]: the history is reused, this turn's chunks never are.
    assert prompts[2].context_tokens == 600 and prompts[2].reusable_tokens == 300 + 0
    assert prompts[2].tokens == 600 + 192 + 100


def test_summary_replaces_the_history_and_the_cache_is_rebuilt():
    conv = Conversation(ContextSpec(policy="summarize", every_tokens=1000, summary_tokens=150), max_context=100_000)
    talk(conv, 4)                                   # 1,200 tokens of history
    assert conv.wants_summary
    summary = conv.summary_prompt()
    assert summary.tokens == 1200 and summary.reusable_tokens == 1200   # it reads the cached history
    conv.served(summary, ("summary of", 3), 150)
    conv.summarised()
    after = conv.prompt(4, 100, 200)
    assert after.context_tokens == 150 and after.reusable_tokens == 0 and not conv.wants_summary


def context_experiment(context, **workload):
    return experiment({"d": {**KIMI, "context": context}}, duration_h=workload.pop("duration_h", 1.0), **workload)


def test_window_policy_end_to_end():
    r, = run_all(context_experiment({"policy": "window", "window_tokens": 2000}))
    check_invariants([r])
    late = [t for t in r.turns if t.conversation_s > 30 * 60]
    assert all(t.context_tokens == 2000 and t.cached_tokens == 0 for t in late)
    assert all(t.recomputed_tokens == 2000 for t in late)


def test_summarize_policy_end_to_end():
    r, = run_all(context_experiment({"policy": "summarize", "every_tokens": 3000, "summary_tokens": 300}))
    check_invariants([r])
    summaries = [t for t in r.turns if t.kind == "summary"]
    assert len(summaries) >= 3 and all(t.status == "ok" and t.output_tokens == 300 for t in summaries)
    assert all(3000 < t.context_tokens for t in summaries)
    replies = [t for t in r.turns if t.kind == "reply"]
    assert max(t.context_tokens for t in replies) <= 3000 + max(t.new_tokens + t.reply_tokens for t in replies)
    # Each summary's energy is its own row: per-turn energy still sums to the cluster's.
    assert all(t.dynamic_prefill_j > 0 and t.dynamic_decode_j > 0 for t in summaries)


def test_retrieve_policy_end_to_end():
    spec = {"policy": "retrieve", "window_tokens": 4000, "chunks": 4, "chunk_tokens": 256,
            "retrieval_s": 0.05, "retrieval_j": 30.0}
    r, = run_all(context_experiment(spec, duration_h=0.5))
    check_invariants([r])
    for t in r.turns:
        assert t.retrieved_tokens == 1024 and t.energy_retrieval_j == 30.0
        assert t.cached_tokens <= t.context_tokens        # the chunks are never cached
        assert t.recomputed_tokens == t.context_tokens - t.cached_tokens   # history only, chunks apart
        assert t.first_token_ns - t.arrival_ns > 50_000_000   # the retrieval comes first


def test_truncate_policy_never_overflows():
    r, = run_all(experiment({"d": {"model": "llama31_8b", "gpu": "h100_sxm", "nodes": 1, "tp": 8,
                                   "max_context_tokens": 4000, "context": {"on_overflow": "truncate"}}},
                            duration_h=1.0))
    check_invariants([r])
    assert all(t.status == "ok" for t in r.turns)
    assert max(t.context_tokens + t.new_tokens + t.reply_tokens for t in r.turns) <= 4000
    assert any(t.context_tokens + t.new_tokens + t.reply_tokens > 3900 for t in r.turns)


@pytest.mark.parametrize("context", [{"policy": "summarize", "every_tokens": 2000, "summary_tokens": 200},
                                     {"policy": "retrieve", "window_tokens": 1000, "chunks": 2, "chunk_tokens": 100,
                                      "retrieval_s": 0.2}])
def test_policies_give_identical_tables_in_bulk_and_per_step(context):
    exp = experiment({"d": {"model": "llama31_8b", "gpu": "h100_sxm", "nodes": 1, "tp": 4, "context": context}},
                     duration_h=0.4, sessions=3, session_stagger_s=5.0)
    bulk = run_all(exp)
    check_invariants(bulk)
    assert_same_run(bulk, run_all(exp, bulk=False))


@pytest.mark.parametrize("context, message", [
    ({"policy": "window"}, "policy 'window' needs window_tokens > 0"),
    ({"policy": "summarize", "every_tokens": 100, "summary_tokens": 200}, "must be below every_tokens"),
    ({"policy": "forget"}, "Input should be 'full', 'window', 'summarize' or 'retrieve'"),
])
def test_bad_policies_name_the_table(context, message):
    from sim.config import Experiment, _where
    from sim.errors import pydantic_message
    with pytest.raises(Exception) as e:
        Experiment.from_dict({"deployments": {"d": {**KIMI, "context": context}}})
    err = e.value.errors()[0]
    # A key inside the context table is named there; a rule over the whole table names the table.
    assert _where(err["loc"]) in (("deployments.d.context", "policy"), ("deployments.d", "context"))
    assert message in pydantic_message(err)
