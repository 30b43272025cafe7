"""`simrun describe`: each deployment's GPUs and where they sit, its parallel layout, memory plan,
the slowest link each collective crosses, and its KV capacity; the cluster graph as GraphML."""
from __future__ import annotations

from pathlib import Path

import networkx as nx

from hardware.collectives import CollectivePrice, point_to_point
from sim.cost import calibration
from sim.cost.step import PARTS
from sim.deployment import BuiltDeployment

ALLOCATION = {"reserve": "for prompt + reply at admission", "on_demand": "on demand, preempting when full"}


def _gpu_ranges(cluster, gpus) -> str:
    """'n0/gpu0-7, n1/gpu0-3' for a list of GPUs in order."""
    parts, run = [], []
    for g in list(gpus) + [None]:
        node = cluster.node_of(g) if g else None
        local = cluster.graph.nodes[g]["local"] if g else None
        if run and (node != run[0][0] or local != run[-1][1] + 1):
            first, last = run[0][1], run[-1][1]
            parts.append(f"n{run[0][0]}/gpu{first}" + (f"-{last}" if last != first else ""))
            run = []
        if g:
            run.append((node, local))
    return ", ".join(parts)


def _price(name: str, price: CollectivePrice, sizes: list[tuple[str, float]]) -> str:
    if not price.algorithms:
        return f"    {name}: none (one GPU)"
    times = ", ".join(f"{label} {float(price.time_s(size)) * 1e6:,.1f} us ({price.best(size).name})"
                      for label, size in sizes)
    return f"    {name}: slowest link {price.best(sizes[-1][1]).bottleneck}; {times}"


def _placements(cluster, replicas, offset: int = 0) -> list[str]:
    """A line per replica: its stages' GPUs; replicas numbered from `offset`."""
    return [f"    replica {offset + rep.placement.index}: "
            + "; ".join(f"stage {s}: {_gpu_ranges(cluster, g)}" for s, g in enumerate(rep.placement.stages))
            for rep in replicas]


def describe(built: BuiltDeployment) -> str:
    spec, cluster = built.spec, built.cluster
    arch, accel, node = spec.architecture, cluster.accelerator, cluster.node_type
    gb = 1e9
    layout = built.replicas[0].placement.layout
    kinds = ", ".join(f"{n} {arch.attention_flavor if kind == 'attention' else kind}"
                      + (f" {arch.attention_flavor} ({arch.sliding_window:,})" if kind == "window" else "")
                      for kind, n in sorted(arch.kind_counts(range(arch.n_layers)).items()))
    lines = [f"{built.name}: {arch.display_name} ({spec.weights} weights, {spec.kv_cache} KV)",
             f"  model: {arch.params_total / 1e9:,.1f}B parameters, {arch.params_active / 1e9:,.1f}B active per "
             f"token; {arch.n_layers} layers ({kinds}), {arch.n_moe_layers} of them MoE"
             + (f"; derived from {arch.base}" if arch.base else ""),
             f"  cluster: {spec.nodes} x {node.display_name} with {accel.display_name}"
             + (f"; {cluster.fabric.display_name}, {'rail-optimized' if cluster.rail_optimized else 'top-of-rack'}"
                if cluster.fabric else "") + f"; {len(cluster.gpus)} GPUs",
             f"  layout: {len(built.replicas)} replica(s) of tp {layout.tp} x dp {layout.dp}"
             f"{f' x cp {layout.cp}' if layout.cp > 1 else ''} x pp {layout.pp} "
             f"(ep {layout.ep}{f', dcp {layout.dcp}' if layout.dcp > 1 else ''}) = {layout.gpus} GPUs each"]
    if layout.pp > 1:
        lines[-1] += f"; {built.replicas[0].cost.micro_batches} micro-batch(es) in flight through the stages"
    lines += _placements(cluster, built.replicas)
    if built.prefill:   # disaggregated serving (sim.serving.disaggregation)
        first = built.prefill[0]
        pool = first.placement.layout
        lines.append(f"  prefill pool: {len(built.prefill)} replica(s) of tp {pool.tp} x dp {pool.dp} x pp {pool.pp} "
                     f"(ep {pool.ep}) = {pool.gpus} GPUs each; KV pool {first.kv_capacity_text()} per attention "
                     f"group; the replicas above decode")
        lines += _placements(cluster, built.prefill, offset=len(built.replicas))
        (send,) = point_to_point(cluster, first.placement.gpus[0], built.replicas[0].placement.gpus[0]).algorithms
        lines.append(f"  KV transfer, prefill replica {len(built.replicas)} -> replica 0, each GPU its shard: slowest "
                     f"link {send.bottleneck}, + {send.latency_s * 1e6:.2f} us; sent layer by layer under the prefill")
    if built.spares:   # hot spares ([faults] hot_spares, sim.faults)
        lines.append(f"  hot spares: {len(built.spares)} standby replica(s), weights loaded and warm")
        lines += _placements(cluster, built.spares, offset=len(built.replicas) + len(built.prefill))
    rep = built.replicas[0]
    m = rep.memory
    share = (f"x {m.usable_bytes / m.capacity_bytes:g} = {m.usable_bytes / gb:.1f} GB usable" if m.kv_share == 1.0
             else "usable")
    pool = (f"KV pool {m.kv_pool_bytes / gb:.1f} GB" if m.kv_share == 1.0
            else f"free {m.free_bytes / gb:.1f} GB, of which the KV pool takes {m.kv_share:g}: {m.kv_pool_bytes / gb:.1f} GB")
    lines.append(f"  memory per GPU: {m.capacity_bytes / gb:.1f} GB {share} = weights {m.weights_bytes / gb:.1f} "
                 f"+ activations {m.activation_bytes / gb:.1f} + communication buffers {m.comm_buffer_bytes / gb:.1f} "
                 f"+ framework reserve {m.reserve_bytes / gb:.1f} + {pool}")
    fp = rep.footprint
    per_sequence = (f"{fp.kv_bytes_per_token:,.0f} B per token" if fp.bounded_by_tokens else "no KV growing with context")
    if fp.window_bytes_per_token:
        per_sequence += f" + {fp.window_bytes_per_token:,.0f} B per token of the last {fp.window_tokens:,}"
    if fp.state_bytes:
        per_sequence += f" + {fp.state_bytes / 1e6:,.1f} MB of recurrent state"
    lines.append(f"  KV capacity: {rep.kv_capacity_text()} per attention group ({per_sequence} per sequence per GPU)"
                 f" x {layout.dp} group(s); allocated {ALLOCATION[spec.kv_allocation]}")
    if rep.offload is not None:   # the tiers below each pool (sim.serving.offload)
        tiers = "; ".join(f"{t.name} {t.capacity_tokens:,} tokens, read back at {t.bytes_per_s / gb:.1f} GB/s per GPU "
                          f"+ {t.latency_s * 1e6:.2f} us" for t in rep.offload.tiers)
        lines.append(f"  KV offload below each pool: {tiers}")
    cost = rep.cost
    lines.append(f"  engine: {cost.engine.display_name}; "
                 + ("overlap scheduler (host work under the kernels)" if cost.engine.overlap
                    else "host work between steps")
                 + (f"; CUDA graphs for decode batches up to {cost.engine.decode_graph_max_batch:,}"
                    if cost.engine.decode_graph_max_batch
                    else "; no CUDA graphs (every kernel launched by the CPU)")
                 + ("; FP8 attention in decode" if cost.fp8_decode_attention else "")
                 + (f"; API server {cost.engine.request_host_s * 1e3:g} ms per request" if spec.api_server
                    else "; no API server (token ids handed in process)"))
    lines.append(f"  scheduler: up to {spec.max_seqs:,} sequences and {spec.max_batched_tokens:,} tokens a step, prompts "
                 f"{'chunked' if spec.chunked_prefill else 'whole'}; "
                 + ((f"tokens streamed ({rep.cost.stream_token_s * 1e6:g} us of host time each)"
                     if rep.cost.stream_token_s else "tokens streamed by a process of their own (no step host time)")
                    if spec.streaming else "replies returned whole")
                 + (f"; power capped at {spec.power_cap_w:g} W per GPU" if spec.power_cap_w else ""))
    token_bytes = arch.d_model * calibration.ACTIVATION_BYTES
    sizes = [("1 token", token_bytes), (f"{spec.max_batched_tokens:,} tokens", spec.max_batched_tokens * token_bytes)]
    lines.append("  collectives (replica 0; per call, at one decode token and at a full step's budget):")
    comm = rep.cost.comm
    for s, price in enumerate(comm.tp_allreduce):
        lines.append(_price(f"stage {s} tp all-reduce", price, sizes))
    if layout.dp > 1:
        k = arch.moe.top_k
        for s, price in enumerate(comm.ep_all_to_all):
            lines.append(_price(f"stage {s} ep all-to-all (dispatch, per GPU)", price,
                                [(label, size * k / layout.tp) for label, size in sizes]))
        if spec.ep_dispatch != "normal":
            for s, price in enumerate(comm.ep_one_sided):
                lines.append(_price(f"stage {s} ep low-latency dispatch ({spec.ep_dispatch}, per GPU)", price,
                                    [(label, size * k / layout.tp) for label, size in sizes[:1]]))
    for s, price in enumerate(comm.pp_send):
        lines.append(_price(f"stage {s} -> {s + 1} pp send", price, sizes))
    lines += where_the_time_goes(built)
    dram, path = cluster.host_memory_of(rep.placement.gpus[0])
    lines.append(f"  host: {node.cpus} CPUs x {node.dram_gb_per_cpu:g} GB DRAM per node, reached over "
                 f"{node.host_link} at {path.bandwidth_bytes_per_s / gb:g} GB/s per GPU; {node.nvme_drives} NVMe "
                 f"x {node.nvme_tb_per_drive:g} TB at {node.nvme_gb_s_per_drive:g} GB/s each")
    lines += [f"  warning: {w}" for w in built.warnings]
    return "\n".join(lines)


def where_the_time_goes(built: BuiltDeployment, context_tokens: int = 8192, prefill_tokens: int = 8192) -> list[str]:
    """Lines splitting three steps of replica 0 into their parts (sim.cost.step.PARTS): a decode step at batch
    1 and at a large batch (the scheduler's cap, at most 256, spread over the attention groups), each
    sequence attending `context_tokens`, and one prefill of `prefill_tokens`."""
    spec, cost = built.spec, built.replicas[0].cost
    batch = min(spec.max_seqs * spec.dp, 256)
    steps = [("decode, batch 1", cost.step([], [], [], [context_tokens])),
             (f"decode, batch {batch}", cost.step([], [], [], [context_tokens] * batch,
                                                  decode_rank=[i % spec.dp for i in range(batch)])),
             (f"prefill of {prefill_tokens:,}", cost.step([prefill_tokens], [0], [1], []))]
    lines = [f"  where the time goes (replica 0, ms; decode at {context_tokens:,} tokens of context; parts overlap, "
             "so they add up to more than the step):",
             f"    {'step':20s} {'total':>8s} " + " ".join(f"{p:>11s}" for p in PARTS)]
    for label, step in steps:
        lines.append(f"    {label:20s} {step.duration_s[0] * 1e3:8.2f} "
                     + " ".join(f"{step.parts_s[p][0] * 1e3:11.2f}" for p in PARTS))
    return lines


def graph_path(path: Path, name: str, count: int) -> Path:
    """One GraphML file per deployment: FILE itself for one, FILE's stem + .NAME for several."""
    return path if count == 1 else path.with_name(f"{path.stem}.{name}{path.suffix or '.graphml'}")


def write_graph(built: BuiltDeployment, path: Path) -> None:
    """The cluster graph with every node and link attribute, for Gephi, yEd or Cytoscape."""
    nx.write_graphml(built.cluster.graph, path)
