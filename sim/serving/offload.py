"""KV offload below HBM (DESIGN.md, 'Serving behaviour to model': offload to CPU DRAM / NVMe with transfer cost).

Each KV pool (one attention group's) may have tiers below it: the host's DRAM, then local NVMe. When the pool
evicts a cached prefix's tail blocks (LRU, sim.kv), they are written to the first tier instead of being lost;
a tier that fills moves its least recently written prefix, whole, to the next tier, and the last tier drops
it. So a conversation's prefix lies in order down the tiers: HBM [0, h), DRAM [h, m), NVMe [m, e). When its
next turn is admitted, the part of [h, e) its prompt shares is read back into the blocks the turn reserves
(what it did not share is dropped), and the turn starts prefilling once that read is done, paying

  reload_s = sum over tiers read of (tokens x KV bytes per token per GPU / bytes_per_s + latency_s),

each GPU reading its own shard over its own path (the graph's: host link and DRAM; or NVMe drives, host link),
tier after tier. By default the turn waits for the whole read before it prefills (vLLM's offloading connector;
LMCache's default, use_layerwise false); with `kv_load_layerwise` layer i's KV is read while layer i - 1
computes the turn's first chunk (LMCache's use_layerwise, SGLang HiCache, vLLM-Ascend's layerwise KV pool), so
the turn waits max(read / layers, read - that chunk's time alone).

Reading back is a choice against prefilling the same tokens again (swap or recompute, by cost): of the spans the
tiers offer, the turn reads those of the first k tiers and prefills the rest again, k the cheapest by its wait
plus that prefill's time alone on the replica (in the engine's token budget's chunks). With PCIe or NVMe and a
model of any size, reading wins but for a few tokens behind a slow drive's latency. Prefixes of ended sessions are
never read again and are dropped, not offloaded. Sizes per GPU: DRAM `dram_kv_ratio` x the GPU's KV pool (SGLang
--hicache-ratio: 'the ratio of the size of host KV cache memory pool to the size of device pool', 2 in its best
practices), at most the GPU's share of its node's DRAM; NVMe the GPU's share of its node's drives.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

TIERS = {"none": (), "dram": ("dram",), "dram_nvme": ("dram", "nvme")}


@dataclass(frozen=True)
class TierLink:
    """A tier below HBM as one GPU sees it: the tokens it holds, and how fast a GPU reads its shard back."""

    name: str
    capacity_tokens: int
    bytes_per_s: float
    latency_s: float


@dataclass(frozen=True)
class OffloadPlan:
    tiers: tuple[TierLink, ...]
    kv_bytes_per_token: float     # one GPU's (the fullest's) KV bytes per token

    def slowest(self, tokens_per_tier: list[int]) -> str | None:
        """The lowest tier a read took tokens from (None: it took none)."""
        return next((t.name for t, n in zip(reversed(self.tiers), reversed(tokens_per_tier)) if n), None)

    def read_s(self, tier: TierLink, tokens: int) -> float:
        """Seconds for every GPU to read its shard of `tokens` tokens back from `tier` (0 for none)."""
        return tokens * self.kv_bytes_per_token / tier.bytes_per_s + tier.latency_s if tokens else 0.0


def read_or_recompute(plan: OffloadPlan, offered: list[int], prefill_s, overlap_s: float, layers: int,
                      layerwise: bool) -> tuple[list[int], float]:
    """Of `offered` tokens per tier (in prompt order), what to read back, and the wait for it: the first k tiers'
    spans, k minimising wait(k) + prefill_s(tokens of the tiers after k, their place k), where wait(k) is the read
    of the first k, or with `layerwise` max(read / layers, read - overlap_s). Ties read more."""
    best = None
    for k in range(len(offered), -1, -1):
        read = offered[:k] + [0] * (len(offered) - k)
        read_s = sum(plan.read_s(tier, n) for tier, n in zip(plan.tiers, read))
        wait_s = max(read_s / layers, read_s - overlap_s) if layerwise and read_s else read_s
        rest = sum(offered[k:])
        total_s = wait_s + (prefill_s(rest, k) if rest else 0.0)
        if best is None or total_s < best[0]:
            best = (total_s, read, wait_s)
    return best[1], best[2]


@dataclass
class TierStore:
    """The tiers below one KV pool: per tier, each key's span of tokens (LRU first) and the total held."""

    plan: OffloadPlan
    spans: list[OrderedDict] = field(default_factory=list)
    used: list[int] = field(default_factory=list)

    def __post_init__(self):
        self.spans = [OrderedDict() for _ in self.plan.tiers]
        self.used = [0] * len(self.plan.tiers)

    def evicted(self, key: int, tokens: int) -> None:
        """The pool evicted `tokens` tokens from the tail of `key`'s HBM prefix: they head its first tier's span."""
        if self.spans:
            self._put(0, key, tokens)

    def _put(self, level: int, key: int, tokens: int) -> None:
        spans = self.spans[level]
        spans[key] = spans.get(key, 0) + tokens
        spans.move_to_end(key)
        self.used[level] += tokens
        while self.used[level] > self.plan.tiers[level].capacity_tokens:
            victim, held = spans.popitem(last=False)
            self.used[level] -= held
            if level + 1 < len(self.spans):
                self._put(level + 1, victim, held)   # whole, below: its span there follows this one's

    def take(self, key: int, resident: int, reusable: int) -> list[int]:
        """A turn of `key` is admitted with `resident` tokens found in HBM and the first `reusable` of its prompt
        shared: the tokens each tier gives back (its spans within [resident, reusable), in order down the
        tiers); the key's spans are gone from every tier after (what the prompt does not share is stale)."""
        got, start = [], resident
        for level, spans in enumerate(self.spans):
            held = spans.pop(key, 0)
            self.used[level] -= held
            given = max(0, min(held, reusable - start))
            got.append(given)
            start = start + held if given == held else reusable   # a span cut short ends what follows it
        return got

    def clear(self, keep_nvme: bool, broken: set[int]) -> dict[int, int]:
        """A fault ended the engine's process: its DRAM tier (in the process's memory) is gone, and with its host
        the NVMe tier too unless `keep_nvme`. A key's NVMe span, the tail of its prefix, stays only when none of
        the prefix before it was lost: not in HBM (`broken`, the keys that lost KV there), not in DRAM. Returns
        the tokens each key lost."""
        lost: dict[int, int] = {}
        for level, tier in enumerate(self.plan.tiers):
            spans = self.spans[level]
            if tier.name == "nvme" and keep_nvme:
                gone = [key for key in spans if key in broken or key in lost]
            else:
                gone = list(spans)
            for key in gone:
                tokens = spans.pop(key)
                self.used[level] -= tokens
                lost[key] = lost.get(key, 0) + tokens
        return lost

    def tokens_of(self, key: int) -> list[int]:
        return [spans.get(key, 0) for spans in self.spans]


def plan_offload(kind: str, cluster, gpu: str, kv_pool_bytes_per_gpu: float, kv_bytes_per_token: float,
                 dram_kv_ratio: float) -> OffloadPlan | None:
    """The tiers `kind` puts below the KV pool of a replica whose first GPU is `gpu` (its GPUs alike), sized
    and priced on the cluster graph (the module docstring); None for `none`."""
    names = TIERS[kind]
    if not names:
        return None
    node = cluster.node_type
    _, host = cluster.host_memory_of(gpu)
    tiers = []
    for name in names:
        if name == "dram":
            budget = min(dram_kv_ratio * kv_pool_bytes_per_gpu, node.cpus * node.dram_gb_per_cpu * 1e9 / node.gpus_per_node)
            tiers.append(TierLink(name, int(budget // kv_bytes_per_token), host.bandwidth_bytes_per_s, host.latency_s))
        else:
            _, path = cluster.drive_of(gpu)
            bytes_per_s = cluster.nvme_read_bytes_per_s(gpu)
            budget = node.nvme_drives * node.nvme_tb_per_drive * 1e12 / node.gpus_per_node
            tiers.append(TierLink(name, int(budget // kv_bytes_per_token), bytes_per_s, path.latency_s))
    return OffloadPlan(tuple(tiers), kv_bytes_per_token)
