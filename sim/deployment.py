"""Turn a validated [deployments.NAME] table into placed replicas, each with its cost model and KV pool."""
from __future__ import annotations

from dataclasses import dataclass

from hardware import catalog as hw
from hardware.cluster import Cluster
from hardware.deployment import DoesNotFit, MemoryPlan, Replica, place_replicas, plan_memory, price_replica
from hardware.catalog import PRECISION_BYTES
from sim.config import DeploymentSpec
from sim.cost import ReplicaCostModel
from sim.errors import ConfigError


@dataclass
class BuiltReplica:
    placement: Replica
    cost: ReplicaCostModel
    memory: MemoryPlan
    kv_capacity_blocks: int


@dataclass
class BuiltDeployment:
    name: str
    spec: DeploymentSpec
    cluster: Cluster
    replicas: list[BuiltReplica]


def build(path: str, name: str, spec: DeploymentSpec) -> BuiltDeployment:
    table = f"deployments.{name}"
    arch = spec.architecture
    node = hw.node_types()[spec.node]
    n_gpus = spec.nodes * node.gpus_per_node
    group = spec.tp * spec.pp
    if not spec.replicas and n_gpus % group:
        raise ConfigError(path, table, "nodes", f"{spec.nodes} nodes x {node.gpus_per_node} GPUs = {n_gpus} GPUs "
                          f"do not split into replicas of tp {spec.tp} x pp {spec.pp} = {group}; "
                          f"valid: a GPU count that is a multiple of {group}, or set replicas")
    if arch.n_heads % spec.tp:
        raise ConfigError(path, table, "tp", f"{arch.n_heads} attention heads of {spec.model} do not split over "
                          f"tp {spec.tp}; valid: a divisor of {arch.n_heads}")
    if spec.pp > arch.n_layers:
        raise ConfigError(path, table, "pp", f"pp {spec.pp} exceeds the {arch.n_layers} layers of {spec.model}")
    cluster = Cluster(hw.accelerators()[spec.gpu], node, spec.nodes,
                      hw.fabrics()[spec.fabric] if spec.nodes > 1 else None)
    try:
        placements = place_replicas(cluster, spec.replicas or n_gpus // group, spec.tp, spec.pp)
    except DoesNotFit as e:
        raise ConfigError(path, table, "replicas", f"{e}; valid: at most {n_gpus // group} replicas") from None
    replicas = []
    for placement in placements:
        cost = ReplicaCostModel(arch, cluster.accelerator, price_replica(cluster, placement),
                                spec.tp, spec.pp, spec.ep, spec.weights, PRECISION_BYTES[spec.kv_cache])
        try:
            memory = plan_memory(cluster.accelerator.hbm_bytes, spec.gpu_memory_utilization,
                                 cost.weights_bytes_per_gpu(),
                                 cost.activation_bytes_per_gpu(spec.max_batched_tokens, spec.max_seqs))
        except DoesNotFit as e:
            usable = cluster.accelerator.hbm_bytes * spec.gpu_memory_utilization
            if cost.weights_bytes_per_gpu() < usable:  # the weights fit: the step's activations do not
                raise ConfigError(path, table, "max_batched_tokens", f"{spec.model} leaves no KV cache on "
                                  f"{spec.gpu} with tp {spec.tp} x pp {spec.pp}: {e}; valid: a smaller "
                                  f"max_batched_tokens or max_seqs, or more GPUs per replica") from None
            raise ConfigError(path, table, "nodes", f"{spec.model} ({spec.weights}) does not fit on "
                              f"{spec.gpu} with tp {spec.tp} x pp {spec.pp}: {e}; valid: more GPUs per replica "
                              f"(tp x pp), smaller weights, or a larger GPU") from None
        block_bytes = cost.kv_bytes_per_token_per_gpu() * spec.block_tokens
        blocks = int(memory.kv_pool_bytes // block_bytes)
        replicas.append(BuiltReplica(placement, cost, memory, blocks))
    return BuiltDeployment(name, spec, cluster, replicas)
