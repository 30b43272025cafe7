"""The physics of one engine step on one replica (DESIGN.md, 'The physics of one engine step').

A step is one forward pass over a batch: prefill chunks (c new tokens after p cached) and decode
sequences (one token after L cached). For each pipeline stage s, per GPU of its tp group:

  linear FLOPs  = 2 x (weights touched per token / tp) x tokens  (+ LM head 2 x vocab x d / tp per sampled token)
  attention FLOPs = positions x flops_per_position x layers / tp, positions = c*p + c(c+1)/2 per chunk,
                  L + 1 per decode sequence
  weight bytes  = (dense and always-on MoE weights + distinct experts hit) / tp x bytes per weight,
                  distinct experts per MoE layer = E x (1 - (1 - k/E)^tokens)
  KV bytes      = (positions read + tokens written) x KV bytes per token per layer per GPU x layers
  time_s        = max(linear FLOPs / (peak x eff), weight bytes / (BW x eff_hbm))
                + max(attention FLOPs / (peak_bf16 x eff), KV bytes / (BW x eff_hbm))
                + TP all-reduces (2 per layer; 1 + EP dispatch/combine all-to-all in MoE layers when ep > 1)

Step time = sum over stages + PP sends between stages + STEP_OVERHEAD_S (a batch crosses the stages
in turn: this prices latency, not pipelined throughput).
GPU power = P_idle + (TDP - P_idle) x activity, activity = the share of the step the GPU's compute and
memory kernels run (their roofline time above / step time; communication and overhead count as idle);
step energy = sum over GPUs of power x step time.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hardware.catalog import PRECISION_BYTES, Accelerator
from hardware.deployment import ReplicaComm
from sim import calibration
from sim.models import Architecture


@dataclass(frozen=True)
class Stage:
    n_dense: int
    n_moe: int
    first: bool
    last: bool

    @property
    def n_layers(self) -> int:
        return self.n_dense + self.n_moe


def split_layers(arch: Architecture, pp: int) -> list[Stage]:
    """Layers split as evenly as possible, the first stages taking the remainder; dense layers come first."""
    base, extra = divmod(arch.n_layers, pp)
    stages, start = [], 0
    for s in range(pp):
        count = base + (1 if s < extra else 0)
        dense = max(0, min(arch.n_dense_layers - start, count))
        stages.append(Stage(dense, count - dense, s == 0, s == pp - 1))
        start += count
    return stages


@dataclass
class StepCost:
    """Cost of one step, or of a run of steps (every field then an array over steps)."""

    duration_s: np.ndarray
    flops: np.ndarray
    hbm_bytes: np.ndarray
    comm_bytes: np.ndarray
    energy_j: np.ndarray
    bound: np.ndarray            # 0 compute, 1 memory, 2 network
    stage_busy_s: list           # per stage, per GPU
    stage_energy_j: list         # per stage, per GPU


BOUND_NAMES = ("compute", "memory", "network")


class ReplicaCostModel:
    def __init__(self, arch: Architecture, accel: Accelerator, comm: ReplicaComm, tp: int, pp: int, ep: int,
                 weight_precision: str, kv_dtype_bytes: float,
                 hbm_efficiency: float = calibration.HBM_EFFICIENCY,
                 step_overhead_s: float = calibration.STEP_OVERHEAD_S):
        self.arch, self.accel, self.comm = arch, accel, comm
        self.tp, self.pp, self.ep = tp, pp, ep
        self.stages = split_layers(arch, pp)
        self.weight_bytes = PRECISION_BYTES[weight_precision]
        self.kv_dtype_bytes = kv_dtype_bytes
        self.linear_flops_per_s = accel.peak_flops_per_s(weight_precision) * accel.matmul_efficiency(weight_precision)
        self.attention_flops_per_s = accel.peak_flops_per_s("bf16") * accel.matmul_efficiency("bf16")
        self.hbm_bytes_per_s = accel.hbm_bytes_per_s
        self.hbm_efficiency = hbm_efficiency
        self.step_overhead_s = step_overhead_s
        a, moe = arch, arch.moe
        routed_active = moe.top_k * arch.expert_params if moe else 0
        self._linear_params_per_token = [  # per GPU
            (s.n_dense * a.dense_layer_params + s.n_moe * (a.moe_layer_always_params + routed_active)) / tp
            for s in self.stages]
        self._static_weight_bytes = [
            (s.n_dense * a.dense_layer_params + s.n_moe * a.moe_layer_always_params) * self.weight_bytes / tp
            for s in self.stages]
        self._head_params = a.vocab * a.d_model / tp
        self._kv_bytes_per_token_layer = a.kv_elements_per_token_per_layer(tp) * kv_dtype_bytes

    # ---- memory ----------------------------------------------------------------------------------
    def weights_bytes_per_gpu(self) -> float:
        """Largest stage's weights per GPU: layers at the weight precision, embedding / head in BF16."""
        a, tp = self.arch, self.tp
        routed = a.moe.n_experts * a.expert_params if a.moe else 0
        worst = 0.0
        for s in self.stages:
            layers = s.n_dense * a.dense_layer_params + s.n_moe * (a.moe_layer_always_params + routed)
            table = (a.embedding_params if s.first else 0) + (a.vocab * a.d_model if s.last else 0)
            worst = max(worst, (layers * self.weight_bytes + table * calibration.EMBEDDING_BYTES) / tp)
        return worst

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
        ffn = max(widths)
        per_token = calibration.ACTIVATION_BYTES * (2 * a.d_model + 2 * ffn / self.tp)
        return max_batched_tokens * per_token + max_seqs * a.vocab * 4 / self.tp

    def kv_bytes_per_token_per_gpu(self) -> float:
        return max(s.n_layers for s in self.stages) * self._kv_bytes_per_token_layer

    # ---- attribution ---------------------------------------------------------------------------------
    def cost_shares(self, tokens_i, positions_i, kv_tokens_i, prefill_i):
        """Each sequence's share of a step: the mean of its share of FLOPs and of HBM bytes.

        Weights are shared by token count; attention FLOPs and KV bytes follow the sequence's own
        positions. Arrays broadcast over (steps, sequences); shares sum to 1 along the last axis.
        """
        a, tp = self.arch, self.tp
        layers = a.n_layers
        tokens_i = np.asarray(tokens_i, dtype=float)
        lin_flops = 2.0 * sum(self._linear_params_per_token) * tp * tokens_i
        per_pos = np.where(prefill_i, a.attention_flops_per_position("prefill"),
                           a.attention_flops_per_position("decode"))
        attn_flops = positions_i * per_pos * layers
        weight_bytes = sum(self._static_weight_bytes) * tp
        kv_bytes = kv_tokens_i * a.kv_bytes_per_token(self.kv_dtype_bytes)
        total_tokens = tokens_i.sum(axis=-1, keepdims=True)
        byte_i = weight_bytes * tokens_i / total_tokens + kv_bytes
        flop_i = lin_flops + attn_flops
        w = flop_i / flop_i.sum(axis=-1, keepdims=True) + byte_i / byte_i.sum(axis=-1, keepdims=True)
        return w / w.sum(axis=-1, keepdims=True)

    # ---- time, bytes, energy -------------------------------------------------------------------------
    def step(self, tokens: int, sampled: int, prefill_positions: float, prefill_kv_tokens: float,
             decode_positions) -> StepCost:
        """Cost of steps sharing one batch shape; `decode_positions` (sum of L + 1 over decode
        sequences) may be an array, one entry per step."""
        a, tp, accel = self.arch, self.tp, self.accel
        decode_positions = np.asarray(decode_positions, dtype=float)
        f_prefill = a.attention_flops_per_position("prefill")
        f_decode = a.attention_flops_per_position("decode")
        hit = 0.0
        if a.moe and tokens > 0:
            hit = a.moe.n_experts * (1.0 - (1.0 - a.moe.top_k / a.moe.n_experts) ** tokens)
        act_bytes = tokens * a.d_model * calibration.ACTIVATION_BYTES
        a2a_bytes = act_bytes * (a.moe.top_k if a.moe else 0) / self.ep
        eff_bw = self.hbm_bytes_per_s * self.hbm_efficiency
        zeros = np.zeros_like(decode_positions)
        duration = zeros + self.step_overhead_s
        compute_s, memory_s, network_s = zeros.copy(), zeros.copy(), zeros.copy()
        flops, hbm, comm_bytes = zeros.copy(), zeros.copy(), zeros.copy()
        per_stage = []
        for s, stage in enumerate(self.stages):
            lin_flops = 2.0 * self._linear_params_per_token[s] * tokens
            w_bytes = self._static_weight_bytes[s]
            if a.moe:
                w_bytes += stage.n_moe * hit * a.expert_params * self.weight_bytes / tp
            if stage.last and sampled:
                lin_flops += 2.0 * self._head_params * sampled
                w_bytes += self._head_params * calibration.EMBEDDING_BYTES
            attn_flops = (prefill_positions * f_prefill + decode_positions * f_decode) * stage.n_layers / tp
            kv_bytes = ((prefill_kv_tokens + decode_positions + tokens)
                        * self._kv_bytes_per_token_layer * stage.n_layers)
            lin_c, lin_m = lin_flops / self.linear_flops_per_s, w_bytes / eff_bw
            att_c, att_m = attn_flops / self.attention_flops_per_s, kv_bytes / eff_bw
            n_allreduce = 2 * stage.n_dense + (2 if self.ep == 1 else 1) * stage.n_moe
            n_a2a = 2 * stage.n_moe if self.ep > 1 else 0
            comm_s = (n_allreduce * self.comm.tp_allreduce[s].time_s(act_bytes)
                      + n_a2a * self.comm.ep_all_to_all[s].time_s(a2a_bytes))
            kernel_s = np.maximum(lin_c, lin_m) + np.maximum(att_c, att_m)
            busy = kernel_s + comm_s
            compute_s += np.where(lin_c >= lin_m, lin_c, 0.0) + np.where(att_c >= att_m, att_c, 0.0)
            memory_s += np.where(lin_c >= lin_m, 0.0, lin_m) + np.where(att_c >= att_m, 0.0, att_m)
            network_s += comm_s
            duration = duration + busy
            flops += (lin_flops + attn_flops) * tp
            hbm += (w_bytes + kv_bytes) * tp
            comm_bytes += (n_allreduce * act_bytes + n_a2a * a2a_bytes) * tp
            per_stage.append((busy, kernel_s))
        for send in self.comm.pp_send:
            pp_s = send.time_s(act_bytes)
            duration = duration + pp_s
            network_s += pp_s
            comm_bytes += act_bytes
        stage_energy = []
        for _, kernel_s in per_stage:
            activity = np.minimum(1.0, kernel_s / duration)
            power = accel.idle_w + (accel.tdp_w - accel.idle_w) * activity
            stage_energy.append(power * duration)
        energy = sum(e * tp for e in stage_energy)
        bound = np.argmax(np.stack([compute_s, memory_s, network_s]), axis=0)
        return StepCost(duration, flops, hbm, comm_bytes, energy, bound,
                        [b for b, _ in per_stage], stage_energy)
