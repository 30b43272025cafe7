"""The podcast: a human and the model alternate phrases for hours; everything said enters the context.

Phrase lengths are lognormal (median, sigma of log), drawn in order from a numpy Generator seeded
with (run seed, session index), so a session's phrases never depend on the simulation. The human's
are drawn in words, tokens = max(1, round(words x tokens_per_word)); the model's in tokens (their
source is a token trace), words = max(1, round(tokens / tokens_per_word)). speech_s = words /
words_per_minute x 60.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

# OpenAI tokenizer rule of thumb: 1 token ~ 3/4 of an English word ("What are tokens and how to
# count them?", OpenAI Help Center), i.e. 4/3 tokens per word.
TOKENS_PER_WORD = 4 / 3
# Conversational speech rate: the default, 150 words per minute.
WORDS_PER_MINUTE = 150.0
# Model replies: lognormal fit to the output lengths of Azure's 2023 conversation trace
# (splitwise_conv, 19,366 requests: geometric mean 151.3 tokens, log-sd 0.859).
REPLY_MEDIAN_TOKENS = 151.3
REPLY_LOG_SIGMA = 0.859


@dataclass(frozen=True)
class PodcastSpec:
    duration_s: float = 10 * 3600.0
    words_per_minute: float = WORDS_PER_MINUTE
    tokens_per_word: float = TOKENS_PER_WORD
    human_median_words: float = 40.0
    human_log_sigma: float = 0.6
    reply_median_tokens: float = REPLY_MEDIAN_TOKENS
    reply_log_sigma: float = REPLY_LOG_SIGMA


@dataclass(frozen=True)
class Phrase:
    words: int
    tokens: int
    speech_s: float


@dataclass(frozen=True)
class Exchange:
    """One round: the human's phrase and the reply the model will give to it."""

    index: int
    human: Phrase
    reply: Phrase


def _human_phrase(spec: PodcastSpec, rng: np.random.Generator) -> Phrase:
    words = max(1, int(round(rng.lognormal(np.log(spec.human_median_words), spec.human_log_sigma))))
    tokens = max(1, int(round(words * spec.tokens_per_word)))
    return Phrase(words, tokens, words / spec.words_per_minute * 60.0)


def _reply(spec: PodcastSpec, rng: np.random.Generator) -> Phrase:
    tokens = max(1, int(round(rng.lognormal(np.log(spec.reply_median_tokens), spec.reply_log_sigma))))
    words = max(1, int(round(tokens / spec.tokens_per_word)))
    return Phrase(words, tokens, words / spec.words_per_minute * 60.0)


def speech_stall_s(tokens: int, speech_s: float, decode_s: float) -> float:
    """Seconds a reply's voice waits for its tokens when the model speaks from its first token on.

    Its n tokens are sampled evenly over decode_s after the first (one every tau = decode_s / (n - 1)),
    and speaking one takes d = speech_s / n. Token k starts when the one before is spoken and it has
    arrived, p_k = max(p_(k-1) + d, k tau), so p_k = k max(d, tau) and the voice ends at
    (n - 1) max(d, tau) + d: (n - 1) max(0, tau - d) after it would have without waiting.
    """
    if tokens < 2:
        return 0.0
    return (tokens - 1) * max(0.0, decode_s / (tokens - 1) - speech_s / tokens)


def exchanges(spec: PodcastSpec, seed: int, session: int) -> Iterator[Exchange]:
    """Endless stream of exchanges for one session; the caller stops when its clock passes duration_s."""
    rng = np.random.default_rng([seed, session])
    index = 0
    while True:
        human = _human_phrase(spec, rng)
        reply = _reply(spec, rng)
        yield Exchange(index, human, reply)
        index += 1
