"""Deployments on a cluster: replicas of tp x dp x pp GPUs, their collectives, and the per-GPU memory plan.

A replica has `pp` pipeline stages; each stage has `dp` attention groups of `tp` GPUs (dp > 1 is
data-parallel attention: each group attends its own sequences, and the stage's tp x dp GPUs share
the experts by expert parallelism). Packed placement fills GPUs in graph order, each tp group on
consecutive GPUs of one node when it fits, the stages of a replica on the GPUs after (so PP crosses
nodes before TP does, as practitioners place it). An explicit list of GPUs places them as given;
a tp group that crosses a node boundary is allowed, priced over the links it crosses, and flagged.
"""
from __future__ import annotations

from dataclasses import dataclass

from hardware.cluster import Cluster
from hardware.collectives import (FREE, CollectivePrice, all_gather, all_reduce, all_to_all, custom_all_reduce,
                                  nvls_all_reduce, one_sided_all_to_all, point_to_point)

GIB = 2**30
# Memory a serving engine holds outside weights, activations and KV, per GPU, from vLLM's profiler on
# H100 with Llama-3-8B (vllm-project/vllm PR #10511, 'non_torch_memory'): 1.79 GiB at TP1 (CUDA context,
# cuBLAS workspaces: the framework reserve) and 3.58 GiB at TP2, i.e. 1.79 GiB more for one
# collective communicator (NCCL channel buffers and the custom all-reduce buffers).
FRAMEWORK_RESERVE_BYTES = 1.79 * GIB
COMM_BUFFER_BYTES_PER_GROUP = 1.79 * GIB


class DoesNotFit(ValueError):
    """A deployment that the cluster or a GPU's memory cannot hold; the message says by how much, and
    `plan` holds the memory plan that came out short, where there is one."""

    def __init__(self, message: str, plan: "MemoryPlan | None" = None):
        super().__init__(message)
        self.plan = plan


@dataclass(frozen=True)
class Layout:
    tp: int
    pp: int
    ep: int = 1
    dp: int = 1
    dcp: int = 1     # decode context parallelism: each tp group's KV striped over dcp of its GPUs
    cp: int = 1      # context parallelism: cp copies of the stage's tp group share each prompt and its KV

    @property
    def gpus_per_copy(self) -> int:
        """The GPUs holding one copy of a stage's weights: its dp attention groups of tp."""
        return self.tp * self.dp

    @property
    def gpus_per_stage(self) -> int:
        return self.gpus_per_copy * self.cp

    @property
    def gpus(self) -> int:
        return self.gpus_per_stage * self.pp


@dataclass(frozen=True)
class Replica:
    index: int
    layout: Layout
    stages: tuple[tuple[str, ...], ...]  # stages[s] = the cp x dp x tp GPUs of stage s, tp group by tp group

    @property
    def gpus(self) -> list[str]:
        return [g for stage in self.stages for g in stage]

    def tp_groups(self, s: int) -> list[list[str]]:
        tp, stage = self.layout.tp, self.stages[s]
        return [list(stage[i:i + tp]) for i in range(0, len(stage), tp)]

    def dcp_groups(self, s: int) -> list[list[str]]:
        """The GPUs of each tp group that hold the same heads and stripe the context between them: every
        (tp / dcp)-th rank (vLLM's cp_kv_group, e.g. ranks 0, 2, 4, 6 of TP8 with DCP4)."""
        stride = self.layout.tp // self.layout.dcp
        return [group[i::stride] for group in self.tp_groups(s) for i in range(stride)]

    def cp_groups(self, s: int) -> list[list[str]]:
        """The GPUs at the same rank of each copy of the tp group (context parallelism): they hold the same
        weights and heads, and pass KV between them."""
        tp, stage = self.layout.tp, self.stages[s]
        return [list(stage[i::tp]) for i in range(tp)]


@dataclass(frozen=True)
class ReplicaComm:
    """Collective prices of one replica, per stage: the TP all-reduce (the slowest of the stage's tp
    groups), the EP all-to-all over the stage's GPUs (dp > 1 only), per stage boundary the PP send, and per
    stage the all-to-all inside the slowest decode-context-parallel group (dcp > 1 only)."""

    tp_allreduce: tuple[CollectivePrice, ...]
    ep_all_to_all: tuple[CollectivePrice, ...]
    pp_send: tuple[CollectivePrice, ...]
    dcp_all_to_all: tuple[CollectivePrice, ...] = ()
    cp_all_gather: tuple[CollectivePrice, ...] = ()   # per stage, context parallelism's KV ring (cp > 1 only)
    cp_all_reduce: tuple[CollectivePrice, ...] = ()   # ... and its merge of decode's partial outputs
    ep_one_sided: tuple[CollectivePrice, ...] = ()    # DeepEP's low-latency kernels over the stage (if used)


def place_replicas(cluster: Cluster, replicas: int, layout: Layout, gpus: list[str] | None = None) -> list[Replica]:
    """Replicas on consecutive GPUs of the graph, or on `gpus` in the order given."""
    need = replicas * layout.gpus
    if gpus:
        unknown = [g for g in gpus if g not in cluster.graph or cluster.graph.nodes[g]["kind"] != "gpu"]
        if unknown:
            raise DoesNotFit(f"no GPU named {unknown[0]!r} in the cluster; GPUs are named like "
                             f"{cluster.gpus[0]!r} .. {cluster.gpus[-1]!r}")
        if len(set(gpus)) != len(gpus):
            raise DoesNotFit("a GPU is listed twice")
        if len(gpus) != need:
            raise DoesNotFit(f"{replicas} replicas x {layout.gpus} GPUs need {need} GPUs; {len(gpus)} are listed")
        order = list(gpus)
    else:
        if need > len(cluster.gpus):
            raise DoesNotFit(f"{replicas} replicas x tp {layout.tp} x dp {layout.dp} x pp {layout.pp} need "
                             f"{need} GPUs; the cluster has {len(cluster.gpus)}")
        order = cluster.gpus
    per_stage = layout.gpus_per_stage
    return [
        Replica(r, layout, tuple(tuple(order[(r * layout.pp + s) * per_stage:(r * layout.pp + s + 1) * per_stage])
                                 for s in range(layout.pp)))
        for r in range(replicas)
    ]


def _slowest(prices: list[CollectivePrice], size_bytes: float = 1e6) -> CollectivePrice:
    """The price of the slowest group at a 1 MB message (groups of a packed placement are alike)."""
    return max(prices, key=lambda p: float(p.time_s(size_bytes)))


def tp_all_reduce(cluster: Cluster, group: list[str], custom_floor=None, nvls: bool = False) -> CollectivePrice:
    """NCCL's all-reduce over a tp group, and where the group sits in one scale-up domain the engine's own
    kernels too: its one-shot and two-shot (`custom_floor`: group size -> their measured floor, s) and, with
    `nvls` on a GPU whose switch reduces, its NVLS kernel. The fastest runs."""
    nccl = all_reduce(cluster, group)
    if len(group) == 1 or len({cluster.node_of(g) for g in group}) > 1:
        return nccl
    algorithms = nccl.algorithms
    if custom_floor is not None:
        algorithms += custom_all_reduce(cluster, group, custom_floor(len(group))).algorithms
    if nvls and cluster.accelerator.nvls:
        algorithms += nvls_all_reduce(cluster, group).algorithms
    return CollectivePrice(algorithms)


def price_replica(cluster: Cluster, replica: Replica, custom_floor=None, one_sided_ep: bool = False,
                  nvls: bool = False) -> ReplicaComm:
    """Collective prices of `replica`; `custom_floor` (group size -> seconds) names the engine's own NVLink
    all-reduce, if it has one, and `nvls` its NVLS kernel; `one_sided_ep` prices DeepEP's low-latency
    all-to-all too."""
    stages = replica.stages
    return ReplicaComm(
        tp_allreduce=tuple(_slowest([tp_all_reduce(cluster, g, custom_floor, nvls) for g in replica.tp_groups(s)])
                           for s in range(len(stages))),
        ep_all_to_all=tuple(all_to_all(cluster, list(s)) if replica.layout.dp > 1 else FREE for s in stages),
        pp_send=tuple(point_to_point(cluster, a[-1], b[0]) for a, b in zip(stages[:-1], stages[1:])),
        dcp_all_to_all=tuple(_slowest([all_to_all(cluster, g) for g in replica.dcp_groups(s)])
                             if replica.layout.dcp > 1 else FREE for s in range(len(stages))),
        ep_one_sided=tuple(one_sided_all_to_all(cluster, list(s)) if one_sided_ep and replica.layout.dp > 1 else FREE
                           for s in stages),
        cp_all_gather=tuple(_slowest([all_gather(cluster, g) for g in replica.cp_groups(s)])
                            if replica.layout.cp > 1 else FREE for s in range(len(stages))),
        cp_all_reduce=tuple(_slowest([all_reduce(cluster, g) for g in replica.cp_groups(s)])
                            if replica.layout.cp > 1 else FREE for s in range(len(stages))),
    )


def placement_warnings(cluster: Cluster, replica: Replica) -> list[str]:
    """Tensor-parallel groups that leave their scale-up domain: two all-reduces per layer cross the fabric."""
    warnings = []
    for s in range(len(replica.stages)):
        for group in replica.tp_groups(s):
            nodes = sorted({cluster.node_of(g) for g in group})
            if len(nodes) > 1:
                price = all_reduce(cluster, group).best(1e6)
                warnings.append(f"replica {replica.index} stage {s}: tp group {group[0]}..{group[-1]} spans nodes "
                                f"{', '.join(f'n{n}' for n in nodes)}; its all-reduces cross {price.bottleneck} "
                                f"links instead of staying in one scale-up domain")
    return warnings


def comm_groups(layout: Layout) -> int:
    """Collective communicators a GPU of this layout joins: its tp group, its stage's EP group, its cp group."""
    return (layout.tp > 1) + (layout.dp > 1) + (layout.cp > 1)


@dataclass(frozen=True)
class MemoryPlan:
    """One GPU's HBM: usable (capacity x utilisation under vLLM's rule, the whole capacity under
    TensorRT-LLM's) = weights + activations + communication buffers + framework reserve + free; the KV
    pool takes `kv_share` of the free part (all of it under vLLM's rule)."""

    capacity_bytes: float
    usable_bytes: float
    weights_bytes: float
    activation_bytes: float
    comm_buffer_bytes: float
    reserve_bytes: float
    kv_share: float = 1.0

    @property
    def free_bytes(self) -> float:
        return (self.usable_bytes - self.weights_bytes - self.activation_bytes - self.comm_buffer_bytes
                - self.reserve_bytes)

    @property
    def kv_pool_bytes(self) -> float:
        free = self.free_bytes
        return free * self.kv_share if free > 0 else free


def plan_memory(capacity_bytes: float, utilization: float, weights_bytes: float, activation_bytes: float,
                comm_groups: int = 0, kv_free_fraction: float = 0.0) -> MemoryPlan:
    """vLLM sizes its KV pool as what is left of capacity x `utilization`; TensorRT-LLM, when given
    `kv_free_fraction` (kv_cache_free_gpu_mem_fraction), as that share of what the whole GPU has free
    once the weights, activations, buffers and reserve are in place."""
    usable = capacity_bytes if kv_free_fraction else capacity_bytes * utilization
    plan = MemoryPlan(capacity_bytes, usable, weights_bytes, activation_bytes,
                      comm_groups * COMM_BUFFER_BYTES_PER_GROUP, FRAMEWORK_RESERVE_BYTES, kv_free_fraction or 1.0)
    if plan.kv_pool_bytes <= 0:
        short_gb = -plan.kv_pool_bytes / 1e9
        raise DoesNotFit(
            f"weights {weights_bytes / 1e9:.1f} GB + activations {activation_bytes / 1e9:.1f} GB + buffers and "
            f"reserve {(plan.comm_buffer_bytes + plan.reserve_bytes) / 1e9:.1f} GB per GPU exceed the usable "
            f"{plan.usable_bytes / 1e9:.1f} GB ("
            + ("the whole GPU" if kv_free_fraction else f"{utilization:.2f} x {capacity_bytes / 1e9:.0f} GB")
            + f") by {short_gb:.1f} GB",
            plan)
    return plan
