"""The paged KV pool: whole-block prefix reuse, LRU eviction, and capacity never exceeded."""
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.kv import Footprint, KVPool, blocks_for


def test_blocks_and_cached_prefix_by_hand():
    assert blocks_for(1, 16) == 1 and blocks_for(16, 16) == 1 and blocks_for(17, 16) == 2
    pool = KVPool(capacity_blocks=10, block_tokens=16)
    assert pool.try_reserve(session=0, total_tokens=50)       # 4 blocks
    pool.release(0, 50, keep_tokens=49)                         # 49 tokens -> 3 whole blocks cached
    assert pool.cached == {0: 48} and pool.used_blocks == 3
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
    assert pool.cached == {0: 1, 1: 4} and pool.used_blocks == 10   # cached tokens, one per block
    assert not pool.try_reserve(3, 6)                           # only 5 not reserved by running turns
    assert pool.cached == {0: 1, 1: 4}                          # a refused reservation changes nothing


def test_footprints_with_windows_and_recurrent_state_by_hand():
    """Gemma-3-like: 100 B per token grows, 400 B per token for the last 64 tokens; blocks of 16 tokens
    (1,600 B). 40 tokens: 3 growing blocks + 48 x 400 = 19,200 B -> 12 blocks. 1,000 tokens: 63 blocks +
    64 x 400 = 25,600 B -> 16 blocks, the window capped."""
    windowed = Footprint(16, 100.0, window_bytes_per_token=400.0, window_tokens=64)
    assert windowed.blocks(40) == 3 + 12 and windowed.blocks(1000) == 63 + 16
    # Recurrent only (no KV grows): one block is one sequence's 2 MB state, whatever its length.
    recurrent = Footprint(16, 0.0, state_bytes=2e6)
    assert recurrent.block_bytes == 2e6 and recurrent.blocks(1) == recurrent.blocks(10**6) == 1
    pool = KVPool(capacity_blocks=2, block_tokens=16, footprint=recurrent)
    assert pool.capacity_tokens is None
    assert pool.try_reserve(0, 500_000) and pool.try_reserve(1, 900_000)
    assert not pool.try_reserve(2, 10)                          # two states fill it
    pool.release(0, 500_000, keep_tokens=499_999)
    assert pool.cached_tokens(0, 499_999) == 499_984            # whole 16-token blocks of the prefix
    assert pool.try_reserve(2, 10) and pool.cached == {}        # evicting a state frees its whole block


FOOTPRINTS = [Footprint(4, 1.0), Footprint(4, 10.0, 30.0, 12), Footprint(4, 0.0, state_bytes=100.0),
              Footprint(4, 5.0, 0.0, 0, 45.0)]


@settings(max_examples=200, deadline=None)
@given(capacity=st.integers(1, 64), footprint=st.sampled_from(FOOTPRINTS),
       ops=st.lists(st.tuples(st.integers(0, 5), st.integers(1, 80), st.integers(0, 80)), max_size=60))
def test_capacity_is_never_exceeded(capacity, footprint, ops):
    """Against a shadow count kept here: a reservation succeeds exactly when it fits beside the
    running turns, and used blocks never exceed capacity, for growing, windowed and recurrent footprints."""
    pool = KVPool(capacity, block_tokens=4, footprint=footprint)
    blocks_for = footprint.blocks
    running = {}  # session -> tokens reserved, kept independently of the pool
    for session, tokens, keep in ops:
        if session in running:
            total = running.pop(session)
            pool.release(session, total, min(keep, total))
        else:
            fits = blocks_for(tokens) <= capacity - sum(blocks_for(t) for t in running.values())
            assert pool.try_reserve(session, tokens) == fits
            if fits:
                running[session] = tokens
        assert pool.reserved_blocks == sum(blocks_for(t) for t in running.values())
        assert pool.used_blocks == pool.reserved_blocks + sum(footprint.blocks(t) for t in pool.cached.values())
        assert pool.used_blocks <= capacity
        assert all(s not in running for s in pool.cached)


def test_a_prefix_with_state_is_reused_and_evicted_whole():
    """Recurrent state exists only at the end of the cached prefix: a turn reuses all of it or nothing,
    and eviction never leaves a shortened prefix without its state (review finding)."""
    pool = KVPool(capacity_blocks=300, block_tokens=16, footprint=Footprint(16, 100.0, state_bytes=16_000))
    assert pool.try_reserve(1, 3200)
    pool.release(1, 3200, keep_tokens=3199)                    # 199 whole blocks: 3,184 tokens + the state
    assert pool.cached_tokens(1, 5000) == 3184
    assert pool.cached_tokens(1, 3000) == 0                      # a shorter prefix has no state stored
    assert pool.try_reserve(2, 1600)                             # needs part of session 1's blocks ...
    assert 1 not in pool.cached                                  # ... so session 1's prefix goes whole


def test_a_running_turn_grows_and_shrinks_block_by_block():
    pool = KVPool(capacity_blocks=10, block_tokens=16)
    assert pool.try_reserve(0, 20) and pool.try_reserve(1, 40)     # 2 + 3 blocks held
    pool.release(1, 40, keep_tokens=40)                           # 2 whole blocks (32 tokens) cached
    assert pool.free_blocks == 8 and pool.used_blocks == 4
    assert pool.try_resize(20, 32)                                # same 2 blocks: nothing taken
    assert pool.try_resize(32, 140)                  # 9 blocks: 7 more; 6 are free, 1 is session 1's cache tail
    assert pool.reserved_blocks == 9 and pool.cached == {1: 16} and pool.used_blocks == 10
    assert not pool.try_resize(140, 161)                          # 11 blocks > 10: refused, nothing changes
    assert pool.reserved_blocks == 9 and pool.cached == {1: 16}
    assert pool.try_resize(140, 17) and pool.reserved_blocks == 2  # a run cut short gives blocks back


def test_ended_sessions_prefixes_first_in_line_can_be_taken_without_touching_a_live_one():
    """Cached, LRU first: ended A (32 tokens, 2 blocks), ended B (48, 3), live C (16, 1), ended D (16, 1).
    Up to C, a reservation can take 2 + 3 = 5 blocks of ended prefixes; D, behind the live C, does not
    count; the count stops once it reaches its limit."""
    pool = KVPool(capacity_blocks=10, block_tokens=16)
    for session, tokens in ((0, 32), (1, 48), (2, 16), (3, 16)):
        assert pool.try_reserve(session, tokens)
        pool.release(session, tokens, keep_tokens=tokens)
    for ended in (0, 1, 3):
        pool.retire(ended)
    pool.retire(4)                                         # no prefix: nothing to retire
    assert pool.retired == {0, 1, 3} and pool.used_blocks == 7
    assert pool.retired_front_blocks(limit=100) == 5
    assert pool.retired_front_blocks(limit=1) == 2         # A alone reaches the limit
    assert pool.try_reserve(5, 16 * 8)                     # 8 blocks: 3 unused + A and B evicted
    assert pool.cached == {2: 16, 3: 16} and pool.retired == {3}
    assert pool.retired_front_blocks(limit=100) == 0       # C, live, is first in line now
