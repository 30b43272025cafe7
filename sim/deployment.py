"""Turn a validated [deployments.NAME] table into placed replicas, each with its cost model and KV pools."""
from __future__ import annotations

from dataclasses import dataclass, field

from hardware import catalog as hw
from hardware.catalog import PRECISION_BYTES
from hardware.cluster import Cluster
from hardware.deployment import (DoesNotFit, Layout, MemoryPlan, Replica, comm_groups, place_replicas,
                                 placement_warnings, plan_memory, price_replica)
from sim.config import DeploymentSpec
from sim.cost.engines import engines
from sim.cost.step import ReplicaCostModel
from sim.errors import ConfigError
from sim.kv import Footprint
from sim.serving.offload import OffloadPlan, plan_offload


@dataclass
class BuiltReplica:
    placement: Replica
    cost: ReplicaCostModel
    memory: MemoryPlan
    footprint: Footprint         # what one sequence occupies, in KV blocks
    kv_capacity_blocks: int      # per attention group (dp > 1: the replica holds dp such pools)
    offload: OffloadPlan | None = None   # the KV tiers below each pool (sim.serving.offload)

    @property
    def kv_capacity_tokens(self) -> int | None:
        """Tokens one attention group's pool holds; None when its blocks count sequences (recurrent)."""
        fp = self.footprint
        return self.kv_capacity_blocks * fp.block_tokens if fp.bounded_by_tokens else None

    def kv_capacity_text(self) -> str:
        tokens = self.kv_capacity_tokens
        return f"{tokens:,} tokens" if tokens is not None else f"the state of {self.kv_capacity_blocks:,} sequences"


@dataclass
class BuiltDeployment:
    name: str
    spec: DeploymentSpec
    cluster: Cluster
    replicas: list[BuiltReplica]
    warnings: list[str]
    prefill: list[BuiltReplica] = field(default_factory=list)   # its prefill pool (disaggregated serving)
    spares: list[BuiltReplica] = field(default_factory=list)    # hot spares: standby replicas (sim.faults)

    @property
    def places(self) -> list[BuiltReplica]:
        """Every replica in the engines' order: the serving ones, the prefill pool's, the hot spares."""
        return self.replicas + self.prefill + self.spares

    @property
    def pools(self) -> list[str]:
        """What each of `places` serves: `both` prefill and decode, `decode`, `prefill`, or a `spare`."""
        return (["decode" if self.prefill else "both"] * len(self.replicas) + ["prefill"] * len(self.prefill)
                + ["spare"] * len(self.spares))


def cluster_of(spec: DeploymentSpec) -> Cluster:
    return Cluster(hw.accelerators()[spec.gpu], hw.node_types()[spec.node], spec.nodes,
                   hw.fabrics()[spec.fabric] if spec.nodes > 1 else None, spec.rail_optimized)


def cost_model(spec: DeploymentSpec, cluster: Cluster, replica: Replica, layout: Layout) -> ReplicaCostModel:
    """The step cost model of one placed replica, with its engine's profile and its collectives priced."""
    engine = engines()[spec.engine].with_overrides(overlap=spec.overlap_scheduler, cuda_graphs=spec.cuda_graphs,
                                                   moe_kernels_visit_experts=spec.moe_kernels_visit_experts)
    comm = price_replica(cluster, replica, engine.allreduce_floor, one_sided_ep=spec.ep_dispatch != "normal",
                         nvls=engine.nvls_all_reduce)
    return ReplicaCostModel(spec.architecture, cluster.accelerator, comm, layout, spec.weights,
                            PRECISION_BYTES[spec.kv_cache], power_cap_w=spec.power_cap_w, streaming=spec.streaming,
                            engine=engine, mtp_draft_tokens=spec.mtp_draft_tokens,
                            mtp_accept_length=spec.tokens_per_verify_step,
                            redundant_experts=spec.redundant_experts, expert_imbalance=spec.expert_imbalance,
                            ep_dispatch=spec.ep_dispatch, two_batch_overlap=spec.two_batch_overlap,
                            micro_batches=spec.micro_batches or layout.pp)


def _memory_plan(spec: DeploymentSpec, cost: ReplicaCostModel, layout: Layout) -> MemoryPlan:
    accel = cost.accel
    return plan_memory(accel.hbm_bytes, spec.gpu_memory_utilization, cost.weights_bytes_per_gpu(),
                       cost.activation_bytes_per_gpu(spec.max_batched_tokens, spec.max_seqs), comm_groups(layout),
                       spec.kv_cache_free_fraction)


def _fits(spec: DeploymentSpec, cluster: Cluster, layout: Layout) -> bool:
    """Whether a layout's weights, activations, buffers and some KV fit one GPU (a packed replica)."""
    if layout.gpus > len(cluster.gpus):
        return False
    (replica,) = place_replicas(cluster, 1, layout)
    cost = cost_model(spec, cluster, replica, layout)
    try:
        _memory_plan(spec, cost, layout)
    except DoesNotFit:
        return False
    return True


def smallest_fitting(spec: DeploymentSpec, cluster: Cluster) -> Layout | None:
    """The layout with the fewest GPUs (then the least pipeline depth) that fits: tp a divisor of the
    heads within one node, pp up to the layers, ep and dp as given."""
    arch, node_gpus = spec.architecture, cluster.node_type.gpus_per_node
    tps = [t for t in range(1, node_gpus + 1) if arch.n_heads % t == 0 and node_gpus % t == 0]
    candidates = sorted(((tp * spec.dp * pp, pp, tp) for tp in tps for pp in range(1, arch.n_layers + 1)
                         if tp * spec.dp * pp <= len(cluster.gpus)))
    for _, pp, tp in candidates:
        layout = Layout(tp, pp, tp * spec.dp if spec.ep > 1 else 1, spec.dp)
        if arch.moe and (arch.moe.n_experts + spec.redundant_experts) % layout.ep:
            continue
        if _fits(spec, cluster, layout):
            return layout
    return None


def _does_not_fit(path: str, table: str, spec: DeploymentSpec, cluster: Cluster, problem: DoesNotFit) -> ConfigError:
    plan = problem.plan
    if plan.weights_bytes + plan.comm_buffer_bytes + plan.reserve_bytes < plan.usable_bytes:
        # the weights, buffers and reserve fit: the step's activations do not
        return ConfigError(path, table, "max_batched_tokens", f"{spec.model} leaves no KV cache on {spec.gpu} "
                           f"with tp {spec.tp} x dp {spec.dp} x pp {spec.pp}: {problem}; valid: a smaller "
                           f"max_batched_tokens or max_seqs, or more GPUs per replica")
    smallest = smallest_fitting(spec, cluster)
    hint = (f"the smallest layout that fits is tp {smallest.tp} x dp {smallest.dp} x pp {smallest.pp} "
            f"({smallest.gpus} GPUs)" if smallest else
            f"no layout fits on these {len(cluster.gpus)} GPUs: more nodes, smaller weights, or a larger GPU")
    return ConfigError(path, table, "pp", f"{spec.model} ({spec.weights}) does not fit on {spec.gpu} with tp "
                       f"{spec.tp} x dp {spec.dp} x pp {spec.pp}: {problem}; valid: {hint}")


def build(path: str, name: str, spec: DeploymentSpec, spares: int = 0) -> BuiltDeployment:
    """The deployment's replicas placed on its cluster, and its prefill pool's, if it has one, on the first GPUs;
    `spares` more replicas after them stand by as hot spares (of a cluster the replicas fill, the last ones)."""
    table = f"deployments.{name}"
    cluster = cluster_of(spec)
    pool = spec.prefill_pool
    prefill, warnings = (_build_pool(path, f"{table}.prefill", pool, cluster, cluster.gpus, pool.replicas)
                         if pool else ([], []))
    first_free = sum(len(rep.placement.gpus) for rep in prefill)
    wanted = spec.replicas + spares if spec.replicas else 0
    replicas, decode_warnings = _build_pool(path, table, spec, cluster, cluster.gpus[first_free:], wanted,
                                            explicit=bool(spec.gpus))
    if spares and len(replicas) <= spares:
        raise ConfigError(path, "faults", "hot_spares", f"{spares} hot spares leave deployment {name} no replica to "
                          f"serve (its cluster holds {len(replicas)}); valid: fewer spares, or more nodes")
    serving = len(replicas) - spares
    return BuiltDeployment(name, spec, cluster, replicas[:serving], warnings + decode_warnings, prefill,
                           replicas[serving:])


def _build_pool(path: str, table: str, spec: DeploymentSpec, cluster: Cluster, free: list[str], replicas: int,
                explicit: bool = False) -> tuple[list[BuiltReplica], list[str]]:
    """`replicas` replicas of the spec's layout packed on the GPUs `free` (0: as many as fit them), or on the
    spec's own list of GPUs (`explicit`), each with its cost model, memory plan and KV pools."""
    arch = spec.architecture
    layout = Layout(spec.tp, spec.pp, spec.ep, spec.dp, spec.dcp, spec.cp)
    if arch.n_heads % spec.tp:
        raise ConfigError(path, table, "tp", f"{arch.n_heads} attention heads of {spec.model} do not split over "
                          f"tp {spec.tp}; valid: a divisor of {arch.n_heads}")
    n_gpus = len(free)
    if explicit:
        replicas = replicas or len(spec.gpus) // layout.gpus
    else:
        if not replicas and n_gpus % layout.gpus:
            raise ConfigError(path, table, "nodes", f"{n_gpus} GPUs do not split into replicas of tp {spec.tp} x "
                              f"dp {spec.dp} x cp {spec.cp} x pp {spec.pp} = {layout.gpus}; valid: a GPU count that "
                              f"is a multiple of {layout.gpus}, or set replicas")
        replicas = replicas or n_gpus // layout.gpus
    if spec.pp > arch.n_layers:
        raise ConfigError(path, table, "pp", f"pp {spec.pp} exceeds the {arch.n_layers} layers of {spec.model}")
    try:
        taken = len(cluster.gpus) - n_gpus      # by a prefill pool
        if taken and (not replicas or replicas * layout.gpus > n_gpus):
            wanted = max(replicas, 1)
            raise DoesNotFit(f"{wanted} replica{'s' if wanted > 1 else ''} x {layout.gpus} GPUs need "
                             f"{wanted * layout.gpus} GPUs; the prefill pool leaves {n_gpus} of the cluster's "
                             f"{len(cluster.gpus)}")
        placements = place_replicas(cluster, replicas, layout, list(spec.gpus) if explicit
                                    else free[:replicas * layout.gpus] if taken else None)
    except DoesNotFit as e:
        key = "gpus" if explicit else "replicas"
        raise ConfigError(path, table, key, f"{e}; valid: " + (
            f"{layout.gpus} distinct GPU names per replica" if explicit
            else f"at most {n_gpus // layout.gpus} replicas" if n_gpus >= layout.gpus
            else "more nodes, or a smaller prefill pool")) from None
    built, warnings = [], []
    for placement in placements:
        cost = cost_model(spec, cluster, placement, layout)
        try:
            memory = _memory_plan(spec, cost, layout)
        except DoesNotFit as e:
            raise _does_not_fit(path, table, spec, cluster, e) from None
        footprint = cost.footprint(spec.block_tokens)
        offload = plan_offload(spec.kv_offload, cluster, placement.gpus[0], memory.kv_pool_bytes,
                               footprint.kv_bytes_per_token, spec.dram_kv_ratio)
        built.append(BuiltReplica(placement, cost, memory, footprint,
                                  int(memory.kv_pool_bytes // footprint.block_bytes), offload))
        warnings += placement_warnings(cluster, placement)
    return built, warnings
