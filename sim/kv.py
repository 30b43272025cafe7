"""Paged KV cache (and recurrent state) of one attention group, with prefix caching across the turns of
a session.

Capacity is counted in blocks. A sequence of T tokens occupies `Footprint.blocks(T)`: one block per
`block_tokens` tokens for the layers whose KV grows with the context, plus, rounded up to whole blocks,
the sliding-window layers' KV (at most `window_tokens` tokens) and the recurrent layers' fixed state.
For a model without growing layers one block is one sequence's state.

A running turn reserves blocks at admission: for its whole prompt and reply (`reserve`, TensorRT-LLM's
GUARANTEED_NO_EVICT: no preemption is ever needed), or for its prompt only, growing block by block as
it decodes (`on_demand`, vLLM and TensorRT-LLM's MAX_UTILIZATION; the engine preempts when it cannot
grow). When a turn ends, prefix caching keeps the session's prefix (whole blocks of tokens) resident
but evictable; a later turn reuses it and prefills only the rest. Eviction is LRU over idle sessions,
from the tail of a session's prefix, block by block; a prefix with recurrent state or window KV (kept
once, at the last whole block of the prefix) is reused and evicted whole.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np


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
    def kv_only(self) -> bool:
        """Whether a sequence holds only growing KV (no window KV, no recurrent state): whole blocks of its
        tokens, the common case, counted without the window and state arithmetic."""
        return not self.fixed_cap_bytes and self.bounded_by_tokens

    @property
    def bounded_by_tokens(self) -> bool:
        """Whether a sequence's blocks grow with its tokens (some layer's KV grows with the context)."""
        return self.kv_bytes_per_token > 0

    def bytes_array(self, tokens: np.ndarray) -> np.ndarray:
        """Bytes sequences holding `tokens` each keep (not rounded to blocks): their growing KV, their window
        KV and their recurrent state."""
        tokens = np.asarray(tokens, dtype=float)
        return np.where(tokens > 0, self.kv_bytes_per_token * tokens
                        + self.window_bytes_per_token * np.minimum(tokens, self.window_tokens) + self.state_bytes, 0.0)

    def blocks(self, tokens: int) -> int:
        if self.kv_only:
            return blocks_for(tokens, self.block_tokens) if tokens > 0 else 0
        return int(self.blocks_array(np.asarray([tokens]))[0])

    def blocks_array(self, tokens: np.ndarray) -> np.ndarray:
        """Blocks of sequences holding `tokens` each (an integer array): whole blocks of growing KV, plus
        the window KV (up to window_tokens) and the recurrent state, rounded up to whole blocks."""
        tokens = np.asarray(tokens, dtype=np.int64)
        growing = -(-tokens // self.block_tokens)
        if self.kv_only:
            return np.maximum(growing, 0)
        fixed = (self.window_bytes_per_token * np.minimum(growing * self.block_tokens, self.window_tokens)
                 + self.state_bytes)
        extra = np.ceil(fixed / self.block_bytes).astype(np.int64) if self.fixed_cap_bytes else 0
        return np.where(tokens > 0, (growing if self.bounded_by_tokens else 0) + extra, 0)


class KVPool:
    def __init__(self, capacity_blocks: int, block_tokens: int, footprint: Footprint | None = None):
        self.capacity_blocks = capacity_blocks
        self.block_tokens = block_tokens
        self.footprint = footprint or Footprint(block_tokens, 1.0)
        self.reserved_blocks = 0
        self.cached: OrderedDict[int, int] = OrderedDict()  # session -> resident prefix tokens, LRU first
        self.retired: set[int] = set()   # sessions with a cached prefix that have ended: never read again
        self.changed: set[int] = set()   # sessions whose cached prefix changed (cleared by its reader)
        self._cached_blocks = 0
        self.peak_used_blocks = 0
        self.offload = None   # the tiers its evicted prefixes go down to (sim.serving.offload.TierStore), if any

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
        return min(resident, self.whole_blocks(history_tokens))

    def whole_blocks(self, tokens: int) -> int:
        """The tokens of `tokens` that fill whole blocks: what a prefix cache can keep or reuse of them."""
        return tokens // self.block_tokens * self.block_tokens

    def _set_cached(self, session: int, tokens: int) -> None:
        self.changed.add(session)
        self._cached_blocks += self.footprint.blocks(tokens) - self.footprint.blocks(self.cached.get(session, 0))
        if tokens:
            self.cached[session] = tokens
        else:
            self.cached.pop(session, None)
            self.retired.discard(session)

    def retire(self, session: int) -> None:
        """The session has ended: its cached prefix stays resident (evicted in its LRU turn) but is never
        read again."""
        if session in self.cached:
            self.retired.add(session)

    def retired_front_blocks(self, limit: int) -> int:
        """Blocks of the ended sessions' prefixes first in line for eviction (before any live session's),
        counted up to `limit`: what a reservation can take without touching a prefix that may be read."""
        blocks = 0
        for session, tokens in self.cached.items():
            if blocks >= limit or session not in self.retired:
                break
            blocks += self.footprint.blocks(tokens)
        return blocks

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

    @property
    def unused_blocks(self) -> int:
        """Blocks neither a running turn nor a cached prefix holds."""
        return self.capacity_blocks - self.used_blocks

    @property
    def free_blocks(self) -> int:
        """Blocks no running turn holds (cached prefixes can all be evicted to make room)."""
        return self.capacity_blocks - self.reserved_blocks

    def _take(self, need: int) -> None:
        """Reserve `need` more blocks (need <= free_blocks), evicting idle sessions' prefixes LRU, each from
        its tail, block by block (down to the offload tiers, where there are)."""
        shortfall = need - (self.capacity_blocks - self.used_blocks)
        while shortfall > 0:
            victim, tokens = next(iter(self.cached.items()))
            before = self.footprint.blocks(tokens)
            kept = self._shrunk(tokens, shortfall)
            if self.offload is not None and victim not in self.retired:   # an ended session's is never read again
                self.offload.evicted(victim, tokens - kept)
            self._set_cached(victim, kept)
            shortfall -= before - self.footprint.blocks(kept)
        self.reserved_blocks += need
        self.peak_used_blocks = max(self.peak_used_blocks, self.used_blocks)
        assert self.used_blocks <= self.capacity_blocks

    def try_reserve(self, session: int, total_tokens: int) -> bool:
        """Reserve blocks for a turn holding `total_tokens`; the session's cached blocks become part of the
        reservation. Evicts other idle sessions' blocks (LRU) when needed; returns False, changing
        nothing, if the running turns hold too much for it to fit now.
        """
        need = self.footprint.blocks(total_tokens)
        if need > self.free_blocks:
            return False
        self._set_cached(session, 0)  # its resident blocks become part of the reservation
        self._take(need)
        return True

    def growth_blocks(self, held_tokens, new_tokens) -> int:
        """Blocks running turns need beyond what they hold to go from `held_tokens` to `new_tokens`
        (numbers or arrays, turn by turn); negative when they shrink."""
        return int((self.footprint.blocks_array(np.atleast_1d(new_tokens))
                    - self.footprint.blocks_array(np.atleast_1d(held_tokens))).sum())

    def try_resize(self, held_tokens, new_tokens) -> bool:
        """Grow (or shrink) running turns' reservations from `held_tokens` to `new_tokens` (numbers or
        arrays, turn by turn); False, changing nothing, if the growth does not fit beside the other
        running turns."""
        delta = self.growth_blocks(held_tokens, new_tokens)
        if delta > self.free_blocks:
            return False
        if delta > 0:
            self._take(delta)
        else:
            self.reserved_blocks += delta
        return True

    def clear(self) -> dict[int, int]:
        """A fault lost the GPUs' memory: every block is free, no prefix cached. Returns the prefix tokens each
        live (not retired) session lost; what running turns held is theirs to count."""
        lost = {key: tokens for key, tokens in self.cached.items() if key not in self.retired}
        for key in list(self.cached):
            self._set_cached(key, 0)
        self.reserved_blocks = 0
        return lost

    def release(self, session: int, total_tokens: int, keep_tokens: int) -> None:
        """End a turn: free its reservation, keeping `keep_tokens` of it (whole blocks) cached."""
        self.reserved_blocks -= self.footprint.blocks(total_tokens)
        keep = self.whole_blocks(keep_tokens)
        if keep:
            self._set_cached(session, keep)
            self.cached.move_to_end(session)
