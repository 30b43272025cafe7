"""Collectives priced from the cluster graph, never from constants.

An algorithm's time is linear in the message size: time_s = size_bytes * seconds_per_byte + latency_s.
Link contention is counted: every route an algorithm uses adds its share of bytes to each directed
link it crosses, and a phase lasts as long as its most loaded link needs (load / bandwidth). A
collective offers the algorithms NCCL/RCCL choose between and costs the fastest at each size, so small
messages pay the algorithm's steps x hop latency and large ones the bottleneck link's bandwidth.
Bytes cross a scale-up link at the accelerator's scaleup_collective_share of its bandwidth: the slope of
NCCL's measured all-reduce time against size from 8 MiB, on one 8x H100 and one 8x A100 node
(scripts/fit_collectives.py; NCCL's sends on that H100 node reach about the same, ~360 of 450 GB/s,
Vidur's send_recv.csv); below, a scale-up link's "bandwidth" is that share of it. The same fit's intercept
(20.7 us on H100) is left out: it is where a straight line through 8-64 MiB meets zero size, not a
measured cost of small messages (the profile's sub-MiB all-reduces take 7-45 us on 2 H100s and 19-43 us on
8, scattered, with no floor there), and serving engines reduce activations with their own NVLink kernels
rather than NCCL up to a size limit (FasterTransformer's custom all-reduce, TensorRT-LLM's ancestor: 48
MiB, CUSTOM_AR_SIZE_THRESHOLD; vLLM's: 8 MiB, more in later versions). So simrun prices NCCL's all-reduce
from 8 MiB 5-27% short at the median (scripts/fit_collectives.py prints it), and the engines' kernels at
NCCL's per-byte rate: no profile of those kernels is in our sources.

- Ring all-reduce over n GPUs (Patarasuk & Yuan 2009): 2(n-1) steps, each moving size/n over every ring
  edge at once. Across nodes NCCL runs one ring per channel, each entering and leaving a node through
  a different GPU and so a different NIC; with c channels (c = the group's GPUs per node, 1 inside one
  node) each ring carries size/c:
      time = 2(n-1) * max_link(sum over rings of 1/c crossing it / bandwidth) * size/n
           + 2(n-1) * max edge latency.
  Inside one NVSwitch node: 2(n-1)/n * size / link_bw + 2(n-1) * hop latency.
- Direct all-reduce (reduce-scatter then all-gather by pairwise exchange, the form that uses every
  link of a fully connected XGMI mesh): 2 phases of size/n to every peer, n-1 rounds each:
      time = 2 * max_link(pairs crossing / bandwidth) * size/n + 2(n-1) * max pair latency.
- All-gather of `size` gathered bytes: the ring or the direct form of one phase, (n-1) steps of size/n.
- All-to-all, `size` bytes held per GPU, size/n to each peer, by pairwise exchange (n-1 rounds, one
  peer each; Thakur, Rabenseifner & Gropp 2005): every link carries the bytes of the pairs crossing it:
      time = max_link(pairs crossing / bandwidth) * size/n + (n-1) * max pair latency.
  Its bottleneck is the bisection the group actually has: NVLink inside a node, NICs across nodes.
- One-sided all-to-all (DeepEP's low-latency kernels): the pairwise all-to-all's link load, but every
  message posted at once, so one pair latency instead of n - 1.
- Point-to-point: size / bottleneck bandwidth + path latency.
- Custom all-reduce inside one scale-up domain (the engines' own NVLink kernels, used instead of NCCL for
  small messages; sgl-project/sglang PR #2904, vLLM PR #24111): one-shot, every rank reads all n - 1
  peers' whole buffers and reduces locally, time = floor + (n-1) * size / link bandwidth; two-shot,
  reduce-scatter then all-gather through peer memory, time = 2 * floor + 2(n-1)/n * size / link bandwidth.
  The floor (a tiny message's latency: barrier, kernel launch) is the engine's, measured; vLLM PR #24111's
  TP6 H100 row checks the two forms (one-stage / two-stage 13 / 15 us at 0.5 MB, 70 / 37 us at 4 MB).
- NVLS all-reduce inside one NVSwitch domain whose switch reduces (NVLink SHARP multimem; vLLM's kernel
  for mid-size messages): time = floor + NVLS_LINK_LOAD * size / link bandwidth, both measured (below).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import groupby

import numpy as np

from hardware.cluster import Cluster


# An NVLS (NVLink SHARP multimem) all-reduce kernel on H100: 13 us at 0.5 MiB and 31 us at 4 MiB over 6 GPUs
# (vLLM PR #24111, torch symmetric memory's multimem_all_reduce): 10.43 us + 4.905 ps per byte. One group
# size measured; the floor is held for every n. Over an H100's NVLink at NCCL's achieved share (450 GB/s x
# 0.786) the slope is 4.905e-12 x 353.7e9 = 1.735 bytes across a GPU's link per byte reduced (NVLink SHARP's
# ideal is 1: each GPU sends its buffer to the switch once and receives the sum once).
NVLS_FLOOR_S = 10.43e-6
NVLS_LINK_LOAD = 1.735


@dataclass(frozen=True)
class Algorithm:
    name: str
    seconds_per_byte: float
    latency_s: float
    bottleneck: str          # the most loaded link's kind and bandwidth, e.g. "fabric 50 GB/s"

    def time_s(self, size_bytes):
        return size_bytes * self.seconds_per_byte + (np.asarray(size_bytes) > 0) * self.latency_s


@dataclass(frozen=True)
class CollectivePrice:
    """The algorithms a collective may run; it costs the fastest at each size. No algorithm: free."""

    algorithms: tuple[Algorithm, ...] = ()
    # Times of the sizes asked so far (a step's collectives come in few sizes: its token counts).
    _times_s: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def time_s(self, size_bytes):
        """Time to move `size_bytes` (scalar or numpy array); zero bytes cost nothing."""
        if isinstance(size_bytes, float | int):
            known = self._times_s.get(size_bytes)
            if known is None:
                known = self._times_s[size_bytes] = self._fastest_s(size_bytes)
            return known
        return self._fastest_s(size_bytes)

    def _fastest_s(self, size_bytes):
        if not self.algorithms:
            return size_bytes * 0.0
        return np.minimum.reduce([a.time_s(size_bytes) for a in self.algorithms])

    def best(self, size_bytes: float) -> Algorithm:
        return min(self.algorithms, key=lambda a: float(a.time_s(size_bytes)))


FREE = CollectivePrice()


def _load(cluster: Cluster, routes: list[tuple[object, float]]) -> tuple[float, float, str]:
    """Routes (path, weight) -> (max over directed links of weight crossing / achieved bandwidth
    (Cluster.achieved_bandwidth_of), max route latency, the bottleneck link described)."""
    load = Counter()
    latency = 0.0
    for path, weight in routes:
        for link in path.links:
            load[link] += weight
        latency = max(latency, path.latency_s)
    link, worst = max(((link, w / cluster.achieved_bandwidth_of(link)) for link, w in load.items()),
                      key=lambda x: x[1])
    bottleneck = f"{cluster.kind_of(link)} {cluster.bandwidth_of(link) / 1e9:g} GB/s"
    share = cluster.achieved_bandwidth_of(link) / cluster.bandwidth_of(link)
    return worst, latency, bottleneck + (f" x {share:g} achieved" if share < 1.0 else "")


def rings(cluster: Cluster, group: list[str]) -> list[list[str]]:
    """NCCL-style channels: one ring per rotation of each node's GPUs, so each ring crosses between
    nodes at different GPUs (and NICs); inside a single node one ring is all there is."""
    by_node = [list(g) for _, g in groupby(group, key=cluster.node_of)]
    if len(by_node) == 1:
        return [group]
    channels = max(len(g) for g in by_node)
    return [[gpu for g in by_node for gpu in g[k % len(g):] + g[:k % len(g)]] for k in range(channels)]


def _ring(cluster: Cluster, group: list[str], steps: int, name: str) -> Algorithm:
    n, channels = len(group), rings(cluster, group)
    routes = [(cluster.path(r[i], r[(i + 1) % n]), 1.0 / len(channels)) for r in channels for i in range(n)]
    worst, latency, bottleneck = _load(cluster, routes)
    return Algorithm(name, steps * worst / n, steps * latency, bottleneck)


def _pairwise(cluster: Cluster, group: list[str], phases: int, name: str, rounds: int | None = None) -> Algorithm:
    """Every pair exchanges size/n, `phases` times; each phase takes `rounds` latencies (n - 1: one peer
    a round)."""
    n = len(group)
    routes = [(cluster.path(a, b), 1.0) for a in group for b in group if a != b]
    worst, latency, bottleneck = _load(cluster, routes)
    return Algorithm(name, phases * worst / n, phases * (n - 1 if rounds is None else rounds) * latency, bottleneck)


def all_reduce(cluster: Cluster, group: list[str]) -> CollectivePrice:
    n = len(group)
    if n == 1:
        return FREE
    return CollectivePrice((_ring(cluster, group, 2 * (n - 1), "ring"),
                            _pairwise(cluster, group, 2, "direct")))


def _peer_link(cluster: Cluster, group: list[str]) -> tuple[float, str]:
    """Seconds per byte over one GPU's scale-up link when it reads from (or sends to) all its peers at once,
    their bytes sharing the busiest route; and that route described."""
    worst, _, bottleneck = _load(cluster, [(cluster.path(group[0], b), 1.0) for b in group[1:]])
    return worst / (len(group) - 1), bottleneck


def custom_all_reduce(cluster: Cluster, group: list[str], floor_s: float) -> CollectivePrice:
    """An engine's one-shot and two-shot NVLink all-reduce over `group` (inside one scale-up domain), with
    `floor_s` its measured latency on a tiny message; bytes cross the GPU's busiest peer route at NCCL's
    achieved share of it (no measurement of the custom kernels' share is in our sources)."""
    n = len(group)
    if n == 1:
        return FREE
    per_byte, bottleneck = _peer_link(cluster, group)
    return CollectivePrice((Algorithm("one-shot", (n - 1) * per_byte, floor_s, bottleneck),
                            Algorithm("two-shot", 2 * (n - 1) / n * per_byte, 2 * floor_s, bottleneck)))


def nvls_all_reduce(cluster: Cluster, group: list[str]) -> CollectivePrice:
    """An engine's NVLS all-reduce kernel over `group`, inside one scale-up domain whose switch reduces (the
    caller checks): NVLS_FLOOR_S plus NVLS_LINK_LOAD bytes per byte over the GPU's busiest peer route."""
    if len(group) == 1:
        return FREE
    per_byte, bottleneck = _peer_link(cluster, group)
    return CollectivePrice((Algorithm("nvls", NVLS_LINK_LOAD * per_byte, NVLS_FLOOR_S, bottleneck),))


def all_gather(cluster: Cluster, group: list[str]) -> CollectivePrice:
    n = len(group)
    if n == 1:
        return FREE
    return CollectivePrice((_ring(cluster, group, n - 1, "ring"), _pairwise(cluster, group, 1, "direct")))


def all_to_all(cluster: Cluster, group: list[str]) -> CollectivePrice:
    if len(group) == 1:
        return FREE
    return CollectivePrice((_pairwise(cluster, group, 1, "pairwise"),))


def one_sided_all_to_all(cluster: Cluster, group: list[str]) -> CollectivePrice:
    """DeepEP's low-latency dispatch and combine: each GPU posts all its messages at once by GPU-initiated
    RDMA (to peers in its own node over NVLink since DeepEP PR #173), so the pairs' latencies overlap
    instead of adding up round by round: the links' load as in the pairwise all-to-all, one pair latency."""
    if len(group) == 1:
        return FREE
    return CollectivePrice((_pairwise(cluster, group, 1, "one-sided", rounds=1),))


def point_to_point(cluster: Cluster, src: str, dst: str) -> CollectivePrice:
    if src == dst:
        return FREE
    path = cluster.path(src, dst)
    worst, latency, bottleneck = _load(cluster, [(path, 1.0)])
    return CollectivePrice((Algorithm("send", worst, latency, bottleneck),))
