"""Paged KV cache of one replica, with prefix caching across the turns of a session.

Capacity is counted in blocks of `block_tokens` tokens. A running turn reserves blocks for its whole
prompt and reply at admission (so no preemption is needed). When a turn ends, prefix caching keeps the
session's full blocks resident but evictable; a later turn reuses them and prefills only the rest.
Eviction is LRU over idle sessions, from the tail of a session's prefix, block by block.
"""
from __future__ import annotations

from collections import OrderedDict


def blocks_for(tokens: int, block_tokens: int) -> int:
    return -(-tokens // block_tokens)


class KVPool:
    def __init__(self, capacity_blocks: int, block_tokens: int):
        self.capacity_blocks = capacity_blocks
        self.block_tokens = block_tokens
        self.reserved_blocks = 0
        self.cached: OrderedDict[int, int] = OrderedDict()  # session -> resident full blocks, LRU first
        self.peak_used_blocks = 0

    @property
    def used_blocks(self) -> int:
        return self.reserved_blocks + sum(self.cached.values())

    @property
    def capacity_tokens(self) -> int:
        return self.capacity_blocks * self.block_tokens

    def cached_tokens(self, session: int, history_tokens: int) -> int:
        """Tokens of `history_tokens` the session still has resident (whole blocks only)."""
        resident = self.cached.get(session, 0) * self.block_tokens
        return min(resident, history_tokens // self.block_tokens * self.block_tokens)

    def try_reserve(self, session: int, total_tokens: int) -> bool:
        """Reserve blocks for a turn of `total_tokens` (prompt + reply); the session's cached blocks
        become part of the reservation.

        Evicts other idle sessions' blocks (LRU) when needed; returns False, changing nothing, if the
        running turns hold too much for it to fit now.
        """
        need = blocks_for(total_tokens, self.block_tokens)
        if need > self.capacity_blocks - self.reserved_blocks:  # cached blocks can all be evicted
            return False
        self.cached.pop(session, None)  # its resident blocks become part of the reservation
        shortfall = need - (self.capacity_blocks - self.used_blocks)
        while shortfall > 0:
            victim, blocks = next(iter(self.cached.items()))
            taken = min(blocks, shortfall)
            shortfall -= taken
            if taken == blocks:
                del self.cached[victim]
            else:
                self.cached[victim] = blocks - taken
        self.reserved_blocks += need
        self.peak_used_blocks = max(self.peak_used_blocks, self.used_blocks)
        assert self.used_blocks <= self.capacity_blocks
        return True

    def release(self, session: int, total_tokens: int, keep_tokens: int) -> None:
        """End a turn: free its reservation, keeping `keep_tokens` of it (whole blocks) cached."""
        self.reserved_blocks -= blocks_for(total_tokens, self.block_tokens)
        keep = keep_tokens // self.block_tokens
        if keep:
            self.cached[session] = keep
            self.cached.move_to_end(session)
