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
