"""Deployments: replicas of tp x pp GPUs placed on a cluster, their collectives, and the per-GPU memory plan.

Placement fills GPUs in graph order, a tensor-parallel group on consecutive GPUs of one node when it
fits, pipeline stages on the next GPUs (so PP crosses nodes before TP does, as practitioners place it).
Expert parallelism (ep = tp) spreads a stage's experts over the same GPUs as its TP group.
"""
from __future__ import annotations

from dataclasses import dataclass

from hardware.cluster import Cluster
from hardware.collectives import CollectivePrice, point_to_point, ring_allreduce


class DoesNotFit(ValueError):
    """A deployment that the cluster or a GPU's memory cannot hold; the message says by how much."""


@dataclass(frozen=True)
class Replica:
    index: int
    stages: tuple[tuple[str, ...], ...]  # stages[s] = the tp GPUs of pipeline stage s

    @property
    def gpus(self) -> list[str]:
        return [g for stage in self.stages for g in stage]


@dataclass(frozen=True)
class ReplicaComm:
    """Collective prices of one replica: per stage the TP all-reduce, per stage boundary the PP send."""

    tp_allreduce: tuple[CollectivePrice, ...]
    pp_send: tuple[CollectivePrice, ...]


def place_replicas(cluster: Cluster, replicas: int, tp: int, pp: int) -> list[Replica]:
    need = replicas * tp * pp
    have = len(cluster.gpus)
    if need > have:
        raise DoesNotFit(f"{replicas} replicas x tp {tp} x pp {pp} need {need} GPUs; the cluster has {have}")
    gpus = iter(cluster.gpus)
    return [
        Replica(r, tuple(tuple(next(gpus) for _ in range(tp)) for _ in range(pp)))
        for r in range(replicas)
    ]


def price_replica(cluster: Cluster, replica: Replica) -> ReplicaComm:
    stages = replica.stages
    return ReplicaComm(
        tp_allreduce=tuple(ring_allreduce(cluster, list(s)) for s in stages),
        pp_send=tuple(point_to_point(cluster, a[-1], b[0]) for a, b in zip(stages[:-1], stages[1:])),
    )


@dataclass(frozen=True)
class MemoryPlan:
    """One GPU's HBM: usable = capacity x utilisation = weights + activations + KV pool."""

    capacity_bytes: float
    usable_bytes: float
    weights_bytes: float
    activation_bytes: float

    @property
    def kv_pool_bytes(self) -> float:
        return self.usable_bytes - self.weights_bytes - self.activation_bytes


def plan_memory(capacity_bytes: float, utilization: float, weights_bytes: float,
                activation_bytes: float) -> MemoryPlan:
    plan = MemoryPlan(capacity_bytes, capacity_bytes * utilization, weights_bytes, activation_bytes)
    if plan.kv_pool_bytes <= 0:
        short_gb = -plan.kv_pool_bytes / 1e9
        raise DoesNotFit(
            f"weights {weights_bytes / 1e9:.1f} GB + activations {activation_bytes / 1e9:.1f} GB per GPU exceed "
            f"the usable {plan.usable_bytes / 1e9:.1f} GB ({utilization:.2f} x {capacity_bytes / 1e9:.0f} GB) "
            f"by {short_gb:.1f} GB")
    return plan
