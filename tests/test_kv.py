"""The paged KV pool: whole-block prefix reuse, LRU eviction, and capacity never exceeded."""
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.kv import KVPool, blocks_for


def test_blocks_and_cached_prefix_by_hand():
    assert blocks_for(1, 16) == 1 and blocks_for(16, 16) == 1 and blocks_for(17, 16) == 2
    pool = KVPool(capacity_blocks=10, block_tokens=16)
    assert pool.try_reserve(session=0, total_tokens=50)       # 4 blocks
    pool.release(0, 50, keep_tokens=49)                         # 49 tokens -> 3 whole blocks cached
    assert pool.cached == {0: 3} and pool.used_blocks == 3
    assert pool.cached_tokens(0, history_tokens=49) == 48       # 3 x 16
    assert pool.cached_tokens(0, history_tokens=40) == 32       # never more than the history's whole blocks
    assert pool.cached_tokens(1, history_tokens=40) == 0


def test_lru_eviction_takes_the_oldest_session_tail_first():
    pool = KVPool(capacity_blocks=10, block_tokens=1)
    for session, tokens in ((0, 4), (1, 4)):
        assert pool.try_reserve(session, tokens)
        pool.release(session, tokens, keep_tokens=tokens)
    assert pool.used_blocks == 8
    assert pool.try_reserve(2, 5)                               # 2 free + 3 evicted from session 0 (oldest)
    assert pool.cached == {0: 1, 1: 4} and pool.used_blocks == 10
    assert not pool.try_reserve(3, 6)                           # only 5 not reserved by running turns
    assert pool.cached == {0: 1, 1: 4}                          # a refused reservation changes nothing


@settings(max_examples=200, deadline=None)
@given(capacity=st.integers(1, 64),
       ops=st.lists(st.tuples(st.integers(0, 5), st.integers(1, 80), st.integers(0, 80)), max_size=60))
def test_capacity_is_never_exceeded(capacity, ops):
    """Against a shadow count kept here: a reservation succeeds exactly when it fits beside the
    running turns, and used blocks never exceed capacity."""
    pool = KVPool(capacity, block_tokens=4)
    running = {}  # session -> tokens reserved, kept independently of the pool
    for session, tokens, keep in ops:
        if session in running:
            total = running.pop(session)
            pool.release(session, total, min(keep, total))
        else:
            fits = blocks_for(tokens, 4) <= capacity - sum(blocks_for(t, 4) for t in running.values())
            assert pool.try_reserve(session, tokens) == fits
            if fits:
                running[session] = tokens
        assert pool.reserved_blocks == sum(blocks_for(t, 4) for t in running.values())
        assert pool.used_blocks <= capacity
        assert all(s not in running for s in pool.cached)
