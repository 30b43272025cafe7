"""Token mixers layer by layer: parameters, attention or state FLOPs, and the cache each keeps.

Every layer of a model is one mixer kind (`Architecture.layer_kinds`) followed by a dense or MoE FFN.
Per layer (d = d_model, H = heads, b = bytes per KV element), from the reference sheet models.md
section 1 and each family's published module shapes:

- attention (MHA/GQA/MQA): q d*H*hd (x2 with an output gate), k and v d*KV*hd, o H*hd*d, (+ biases,
  QK-norm 2*hd, one sink per head). KV 2*KV*hd*b per token. Core FLOPs 4*H*hd per (query, position).
- window: the same layer attending the last W positions only; its KV stops growing at W tokens.
- mla (DeepSeek-V2, arXiv 2405.04434 s2.1): q_a d*q_lora + norm, q_b q_lora*H*(nope+rope) (or q
  d*H*(nope+rope) without q-LoRA), kv_a d*(kv_lora+rope) + norm, kv_b kv_lora*H*(nope+v), o H*v*d.
  KV (kv_lora+rope)*b. Decode (absorbed) 2H(kv_lora+rope) + 2H*kv_lora per position; prefill the
  cheaper of the MHA form 2H(nope+rope) + 2H*v (after up-projecting the cached latents) and the absorbed.
- mla_dsa (DeepSeek-V3.2-Exp): MLA over the top-k positions the lightning indexer picks, plus the
  indexer: wq_b q_lora*(iH*id), wk d*id, LayerNorm 2*id, weights d*iH; it scores every position at
  2*iH*id FLOPs and caches an FP8 key + FP32 scale (id + 4 B) per token beside the latent.
- gdn (Gated DeltaNet, Qwen3-Next): in_proj_qkvz d*(2*nk*dk + 2*nv*dv), in_proj_ba d*2nv, depthwise
  conv (2*nk*dk + nv*dv)*kernel, dt_bias and A_log nv each, gated norm dv, out nv*dv*d.
  State nv*dk*dv (FP32) + conv channels*(kernel-1).
- lightning (MiniMax): qkv d*3*H*hd, output gate d*H*hd, out H*hd*d, norm H*hd. State H*hd*hd.
- kda (Kimi Delta Attention): q, k, v d*H*hd with depthwise convs 3*H*hd*kernel, gate f_a d*hd and f_b
  hd*H*hd, beta d*H, A_log H, dt_bias H*hd, output gate g_a d*hd and g_b hd*H*hd, norm hd, out H*hd*d.
  State H*hd*hd + conv 3*H*hd*(kernel-1).
- mamba1 (Jamba): d_inner = expand*d; in d*2*d_inner, conv d_inner*(kernel+1), x_proj
  d_inner*(dt_rank + 2*d_state), dt_proj (dt_rank+1)*d_inner, A_log d_inner*d_state, D d_inner, out
  d_inner*d, dt/B/C norms dt_rank + 2*d_state. State d_inner*d_state + conv d_inner*(kernel-1).
- mamba2: in d*(2*d_inner + 2*g*d_state + H), conv (d_inner + 2*g*d_state)*(kernel+1), dt_bias, A_log,
  D H each, gated norm d_inner, out d_inner*d. State H*hd*d_state + conv (d_inner + 2g*d_state)(kernel-1).
- rwkv7 (TimeMix; its ChannelMix is the layer's relu2 FFN): 6 token-shift mixes C, decay w0 C + LoRA,
  in-context rate a0 C + LoRA, value residual v0 C + LoRA (not in layer 0), gate LoRA, k_k, k_a, r_k C
  each, r, k, v, o C*C, GroupNorm 2C. State H*64*64 + 2 token-shift vectors C.
Recurrent layers cost O(1) per token: state-update FLOPs ~ 8*H*dk*dv (GDN, KDA, RWKV), 6*H*hd^2
(lightning), 6*d_inner*d_state (Mamba), and read + write their state once per sequence per step.
State is FP32 (the vLLM / fla default); conv and token-shift state BF16.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, get_args

import numpy as np
from pydantic import ConfigDict, Field, Strict

STATE_BYTES = 4.0          # recurrent state, FP32
CONV_STATE_BYTES = 2.0     # short-conv / token-shift state, BF16
LayerKind = Literal["attention", "window", "gdn", "lightning", "kda", "mamba1", "mamba2", "rwkv7"]
ATTENTION = get_args(LayerKind)[:2]
RECURRENT = get_args(LayerKind)[2:]

# The schema of a model table, checked by pydantic (sim.models.build): whole numbers only (no 8.0, no
# "8", no true), no unknown keys, no NaN. The bounds are far beyond any published model (the widest
# d_model is 25,600, the most experts 512) and keep every count finite in float64 arithmetic.
SCHEMA = ConfigDict(extra="forbid", allow_inf_nan=False)
Width = Annotated[int, Strict(), Field(ge=1, le=1_000_000)]          # a dimension: d, head, rank, FFN
Heads = Annotated[int, Strict(), Field(ge=1, le=100_000)]            # heads, experts, groups
Kernel = Annotated[int, Strict(), Field(ge=1, le=1024)]              # a short convolution's taps
Tokens = Annotated[int, Strict(), Field(ge=1, le=1_000_000_000)]     # a span of positions


class ModelKeyError(ValueError):
    """A model table that does not build; `key` names the offending key where there is one."""

    def __init__(self, key: str | None, message: str):
        self.key = key
        super().__init__(message)


@dataclass(frozen=True)
class MLA:
    __pydantic_config__ = SCHEMA
    q_lora_rank: Annotated[int, Strict(), Field(ge=0, le=1_000_000)]   # 0: queries projected directly
    kv_lora_rank: Width
    qk_nope_head_dim: Width
    qk_rope_head_dim: Width
    v_head_dim: Width


@dataclass(frozen=True)
class DSA:
    __pydantic_config__ = SCHEMA
    index_n_heads: Heads
    index_head_dim: Width
    index_topk: Tokens

    @property
    def key_bytes(self) -> float:
        """FP8 key + one FP32 scale per 128 values, per token per layer, whatever the KV dtype."""
        return self.index_head_dim * 1.0 + 4.0 * self.index_head_dim / 128


@dataclass(frozen=True)
class GDN:
    __pydantic_config__ = SCHEMA
    n_k_heads: Heads
    n_v_heads: Heads
    k_head_dim: Width
    v_head_dim: Width
    conv_kernel: Kernel

    def __post_init__(self):
        if self.n_v_heads % self.n_k_heads:
            raise ModelKeyError("n_v_heads", f"{self.n_v_heads} value heads do not group over {self.n_k_heads} "
                                f"key heads; valid: a multiple of n_k_heads")


@dataclass(frozen=True)
class KDA:
    __pydantic_config__ = SCHEMA
    n_heads: Heads
    head_dim: Width
    conv_kernel: Kernel


@dataclass(frozen=True)
class Mamba1:
    __pydantic_config__ = SCHEMA
    d_state: Width
    d_conv: Kernel
    expand: Annotated[int, Strict(), Field(ge=1, le=64)]
    dt_rank: Width


@dataclass(frozen=True)
class Mamba2:
    __pydantic_config__ = SCHEMA
    d_state: Width
    d_conv: Kernel
    expand: Annotated[int, Strict(), Field(ge=1, le=64)]
    head_dim: Width
    n_groups: Heads


@dataclass(frozen=True)
class RWKV7:
    __pydantic_config__ = SCHEMA
    head_size: Width
    decay_lora: Width
    aaa_lora: Width
    mv_lora: Width
    gate_lora: Width


def positions_attended(chunk, prior, cap=None):
    """Positions a chunk of c queries after p cached tokens attends, summed over its queries:
    c*p + c(c+1)/2, or with each query seeing at most `cap` positions: sum_{i=1..c} min(p + i, cap)."""
    c, p = np.asarray(chunk, dtype=float), np.asarray(prior, dtype=float)
    full = c * p + c * (c + 1) / 2
    if cap is None:
        return full
    below = np.clip(cap - p, 0, c)                     # queries that still see fewer than `cap` positions
    return below * p + below * (below + 1) / 2 + (c - below) * cap
