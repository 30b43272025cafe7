"""Background chat traffic that shares a deployment with the podcast.

Each chat session's first request has a prompt and reply lengths of a row drawn at random from Azure's
public LLM inference trace of a conversation service (2023, published with the
Splitwise paper, ISCA 2024; the 19,366 requests as processed in microsoft/vidur, MIT License), shipped
as workloads/data/azure_conv_2023.csv; a longer session's later turns send a message of a set length after
a think time, the conversation so far in the prompt, and take their reply length from the next row drawn
(session_plan). Sessions arrive at a rate (Poisson) or are kept at a concurrency (each client starts its next
session when its last one ended), from the start of the run until the last podcast ends.
"""
from __future__ import annotations

import functools
from collections.abc import Iterator
from importlib import resources

import numpy as np

from workloads.traces import read_lengths

TRACE = "azure_conv_2023.csv"


@functools.cache
def trace_lengths() -> tuple[np.ndarray, np.ndarray]:
    """Prompt and reply tokens of every request in the trace."""
    with resources.files("workloads").joinpath("data", TRACE).open() as f:
        return read_lengths(f)


def chats(seed: int) -> Iterator[tuple[int, int]]:
    """(prompt tokens, reply tokens) of chat after chat, rows of the trace drawn at random (seeded)."""
    prompts, replies = trace_lengths()
    rng = np.random.default_rng([seed, 2])
    while True:
        for row in rng.integers(0, len(prompts), 1024).tolist():
            yield int(prompts[row]), int(replies[row])


def session_plan(seed: int, index: int, mean_turns: float, mean_think_s: float) -> tuple[int, list[float]]:
    """A chat session's turns (geometric with mean `mean_turns`: after each reply the user stops with
    probability 1 / mean_turns) and the user's think time before each turn after the first (exponential, mean
    `mean_think_s`), drawn from a Generator seeded with (seed, 5, index)."""
    rng = np.random.default_rng([seed, 5, index])
    turns = int(rng.geometric(1.0 / mean_turns)) if mean_turns > 1 else 1
    return turns, rng.exponential(mean_think_s, turns - 1).tolist() if turns > 1 else []


def gaps_s(seed: int, rate_per_s: float) -> Iterator[float]:
    """Seconds between Poisson arrivals at `rate_per_s`."""
    rng = np.random.default_rng([seed, 3])
    while True:
        yield from rng.exponential(1.0 / rate_per_s, 1024).tolist()
