"""When N conversations begin (workloads.starts): by hand, against their distributions, and in a run."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import experiment, run_all
from workloads.starts import session_starts_s


def test_staggered_starts_by_hand():
    assert session_starts_s("staggered", 4, gap_s=30.0).tolist() == [0.0, 30.0, 60.0, 90.0]
    assert session_starts_s("staggered", 3).tolist() == [0.0, 0.0, 0.0]


def test_poisson_starts_have_exponential_gaps_of_the_mean_asked():
    """20,000 sessions, mean gap 12 s: an exponential's mean and standard deviation are both 12 s, so the
    sample mean lies within 3 x 12 / sqrt(19,999) = 0.25 s of 12 s (three standard errors), and the
    coefficient of variation is 1 (its standard error ~ 1/sqrt(n): within 0.03)."""
    starts = session_starts_s("poisson", 20_000, gap_s=12.0, seed=5)
    gaps = np.diff(starts)
    assert starts[0] == 0.0 and (gaps >= 0).all()
    assert abs(gaps.mean() - 12.0) < 3 * 12.0 / np.sqrt(len(gaps))
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.03)


def test_uniform_starts_fill_the_window():
    """20,000 starts uniform over [0, 3,600 s): sorted, inside the window, mean 1,800 s within three standard
    errors (3 x 3,600 / sqrt(12) / sqrt(20,000) = 22 s), and each quarter of the window holds a quarter of them
    (a binomial's sd: sqrt(20,000 x 1/4 x 3/4) = 61, so within 200)."""
    starts = session_starts_s("uniform", 20_000, window_s=3600.0, seed=9)
    assert (np.diff(starts) >= 0).all() and starts.min() >= 0.0 and starts.max() < 3600.0
    assert abs(starts.mean() - 1800.0) < 3 * 3600.0 / np.sqrt(12) / np.sqrt(len(starts))
    counts = np.histogram(starts, bins=4, range=(0.0, 3600.0))[0]
    assert (abs(counts - 5000) < 200).all()


def test_the_same_seed_gives_the_same_starts_and_another_seed_others():
    a, b = (session_starts_s("uniform", 50, window_s=600.0, seed=s) for s in (1, 1))
    assert (a == b).all() and not (a == session_starts_s("uniform", 50, window_s=600.0, seed=2)).all()


def test_each_session_begins_at_its_drawn_start():
    """A turn's conversation_s is its arrival less its session's start."""
    exp = experiment({"d": {"model": "llama31_8b", "gpu": "h100_sxm", "nodes": 1, "tp": 8}}, sessions=4,
                     duration_h=2 / 60, session_starts="uniform", session_window_s=300.0, seed=3)
    (result,) = run_all(exp)
    starts = session_starts_s("uniform", 4, window_s=300.0, seed=3)
    for t in result.turns:
        assert t.arrival_ns / 1e9 - t.conversation_s == pytest.approx(starts[t.session], abs=1e-9)
    assert {t.session for t in result.turns} == {0, 1, 2, 3}
