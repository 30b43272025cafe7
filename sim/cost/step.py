"""The physics of one engine step on one replica (DESIGN.md, 'The physics of one engine step').

A step is one forward pass over a batch: prefill chunks (c new tokens after p cached) and decode
sequences (one token attending L + 1 positions). Each pipeline stage s has dp attention groups of tp
GPUs (dp = 1 unless attention is data-parallel); each sequence belongs to one group. Per GPU of a
group g, with T_g its tokens and T all the stage's tokens:

  linear FLOPs  = 2 x (always-on weights per GPU x T_g + routed-expert weights per token / (tp dp) x T)
                  (+ LM head 2 x vocab x d / tp per sampled token); always-on = attention, norms, dense
                  FFNs, shared experts, router; norms, MLA down-projections and the router are held
                  whole on every rank, K/V heads copied when tp > KV, the rest split over tp
  attention FLOPs = per layer kind (sim.layers): a prefill chunk's attended positions or a decode
                  token's L + 1 (capped by a window or DSA's top-k), or a recurrent layer's state update
                  per token; over the group's sequences, / tp; DSA's indexer over every position is
                  computed whole on every rank
  weight bytes  = (always-on weights + experts read) on this GPU x bytes per weight; the experts (and
                  redundant copies) sit in ep groups of etp = tp dp / ep GPUs, each expert sliced over
                  its group; distinct experts hit per MoE layer = E x (1 - (1 - k/E)^T); the busiest
                  group (E[max] of binomial hits) sets the step's time, the mean GPU its bytes and power
  cache bytes   = (positions read, capped likewise + tokens written) x KV bytes per token per layer per
                  GPU (/ dcp: decode context parallelism stripes the copies a tp group would hold), or a
                  recurrent layer's state read and written once per sequence
  rates         = peak x measured matmul share x COMPUTE_EFFICIENCY (x the engine's share for
                  block-scaled FP8 weights); routed experts x w / (w + GEMM_HALF_WIDTH), w = min(d,
                  expert width / etp); attention kernels at their share of the measured matmul rate by
                  keys attended and head dim (sim.cost.attention), in BF16, or FP8 in decode where the
                  engine runs it; weights the GPU has no tensor cores for are multiplied in BF16
  kernel time   = max over groups of [roofline(linear compute, weight bytes) + roofline(attention
                  compute, KV bytes)] + kernels launched x KERNEL_FLOOR_S (sim.cost.kernels)
                  + MoE layers x local experts x MOE_EXPERT_VISIT_S where the engine's kernels walk them,
                  roofline the softened max (roofline_s)
  collectives   = TP all-reduces of the busiest group's T_g x d activations, 2 per layer, at the fastest
                  of NCCL's algorithms and the engine's one-shot / two-shot NVLink kernels (their floors
                  measured); with dp > 1, per MoE layer one all-reduce (after attention) instead of two,
                  and an all-to-all dispatch (FP8) and combine (BF16) of each token to the distinct ep
                  groups of its top-k experts (dispatch_destinations), or with DeepEP's low-latency
                  kernels (ep_dispatch) to each of its top-k experts off its own GPU, every message posted
                  at once (one pair latency, not n - 1); with dcp > 1, per attention layer
                  an all-to-all in each dcp group of the gathered queries and partial outputs; with
                  cp > 1, per attention layer the ring's all-gather of the KV a prompt attends beyond
                  the attention time it hides under, and an all-reduce of decodes' partial outputs

Context parallelism (cp > 1) runs cp copies of the tp group: a prompt's tokens, query-key pairs and KV
writes are split over them (T above counts one copy's share), a decode token runs on every copy, and
every sequence's KV is striped over them.

With attention tensor-parallel (dp = 1) every rank holds every token, so expert parallelism combines the
experts' outputs with the same all-reduce (vLLM's and TensorRT-LLM's path); what ep changes is which
expert bytes each GPU reads and how many experts its kernels walk. Collectives are priced on the cluster
graph (hardware.collectives).

GPU time = sum over stages of (kernel time + collectives) + PP sends between stages (a batch crosses the
stages in turn); with micro_batches > 1 the batch's sequences are dealt into micro-batches in flight
together and the step lasts the pipeline's period (`pipelined`); outside a CUDA graph (any step with a
prefill chunk, decode batches past the engine's capture size) at least kernels x EAGER_LAUNCH_S, the
CPU's launches. With two-batch overlap (dp > 1) the batch runs as two micro-batches, each priced alone,
and GPU time = max(kernel time of both, collectives of both). Host time = HOST_STEP_S + the engine's
per-sequence time + STREAM_TOKEN_HOST_S per token streamed, of the busiest attention group (each
data-parallel rank schedules, and captures its CUDA graphs, for its own batch). Step time = GPU time +
host time, or with an overlap scheduler max(GPU time, host time + launches). With multi-token prediction
a decode sequence verifies 1 + k tokens after k draft passes of one layer and the LM head, and each row
is one emitted token: the step over its mean accepted length.
Step energy = sum over GPUs of P_idle x step time + the dynamic energy of their FLOPs, HBM bytes and
collectives (sim.cost.power); where the kernels would draw more than the board's limit (TDP, or a power
cap) they stretch until they do not (parts_s['power_limit']). Each sequence's share of the dynamic energy
is the energy of the FLOPs and bytes it caused.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hardware.catalog import PRECISION_BYTES, Accelerator
from hardware.deployment import Layout, ReplicaComm
from sim.cost import calibration
from sim.cost.attention import attention_curve, share_at
from sim.cost.engines import EngineProfile, engines
from sim.cost.kernels import STEP_KERNELS, layer_kernels
from sim.cost.power import BoardPower
from sim.kv import Footprint
from sim.layers import ATTENTION, positions_attended
from sim.models import Architecture


@dataclass(frozen=True)
class Stage:
    layers: range
    n_moe: int
    kinds: tuple[tuple[str, int], ...]   # (mixer kind, layers of it) in this stage
    first: bool
    last: bool
    kernels: int                         # kernels one GPU launches for this stage in a forward pass

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def n_dense(self) -> int:
        return self.n_layers - self.n_moe

    @property
    def n_attention(self) -> int:
        """Its layers that attend over a cache (full, windowed or sparse attention)."""
        return sum(n for kind, n in self.kinds if kind in ATTENTION)


def split_layers(arch: Architecture, pp: int) -> list[Stage]:
    """Layers split as evenly as possible, the first stages taking the remainder."""
    base, extra = divmod(arch.n_layers, pp)
    stages, start = [], 0
    for s in range(pp):
        layers = range(start, start + base + (1 if s < extra else 0))
        stages.append(Stage(layers, sum(arch.is_moe_layer(i) for i in layers),
                            tuple(sorted(arch.kind_counts(layers).items())), s == 0, s == pp - 1,
                            layer_kernels(arch, layers) + (STEP_KERNELS if s == pp - 1 else 0)))
        start = layers.stop
    return stages


def roofline_s(compute_s, memory_s):
    """Time of kernels that need `compute_s` of math and `memory_s` of HBM traffic: the roofline's
    max(compute, memory) softened to the p-norm (compute^k + memory^k)^(1/k), k = ROOFLINE_SHARPNESS,
    because a kernel near the ridge point cannot keep both its math units and HBM busy all the time.
    Inputs are finite times in seconds (scalars or arrays that broadcast)."""
    k = calibration.ROOFLINE_SHARPNESS
    longer, shorter = np.maximum(compute_s, memory_s), np.minimum(compute_s, memory_s)
    # longer x (1 + (shorter / longer)^k)^(1/k): scaled by the longer part, so no power underflows
    ratio = np.divide(shorter, longer, out=np.zeros(np.shape(longer)), where=longer > 0)
    return longer * (1.0 + ratio ** k) ** (1.0 / k)


def _log_choose(n: float, m: float) -> float:
    """ln C(n, m) from lgamma, for real n >= m >= 0."""
    return math.lgamma(n + 1) - (math.lgamma(m + 1) + math.lgamma(n - m + 1))


def _log_binomial_pmf(n: int, q: float) -> np.ndarray:
    """log P(m) of Binomial(n, q) for m = 0..n, 0 <= q < 1: ln C(n, m) + m ln q + (n - m) ln(1 - q), with
    ln C(n, m) from lgamma, so that no term overflows however many experts a GPU holds (C(8192, 4096)
    alone is ~10^2464)."""
    m = np.arange(n + 1)
    log_choose = np.array([_log_choose(n, k) for k in range(n + 1)])
    with np.errstate(divide="ignore", invalid="ignore"):   # q = 0: ln q = -inf; only m = 0 is possible
        log_q = np.where(m > 0, m * np.log(q), 0.0)
    return log_choose + log_q + (n - m) * np.log1p(-q)


def dispatch_destinations(groups: int, moe) -> float:
    """Expected distinct ep groups (of `groups`) holding a token's top-k experts, experts placed in order.

    Free routing: each expert on a uniformly random group, G (1 - (1 - 1/G)^k). Group-limited routing
    (DeepSeek-V3: n_group 8, topk_group 4, so that 'each token will be ensured to be sent to at most 4
    nodes', arXiv 2412.19437 s2.1.2 and s4.2): the token's experts lie in topk_group of the n_group expert
    groups. With G >= n_group those sit on R = topk_group G / n_group ep groups, the k experts spread over
    them, R (1 - (1 - 1/R)^k); with G < n_group each ep group holds h = n_group / G expert groups and is
    reached when one of its h is picked, G (1 - C(n_group - h, topk_group) / C(n_group, topk_group)). The
    smaller of the free and the limited count."""
    k, n, t = moe.top_k, moe.n_group, moe.topk_group
    free = groups * (1.0 - (1.0 - 1.0 / groups) ** k)
    if t >= n:
        return free
    if groups >= n:
        reach = t * groups / n
        limited = reach * (1.0 - (1.0 - 1.0 / reach) ** k)
    else:
        h = n / groups
        missed = math.exp(_log_choose(n - h, t) - _log_choose(n, t)) if n - h >= t else 0.0
        limited = groups * (1.0 - missed)
    return min(free, limited)


def _by_group(per_sequence, in_group):
    """Sum per-sequence values (..., sequences) into their attention groups (..., groups), sequence by sequence
    in order: unlike a BLAS product, each step's sums do not depend on how many steps are priced at once, so
    bulk and per-step runs agree to the last bit."""
    return (np.asarray(per_sequence)[..., None] * in_group).sum(axis=-2)


def _group_mean(per_group):
    """The mean over attention groups (the last axis); with one group, that group's values as they are."""
    per_group = np.asarray(per_group)
    return per_group[..., 0] if per_group.shape[-1] == 1 else per_group.mean(axis=-1)


@dataclass(frozen=True)
class Batch:
    """One step's sequences: prefill chunks (tokens, cached tokens before them, whether each ends its
    prompt) and decodes (positions attended), with each one's attention group (None: all in group 0).
    Over a run of steps a chunk's prior grows by its stride at each step (None: by its own tokens, the
    prompt's next chunk of the same size)."""

    chunk_tokens: Sequence
    chunk_prior: Sequence
    chunk_sampled: Sequence
    decode_ctx: Sequence
    chunk_rank: Sequence | None = None
    decode_rank: Sequence | None = None
    chunk_stride: Sequence | None = None

    @property
    def n_seqs(self) -> int:
        return len(self.chunk_tokens) + len(self.decode_ctx)

    def ranks(self) -> np.ndarray:
        """Each sequence's attention group, the chunks' then the decodes'."""
        return np.concatenate([np.zeros(len(self.chunk_tokens), int) if self.chunk_rank is None
                               else np.asarray(self.chunk_rank, int),
                               np.zeros(len(self.decode_ctx), int) if self.decode_rank is None
                               else np.asarray(self.decode_rank, int)])

    def strides(self) -> list:
        """Tokens each chunk's prior grows by from one step of a run to the next."""
        return list(self.chunk_tokens if self.chunk_stride is None else self.chunk_stride)

    def halves(self) -> list[tuple[Batch, np.ndarray]] | None:
        """Two micro-batches of about half of each attention group's tokens (two-batch overlap, SGLang
        two_batch_overlap.py: decodes split by sequence, a prompt by tokens), each with the batch's index of
        its sequences: every other decode of a group to each half; each prefill chunk cut at its middle
        token, the second part attending the first (its prior that much longer) and ending the prompt.
        None when a half would be empty."""
        n_chunks = len(self.chunk_tokens)
        ranks = self.ranks()
        chunk_rank, decode_rank = ranks[:n_chunks], ranks[n_chunks:]
        turn = np.zeros(len(decode_rank), int)      # each decode's place among its group's decodes
        for group in np.unique(decode_rank):
            mine = decode_rank == group
            turn[mine] = np.arange(mine.sum())
        first = [int(t) // 2 for t in self.chunk_tokens]
        strides = self.strides()
        halves = []
        for h in (0, 1):
            tokens = first if h == 0 else [int(t) - f for t, f in zip(self.chunk_tokens, first)]
            chunks = [j for j in range(n_chunks) if tokens[j] > 0]
            decodes = np.flatnonzero(turn % 2 == h)
            if not chunks and not len(decodes):
                return None
            halves.append((Batch([tokens[j] for j in chunks],
                                 [self.chunk_prior[j] + (first[j] if h else 0) for j in chunks],
                                 [bool(self.chunk_sampled[j]) and h == 1 for j in chunks],
                                 [self.decode_ctx[i] for i in decodes], chunk_rank[chunks], decode_rank[decodes],
                                 [strides[j] for j in chunks]),
                           np.concatenate([np.asarray(chunks, int), n_chunks + decodes])))
        return halves


    def dealt(self, m: int) -> list[tuple[Batch, np.ndarray]]:
        """The batch dealt into `m` micro-batches for a pipeline, its sequences (chunks, then decodes) one to
        each in turn, each micro-batch with the batch's index of its sequences."""
        n_chunks, ranks, strides = len(self.chunk_tokens), self.ranks(), self.strides()
        micro = []
        for k in range(m):
            index = np.arange(k, self.n_seqs, m)
            chunks, decodes = index[index < n_chunks], index[index >= n_chunks] - n_chunks
            micro.append((Batch([self.chunk_tokens[j] for j in chunks], [self.chunk_prior[j] for j in chunks],
                                [self.chunk_sampled[j] for j in chunks], [self.decode_ctx[i] for i in decodes],
                                ranks[chunks], ranks[n_chunks + decodes], [strides[j] for j in chunks]), index))
        return micro


@dataclass(frozen=True)
class LinearStage:
    """One stage's linear layers and collectives at one set of token counts, per GPU of each attention group
    (arrays over groups): their FLOPs and compute time, the busiest GPU's weight-reading time and the mean
    GPU's weight bytes, the kernels' floors, their roofline times (for the busiest and the mean GPU), the
    collectives' time and bytes (before any context parallelism's), and the compute energy at full clock."""

    flops: np.ndarray
    compute_s: np.ndarray
    memory_s: float
    mean_bytes: float
    fixed_s: float
    roofline_s: np.ndarray
    mean_roofline_s: np.ndarray
    comm_s: float
    comm_bytes: float
    compute_j: float


# Token counts whose linear work a cost model keeps (a step's batch comes in few shapes; beyond, it starts over).
LINEAR_WORK_KEPT = 65_536


@dataclass(frozen=True)
class GpuWork:
    """The GPUs' side of a run of steps (arrays over steps): time, its parts, what moved, and per
    sequence (steps, sequences) the FLOPs and HBM bytes it caused."""

    gpu_s: np.ndarray
    parts_s: dict
    compute_s: np.ndarray
    memory_s: np.ndarray
    network_s: np.ndarray
    flops: np.ndarray
    hbm_bytes: np.ndarray
    comm_bytes: np.ndarray
    per_stage: list              # per stage (busy kernel time per GPU, collectives, dynamic energy per GPU)
    stage_kernel_s: list         # per stage, the busiest attention group's kernels
    stage_comm_s: list           # per stage, its collectives
    kernels: int
    energy_i: np.ndarray         # (steps, sequences): the dynamic energy each sequence's FLOPs and bytes cost
    kv_energy_i: np.ndarray      # ... of which reading and writing its KV
    kv_bytes_i: np.ndarray       # its KV bytes read and written

    @staticmethod
    def overlapped(a: GpuWork, b: GpuWork, index: list, n_seqs: int) -> GpuWork:
        """Two micro-batches in flight (two-batch overlap): while one runs its kernels the other's
        collectives run, so the GPU's kernels and the network each serve both in turn and the step lasts
        max(kernels of both, collectives of both) (the fill and drain of one layer, a 1 / layers share, left
        out). Each half launches every kernel and reads its own weights: at small batches that costs more
        than the overlap saves (sgl-project/DeepGEMM PR #14: TBO gains only from batch 64-128 on Hopper)."""
        kernels_s = (a.gpu_s - a.parts_s["collectives"]) + (b.gpu_s - b.parts_s["collectives"])
        per_sequence = [np.zeros((len(a.gpu_s), n_seqs)) for _ in range(3)]
        for work, i in ((a, index[0]), (b, index[1])):
            for total, mine in zip(per_sequence, (work.energy_i, work.kv_energy_i, work.kv_bytes_i)):
                np.add.at(total, (slice(None), i), mine)
        return GpuWork(np.maximum(kernels_s, a.parts_s["collectives"] + b.parts_s["collectives"]),
                       {name: a.parts_s[name] + b.parts_s[name] for name in a.parts_s},
                       a.compute_s + b.compute_s, a.memory_s + b.memory_s, a.network_s + b.network_s,
                       a.flops + b.flops, a.hbm_bytes + b.hbm_bytes, a.comm_bytes + b.comm_bytes,
                       [tuple(x + y for x, y in zip(sa, sb)) for sa, sb in zip(a.per_stage, b.per_stage)],
                       # Each stage holds both halves: its kernels serve one while its links serve the other.
                       [np.maximum(ka + kb, ca + cb) for ka, kb, ca, cb in
                        zip(a.stage_kernel_s, b.stage_kernel_s, a.stage_comm_s, b.stage_comm_s)],
                       [np.zeros_like(c) for c in a.stage_comm_s],
                       a.kernels + b.kernels, *per_sequence)


@dataclass
class StepCost:
    """Cost of a run of steps sharing one batch shape: every field an array over steps."""

    duration_s: np.ndarray
    flops: np.ndarray
    hbm_bytes: np.ndarray
    comm_bytes: np.ndarray
    energy_j: np.ndarray         # every GPU of the replica: idle power over the step + dynamic_j
    dynamic_j: np.ndarray        # every GPU's energy above idle (sim.cost.power)
    bound: np.ndarray            # 0 compute, 1 memory, 2 network
    stage_busy_s: list           # per stage, per GPU
    stage_energy_j: list         # per stage, per GPU
    shares: np.ndarray           # (steps, sequences): each sequence's share of dynamic_j, rows sum to 1
    kv_shares: np.ndarray        # (steps, sequences): the part of its share spent on its KV
    kv_read_s: np.ndarray        # (steps, sequences): its share of the step's KV time (parts_s['kv'])
    parts_s: dict                # where the time goes, per step (see PARTS); summed over stages, busiest group
    stage_s: list                # per stage, how long it holds the step's work: its busiest group's kernels and
                                 # collectives
    bubble_s: np.ndarray         # the mean stage's wait on the others (pipeline_bubble_s)


BOUND_NAMES = ("compute", "memory", "network")
# The parts of StepCost.parts_s, each the time that part alone would take: weights and KV at HBM bandwidth,
# compute at the matmul rates, collectives, the kernels' floors (or the CPU's launches where longer), host
# work outside the kernels, and the kernels' slowdown that keeps the board within its power limit
# (sim.cost.power). Weights, KV and compute overlap in the roofline, and host work under an overlap
# scheduler, so the parts sum to more than the step.
PARTS = ("weights", "kv", "compute", "collectives", "launches", "host", "power_limit")


def pipeline_bubble_s(step_s, stage_s: list) -> np.ndarray:
    """Seconds of a step the mean pipeline stage waits on the others: of the stages' work W_s laid end to
    end (W = sum of W_s, at most the step), what is not its own, mean over s of min(step, W) - W_s. 0 with
    one stage; (pp - 1) / pp x W for one batch crossing pp stages in turn; 0 for a full pipeline of
    balanced stages."""
    laid_end_to_end = np.minimum(step_s, sum(stage_s))
    return np.mean([laid_end_to_end - w for w in stage_s], axis=0)


def pipelined(costs: list[StepCost], index: list, n_seqs: int, idle_w: float, gpus_per_stage: int) -> StepCost:
    """A step of micro-batches in flight through pipeline stages together, each micro-batch `costs[i]` (priced
    crossing the stages alone) holding the batch's sequences `index[i]`. In the steady state of the pipeline
    every micro-batch takes a step in each period
        P = max(slowest micro-batch's own step, max over stages s of sum_i W_is, sum_i host_i)
    (a micro-batch waits for its own last token; stage s serves every micro-batch in turn; one CPU schedules
    them all), as engines run pp micro-batches in flight (vLLM V1's batch queue, v1/engine/core.py
    step_with_batch_queue; SGLang's pp micro-batches). Two micro-batches on two stages of t each: P = max(L,
    2t), where one batch of both crossing the stages in turn takes 2 t(both). The pipeline's fill and drain
    when the batch changes are left out. Energy: every GPU idles at P_idle over P and adds the micro-batches'
    dynamic energy; each sequence keeps its micro-batch's share of it."""
    steps = len(costs[0].duration_s)
    n_stages = len(costs[0].stage_s)
    stage_s = [sum(c.stage_s[s] for c in costs) for s in range(n_stages)]
    own_s = np.stack([c.duration_s for c in costs])          # (micro-batches, steps): each crossing alone
    period = np.maximum.reduce([own_s.max(axis=0), sum(c.parts_s["host"] for c in costs), *stage_s])
    dynamic = sum(c.dynamic_j for c in costs)
    shares, kv_shares, kv_read_s = (np.zeros((steps, n_seqs)) for _ in range(3))
    for c, i in zip(costs, index):
        shares[:, i] = c.shares * (c.dynamic_j / dynamic)[:, None]
        kv_shares[:, i], kv_read_s[:, i] = c.kv_shares, c.kv_read_s
    bound = np.stack([c.bound for c in costs])[own_s.argmax(axis=0), np.arange(steps)]
    return StepCost(
        period, sum(c.flops for c in costs), sum(c.hbm_bytes for c in costs), sum(c.comm_bytes for c in costs),
        idle_w * period * gpus_per_stage * n_stages + dynamic, dynamic, bound,
        [sum(c.stage_busy_s[s] for c in costs) for s in range(n_stages)],
        [idle_w * period + sum(c.stage_energy_j[s] - idle_w * c.duration_s for c in costs) for s in range(n_stages)],
        shares, kv_shares, kv_read_s, {name: sum(c.parts_s[name] for c in costs) for name in PARTS},
        stage_s, pipeline_bubble_s(period, stage_s))


class ReplicaCostModel:
    def __init__(self, arch: Architecture, accel: Accelerator, comm: ReplicaComm, layout: Layout,
                 weight_precision: str, kv_dtype_bytes: float,
                 power_cap_w: float = 0.0, streaming: bool = False, engine: EngineProfile | None = None,
                 mtp_draft_tokens: int = 0, mtp_accept_length: float = 1.0, redundant_experts: int = 0,
                 expert_imbalance: float = 1.0, ep_dispatch: str = "normal", two_batch_overlap: bool = False,
                 micro_batches: int = 1):
        self.arch, self.accel, self.comm = arch, accel, comm
        self.layout = layout
        self.tp, self.pp, self.ep, self.dp, self.dcp = layout.tp, layout.pp, layout.ep, layout.dp, layout.dcp
        self.cp = layout.cp
        self.engine = engine or engines()["vllm"]
        self.mtp_draft_tokens, self.mtp_accept_length = mtp_draft_tokens, mtp_accept_length
        self.ep_dispatch, self.two_batch_overlap = ep_dispatch, two_batch_overlap
        self.micro_batches = micro_batches if layout.pp > 1 else 1   # in flight through the pipeline at once
        # Expert slots of a stage: the routed experts plus redundant copies of hot ones (EPLB), spread over
        # ep groups of etp GPUs each; each GPU holds 1 / etp of its group's experts.
        self.expert_slots = (arch.moe.n_experts + redundant_experts) if arch.moe else 0
        self.etp = layout.gpus_per_copy // layout.ep
        self.stages = split_layers(arch, layout.pp)
        self._linear_work: dict[tuple, list[LinearStage]] = {}   # token counts -> each stage's (_linear_stage)
        self.weight_bytes = PRECISION_BYTES[weight_precision]
        self.kv_dtype_bytes = kv_dtype_bytes
        # The board's power over a step, held within its TDP or a lower power cap (sim.cost.power).
        self.power = BoardPower.of(accel, power_cap_w)
        # Weights of a precision the GPU has no tensor cores for (MXFP4 on Hopper) are dequantised in the
        # kernel and multiplied in BF16 (weight-only quantisation: Marlin, Triton MoE).
        math = weight_precision if accel.supports(weight_precision) else "bf16"
        linear_efficiency = (calibration.FP4_MATMUL_EFFICIENCY if math == "fp4"
                             and accel.measured_matmul_efficiency("fp4") is None
                             else accel.matmul_efficiency(math))
        self._linear_j_per_flop = self.power.j_per_flop(accel.peak_flops_per_s(math) * linear_efficiency)
        self.linear_flops_per_s = (accel.peak_flops_per_s(math) * linear_efficiency
                                   * calibration.COMPUTE_EFFICIENCY)
        if math == "fp8" and arch.fp8_block_scales:   # DeepSeek-style 128 x 128 scales: the engine's kernels
            self.linear_flops_per_s *= self.engine.fp8_block_gemm_share
        # Attention kernels run at their own share of the measured matmul rate, by keys attended and head
        # dim (sim.cost.attention): BF16, or FP8 in decode where the engine runs FP8 KV with FP8 math
        # (TensorRT-LLM's generation MLA).
        self.fp8_decode_attention = (self.engine.fp8_attention and kv_dtype_bytes == PRECISION_BYTES["fp8"]
                                     and accel.supports("fp8"))
        self.attention_matmul_flops_per_s = {
            fp8: accel.peak_flops_per_s(p) * accel.matmul_efficiency(p)
            for fp8, p in ((False, "bf16"), (True, "fp8")) if p == "bf16" or accel.supports(p)}
        # Attention FLOPs priced at BF16's energy (FP8 decode attention, where run, costs less: not modelled).
        self._attention_j_per_flop = self.power.j_per_flop(self.attention_matmul_flops_per_s[False])
        head_dim = arch.mla.qk_nope_head_dim + arch.mla.qk_rope_head_dim if arch.mla else arch.head_dim
        self._attention_curve = {fp8: attention_curve(head_dim, fp8) for fp8 in self.attention_matmul_flops_per_s}
        self.hbm_bytes_per_s = accel.hbm_bytes_per_s
        # Read when built, so a calibration run can try other values (scripts/calibrate.py).
        self.hbm_efficiency = calibration.HBM_EFFICIENCY
        self.expert_hbm_efficiency = calibration.EXPERT_HBM_EFFICIENCY
        self.host_step_s = calibration.HOST_STEP_S
        self.kernel_floor_s = calibration.KERNEL_FLOOR_S
        self.eager_launch_s = calibration.EAGER_LAUNCH_S
        self.stream_token_s = calibration.STREAM_TOKEN_HOST_S if streaming and self.engine.stream_on_step else 0.0
        # A routed expert's GEMMs on one GPU are as wide as its slice: the narrower of d and the expert's
        # FFN width / etp sets their share of the matmul rate, w / (w + GEMM_HALF_WIDTH).
        width = min(arch.d_model, arch.moe.expert_ffn_dim / self.etp) if arch.moe else arch.d_model
        self.expert_flops_per_s = self.linear_flops_per_s * width / (width + calibration.GEMM_HALF_WIDTH)
        a, moe = arch, arch.moe
        # Per GPU: weights every token of its attention group runs (attention, norms, dense FFNs, shared
        # experts, router), and the routed experts' share of the whole stage's tokens.
        self._always_params = [self._per_gpu(s, sum(a.layer_always_params(i) for i in s.layers)) for s in self.stages]
        self._routed_params_per_token = [
            s.n_moe * moe.top_k * a.expert_params / layout.gpus_per_copy if moe else 0.0 for s in self.stages]
        # The busiest GPU's share of the routed work over the mean's: uneven routing across ep groups.
        self._routed_busiest = expert_imbalance if layout.ep > 1 else 1.0
        # Per MoE layer: the engine's grouped GEMMs and routing kernels walk the experts a GPU holds.
        local_experts = self.expert_slots / layout.ep if moe else 0.0
        self._expert_visit_s = (local_experts * calibration.MOE_EXPERT_VISIT_S
                                if self.engine.moe_kernels_visit_experts else 0.0)
        self._static_weight_bytes = [p * self.weight_bytes for p in self._always_params]
        self._head_params = a.vocab * a.d_model / layout.tp
        # Decode context parallelism, per token and attention layer on one GPU: the queries of the dcp group's
        # heads (H / tp x dcp) gathered and their partial outputs returned, BF16, with an FP32 log-sum-exp per
        # head (MLA absorbed: 576-wide queries, 512-wide outputs; else head_dim each).
        q_dim, o_dim = ((a.mla.kv_lora_rank + a.mla.qk_rope_head_dim, a.mla.kv_lora_rank) if a.mla
                        else (a.head_dim, a.head_dim))
        self._dcp_bytes_per_token = (a.n_heads / layout.tp * layout.dcp
                                     * ((q_dim + o_dim) * calibration.ACTIVATION_BYTES + 4)) if layout.dcp > 1 else 0.0
        # Context parallelism, per decode token and attention layer on one GPU: its heads' partial outputs
        # (BF16) and log-sum-exps (FP32), all-reduced over the cp group.
        self._cp_merge_bytes_per_token = a.n_heads / layout.tp * (o_dim * calibration.ACTIVATION_BYTES + 4)

    def attention_flops_per_s(self, keys, fp8: bool = False) -> np.ndarray:
        """Attention kernels' FLOP rate for queries attending `keys` positions: the measured matmul rate at
        that precision x its attention curve for the model's head dim at `keys` (sim.cost.attention)."""
        return self.attention_matmul_flops_per_s[fp8] * share_at(self._attention_curve[fp8], keys)

    def _per_gpu(self, stage: Stage, params: float) -> float:
        """Params of a stage's layers held by one GPU of its tp group.

        Whole on every rank: norms, MLA down-projections and the MoE router (vLLM ReplicatedLinear).
        K/V projections: each rank holds ceil(KV / tp) heads, so heads are copied when tp > KV.
        The rest is split over tp.
        """
        a = self.arch
        replicated = sum(a.replicated_params(kind) * n for kind, n in stage.kinds) + stage.n_moe * a.router_params
        kv = stage.n_attention * a.kv_projection_params
        kv_rank = kv * math.ceil(a.n_kv_heads / self.tp) / a.n_kv_heads if kv else 0.0
        return replicated + kv_rank + (params - replicated - kv) / self.tp

    # ---- memory ----------------------------------------------------------------------------------
    def stage_weights_bytes(self, s: int) -> float:
        """Weights on one GPU of stage s: layers at the weight precision (its attention group's share, plus
        1 / (tp x dp) of the routed experts), embedding / head in BF16."""
        a, stage = self.arch, self.stages[s]
        routed = stage.n_moe * self.expert_slots * a.expert_params / self.layout.gpus_per_copy if a.moe else 0
        layers = self._always_params[s] + routed
        table = a.embedding_params if stage.first else 0
        if stage.last and not (stage.first and a.tie_embeddings):
            table += a.vocab * a.d_model  # the LM head, or the tied table's copy on the last stage
        return layers * self.weight_bytes + table * calibration.EMBEDDING_BYTES / self.tp

    def weights_bytes_per_gpu(self) -> float:
        return max(self.stage_weights_bytes(s) for s in range(self.pp))

    def activation_bytes_per_gpu(self, max_batched_tokens: int, max_seqs: int) -> float:
        """Peak live activations of a full step, per GPU (vLLM profiles this before sizing the KV pool).

        tokens x 2 B x (2 d + 2 f / tp): the layer input and output plus the FFN's gate and up
        projections, f the widest FFN a token runs (dense, or top-k + shared experts);
        plus FP32 logits: max_seqs x vocab x 4 B / tp.
        """
        a = self.arch
        widths = [a.ffn_dim] if a.n_dense_layers else []
        if a.moe:
            widths.append((a.moe.top_k + a.moe.n_shared) * a.moe.expert_ffn_dim)
        ffn = max(widths, default=a.d_model)
        per_token = calibration.ACTIVATION_BYTES * (2 * a.d_model + 2 * ffn / self.tp)
        return max_batched_tokens * per_token + max_seqs * a.vocab * 4 / self.tp

    def _stage_sum(self, s: int, per_layer) -> float:
        return sum(per_layer(kind) * n for kind, n in self.stages[s].kinds)

    def stage_kv_bytes_per_token(self, s: int) -> float:
        """KV bytes per token one GPU of stage s adds in its layers whose cache grows with the context (its
        1 / (dcp cp) stripe of them under decode context parallelism and context parallelism)."""
        b, tp = self.kv_dtype_bytes, self.tp
        return self._stage_sum(s, lambda k: self.arch.kv_bytes_per_token_layer(k, b, tp) / (self.dcp * self.cp)
                               if k == "attention" else 0)

    def stage_window_bytes_per_token(self, s: int) -> float:
        """KV bytes per token of stage s's sliding-window layers, held for the last window tokens only."""
        b, tp = self.kv_dtype_bytes, self.tp
        return self._stage_sum(s, lambda k: self.arch.kv_bytes_per_token_layer(k, b, tp) / (self.dcp * self.cp)
                               if k == "window" else 0)

    def stage_state_bytes(self, s: int) -> float:
        """Recurrent state one GPU of stage s keeps per sequence."""
        return self._stage_sum(s, lambda k: self.arch.state_bytes_layer(k, self.tp))

    def footprint(self, block_tokens: int) -> Footprint:
        """What one sequence occupies on the fullest GPU, for the KV pool (each part's largest stage)."""
        stages = range(self.pp)
        return Footprint(block_tokens, max(self.stage_kv_bytes_per_token(s) for s in stages),
                         max(self.stage_window_bytes_per_token(s) for s in stages), self.arch.sliding_window,
                         max(self.stage_state_bytes(s) for s in stages))

    def experts_hit(self, tokens: int) -> float:
        """Expected distinct experts a batch of `tokens` routes to, per MoE layer: E (1 - (1 - k/E)^T)."""
        moe = self.arch.moe
        if not moe or tokens <= 0:
            return 0.0
        return moe.n_experts * (1.0 - (1.0 - moe.top_k / moe.n_experts) ** tokens)

    @functools.lru_cache(maxsize=4096)
    def experts_read_per_gpu(self, tokens: int) -> float:
        """Expert weights the busiest GPU of a stage reads per MoE layer, in whole experts.

        ep = 1: every GPU holds 1/etp of each expert and reads its slice of every expert hit:
        E (1 - (1 - k/E)^T) / etp. ep > 1: each of the ep groups holds g = slots/ep experts (redundant copies
        included), each hit with q = 1 - (1 - k/E)^T; its hits are ~ Binomial(g, q) and the step waits for
        the busiest group: E[max] = sum_{m=0}^{g-1} (1 - F(m)^ep), F the binomial CDF (groups taken
        independent); each of its etp GPUs reads 1/etp of them.
        """
        moe = self.arch.moe
        if not moe or tokens <= 0:
            return 0.0
        if self.ep == 1:
            return self.experts_hit(tokens) / self.etp
        g = self.expert_slots // self.ep
        q = 1.0 - (1.0 - moe.top_k / moe.n_experts) ** tokens
        if q >= 1.0:
            return float(g) / self.etp
        pmf = np.exp(_log_binomial_pmf(g, q))
        cdf = np.cumsum(pmf)[:-1]
        return float(np.sum(1.0 - np.minimum(cdf, 1.0) ** self.ep)) / self.etp

    # ---- time, bytes, energy -------------------------------------------------------------------------
    def step(self, chunk_tokens, chunk_prior, chunk_sampled, decode_ctx, n_steps: int = 1,
             chunk_rank=None, decode_rank=None) -> StepCost:
        """Cost of `n_steps` steps of one batch: prefill chunks (tokens, cached tokens before them,
        whether the chunk ends its prompt) and decode sequences attending `decode_ctx` (= L + 1)
        positions at the first step; at each later step every decode attends one more position and every
        chunk is its prompt's next chunk of the same size (its prior that many tokens longer).
        With data-parallel attention each sequence belongs to one attention group (`*_rank`, 0..dp-1);
        the busiest group sets the pace of its stage. With pipeline stages and micro-batches (pp > 1) the
        sequences are dealt into micro-batches in flight together (pipelined)."""
        batch = Batch(chunk_tokens, chunk_prior, chunk_sampled, decode_ctx, chunk_rank, decode_rank)
        m = min(self.micro_batches, batch.n_seqs)
        if m > 1:
            micro = batch.dealt(m)
            return pipelined([self._priced(b, n_steps) for b, _ in micro], [i for _, i in micro], batch.n_seqs,
                             self.accel.idle_w, self.layout.gpus_per_stage)
        return self._priced(batch, n_steps)

    def _priced(self, batch: Batch, n_steps: int) -> StepCost:
        """`n_steps` steps of `batch` crossing the stages in turn."""
        # Two-batch overlap hides one micro-batch's collectives (the experts' all-to-alls) under the other's
        # kernels, where attention runs data parallel.
        halves = batch.halves() if self.two_batch_overlap and self.dp > 1 else None
        if halves:
            work = GpuWork.overlapped(*(self._gpu_work(h, n_steps) for h, _ in halves), [i for _, i in halves],
                                      batch.n_seqs)
        else:
            work = self._gpu_work(batch, n_steps)
        return self._finish(batch, work)

    def _linear_stage(self, s: int, tokens: int, tokens_g: np.ndarray, sampled_g: np.ndarray, act_bytes: float,
                      one_sided: bool, dispatch_bytes: float, combine_bytes: float) -> LinearStage:
        """Stage s's linear layers and collectives for `tokens` through the stage (`tokens_g` and `sampled_g`
        per attention group), per GPU of each group (the module docstring's formulas)."""
        a, tp, dp, stage = self.arch, self.tp, self.dp, self.stages[s]
        eff_bw = self.hbm_bytes_per_s * self.hbm_efficiency
        expert_bw = self.hbm_bytes_per_s * self.expert_hbm_efficiency
        always_flops = 2.0 * self._always_params[s] * tokens_g
        routed_flops = 2.0 * self._routed_params_per_token[s] * tokens
        lin_flops = always_flops + routed_flops
        lin_c = (always_flops / self.linear_flops_per_s
                 + routed_flops * self._routed_busiest / self.expert_flops_per_s)
        # Expert bytes: the busiest GPU sets the step's pace; the GPUs read the mean between them.
        expert_bytes = stage.n_moe * a.expert_params * self.weight_bytes
        experts_busiest = expert_bytes * self.experts_read_per_gpu(tokens)
        experts_mean = expert_bytes * self.experts_hit(tokens) / (tp * dp)
        w_busiest = self._static_weight_bytes[s] + experts_busiest
        w_mean = self._static_weight_bytes[s] + experts_mean
        # Grouped expert GEMMs stream their weights slower than dense GEMMs (calibration).
        expert_extra_s = (1.0 / expert_bw - 1.0 / eff_bw)
        if stage.last and sampled_g.any():
            lin_flops = lin_flops + 2.0 * self._head_params * sampled_g
            lin_c = lin_c + 2.0 * self._head_params * sampled_g / self.linear_flops_per_s
            head_bytes = self._head_params * calibration.EMBEDDING_BYTES
            w_busiest, w_mean = w_busiest + head_bytes, w_mean + head_bytes
        lin_m = w_busiest / eff_bw + experts_busiest * expert_extra_s
        # Every kernel costs its floor beyond its roofline time (sim.cost.kernels); grouped expert GEMMs
        # that visit every local expert pay a little per expert held, whether it has tokens or not.
        fixed_s = stage.kernels * self.kernel_floor_s + stage.n_moe * self._expert_visit_s
        # Dense layers all-reduce twice; MoE layers too, or with data-parallel attention once, then
        # dispatch tokens to their experts and combine them back by all-to-all.
        n_allreduce = 2 * stage.n_dense + (1 if dp > 1 else 2) * stage.n_moe
        n_all_to_all = stage.n_moe if dp > 1 else 0   # each a dispatch and a combine
        a2a = (self.comm.ep_one_sided if one_sided else self.comm.ep_all_to_all)[s]
        comm_s = n_allreduce * self.comm.tp_allreduce[s].time_s(act_bytes)
        if n_all_to_all:
            comm_s = comm_s + n_all_to_all * (a2a.time_s(dispatch_bytes) + a2a.time_s(combine_bytes))
        copies = tp * self.cp       # the stage's GPUs per attention group
        comm_bytes = (n_allreduce * tokens * a.d_model * calibration.ACTIVATION_BYTES * copies * (tp > 1)
                      + n_all_to_all * (dispatch_bytes + combine_bytes) * tp * dp)
        busiest_s = roofline_s(lin_c, lin_m)
        mean_s = roofline_s(lin_c, w_mean / eff_bw + experts_mean * expert_extra_s)
        for array in (lin_flops, lin_c, busiest_s, mean_s):
            array.flags.writeable = False   # shared by every step of these token counts
        return LinearStage(lin_flops, lin_c, lin_m, w_mean, fixed_s, busiest_s, mean_s, comm_s, comm_bytes,
                           self._linear_j_per_flop * _group_mean(lin_flops))

    def _sampled(self, batch: Batch) -> np.ndarray:
        """Tokens each sequence samples in a step: 1 for a chunk that ends its prompt, 1 + the draft tokens
        (multi-token prediction) for a decode."""
        return np.concatenate([np.asarray(batch.chunk_sampled, dtype=float),
                               np.full(len(batch.decode_ctx), 1.0 + self.mtp_draft_tokens)])

    def _gpu_work(self, batch: Batch, n_steps: int) -> GpuWork:
        """The GPUs' side of `n_steps` steps of `batch` run alone: kernels, collectives, and what they move."""
        a, tp, dp = self.arch, self.tp, self.dp
        chunk_tokens, chunk_prior, decode_ctx = batch.chunk_tokens, batch.chunk_prior, batch.decode_ctx
        c = np.asarray(chunk_tokens, dtype=float)
        p = np.asarray(chunk_prior, dtype=float)
        if n_steps > 1 and len(c):   # (steps, chunks): each step prefills its prompt's next chunk
            p = p[None, :] + np.arange(n_steps)[:, None] * np.asarray(batch.strides(), dtype=float)[None, :]
        # With multi-token prediction a decode sequence verifies its k draft tokens with its next one: q = 1 + k
        # query tokens, each sampled; the step is then priced per emitted token (see the end).
        q = 1.0 + self.mtp_draft_tokens if len(decode_ctx) else 1.0
        sampled_i = self._sampled(batch)
        dec_pos = np.asarray(decode_ctx, dtype=float)[None, :] + np.arange(n_steps)[:, None]   # (steps, decode)
        # Tokens through one GPU's linear layers: context parallelism splits a prompt over the cp copies of
        # the tp group, and runs every decode token on each copy.
        tokens_i = np.concatenate([c / self.cp, np.full(len(decode_ctx), q)])
        tokens = int(math.ceil(tokens_i.sum()))
        # Per stage, per sequence (steps, sequences): attention or state FLOPs of all its layers, all heads,
        # and the cache bytes one GPU reads and writes for it (prefill reads p, writes c; decode reads
        # its L + 1 positions, writes 1).
        def per_sequence(prefill, decode):
            """(steps, sequences): the prefill chunks' values, the same at every step, then the decodes'."""
            return np.concatenate([np.broadcast_to(prefill, (n_steps, len(c))), decode], axis=1)

        kinds = {k for stage in self.stages for k, _ in stage.kinds}   # each priced once, summed per stage
        attn_k = {k: per_sequence(a.prefill_flops(k, c, p), q * a.decode_flops(k, dec_pos)) for k in kinds}
        # Decode context parallelism stripes the attention layers' KV over dcp GPUs, context parallelism over
        # the cp copies: each reads and writes 1 / (dcp cp).
        stripe = {k: 1.0 / (self.dcp * self.cp) if k in ATTENTION else 1.0 for k in kinds}
        cache_k = {k: per_sequence(a.cache_bytes(k, p, c, self.kv_dtype_bytes, tp),
                                   a.cache_bytes(k, dec_pos, q, self.kv_dtype_bytes, tp)) * stripe[k] for k in kinds}
        attn_s = [sum(n * attn_k[k] for k, n in stage.kinds) for stage in self.stages]
        # DSA's indexer is computed whole on every tp rank (its heads are not split); the rest of attention is.
        if a.dsa:
            index_flops = (2 * a.dsa.index_n_heads * a.dsa.index_head_dim
                           * per_sequence(positions_attended(c, p), dec_pos))
            attn_rank_s = [(x - stage.n_attention * index_flops) / tp + stage.n_attention * index_flops
                           for x, stage in zip(attn_s, self.stages)]
        else:
            attn_rank_s = [x / tp for x in attn_s]
        # Context parallelism: each copy attends 1 / cp of a prompt's query-key pairs (balanced causal split)
        # and of a decode token's positions (its stripe).
        attn_rank_s = [x / self.cp for x in attn_rank_s]
        # Attention math (steps, sequences) at its kernels' rate for the keys each query attends: a chunk's
        # mean p + (c + 1) / 2 (causal), a decode token's context (FP8 where the engine runs it).
        if self.fp8_decode_attention:
            attn_rate_i = per_sequence(self.attention_flops_per_s(p + (c + 1) / 2),
                                       self.attention_flops_per_s(dec_pos, True))
        else:   # one precision: every sequence's rate at once
            attn_rate_i = self.attention_flops_per_s(per_sequence(p + (c + 1) / 2, dec_pos))
        cache_s = [sum(n * cache_k[k] for k, n in stage.kinds) for stage in self.stages]
        # The same per attention group: (groups,) or (steps, groups).
        rank_i = batch.ranks()
        in_group = np.zeros((len(rank_i), dp))
        in_group[np.arange(len(rank_i)), rank_i] = 1.0
        tokens_g, sampled_g = _by_group(tokens_i, in_group), _by_group(sampled_i, in_group)
        busiest_tokens = float(tokens_g.max())

        act_bytes = busiest_tokens * a.d_model * calibration.ACTIVATION_BYTES     # one group's activations
        # All-to-all per GPU: a token goes once to each distinct ep group holding one of its top-k experts
        # (the normal kernels deduplicate, DeepEP csrc/kernels/internode.cu), dispatched in FP8 with a scale
        # per 128 elements and combined back in BF16.
        # DeepEP's low-latency kernels (decode) send one message per routed expert instead (no deduplication,
        # csrc/kernels/internode_ll.cu), all at once (one-sided); as in every all-to-all here, the share
        # addressed to the sender's own GPU crosses no link.
        one_sided = self.ep_dispatch == "low_latency" or (self.ep_dispatch == "auto" and len(c) == 0)
        if not a.moe:
            destinations = 0.0
        elif one_sided:
            destinations = float(a.moe.top_k)
        else:
            destinations = dispatch_destinations(self.ep, a.moe)
        sent_elements = busiest_tokens * a.d_model * destinations / tp
        dispatch_bytes = sent_elements * calibration.DISPATCH_BYTES
        combine_bytes = sent_elements * calibration.ACTIVATION_BYTES
        # Decode context parallelism, per GPU and stage (steps, groups): a decode token's queries gathered and
        # partial outputs returned in each attention layer; a prefill chunk gathers the whole KV it attends
        # (the prior positions and its own), its stripe sent to each of the other dcp - 1 GPUs.
        if self.dcp > 1:
            exchange = {k: per_sequence(a.cache_bytes(k, p, c, self.kv_dtype_bytes, tp),
                                        np.full((n_steps, len(decode_ctx)), q * self._dcp_bytes_per_token))
                        for k in kinds if k in ATTENTION}
            dcp_s = [_by_group(sum(n * exchange[k] for k, n in stage.kinds if k in ATTENTION), in_group).max(axis=1)
                     for stage in self.stages]
        # Context parallelism, per stage (steps,): the KV of every position the prompts attend (each GPU's
        # tp share, whole), and per attention layer the decodes' partial outputs to merge.
        if self.cp > 1:
            cp_kv_s = [sum(n * per_sequence(a.cache_bytes(k, p, c, self.kv_dtype_bytes, tp),
                                            np.zeros((n_steps, len(decode_ctx)))).sum(axis=1)
                           for k, n in stage.kinds if k in ATTENTION) for stage in self.stages]
            cp_merge_bytes = q * len(decode_ctx) * self._cp_merge_bytes_per_token
        eff_bw = self.hbm_bytes_per_s * self.hbm_efficiency
        zeros, steps = np.zeros(n_steps), np.arange(n_steps)
        gpu_s = zeros.copy()
        compute_s, memory_s, network_s = zeros.copy(), zeros.copy(), zeros.copy()
        parts = {name: zeros.copy() for name in PARTS}
        flops, hbm, comm_bytes = zeros.copy(), zeros.copy(), zeros.copy()
        weight_bytes_all = 0.0      # summed over every GPU, for the shares
        per_stage, stage_kernel_s, stage_comm_s = [], [], []
        # The linear layers and the collectives depend on the token counts alone: priced once per count.
        linear_key = (tokens, tuple(tokens_g.tolist()), tuple(sampled_g.tolist()), one_sided)
        linear = self._linear_work.get(linear_key)
        if linear is None:
            if len(self._linear_work) >= LINEAR_WORK_KEPT:
                self._linear_work.clear()
            linear = self._linear_work[linear_key] = [
                self._linear_stage(s, tokens, tokens_g, sampled_g, act_bytes, one_sided, dispatch_bytes, combine_bytes)
                for s in range(self.pp)]
        for s, (stage, lin) in enumerate(zip(self.stages, linear)):
            lin_flops, lin_c, lin_m = lin.flops, lin.compute_s, lin.memory_s
            w_mean, fixed_s = lin.mean_bytes, lin.fixed_s
            attn_flops = _by_group(attn_rank_s[s], in_group)
            kv_bytes = _by_group(cache_s[s], in_group)
            att_c, att_m = _by_group(attn_rank_s[s] / attn_rate_i, in_group), kv_bytes / eff_bw
            attention_s = roofline_s(att_c, att_m)
            group_s = lin.roofline_s + attention_s + fixed_s        # (steps, groups)
            kernel_s = group_s.max(axis=1)
            mean_kernel_s = _group_mean(lin.mean_roofline_s + attention_s) + fixed_s
            comm_s = lin.comm_s
            n_attention = stage.n_attention
            if self.dcp > 1:   # one exchange per attention layer, of the layers' mean bytes
                comm_s = comm_s + n_attention * self.comm.dcp_all_to_all[s].time_s(dcp_s[s] / max(n_attention, 1))
            if self.cp > 1:
                # Per attention layer, ring attention passes the copies' KV stripes of the positions a prompt
                # attends around the cp group under the attention they feed (only the excess shows), and a
                # decode's partial outputs are all-reduced.
                layers = max(n_attention, 1)
                ring_s = self.comm.cp_all_gather[s].time_s(cp_kv_s[s] / layers)
                merge_s = self.comm.cp_all_reduce[s].time_s(cp_merge_bytes)
                comm_s = comm_s + n_attention * (np.maximum(ring_s - att_c[:, 0] / layers, 0.0) + merge_s)
            copies = tp * self.cp       # the stage's GPUs per attention group
            stage_comm_bytes = (lin.comm_bytes
                                + (dcp_s[s] * (self.dcp - 1) / self.dcp * tp * dp if self.dcp > 1 else 0.0)
                                + (n_attention * ((self.cp - 1) / self.cp * cp_kv_s[s] / max(n_attention, 1)
                                                  + 2 * cp_merge_bytes) * copies if self.cp > 1 else 0.0))
            # The mean GPU's dynamic energy at full clock; the kernels slow where it would pass the board's
            # power limit (sim.cost.power), and their compute energy per FLOP falls with the clock.
            compute_j = lin.compute_j + self._attention_j_per_flop * _group_mean(attn_flops)
            hbm_j = self.power.hbm_j_per_byte * (w_mean + _group_mean(kv_bytes))
            stretch = self.power.stretch(compute_j, hbm_j, mean_kernel_s)
            parts["power_limit"] += (stretch - 1.0) * kernel_s
            kernel_s, mean_kernel_s = kernel_s * stretch, mean_kernel_s * stretch
            dynamic_j = (compute_j * stretch ** (1.0 - self.power.clock_exponent) + hbm_j
                         + self.power.link_j_per_byte * stage_comm_bytes / self.layout.gpus_per_stage)
            busiest_group = group_s.argmax(axis=1)           # each step's busiest group
            busiest = (steps, busiest_group)
            lin_c1, att_c1, att_m1 = lin_c[busiest_group], att_c[busiest], att_m[busiest]
            parts["weights"] += lin_m
            parts["kv"] += att_m1
            parts["compute"] += lin_c1 + att_c1
            parts["collectives"] += comm_s
            parts["launches"] += fixed_s
            compute_s += np.where(lin_c1 >= lin_m, lin_c1, 0.0) + np.where(att_c1 >= att_m1, att_c1, 0.0)
            memory_s += np.where(lin_c1 >= lin_m, 0.0, lin_m) + np.where(att_c1 >= att_m1, 0.0, att_m1)
            network_s += comm_s
            gpu_s = gpu_s + kernel_s + comm_s
            flops += (lin_flops + attn_flops).sum(axis=1) * copies
            hbm += (w_mean * dp + kv_bytes.sum(axis=1)) * copies
            comm_bytes += stage_comm_bytes
            weight_bytes_all += w_mean * copies * dp
            per_stage.append((mean_kernel_s, comm_s, dynamic_j))
            stage_kernel_s.append(kernel_s)
            stage_comm_s.append(comm_s + zeros)
        for send in self.comm.pp_send:
            pp_s = send.time_s(act_bytes)
            gpu_s = gpu_s + pp_s
            parts["collectives"] += pp_s
            network_s += pp_s
            comm_bytes += tokens * a.d_model * calibration.ACTIVATION_BYTES
        kernels = sum(stage.kernels for stage in self.stages)
        if len(decode_ctx) and self.mtp_draft_tokens:
            # The draft: k passes of the MTP module (one more layer, its mean share of the step, and the LM
            # head read again) before the verify step.
            layer_s = (gpu_s - parts["collectives"]) / a.n_layers + self.comm.tp_allreduce[-1].time_s(act_bytes) * 2
            head_s = self._head_params * calibration.EMBEDDING_BYTES / eff_bw
            draft_s = self.mtp_draft_tokens * (layer_s + head_s)
            gpu_s = gpu_s + draft_s
            parts["compute"] += draft_s
            kernels += self.mtp_draft_tokens * (kernels - STEP_KERNELS) // a.n_layers
        # What each sequence caused, for its share of the step's dynamic energy: its FLOPs and HBM bytes at
        # their energy per operation (sim.cost.power). Weights are shared by token count; attention and KV
        # follow the sequence's own positions.
        linear_flops_per_token = 2.0 * tp * sum(w + r * dp for w, r in zip(self._always_params,
                                                                          self._routed_params_per_token))
        linear_flop_i = linear_flops_per_token * tokens_i + 2.0 * a.vocab * a.d_model * sampled_i
        kv_bytes_i = sum(cache_s) * tp
        kv_energy_i = self.power.hbm_j_per_byte * kv_bytes_i
        energy_i = ((self._linear_j_per_flop * linear_flop_i
                     + self.power.hbm_j_per_byte * weight_bytes_all * tokens_i / tokens)[None, :]
                    + self._attention_j_per_flop * sum(attn_s) + kv_energy_i)
        return GpuWork(gpu_s, parts, compute_s, memory_s, network_s, flops, hbm, comm_bytes, per_stage,
                       stage_kernel_s, stage_comm_s, kernels, energy_i, kv_energy_i, kv_bytes_i)

    def _finish(self, batch: Batch, work: GpuWork) -> StepCost:
        """The steps around the GPUs' work: the CPU's launches and host work, energy, each sequence's share."""
        accel, parts, per_stage = self.accel, dict(work.parts_s), work.per_stage
        # Each attention group has its own scheduler (SGLang's and vLLM's data-parallel ranks): the busiest
        # one's host work, and its decode batch, count.
        sampled_i = self._sampled(batch)
        ranks = batch.ranks()
        host_s = self.host_step_s + float(np.max(
            self.engine.host_seq_s * np.bincount(ranks, minlength=1)
            + self.stream_token_s * np.bincount(ranks, weights=sampled_i, minlength=1)))
        # Decode-only batches the engine captured replay a CUDA graph; the rest launch kernel by kernel. Outside
        # a CUDA graph the CPU launches every kernel, and the GPU cannot run ahead of it.
        decodes = np.bincount(ranks[len(batch.chunk_tokens):], minlength=1)
        graph = len(batch.chunk_tokens) == 0 and decodes.max() <= self.engine.decode_graph_max_batch
        launch_s = 0.0 if graph else work.kernels * self.eager_launch_s
        gpu_s = np.maximum(work.gpu_s, launch_s)
        parts["launches"] = np.maximum(parts["launches"], launch_s)
        parts["host"] = parts["host"] + host_s
        # The engine's CPU work (and its launches) runs under the kernels with an overlap scheduler, else
        # between steps.
        duration = np.maximum(gpu_s, host_s + launch_s) if self.engine.overlap else gpu_s + host_s
        # Every GPU idles at P_idle through the step and adds its stage's dynamic energy (sim.cost.power).
        stage_energy = [accel.idle_w * duration + dynamic_j for _, _, dynamic_j in per_stage]
        gpus = self.layout.gpus_per_stage
        dynamic = sum(dynamic_j * gpus for _, _, dynamic_j in per_stage)
        energy = accel.idle_w * duration * gpus * len(per_stage) + dynamic
        # The part that takes longest, the first of them on a tie (BOUND_NAMES' order).
        compute, memory, network = work.compute_s, work.memory_s, work.network_s
        bound = np.where((compute >= memory) & (compute >= network), 0, np.where(memory >= network, 1, 2))
        shares = work.energy_i / work.energy_i.sum(axis=1, keepdims=True)
        kv_shares = work.kv_energy_i / work.energy_i
        kv_total = work.kv_bytes_i.sum(axis=1, keepdims=True)
        kv_read_s = parts["kv"][:, None] * np.divide(work.kv_bytes_i, kv_total, out=np.zeros_like(work.kv_bytes_i),
                                                     where=kv_total > 0)
        flops, hbm, comm_bytes = work.flops, work.hbm_bytes, work.comm_bytes
        stage_s = [k + c for k, c in zip(work.stage_kernel_s, work.stage_comm_s)]
        if len(batch.decode_ctx) and self.mtp_draft_tokens:
            # One row per emitted token: a verify step emits mtp_accept_length tokens per sequence on average.
            per_token = 1.0 / self.mtp_accept_length
            duration, flops, hbm, comm_bytes, energy, dynamic, kv_read_s = (
                x * per_token for x in (duration, flops, hbm, comm_bytes, energy, dynamic, kv_read_s))
            stage_energy = [e * per_token for e in stage_energy]
            stage_s = [x * per_token for x in stage_s]
            per_stage = [tuple(x * per_token for x in stage) for stage in per_stage]
            parts = {name: value * per_token for name, value in parts.items()}
        return StepCost(duration, flops, hbm, comm_bytes, energy, dynamic, bound,
                        [k + c for k, c, _ in per_stage], stage_energy, shares, kv_shares, kv_read_s, parts,
                        stage_s, pipeline_bubble_s(duration, stage_s))
