"""The podcast generator: seeded, and its arithmetic (tokens per word, speech time) by hand."""
import itertools

import numpy as np
import pytest

from workloads.podcast import REPLY_LOG_SIGMA, REPLY_MEDIAN_TOKENS, PodcastSpec, exchanges


def take(n, spec=PodcastSpec(), seed=1, session=0):
    return list(itertools.islice(exchanges(spec, seed, session), n))


def test_same_seed_same_phrases_sessions_differ():
    assert take(50) == take(50)
    assert take(50) != take(50, session=1)
    assert take(50) != take(50, seed=2)


def test_tokens_and_speech_time_by_hand():
    spec = PodcastSpec(words_per_minute=150, tokens_per_word=4 / 3)
    for ex in take(200, spec):
        assert ex.human.tokens == max(1, round(ex.human.words * 4 / 3))
        assert ex.reply.words == max(1, round(ex.reply.tokens * 3 / 4))
        for phrase in (ex.human, ex.reply):
            assert phrase.speech_s == pytest.approx(phrase.words / 150 * 60)  # 150 words = 60 s
    assert take(1, spec)[0].index == 0


def test_lengths_follow_the_configured_lognormals():
    spec = PodcastSpec(human_median_words=40, human_log_sigma=0.6)
    sample = take(4000, spec)
    human = np.log([e.human.words for e in sample])
    reply = np.log([e.reply.tokens for e in sample])
    assert np.exp(np.median(human)) == pytest.approx(40, rel=0.05)
    assert human.std() == pytest.approx(0.6, rel=0.05)
    assert np.exp(np.median(reply)) == pytest.approx(REPLY_MEDIAN_TOKENS, rel=0.05)
    assert reply.std() == pytest.approx(REPLY_LOG_SIGMA, rel=0.05)


def test_reply_fit_matches_the_azure_conversation_trace():
    """The constants were fitted to ../shared/traces/splitwise_conv.csv; refit and compare."""
    import pathlib
    trace = pathlib.Path(__file__).parents[2] / "shared" / "traces" / "splitwise_conv.csv"
    if not trace.exists():
        pytest.skip("shared traces not beside the checkout")
    decode = np.loadtxt(trace, delimiter=",", skiprows=1, usecols=2)
    assert np.exp(np.log(decode).mean()) == pytest.approx(REPLY_MEDIAN_TOKENS, rel=0.001)
    assert np.log(decode).std() == pytest.approx(REPLY_LOG_SIGMA, rel=0.001)


def test_speech_stall_by_hand():
    """100 tokens spoken in 40 s (0.4 s each) but decoded one every 0.101 s after the first: the voice never
    waits. Spoken in 5 s (0.05 s each) and decoded one every 0.1 s: token k is ready at 0.1 k, so the voice
    ends at 99 x 0.1 + 0.05 = 9.95 s instead of 5 s, a stall of 99 x (0.1 - 0.05) = 4.95 s. One token: none."""
    from workloads.podcast import speech_stall_s
    assert speech_stall_s(100, 40.0, 10.0) == 0.0
    assert speech_stall_s(100, 5.0, 9.9) == pytest.approx(4.95, rel=1e-12)
    assert speech_stall_s(1, 0.1, 0.0) == 0.0


@pytest.mark.parametrize("speech", ["streamed", "after_reply"])
def test_the_model_speaks_from_its_first_token_and_the_human_waits_for_its_last_word(speech):
    """Llama-3.1-8B in BF16 on one A100 decodes a token every ~8 ms; at 1,000 words a minute and 10 tokens a
    word the voice needs one every 6 ms, so streamed speech stalls by the formula's seconds. The human's next
    phrase arrives when the model's speech ends plus the human's own speaking time; with speech after the
    reply the model starts at its last token and never stalls."""
    from conftest import experiment, run_all
    from workloads.podcast import speech_stall_s
    exp = experiment({"d": {"model": "llama31_8b", "gpu": "a100_80gb", "nodes": 1, "tp": 1, "replicas": 1}},
                     duration_h=0.05, words_per_minute=1000, tokens_per_word=10, speech=speech)
    (result,) = run_all(exp)
    turns = [t for t in result.turns if t.kind == "reply"]
    phrases = exchanges(exp.workload.podcast_spec(), exp.run.seed, 0)
    assert all(t.status == "ok" for t in turns) and len(turns) > 3
    next(phrases)
    for turn, following, phrase in zip(turns, turns[1:], phrases):
        row = turn.row(result.boundary)
        decode_s = (turn.finish_ns - turn.first_token_ns) / 1e9
        if speech == "streamed":
            assert row["time_to_speech_s"] == row["ttft_s"]
            assert row["stall_s"] == speech_stall_s(turn.output_tokens, turn.reply_speech_s, decode_s) > 0
        else:
            assert row["time_to_speech_s"] == row["e2e_s"] and row["stall_s"] == 0.0
        speech_end_s = turn.speech_start_ns / 1e9 + turn.reply_speech_s + row["stall_s"]
        assert following.arrival_ns / 1e9 == pytest.approx(speech_end_s + phrase.human.speech_s, abs=2e-9)
