"""The baseline shared among the sessions a replica holds (sim.energy.baseline), by hand."""
from types import SimpleNamespace

import numpy as np
import pytest

from sim.energy.baseline import BaselineShares
from sim.engine import SessionState


def _session(index: int, start_ns: int, phrases_ns: list[int]) -> tuple[SessionState, list]:
    state = SessionState(index, 0, start_ns=start_ns)
    records = [SimpleNamespace(baseline_s=0.0) for _ in phrases_ns]
    for record, at in zip(records, phrases_ns):
        state.bills.add(record, at)
    return state, records


def _two_sessions():
    """A from 0 ns holding 3,000 KV bytes, phrases at 50 and 250 ns; B from 150 ns holding 1,000 bytes, one
    phrase at 150 ns, ended at 250 ns; half the baseline shared by KV bytes."""
    shares = BaselineShares(kv_share=0.5)
    a, (a1, a2) = _session(0, 0, [50, 250])
    b, (b1,) = _session(1, 150, [150])
    shares.start(a)
    shares.update({0: 3000})
    shares.start(b)
    shares.update({1: 1000})
    b.ended, b.ended_ns = True, 250
    shares.end(b)
    return shares, (a1, a2, b1)


@pytest.mark.parametrize("at_once", [True, False])
def test_pieces_are_shared_equally_and_by_kv_bytes_among_the_sessions_held(at_once):
    """Pieces of 1, 2 and 4 s ending at 100, 200 and 300 ns:
    100 ns: A alone (B begins at 150): all 1 s to A (0.5 equal + 0.5 by bytes), on its phrase a1;
    200 ns: A and B hold 4,000 bytes: equal 0.5 x 2 / 2 = 0.5 each; by bytes 1 s x 3,000 / 4,000 = 0.75 to A,
            0.25 to B: A 1.25 (a1), B 0.75 (b1);
    300 ns: B ended at 250: A alone, all 4 s, on a2 (arrived at 250).
    a1 = 1 + 1.25 = 2.25, a2 = 4, b1 = 0.75: the 7 s shared, none unallocated. Whether the pieces come at
    once (a run of steps) or one by one, the same floats."""
    shares, (a1, a2, b1) = _two_sessions()
    ends, seconds = np.array([100, 200, 300]), np.array([1.0, 2.0, 4.0])
    if at_once:
        shares.share(ends, seconds)
    else:
        for k in range(3):
            shares.share(ends[k:k + 1], seconds[k:k + 1])
    shares.close()
    assert (a1.baseline_s, a2.baseline_s, b1.baseline_s) == pytest.approx((2.25, 4.0, 0.75), rel=1e-15)
    assert shares.unallocated_s == 0.0
    other, records = _two_sessions()
    other.share(ends, seconds)
    other.close()
    assert [r.baseline_s for r in records] == [a1.baseline_s, a2.baseline_s, b1.baseline_s]


def test_a_piece_nobody_holds_is_unallocated_and_a_session_before_its_first_phrase_gives_it_to_it():
    """A piece of 3 s ending before anyone begins is unallocated; a session begun at 10 ns with its first
    phrase at 500 ns takes the 2 s piece ending at 100 ns on that phrase."""
    shares = BaselineShares(kv_share=0.3)
    state = SessionState(0, 0, start_ns=10)
    shares.share(np.array([5]), np.array([3.0]))
    shares.start(state)
    shares.share(np.array([100]), np.array([2.0]))
    record = SimpleNamespace(baseline_s=0.0)
    shares.close()
    state.bills.add(record, 500)
    assert shares.unallocated_s == 3.0 and record.baseline_s == 2.0


def test_kv_growing_over_a_run_is_shared_as_if_reported_step_by_step():
    """A's prompt prefills over two 1 s pieces, holding 1,000 then 3,000 bytes; B holds 1,000:
    piece 1, 2,000 bytes: A 0.25 + 0.5 x 1,000 / 2,000 = 0.5, B 0.5;
    piece 2, 4,000 bytes: A 0.25 + 0.5 x 3,000 / 4,000 = 0.625, B 0.25 + 0.125 = 0.375.
    A 1.125, B 0.875, the same floats as two steps each reporting A's bytes."""
    def run(growing: bool):
        shares = BaselineShares(kv_share=0.5)
        (a, (ra,)), (b, (rb,)) = _session(0, 0, [0]), _session(1, 0, [0])
        shares.start(a)
        shares.start(b)
        shares.update({0: 1000, 1: 1000})
        if growing:
            shares.share(np.array([100, 200]), np.array([1.0, 1.0]), {0: np.array([1000, 3000, 5000])})
        else:
            shares.share(np.array([100]), np.array([1.0]))
            shares.update({0: 3000})
            shares.share(np.array([200]), np.array([1.0]))
        shares.close()
        return ra.baseline_s, rb.baseline_s
    assert run(True) == pytest.approx((1.125, 0.875), rel=1e-15)
    assert run(True) == run(False)
