"""Model architectures from `data/models.toml`, and what each costs per token, per layer.

Parameter counts are built layer by layer from the config (no published totals are stored), so the
tests can compare them against the published counts.

Per layer (d = d_model, H = heads, KV = kv heads, hd = head dim):
- MHA/GQA projections: q d*H*hd, k and v d*KV*hd each, o H*hd*d (+ biases H*hd + 2*KV*hd + d);
  QK-norm adds 2*hd.
- MLA (DeepSeek-V2 paper, arXiv 2405.04434 section 2.1): q_a d*q_lora, q_norm q_lora,
  q_b q_lora*H*(nope+rope), kv_a d*(kv_lora+rope), kv_norm kv_lora, kv_b kv_lora*H*(nope+v), o H*v*d.
- FFN: SwiGLU 3*d*f; GELU 2*d*f + f + d biases. MoE layer: E routed + n_shared experts of SwiGLU
  width f_e, router d*E (+E score-correction bias).
- Norms: two per layer plus a final one; RMSNorm d weights, LayerNorm 2d.
Embeddings: vocab*d (+ max_context*d learned positions); LM head vocab*d unless tied.

KV cache bytes per token per layer (b bytes per element): MHA/GQA 2*KV*hd*b; MLA (kv_lora+rope)*b.
Attention core FLOPs per (query token, attended position) per layer, 2 FLOP per MAC:
MHA/GQA 4*H*hd (QK^T and AV); MLA decode, absorbed: 2H(kv_lora+rope) + 2H*kv_lora; MLA prefill, MHA
form: 2H(nope+rope) + 2H*v, or the absorbed form where cheaper (see prefill_attention_flops).
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, fields
from functools import cache
from importlib import resources

import numpy as np


@dataclass(frozen=True)
class MLA:
    q_lora_rank: int
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int


@dataclass(frozen=True)
class MoE:
    n_experts: int
    top_k: int
    n_shared: int
    expert_ffn_dim: int
    first_dense_layers: int
    router_bias: bool


@dataclass(frozen=True)
class Architecture:
    name: str
    display_name: str
    attention: str
    n_layers: int
    d_model: int
    n_heads: int
    ffn: str
    ffn_dim: int
    norm: str
    vocab: int
    max_context: int
    tie_embeddings: bool
    source: str
    n_kv_heads: int = 0
    head_dim: int = 0
    qk_norm: bool = False
    biases: bool = False
    learned_positions: bool = False
    mla: MLA | None = None
    moe: MoE | None = None

    # ---- parameter counts -------------------------------------------------------------------
    @property
    def _norm_params(self) -> int:
        return self.d_model * (2 if self.norm == "layernorm" else 1)

    @property
    def attention_params(self) -> int:
        """Attention projections of one layer, with their biases and internal norms."""
        d, h = self.d_model, self.n_heads
        if self.attention == "mla":
            m = self.mla
            return (d * m.q_lora_rank + m.q_lora_rank
                    + m.q_lora_rank * h * (m.qk_nope_head_dim + m.qk_rope_head_dim)
                    + d * (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank
                    + m.kv_lora_rank * h * (m.qk_nope_head_dim + m.v_head_dim)
                    + h * m.v_head_dim * d)
        q, kv = h * self.head_dim, self.n_kv_heads * self.head_dim
        params = 2 * d * q + 2 * d * kv
        if self.biases:
            params += q + 2 * kv + d
        if self.qk_norm:
            params += 2 * self.head_dim
        return params

    @property
    def kv_projection_params(self) -> int:
        """K and V projection weights (and biases) of one GQA/MHA layer; 0 for MLA."""
        if self.attention == "mla":
            return 0
        kv = self.n_kv_heads * self.head_dim
        return 2 * self.d_model * kv + (2 * kv if self.biases else 0)

    @property
    def replicated_params_per_layer(self) -> int:
        """Weights every tensor-parallel rank keeps whole: the layer's norms, and for MLA the latent
        down-projections q_a, kv_a with their norms (vLLM builds them as ReplicatedLinear)."""
        replicated = 2 * self._norm_params
        if self.attention == "mla":
            m = self.mla
            replicated += (self.d_model * m.q_lora_rank + m.q_lora_rank
                           + self.d_model * (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank)
        return replicated

    def ffn_params(self, width: int) -> int:
        d = self.d_model
        if self.ffn == "gelu":
            return 2 * d * width + (width + d if self.biases else 0)
        return 3 * d * width

    @property
    def expert_params(self) -> int:
        return self.ffn_params(self.moe.expert_ffn_dim) if self.moe else 0

    @property
    def router_params(self) -> int:
        if not self.moe:
            return 0
        return self.d_model * self.moe.n_experts + (self.moe.n_experts if self.moe.router_bias else 0)

    @property
    def n_moe_layers(self) -> int:
        return self.n_layers - self.moe.first_dense_layers if self.moe else 0

    @property
    def n_dense_layers(self) -> int:
        return self.n_layers - self.n_moe_layers

    @property
    def dense_layer_params(self) -> int:
        return self.attention_params + 2 * self._norm_params + self.ffn_params(self.ffn_dim)

    @property
    def moe_layer_always_params(self) -> int:
        """Weights every token of an MoE layer touches: attention, norms, shared experts, router."""
        if not self.moe:
            return 0
        return (self.attention_params + 2 * self._norm_params
                + self.moe.n_shared * self.expert_params + self.router_params)

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.d_model + (self.max_context * self.d_model if self.learned_positions else 0)

    @property
    def lm_head_params(self) -> int:
        return 0 if self.tie_embeddings else self.vocab * self.d_model

    @property
    def params_total(self) -> int:
        routed = self.moe.n_experts * self.expert_params if self.moe else 0
        return (self.n_dense_layers * self.dense_layer_params
                + self.n_moe_layers * (self.moe_layer_always_params + routed)
                + self.embedding_params + self.lm_head_params + self._norm_params)

    @property
    def params_active(self) -> int:
        """Weights touched per token, input embedding table included (models.md convention)."""
        if not self.moe:
            return self.params_total
        idle_experts = self.moe.n_experts - self.moe.top_k
        return self.params_total - self.n_moe_layers * idle_experts * self.expert_params

    @property
    def matmul_flops_per_token(self) -> int:
        """2 x weights touched per token, LM head GEMV counted even when tied, embedding lookup not."""
        tied_head = self.vocab * self.d_model if self.tie_embeddings else 0
        return 2 * (self.params_active - self.embedding_params + tied_head)

    # ---- KV cache and attention ---------------------------------------------------------------
    def kv_elements_per_token_per_layer(self, tp: int = 1) -> int:
        """KV elements one GPU of a tp group stores per token per layer.

        GQA/MHA shard KV heads over tp (a GPU keeps at least one head: heads are replicated when
        tp > KV); MLA's latent is shared by all heads, so every TP rank keeps all of it.
        """
        if self.attention == "mla":
            return self.mla.kv_lora_rank + self.mla.qk_rope_head_dim
        return 2 * math.ceil(self.n_kv_heads / tp) * self.head_dim

    def kv_bytes_per_token(self, kv_dtype_bytes: float) -> float:
        """Bytes appended to the cache per token, all layers, whole model (tp = 1)."""
        return self.n_layers * self.kv_elements_per_token_per_layer() * kv_dtype_bytes

    def prefill_attention_flops(self, chunk_tokens, prior_tokens):
        """Attention-core FLOPs of a prefill chunk per layer, all heads (arrays allowed).

        A chunk of c tokens after p cached ones attends c*p + c(c+1)/2 positions. MLA picks the
        cheaper of its two forms: the MHA form, which must first up-project the p cached latents to
        keys and values (2 * kv_lora * H * (nope + v) FLOPs each), or the absorbed (decode) form.
        """
        c, p = chunk_tokens, prior_tokens
        positions = c * p + c * (c + 1) / 2
        if self.attention != "mla":
            return positions * self.attention_flops_per_position("prefill")
        m = self.mla
        up_projection = 2 * m.kv_lora_rank * self.n_heads * (m.qk_nope_head_dim + m.v_head_dim)
        mha = positions * self.attention_flops_per_position("prefill") + p * up_projection
        absorbed = positions * self.attention_flops_per_position("decode")
        return np.minimum(mha, absorbed)

    def attention_flops_per_position(self, phase: str) -> int:
        """Attention-core FLOPs per (query token, attended position) per layer, all heads."""
        h = self.n_heads
        if self.attention == "mla":
            m = self.mla
            if phase == "decode":
                return 2 * h * (m.kv_lora_rank + m.qk_rope_head_dim) + 2 * h * m.kv_lora_rank
            return 2 * h * (m.qk_nope_head_dim + m.qk_rope_head_dim) + 2 * h * m.v_head_dim
        return 4 * h * self.head_dim


def _build(name: str, entry: dict) -> Architecture:
    known = {f.name for f in fields(Architecture)}
    unknown = set(entry) - known
    if unknown:
        raise ValueError(f"model catalog entry {name!r} has unknown keys {sorted(unknown)}")
    entry = dict(entry)
    if "mla" in entry:
        entry["mla"] = MLA(**entry["mla"])
    if "moe" in entry:
        entry["moe"] = MoE(**entry["moe"])
    return Architecture(name=name, **entry)


@cache
def catalog() -> dict[str, Architecture]:
    with resources.files("sim").joinpath("data", "models.toml").open("rb") as f:
        table = tomllib.load(f)["models"]
    return {name: _build(name, entry) for name, entry in table.items()}
