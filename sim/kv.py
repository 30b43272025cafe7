"""Paged KV cache (and recurrent state) of one attention group, with prefix caching across the turns of
a session.

Capacity is counted in blocks. A sequence of T tokens occupies `Footprint.blocks(T)`: one block per
`block_tokens` tokens for the layers whose KV grows with the context, plus, rounded up to whole blocks,
the sliding-window layers' KV (at most `window_tokens` tokens) and the recurrent layers' fixed state.
For a model without growing layers one block is one sequence's state.

A running turn reserves blocks for its whole prompt and reply at admission (so no preemption is
needed). When a turn ends, prefix caching keeps the session's prefix (whole blocks of tokens) resident
but evictable; a later turn reuses it and prefills only the rest. Eviction is LRU over idle sessions,
from the tail of a session's prefix, block by block; a prefix with recurrent state or window KV (kept
once, at the last whole block of the prefix) is reused and evicted whole.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass


def blocks_for(tokens: int, block_tokens: int) -> int:
    return -(-tokens // block_tokens)


@dataclass(frozen=True)
class Footprint:
    """Bytes one sequence keeps on one GPU: kv_bytes_per_token x tokens + window_bytes_per_token x
    min(tokens, window_tokens) + state_bytes, in blocks of `block_bytes`."""

    block_tokens: int
    kv_bytes_per_token: float
    window_bytes_per_token: float = 0.0
    window_tokens: int = 0
    state_bytes: float = 0.0

    @property
    def fixed_cap_bytes(self) -> float:
        return self.window_bytes_per_token * self.window_tokens + self.state_bytes

    @property
    def block_bytes(self) -> float:
        """A block of growing KV, or (no growing layers) one sequence's window KV and state."""
        return self.block_tokens * self.kv_bytes_per_token if self.kv_bytes_per_token else self.fixed_cap_bytes

    @property
    def prefix_divisible(self) -> bool:
        """Whether a cached prefix can be cut shorter and still be reused: not when recurrent state or
        window KV exist only at the prefix's end."""
        return self.fixed_cap_bytes == 0

    @property
    def bounded_by_tokens(self) -> bool:
        """Whether a sequence's blocks grow with its tokens (some layer's KV grows with the context)."""
        return self.kv_bytes_per_token > 0

    def blocks(self, tokens: int) -> int:
        if tokens <= 0:
            return 0
        growing = blocks_for(tokens, self.block_tokens)
        fixed = (self.window_bytes_per_token * min(growing * self.block_tokens, self.window_tokens)
                 + self.state_bytes)
        return (growing if self.bounded_by_tokens else 0) + (math.ceil(fixed / self.block_bytes) if fixed else 0)


class KVPool:
    def __init__(self, capacity_blocks: int, block_tokens: int, footprint: Footprint | None = None):
        self.capacity_blocks = capacity_blocks
        self.block_tokens = block_tokens
        self.footprint = footprint or Footprint(block_tokens, 1.0)
        self.reserved_blocks = 0
        self.cached: OrderedDict[int, int] = OrderedDict()  # session -> resident prefix tokens, LRU first
        self._cached_blocks = 0
        self.peak_used_blocks = 0

    @property
    def used_blocks(self) -> int:
        return self.reserved_blocks + self._cached_blocks

    @property
    def capacity_tokens(self) -> int | None:
        """Tokens the pool holds when they all grow KV; None when only sequences count (recurrent)."""
        return self.capacity_blocks * self.block_tokens if self.footprint.bounded_by_tokens else None

    def cached_tokens(self, session: int, history_tokens: int) -> int:
        """Tokens of `history_tokens` the session still has resident (whole blocks only). With recurrent
        state or window KV, only the whole resident prefix can be reused: the state exists at its end."""
        resident = self.cached.get(session, 0)
        if not self.footprint.prefix_divisible:
            return resident if history_tokens >= resident else 0
        return min(resident, history_tokens // self.block_tokens * self.block_tokens)

    def _set_cached(self, session: int, tokens: int) -> None:
        self._cached_blocks += self.footprint.blocks(tokens) - self.footprint.blocks(self.cached.get(session, 0))
        if tokens:
            self.cached[session] = tokens
        else:
            self.cached.pop(session, None)

    def _shrunk(self, tokens: int, free_blocks: int) -> int:
        """The longest prefix (whole blocks) shorter than `tokens` whose blocks free at least `free_blocks`."""
        if not self.footprint.prefix_divisible:
            return 0   # a shortened prefix would have no state at its new end: evict it whole
        fp, lo, hi = self.footprint, 0, tokens // self.block_tokens - 1   # answer in blocks of tokens
        keep = fp.blocks(tokens) - free_blocks
        while lo < hi:                                  # largest k with blocks(k x block_tokens) <= keep
            mid = (lo + hi + 1) // 2
            if fp.blocks(mid * self.block_tokens) <= keep:
                lo = mid
            else:
                hi = mid - 1
        return lo * self.block_tokens if fp.blocks(lo * self.block_tokens) <= keep else 0

    def try_reserve(self, session: int, total_tokens: int) -> bool:
        """Reserve blocks for a turn of `total_tokens` (prompt + reply); the session's cached blocks
        become part of the reservation.

        Evicts other idle sessions' blocks (LRU) when needed; returns False, changing nothing, if the
        running turns hold too much for it to fit now.
        """
        need = self.footprint.blocks(total_tokens)
        if need > self.capacity_blocks - self.reserved_blocks:  # cached blocks can all be evicted
            return False
        self._set_cached(session, 0)  # its resident blocks become part of the reservation
        shortfall = need - (self.capacity_blocks - self.used_blocks)
        while shortfall > 0:
            victim, tokens = next(iter(self.cached.items()))
            before = self.footprint.blocks(tokens)
            kept = self._shrunk(tokens, shortfall)
            self._set_cached(victim, kept)
            shortfall -= before - self.footprint.blocks(kept)
        self.reserved_blocks += need
        self.peak_used_blocks = max(self.peak_used_blocks, self.used_blocks)
        assert self.used_blocks <= self.capacity_blocks
        return True

    def release(self, session: int, total_tokens: int, keep_tokens: int) -> None:
        """End a turn: free its reservation, keeping `keep_tokens` of it (whole blocks) cached."""
        self.reserved_blocks -= self.footprint.blocks(total_tokens)
        keep = keep_tokens // self.block_tokens * self.block_tokens
        if keep:
            self._set_cached(session, keep)
            self.cached.move_to_end(session)
