"""Collectives priced from the cluster graph, never from constants.

Each price is linear in the message size: time_s = size_bytes * seconds_per_byte + latency_s.
Link contention is counted: every route a collective uses adds its bytes to each directed link it
crosses, and a phase lasts as long as its most loaded link needs (load / bandwidth).

- Ring all-reduce over n GPUs (NCCL ring; Patarasuk & Yuan 2009): 2(n-1) steps, each moving size/n
  over every ring edge at once:
      time = 2(n-1) * max_link(edges crossing link / bandwidth) * size/n + 2(n-1) * max edge latency.
  Inside one NVSwitch node this is the textbook 2(n-1)/n * size / link_bw + 2(n-1) * hop latency.
- All-to-all over n GPUs, `size` bytes held per GPU, size/n to each peer, by pairwise exchange
  (n - 1 rounds, one peer each; Thakur, Rabenseifner & Gropp 2005): every link carries the same
  bytes as if all pairs sent at once, and each round pays one route latency:
      time = max_link(pairs crossing link / bandwidth) * size/n + (n-1) * max pair latency.
- Point-to-point: size / bottleneck bandwidth + path latency.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from hardware.cluster import Cluster


@dataclass(frozen=True)
class CollectivePrice:
    seconds_per_byte: float
    latency_s: float

    def time_s(self, size_bytes):
        """Time to move `size_bytes` (scalar or numpy array); zero bytes cost nothing."""
        return size_bytes * self.seconds_per_byte + (size_bytes > 0) * self.latency_s


FREE = CollectivePrice(0.0, 0.0)


def _max_load(cluster: Cluster, routes) -> tuple[float, float]:
    """(max over directed links of routes-crossing / bandwidth, max route latency)."""
    load = Counter()
    latency = 0.0
    for path in routes:
        load.update(path.links)
        latency = max(latency, path.latency_s)
    worst = max(count / cluster.bandwidth_of(link) for link, count in load.items())
    return worst, latency


def ring_allreduce(cluster: Cluster, group: list[str]) -> CollectivePrice:
    n = len(group)
    if n == 1:
        return FREE
    routes = [cluster.path(group[i], group[(i + 1) % n]) for i in range(n)]
    worst, hop_latency = _max_load(cluster, routes)
    steps = 2 * (n - 1)
    return CollectivePrice(steps * worst / n, steps * hop_latency)


def all_to_all(cluster: Cluster, group: list[str]) -> CollectivePrice:
    n = len(group)
    if n == 1:
        return FREE
    routes = [cluster.path(a, b) for a in group for b in group if a != b]
    worst, latency = _max_load(cluster, routes)
    return CollectivePrice(worst / n, (n - 1) * latency)


def point_to_point(cluster: Cluster, src: str, dst: str) -> CollectivePrice:
    if src == dst:
        return FREE
    path = cluster.path(src, dst)
    return CollectivePrice(1.0 / path.bandwidth_bytes_per_s, path.latency_s)
