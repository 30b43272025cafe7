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
                  token's L + 1 (capped by a window or DSA's top-k, plus DSA's indexer over all), or a
                  recurrent layer's state update per token; over the group's sequences, / tp
  weight bytes  = (always-on weights + experts read) on this GPU x bytes per weight; distinct experts
                  hit per MoE layer = E x (1 - (1 - k/E)^T), read as 1/tp slices (ep = 1) or whole on
                  the GPU that holds them (ep = tp x dp): the busiest GPU sets the step's time, the
                  mean GPU (experts hit / (tp dp)) its HBM bytes and power
  cache bytes   = (positions read, capped likewise + tokens written) x KV bytes per token per layer per
                  GPU, or a recurrent layer's state read and written once per sequence
  time_s        = max over groups of [max(linear FLOPs / (peak x eff), weight bytes / (BW x eff_hbm))
                                      + max(attention FLOPs / (peak_bf16 x eff), KV bytes / (BW x eff_hbm))]
                + TP all-reduces of the busiest group's T_g x d activations: 2 per layer
                + with dp > 1, per MoE layer one all-reduce (after attention) instead of two, and an
                  EP all-to-all dispatch and combine of T_g x top_k x d / tp activations per GPU

With attention tensor-parallel (dp = 1) every rank holds every token, so expert parallelism (ep = tp)
combines the experts' outputs with the same all-reduce (vLLM's path); what ep changes is which expert
bytes each GPU reads: at small batches the unluckiest GPU of an EP group reads several whole experts.
Collectives are priced on the cluster graph (hardware.collectives).

Step time = sum over stages + PP sends between stages + STEP_OVERHEAD_S (a batch crosses the stages
in turn: this prices latency, not pipelined throughput) + STREAM_TOKEN_HOST_S per token sampled when
the deployment streams (the engine hands each sequence's token to its client before the next step).
GPU power = P_idle + (P_max - P_idle) x activity (P_max = TDP, or a lower power cap, which also slows
the matmuls to the clock share ((cap - P_idle) / (TDP - P_idle))^(1 / POWER_CLOCK_EXPONENT)), where
activity is the step's achieved compute or memory throughput relative to the achievable ceiling (peak
x measured efficiency), i.e. the share of the step the GPU's kernels run at that ceiling; communication
and overhead count as idle.
Step energy = sum over GPUs of power x step time.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from hardware.catalog import PRECISION_BYTES, Accelerator
from hardware.deployment import Layout, ReplicaComm
from sim.cost import calibration
from sim.kv import Footprint
from sim.layers import ATTENTION
from sim.models import Architecture


@dataclass(frozen=True)
class Stage:
    layers: range
    n_moe: int
    kinds: tuple[tuple[str, int], ...]   # (mixer kind, layers of it) in this stage
    first: bool
    last: bool

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def n_dense(self) -> int:
        return self.n_layers - self.n_moe


def split_layers(arch: Architecture, pp: int) -> list[Stage]:
    """Layers split as evenly as possible, the first stages taking the remainder."""
    base, extra = divmod(arch.n_layers, pp)
    stages, start = [], 0
    for s in range(pp):
        layers = range(start, start + base + (1 if s < extra else 0))
        stages.append(Stage(layers, sum(arch.is_moe_layer(i) for i in layers),
                            tuple(sorted(arch.kind_counts(layers).items())), s == 0, s == pp - 1))
        start = layers.stop
    return stages


def roofline_s(compute_s, memory_s):
    """Time of kernels that need `compute_s` of math and `memory_s` of HBM traffic: the roofline's
    max(compute, memory) softened to the p-norm (compute^k + memory^k)^(1/k), k = ROOFLINE_SHARPNESS,
    because a kernel near the ridge point cannot keep both its math units and HBM busy all the time.
    Inputs are finite times in seconds (scalars or arrays that broadcast)."""
    k = calibration.ROOFLINE_SHARPNESS
    compute_s, memory_s = np.broadcast_arrays(np.asarray(compute_s, float), np.asarray(memory_s, float))
    longer = np.maximum(compute_s, memory_s)
    scale = np.where(longer > 0, longer, 1.0)           # scaled by the longer part, so no power underflows
    return longer * ((compute_s / scale) ** k + (memory_s / scale) ** k) ** (1.0 / k)


def _log_binomial_pmf(n: int, q: float) -> np.ndarray:
    """log P(m) of Binomial(n, q) for m = 0..n, 0 <= q < 1: ln C(n, m) + m ln q + (n - m) ln(1 - q), with
    ln C(n, m) from lgamma, so that no term overflows however many experts a GPU holds (C(8192, 4096)
    alone is ~10^2464)."""
    m = np.arange(n + 1)
    log_choose = math.lgamma(n + 1) - np.array([math.lgamma(k + 1) + math.lgamma(n - k + 1) for k in range(n + 1)])
    with np.errstate(divide="ignore", invalid="ignore"):   # q = 0: ln q = -inf; only m = 0 is possible
        log_q = np.where(m > 0, m * np.log(q), 0.0)
    return log_choose + log_q + (n - m) * np.log1p(-q)


@dataclass
class StepCost:
    """Cost of a run of steps sharing one batch shape: every field an array over steps."""

    duration_s: np.ndarray
    flops: np.ndarray
    hbm_bytes: np.ndarray
    comm_bytes: np.ndarray
    energy_j: np.ndarray
    bound: np.ndarray            # 0 compute, 1 memory, 2 network
    stage_busy_s: list           # per stage, per GPU
    stage_energy_j: list         # per stage, per GPU
    shares: np.ndarray           # (steps, sequences): each sequence's share of the step, rows sum to 1


BOUND_NAMES = ("compute", "memory", "network")


class ReplicaCostModel:
    def __init__(self, arch: Architecture, accel: Accelerator, comm: ReplicaComm, layout: Layout,
                 weight_precision: str, kv_dtype_bytes: float,
                 power_cap_w: float = 0.0, streaming: bool = False):
        self.arch, self.accel, self.comm = arch, accel, comm
        self.layout = layout
        self.tp, self.pp, self.ep, self.dp = layout.tp, layout.pp, layout.ep, layout.dp
        self.stages = split_layers(arch, layout.pp)
        self.weight_bytes = PRECISION_BYTES[weight_precision]
        self.kv_dtype_bytes = kv_dtype_bytes
        # A power cap below TDP lowers the clocks: the matmul rate falls with the clock, which follows the
        # dynamic power allowed as clock share = ((cap - idle) / (TDP - idle))^(1 / POWER_CLOCK_EXPONENT);
        # HBM bandwidth does not. The board then draws at most the cap.
        self.max_power_w = min(accel.tdp_w, power_cap_w) if power_cap_w else accel.tdp_w
        throttle = ((self.max_power_w - accel.idle_w) / (accel.tdp_w - accel.idle_w)) \
            ** (1.0 / calibration.POWER_CLOCK_EXPONENT)
        linear_efficiency = (calibration.FP4_MATMUL_EFFICIENCY if weight_precision == "fp4"
                             and accel.measured_matmul_efficiency("fp4") is None
                             else accel.matmul_efficiency(weight_precision))
        throttle *= calibration.COMPUTE_EFFICIENCY
        self.linear_flops_per_s = accel.peak_flops_per_s(weight_precision) * linear_efficiency * throttle
        self.attention_flops_per_s = accel.peak_flops_per_s("bf16") * accel.matmul_efficiency("bf16") * throttle
        self.hbm_bytes_per_s = accel.hbm_bytes_per_s
        # Read when built, so a calibration run can try other values (scripts/calibrate.py).
        self.hbm_efficiency = calibration.HBM_EFFICIENCY
        self.step_overhead_s = calibration.STEP_OVERHEAD_S
        self.stream_token_s = calibration.STREAM_TOKEN_HOST_S if streaming else 0.0
        a, moe = arch, arch.moe
        # Per GPU: weights every token of its attention group runs (attention, norms, dense FFNs, shared
        # experts, router), and the routed experts' share of the whole stage's tokens.
        self._always_params = [self._per_gpu(s, sum(a.layer_always_params(i) for i in s.layers)) for s in self.stages]
        self._routed_params_per_token = [
            s.n_moe * moe.top_k * a.expert_params / layout.gpus_per_stage if moe else 0.0 for s in self.stages]
        self._static_weight_bytes = [p * self.weight_bytes for p in self._always_params]
        self._head_params = a.vocab * a.d_model / layout.tp

    def _per_gpu(self, stage: Stage, params: float) -> float:
        """Params of a stage's layers held by one GPU of its tp group.

        Whole on every rank: norms, MLA down-projections and the MoE router (vLLM ReplicatedLinear).
        K/V projections: each rank holds ceil(KV / tp) heads, so heads are copied when tp > KV.
        The rest is split over tp.
        """
        a = self.arch
        replicated = sum(a.replicated_params(kind) * n for kind, n in stage.kinds) + stage.n_moe * a.router_params
        kv = sum(n for kind, n in stage.kinds if kind in ATTENTION) * a.kv_projection_params
        kv_rank = kv * math.ceil(a.n_kv_heads / self.tp) / a.n_kv_heads if kv else 0.0
        return replicated + kv_rank + (params - replicated - kv) / self.tp

    # ---- memory ----------------------------------------------------------------------------------
    def stage_weights_bytes(self, s: int) -> float:
        """Weights on one GPU of stage s: layers at the weight precision (its attention group's share, plus
        1 / (tp x dp) of the routed experts), embedding / head in BF16."""
        a, stage = self.arch, self.stages[s]
        routed = stage.n_moe * a.moe.n_experts * a.expert_params / self.layout.gpus_per_stage if a.moe else 0
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
        """KV bytes per token one GPU of stage s adds in its layers whose cache grows with the context."""
        b, tp = self.kv_dtype_bytes, self.tp
        return self._stage_sum(s, lambda k: self.arch.kv_bytes_per_token_layer(k, b, tp) if k == "attention" else 0)

    def stage_window_bytes_per_token(self, s: int) -> float:
        """KV bytes per token of stage s's sliding-window layers, held for the last window tokens only."""
        b, tp = self.kv_dtype_bytes, self.tp
        return self._stage_sum(s, lambda k: self.arch.kv_bytes_per_token_layer(k, b, tp) if k == "window" else 0)

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

        ep = 1: every GPU holds 1/tp of each expert and reads its slice of every expert hit:
        E (1 - (1 - k/E)^T) / tp. ep > 1: each GPU holds g = E/ep whole experts, each hit with
        q = 1 - (1 - k/E)^T; its hits are ~ Binomial(g, q) and the step waits for the busiest of the
        ep GPUs: E[max] = sum_{m=0}^{g-1} (1 - F(m)^ep), F the binomial CDF (GPUs taken independent).
        """
        moe = self.arch.moe
        if not moe or tokens <= 0:
            return 0.0
        if self.ep == 1:
            return self.experts_hit(tokens) / self.tp
        g = moe.n_experts // self.ep
        q = 1.0 - (1.0 - moe.top_k / moe.n_experts) ** tokens
        if q >= 1.0:
            return float(g)
        pmf = np.exp(_log_binomial_pmf(g, q))
        cdf = np.cumsum(pmf)[:-1]
        return float(np.sum(1.0 - np.minimum(cdf, 1.0) ** self.ep))

    # ---- time, bytes, energy -------------------------------------------------------------------------
    def step(self, chunk_tokens, chunk_prior, chunk_sampled, decode_ctx, n_steps: int = 1,
             chunk_rank=None, decode_rank=None) -> StepCost:
        """Cost of `n_steps` steps of one batch: prefill chunks (tokens, cached tokens before them,
        whether the chunk ends its prompt) and decode sequences attending `decode_ctx` (= L + 1)
        positions at the first step, one more at each later step (prefill only when n_steps == 1).
        With data-parallel attention each sequence belongs to one attention group (`*_rank`, 0..dp-1);
        the busiest group sets the pace of its stage."""
        a, tp, dp, accel = self.arch, self.tp, self.dp, self.accel
        c = np.asarray(chunk_tokens, dtype=float)
        p = np.asarray(chunk_prior, dtype=float)
        sampled_i = np.concatenate([np.asarray(chunk_sampled, dtype=float), np.ones(len(decode_ctx))])
        dec_pos = np.asarray(decode_ctx, dtype=float)[None, :] + np.arange(n_steps)[:, None]   # (steps, decode)
        tokens = int(c.sum()) + len(decode_ctx)
        tokens_i = np.concatenate([c, np.ones(len(decode_ctx))])
        # Per stage, per sequence (steps, sequences): attention or state FLOPs of all its layers, all heads,
        # and the cache bytes one GPU reads and writes for it (prefill reads p, writes c; decode reads
        # its L + 1 positions, writes 1).
        def per_sequence(prefill, decode):
            """(steps, sequences): the prefill chunks' values, the same at every step, then the decodes'."""
            return np.concatenate([np.broadcast_to(prefill, (n_steps, len(c))), decode], axis=1)

        kinds = {k for stage in self.stages for k, _ in stage.kinds}   # each priced once, summed per stage
        attn_k = {k: per_sequence(a.prefill_flops(k, c, p), a.decode_flops(k, dec_pos)) for k in kinds}
        cache_k = {k: per_sequence(a.cache_bytes(k, p, c, self.kv_dtype_bytes, tp),
                                   a.cache_bytes(k, dec_pos, 1.0, self.kv_dtype_bytes, tp)) for k in kinds}
        attn_s = [sum(n * attn_k[k] for k, n in stage.kinds) for stage in self.stages]
        cache_s = [sum(n * cache_k[k] for k, n in stage.kinds) for stage in self.stages]
        # The same per attention group: (groups,) or (steps, groups).
        rank_i = np.concatenate([np.zeros(len(c), int) if chunk_rank is None else np.asarray(chunk_rank, int),
                                 np.zeros(len(decode_ctx), int) if decode_rank is None else np.asarray(decode_rank, int)])
        in_group = np.zeros((len(rank_i), dp))
        in_group[np.arange(len(rank_i)), rank_i] = 1.0
        tokens_g, sampled_g = tokens_i @ in_group, sampled_i @ in_group
        busiest_tokens = float(tokens_g.max())

        act_bytes = busiest_tokens * a.d_model * calibration.ACTIVATION_BYTES     # one group's activations
        dispatch_bytes = act_bytes * (a.moe.top_k if a.moe else 0) / tp           # per GPU, each way
        eff_bw = self.hbm_bytes_per_s * self.hbm_efficiency
        zeros = np.zeros(n_steps)
        duration = zeros + self.step_overhead_s + self.stream_token_s * float(sampled_i.sum())
        compute_s, memory_s, network_s = zeros.copy(), zeros.copy(), zeros.copy()
        flops, hbm, comm_bytes = zeros.copy(), zeros.copy(), zeros.copy()
        weight_bytes_all = 0.0      # summed over every GPU, for the shares
        per_stage = []
        for s, stage in enumerate(self.stages):
            lin_flops = 2.0 * (self._always_params[s] * tokens_g + self._routed_params_per_token[s] * tokens)
            # Expert bytes: the busiest GPU sets the step's pace; the GPUs read the mean between them.
            expert_bytes = stage.n_moe * a.expert_params * self.weight_bytes
            w_busiest = self._static_weight_bytes[s] + expert_bytes * self.experts_read_per_gpu(tokens)
            w_mean = self._static_weight_bytes[s] + expert_bytes * self.experts_hit(tokens) / (tp * dp)
            if stage.last and sampled_g.any():
                lin_flops = lin_flops + 2.0 * self._head_params * sampled_g
                head_bytes = self._head_params * calibration.EMBEDDING_BYTES
                w_busiest, w_mean = w_busiest + head_bytes, w_mean + head_bytes
            attn_flops = attn_s[s] @ in_group / tp
            kv_bytes = cache_s[s] @ in_group
            lin_c, lin_m = np.broadcast_to(lin_flops / self.linear_flops_per_s, attn_flops.shape), w_busiest / eff_bw
            att_c, att_m = attn_flops / self.attention_flops_per_s, kv_bytes / eff_bw
            group_s = roofline_s(lin_c, lin_m) + roofline_s(att_c, att_m)        # (steps, groups)
            kernel_s = group_s.max(axis=1)
            mean_kernel_s = (roofline_s(lin_c, w_mean / eff_bw) + roofline_s(att_c, att_m)).mean(axis=1)
            # Dense layers all-reduce twice; MoE layers too, or with data-parallel attention once, then
            # dispatch tokens to their experts and combine them back by all-to-all.
            n_allreduce = 2 * stage.n_dense + (1 if dp > 1 else 2) * stage.n_moe
            n_all_to_all = 2 * stage.n_moe if dp > 1 else 0
            comm_s = (n_allreduce * self.comm.tp_allreduce[s].time_s(act_bytes)
                      + n_all_to_all * self.comm.ep_all_to_all[s].time_s(dispatch_bytes))
            pick = group_s.argmax(axis=1)[:, None]
            lin_c1 = np.take_along_axis(lin_c, pick, 1)[:, 0]
            att_c1, att_m1 = np.take_along_axis(att_c, pick, 1)[:, 0], np.take_along_axis(att_m, pick, 1)[:, 0]
            compute_s += np.where(lin_c1 >= lin_m, lin_c1, 0.0) + np.where(att_c1 >= att_m1, att_c1, 0.0)
            memory_s += np.where(lin_c1 >= lin_m, 0.0, lin_m) + np.where(att_c1 >= att_m1, 0.0, att_m1)
            network_s += comm_s
            duration = duration + kernel_s + comm_s
            flops += (lin_flops + attn_flops).sum(axis=1) * tp
            hbm += (w_mean * dp + kv_bytes.sum(axis=1)) * tp
            comm_bytes += (n_allreduce * tokens * a.d_model * calibration.ACTIVATION_BYTES * tp
                           + n_all_to_all * dispatch_bytes * tp * dp)
            weight_bytes_all += w_mean * tp * dp
            per_stage.append((mean_kernel_s, comm_s))
        for send in self.comm.pp_send:
            pp_s = send.time_s(act_bytes)
            duration = duration + pp_s
            network_s += pp_s
            comm_bytes += tokens * a.d_model * calibration.ACTIVATION_BYTES
        stage_energy = []
        for kernel_s, _ in per_stage:
            activity = np.minimum(1.0, kernel_s / duration)
            stage_energy.append((accel.idle_w + (self.max_power_w - accel.idle_w) * activity) * duration)
        energy = sum(e * tp * dp for e in stage_energy)
        bound = np.argmax(np.stack([compute_s, memory_s, network_s]), axis=0)

        # Each sequence's share: the mean of its share of the FLOPs and of the HBM bytes it caused.
        # Weights are shared by token count; attention and KV follow the sequence's own positions.
        linear_flops_per_token = 2.0 * tp * sum(w + r * dp for w, r in zip(self._always_params,
                                                                          self._routed_params_per_token))
        flop_i = (linear_flops_per_token * tokens_i + 2.0 * a.vocab * a.d_model * sampled_i)[None, :] \
            + sum(attn_s)
        byte_i = (weight_bytes_all * tokens_i / tokens)[None, :] \
            + sum(cache_s) * tp
        w = flop_i / flop_i.sum(axis=1, keepdims=True) + byte_i / byte_i.sum(axis=1, keepdims=True)
        shares = w / w.sum(axis=1, keepdims=True)
        return StepCost(duration, flops, hbm, comm_bytes, energy, bound,
                        [k + c for k, c in per_stage], stage_energy, shares)
