"""Model architectures from `data/models.toml`, and what each costs per token, layer by layer.

A model is a stack of layers, each a token mixer (sim.layers: attention, sliding window, MLA, sparse
DSA, or a recurrent kind) followed by a dense or MoE FFN. `layer_pattern` (one character per layer)
and `layer_kinds` (character -> mixer kind) describe hybrids; without a pattern every layer has the
model's own mixer. Parameter counts are built layer by layer from the config (no published totals
are stored), so the tests can compare them against the published counts.

Per layer besides the mixer (d = d_model):
- FFN: SwiGLU / GeGLU 3*d*f; GELU 2*d*f + f + d biases; relu2 (RWKV ChannelMix) 2*d*f + d token-shift
  mix; biases on SwiGLU add 2f + d. MoE layer: E routed + n_shared experts of width f_e, router d*E
  (+E bias), a shared-expert gate d (Qwen3-Next). MoE layers are every `moe.every`-th from `moe.offset`,
  after `first_dense_layers`.
- Norms: `norms_per_layer` of them plus a final one; RMSNorm d weights, LayerNorm 2d.
Embeddings: vocab*d (padded vocab where given; + max_context*d learned positions; + a norm where the
model normalises its embeddings); LM head vocab*d unless tied.
"""
from __future__ import annotations

import math
import tomllib
from collections import Counter
from dataclasses import dataclass, field, fields
from functools import cache, cached_property
from importlib import resources
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, Strict, TypeAdapter, ValidationError

from sim.errors import pydantic_message
from sim.layers import (ATTENTION, CONV_STATE_BYTES, DSA, GDN, KDA, MLA, RECURRENT, RWKV7, SCHEMA, STATE_BYTES,
                        Heads, LayerKind, Mamba1, Mamba2, ModelKeyError, Tokens, Width, positions_attended)

Flag = Annotated[bool, Strict()]
MAX_LAYERS = 10_000    # far beyond any published model (Megatron 1T: 128)
Layers = Annotated[int, Strict(), Field(ge=0, le=MAX_LAYERS)]    # a layer count or index


@dataclass(frozen=True)
class MoE:
    __pydantic_config__ = SCHEMA
    n_experts: Heads
    top_k: Heads
    n_shared: Annotated[int, Strict(), Field(ge=0, le=1000)]
    expert_ffn_dim: Width
    first_dense_layers: Layers
    router_bias: Flag
    every: Annotated[int, Strict(), Field(ge=1, le=MAX_LAYERS)] = 1   # MoE on every `every`-th layer ...
    offset: Layers = 0       # ... starting at this one (Jamba: every 2nd from layer 1)
    shared_gate: Flag = False
    # Group-limited routing (DeepSeek-V3's n_group / topk_group): the experts sit in n_group equal groups in
    # order and a token's top-k come from the topk_group groups it picks; 1 / 1 routes freely.
    n_group: Heads = 1
    topk_group: Heads = 1

    def __post_init__(self):
        if self.top_k > self.n_experts:
            raise ModelKeyError("top_k", f"top_k {self.top_k} routes to more experts than the {self.n_experts} "
                                f"there are; valid: 1 to n_experts")
        if self.n_experts % self.n_group:
            raise ModelKeyError("n_group", f"n_group {self.n_group} does not divide the {self.n_experts} experts; "
                                f"valid: a divisor of n_experts")
        if self.topk_group > self.n_group:
            raise ModelKeyError("topk_group", f"topk_group {self.topk_group} picks more groups than the "
                                f"{self.n_group} there are; valid: 1 to n_group")


NEEDS = {"gdn": "gdn", "kda": "kda", "mamba1": "mamba", "mamba2": "ssm", "rwkv7": "rwkv"}  # kind -> its table
DEFAULT_MIXER = {"mha": "attention", "gqa": "attention", "mla": "attention", "mla_dsa": "attention",
                 "ssm": "mamba2", "linear": "rwkv7"}
SUBTABLES = {"mla": MLA, "moe": MoE, "dsa": DSA, "gdn": GDN, "kda": KDA, "mamba": Mamba1, "ssm": Mamba2,
             "rwkv": RWKV7}


@dataclass(frozen=True)
class Architecture:
    """A model table, typed and bounded (sim.layers.SCHEMA) and checked whole by __post_init__."""

    __pydantic_config__ = SCHEMA
    name: str
    display_name: Annotated[str, Field(min_length=1, max_length=200)]
    # The model's mixer: attention (MHA / GQA / MLA / MLA with DSA), Mamba-2, RWKV-7, or a layer pattern.
    attention: Literal["mha", "gqa", "mla", "mla_dsa", "ssm", "linear", "hybrid"]
    n_layers: Annotated[int, Strict(), Field(ge=1, le=MAX_LAYERS)]
    d_model: Width
    n_heads: Heads
    ffn: Literal["swiglu", "geglu", "gelu", "relu2", "none"]
    ffn_dim: Annotated[int, Strict(), Field(ge=0, le=10_000_000)]   # 0 where no layer is dense
    norm: Literal["rmsnorm", "layernorm"]
    vocab: Annotated[int, Strict(), Field(ge=1, le=100_000_000)]
    max_context: Annotated[int, Strict(), Field(ge=0, le=1_000_000_000)]   # 0: no limit (no full attention)
    tie_embeddings: Flag
    source: Annotated[str, Field(min_length=1, max_length=4000)]
    n_kv_heads: Annotated[int, Strict(), Field(ge=0, le=100_000)] = 0
    head_dim: Annotated[int, Strict(), Field(ge=0, le=1_000_000)] = 0
    qk_norm: Flag = False
    fp8_block_scales: Flag = False   # its FP8 checkpoint scales weights per 128 x 128 block (DeepSeek's recipe)
    biases: Flag = False
    learned_positions: Flag = False
    embedding_norm: Flag = False   # a norm right after the embedding (RWKV's ln0)
    vocab_padded: Annotated[int, Strict(), Field(ge=0, le=100_000_000)] = 0
    norms_per_layer: Annotated[int, Strict(), Field(ge=0, le=16)] = 2
    layer_pattern: Annotated[str, Field(max_length=MAX_LAYERS)] = ""
    layer_kinds: dict[Annotated[str, Field(min_length=1, max_length=1)], LayerKind] = field(default_factory=dict)
    sliding_window: Annotated[int, Strict(), Field(ge=0, le=1_000_000_000)] = 0
    attn_output_gate: Flag = False
    attn_sinks: Flag = False
    mla: MLA | None = None
    dsa: DSA | None = None
    moe: MoE | None = None
    gdn: GDN | None = None
    kda: KDA | None = None
    mamba: Mamba1 | None = None
    ssm: Mamba2 | None = None
    rwkv: RWKV7 | None = None
    base: Annotated[str, Field(max_length=200)] = ""   # the catalog model a scaled variant was derived from

    def __post_init__(self):
        """What the types cannot say: the keys agree with each other and every layer can be built."""
        _check_layers(self)
        _check_attention(self)
        _check_ffn(self)
        _check_recurrent(self)

    # ---- layers ---------------------------------------------------------------------------------
    @cached_property
    def kinds(self) -> tuple[str, ...]:
        """The mixer kind of every layer, index 0 first."""
        if not self.layer_pattern:
            return (DEFAULT_MIXER[self.attention],) * self.n_layers
        return tuple(self.layer_kinds[ch] for ch in self.layer_pattern)

    def is_moe_layer(self, i: int) -> bool:
        m = self.moe
        return m is not None and i >= m.first_dense_layers and (i - m.offset) % m.every == 0

    @cached_property
    def n_moe_layers(self) -> int:
        return sum(self.is_moe_layer(i) for i in range(self.n_layers))

    @property
    def n_dense_layers(self) -> int:
        return self.n_layers - self.n_moe_layers

    @property
    def attention_flavor(self) -> str:
        """What its attention layers are: mla_dsa, mla, mha, gqa or mqa."""
        if self.mla:
            return "mla_dsa" if self.dsa else "mla"
        return "mha" if self.n_kv_heads == self.n_heads else ("mqa" if self.n_kv_heads == 1 else "gqa")

    def kind_counts(self, layers: range) -> Counter:
        return Counter(self.kinds[i] for i in layers)

    # ---- parameters -------------------------------------------------------------------------------
    @property
    def _norm_params(self) -> int:
        return self.d_model * (2 if self.norm == "layernorm" else 1)

    def mixer_params(self, kind: str, layer: int = 1) -> int:
        """Parameters of one layer's token mixer (see sim.layers for each formula)."""
        d, h = self.d_model, self.n_heads
        if kind in ATTENTION:
            if self.mla:
                m = self.mla
                q = (d * m.q_lora_rank + m.q_lora_rank + m.q_lora_rank * h * (m.qk_nope_head_dim + m.qk_rope_head_dim)
                     if m.q_lora_rank else d * h * (m.qk_nope_head_dim + m.qk_rope_head_dim))
                params = (q + d * (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank
                          + m.kv_lora_rank * h * (m.qk_nope_head_dim + m.v_head_dim) + h * m.v_head_dim * d)
                if self.dsa:
                    x = self.dsa
                    params += (m.q_lora_rank * x.index_n_heads * x.index_head_dim + d * x.index_head_dim
                               + 2 * x.index_head_dim + d * x.index_n_heads)
                return params
            q = h * self.head_dim
            params = d * q * (2 if self.attn_output_gate else 1) + q * d + self.kv_projection_params
            if self.biases:
                params += q + d
            if self.qk_norm:
                params += 2 * self.head_dim
            return params + (h if self.attn_sinks else 0)
        if kind == "gdn":
            g = self.gdn
            qk, v = g.n_k_heads * g.k_head_dim, g.n_v_heads * g.v_head_dim
            return (d * (2 * qk + 2 * v) + d * 2 * g.n_v_heads + (2 * qk + v) * g.conv_kernel
                    + 2 * g.n_v_heads + g.v_head_dim + v * d)
        if kind == "lightning":
            inner = h * self.head_dim
            return d * 3 * inner + d * inner + inner * d + inner
        if kind == "kda":
            k = self.kda
            inner, hd = k.n_heads * k.head_dim, k.head_dim
            return (3 * d * inner + 3 * inner * k.conv_kernel + 2 * (d * hd + hd * inner) + d * k.n_heads
                    + k.n_heads + inner + hd + inner * d)
        if kind == "mamba1":
            m = self.mamba
            di = m.expand * d
            return (d * 2 * di + di * (m.d_conv + 1) + di * (m.dt_rank + 2 * m.d_state) + (m.dt_rank + 1) * di
                    + di * m.d_state + di + di * d + m.dt_rank + 2 * m.d_state)
        if kind == "mamba2":
            s = self.ssm
            di, heads = s.expand * d, s.expand * d // s.head_dim
            conv = di + 2 * s.n_groups * s.d_state
            return d * (2 * di + 2 * s.n_groups * s.d_state + heads) + conv * (s.d_conv + 1) + 3 * heads + di + di * d
        if kind == "rwkv7":
            r = self.rwkv
            lora = 2 * d * (r.decay_lora + r.aaa_lora + r.gate_lora) + (2 * d * r.mv_lora + d if layer else 0)
            return 6 * d + 2 * d + lora + 3 * d + 4 * d * d + 2 * d
        raise ValueError(f"unknown mixer kind {kind!r}")

    @property
    def kv_projection_params(self) -> int:
        """K and V projection weights (and biases) of one GQA/MHA layer; 0 for MLA."""
        if self.mla:
            return 0
        kv = self.n_kv_heads * self.head_dim
        return 2 * self.d_model * kv + (2 * kv if self.biases else 0)

    def replicated_params(self, kind: str) -> int:
        """Weights every tensor-parallel rank keeps whole in one layer: its norms, and for MLA the latent
        down-projections q_a, kv_a with their norms (vLLM builds them as ReplicatedLinear)."""
        replicated = self.norms_per_layer * self._norm_params
        if kind in ATTENTION and self.mla:
            m = self.mla
            replicated += (self.d_model * m.q_lora_rank + m.q_lora_rank
                           + self.d_model * (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank)
        return replicated

    def ffn_params(self, width: int) -> int:
        d = self.d_model
        if self.ffn == "none":
            return 0
        if self.ffn == "gelu":
            return 2 * d * width + (width + d if self.biases else 0)
        if self.ffn == "relu2":
            return 2 * d * width + d
        return 3 * d * width + (2 * width + d if self.biases else 0)

    @property
    def expert_params(self) -> int:
        return self.ffn_params(self.moe.expert_ffn_dim) if self.moe else 0

    @property
    def router_params(self) -> int:
        if not self.moe:
            return 0
        m = self.moe
        return self.d_model * m.n_experts + (m.n_experts if m.router_bias else 0) + (self.d_model if m.shared_gate else 0)

    def layer_always_params(self, i: int) -> int:
        """Weights every token of layer i touches: mixer, norms, and the dense FFN or the MoE's shared
        experts and router."""
        ffn = (self.moe.n_shared * self.expert_params + self.router_params if self.is_moe_layer(i)
               else self.ffn_params(self.ffn_dim))
        return self.mixer_params(self.kinds[i], i) + self.norms_per_layer * self._norm_params + ffn

    @property
    def embedding_params(self) -> int:
        rows = self.vocab_padded or self.vocab
        return rows * self.d_model + (self.max_context * self.d_model if self.learned_positions else 0)

    @property
    def lm_head_params(self) -> int:
        return 0 if self.tie_embeddings else self.vocab * self.d_model

    @cached_property
    def params_total(self) -> int:
        routed = self.moe.n_experts * self.expert_params if self.moe else 0
        return (sum(self.layer_always_params(i) for i in range(self.n_layers)) + self.n_moe_layers * routed
                + self.embedding_params + self.lm_head_params + self._norm_params * (2 if self.embedding_norm else 1))

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
        return 2 * (self.params_active - self.embedding_params - self.lm_head_params + self.vocab * self.d_model)

    # ---- cache and state ----------------------------------------------------------------------------
    def kv_elements_per_token(self, kind: str, tp: int = 1) -> int:
        """KV elements one GPU of a tp group stores per token in one layer of `kind` (0: no KV).

        GQA/MHA shard KV heads over tp (a GPU keeps at least one head: heads are copied when
        tp > KV); MLA's latent is shared by all heads, so every TP rank keeps all of it."""
        if kind not in ATTENTION:
            return 0
        if self.mla:
            return self.mla.kv_lora_rank + self.mla.qk_rope_head_dim
        return 2 * math.ceil(self.n_kv_heads / tp) * self.head_dim

    def kv_bytes_per_token_layer(self, kind: str, kv_dtype_bytes: float, tp: int = 1) -> float:
        """KV bytes per token of one layer on one GPU (the DSA indexer key is FP8 whatever the KV dtype)."""
        extra = self.dsa.key_bytes if self.dsa and kind in ATTENTION else 0.0
        return self.kv_elements_per_token(kind, tp) * kv_dtype_bytes + extra

    def state_bytes_layer(self, kind: str, tp: int = 1) -> float:
        """Recurrent state one GPU keeps per sequence in one layer: FP32 state + BF16 conv state, its
        heads (or channels) split over tp."""
        d = self.d_model
        if kind == "gdn":
            g = self.gdn
            rec = g.n_v_heads * g.k_head_dim * g.v_head_dim
            conv = (2 * g.n_k_heads * g.k_head_dim + g.n_v_heads * g.v_head_dim) * (g.conv_kernel - 1)
        elif kind == "lightning":
            rec, conv = self.n_heads * self.head_dim * self.head_dim, 0
        elif kind == "kda":
            k = self.kda
            rec, conv = k.n_heads * k.head_dim * k.head_dim, 3 * k.n_heads * k.head_dim * (k.conv_kernel - 1)
        elif kind == "mamba1":
            m = self.mamba
            rec, conv = m.expand * d * m.d_state, m.expand * d * (m.d_conv - 1)
        elif kind == "mamba2":
            s = self.ssm
            rec = s.expand * d * s.d_state
            conv = (s.expand * d + 2 * s.n_groups * s.d_state) * (s.d_conv - 1)
        elif kind == "rwkv7":
            rec, conv = self.n_heads * self.rwkv.head_size ** 2, 2 * d
        else:
            return 0.0
        return (rec * STATE_BYTES + conv * CONV_STATE_BYTES) / tp

    def kv_bytes_per_token(self, kv_dtype_bytes: float) -> float:
        """Bytes appended to the cache per token by the layers whose cache grows with the context
        (all but sliding-window and recurrent ones), whole model (tp = 1)."""
        return sum(self.kv_bytes_per_token_layer(k, kv_dtype_bytes) for k in self.kinds if k == "attention")

    def window_kv_bytes_per_token(self, kv_dtype_bytes: float) -> float:
        """Bytes per token of the sliding-window layers, held for the last `sliding_window` tokens only."""
        return sum(self.kv_bytes_per_token_layer(k, kv_dtype_bytes) for k in self.kinds if k == "window")

    @property
    def state_bytes_per_sequence(self) -> float:
        return sum(self.state_bytes_layer(k) for k in self.kinds)

    # ---- attention and state FLOPs, and cache bytes touched per sequence ---------------------------------
    def attention_flops_per_position(self, phase: str) -> int:
        """Attention-core FLOPs per (query token, attended position) per attention layer, all heads."""
        h = self.n_heads
        if self.mla:
            m = self.mla
            if phase == "decode":
                return 2 * h * (m.kv_lora_rank + m.qk_rope_head_dim) + 2 * h * m.kv_lora_rank
            return 2 * h * (m.qk_nope_head_dim + m.qk_rope_head_dim) + 2 * h * m.v_head_dim
        return 4 * h * self.head_dim

    def state_flops_per_token(self, kind: str) -> int:
        """State-update FLOPs of one recurrent layer per token (order of magnitude, models.md section 1)."""
        d = self.d_model
        return {"gdn": lambda: 8 * self.gdn.n_v_heads * self.gdn.k_head_dim * self.gdn.v_head_dim,
                "lightning": lambda: 6 * self.n_heads * self.head_dim ** 2,
                "kda": lambda: 8 * self.kda.n_heads * self.kda.head_dim ** 2,
                "mamba1": lambda: 6 * self.mamba.expand * d * self.mamba.d_state,
                "mamba2": lambda: 6 * self.ssm.expand * d * self.ssm.d_state,
                "rwkv7": lambda: 8 * self.n_heads * self.rwkv.head_size ** 2}[kind]()

    def _cap(self, kind: str):
        """How many positions one query of this layer attends at most (None: all)."""
        if kind == "window":
            return self.sliding_window
        return self.dsa.index_topk if self.dsa else None

    def prefill_flops(self, kind: str, chunk, prior):
        """Attention (or state) FLOPs of one layer for prefill chunks of c tokens after p cached ones.

        Attention attends positions_attended(c, p[, cap]). MLA picks the cheaper of its two forms: the
        MHA form, which must first up-project the cached latents it reads to keys and values
        (2 * kv_lora * H * (nope + v) FLOPs each), or the absorbed (decode) form. DSA adds its indexer
        over every position. Recurrent layers: c x state FLOPs per token."""
        c, p = np.asarray(chunk, dtype=float), np.asarray(prior, dtype=float)
        if kind in RECURRENT:
            return c * self.state_flops_per_token(kind)
        cap = self._cap(kind)
        positions = positions_attended(c, p, cap)
        flops = positions * self.attention_flops_per_position("prefill")
        if self.mla:
            m = self.mla
            up_projection = 2 * m.kv_lora_rank * self.n_heads * (m.qk_nope_head_dim + m.v_head_dim)
            read = p if cap is None else np.minimum(p, cap)
            flops = np.minimum(flops + read * up_projection, positions * self.attention_flops_per_position("decode"))
        if self.dsa:
            flops = flops + positions_attended(c, p) * 2 * self.dsa.index_n_heads * self.dsa.index_head_dim
        return flops

    def decode_flops(self, kind: str, positions):
        """Attention (or state) FLOPs of one layer for one decode token attending `positions` (L + 1)."""
        positions = np.asarray(positions, dtype=float)
        if kind in RECURRENT:
            return np.full_like(positions, self.state_flops_per_token(kind))
        cap = self._cap(kind)
        flops = (positions if cap is None else np.minimum(positions, cap)) * self.attention_flops_per_position("decode")
        if self.dsa:
            flops = flops + positions * 2 * self.dsa.index_n_heads * self.dsa.index_head_dim
        return flops

    def cache_bytes(self, kind: str, read_tokens, written_tokens, kv_dtype_bytes: float, tp: int):
        """Bytes one GPU moves for one layer's cache: KV of the positions read (a window or DSA's top-k
        caps them; the DSA indexer reads every key) and of the tokens written; a recurrent layer reads
        and writes its state once per sequence per step."""
        read = np.asarray(read_tokens, dtype=float)
        if kind in RECURRENT:
            return np.full_like(read, 2 * self.state_bytes_layer(kind, tp))
        cap = self._cap(kind)
        core = self.kv_elements_per_token(kind, tp) * kv_dtype_bytes
        capped = read if cap is None else np.minimum(read, cap)
        key = self.dsa.key_bytes if self.dsa else 0.0
        return core * (capped + written_tokens) + key * (read + written_tokens)


def _tile(pattern: str, n_layers: int) -> str:
    """A layer pattern stretched to n_layers by repeating its shortest period."""
    period = next(k for k in range(1, len(pattern) + 1)
                  if all(pattern[i] == pattern[i % k] for i in range(len(pattern))))
    return (pattern[:period] * (n_layers // period + 1))[:n_layers]


def _check_layers(a: Architecture) -> None:
    if a.attention == "hybrid" and not a.layer_pattern:
        raise ModelKeyError("layer_pattern", "a hybrid needs a layer_pattern (one character per layer) and "
                            "layer_kinds naming each character")
    if a.layer_pattern and len(a.layer_pattern) != a.n_layers:
        raise ModelKeyError("layer_pattern", f"layer_pattern has {len(a.layer_pattern)} layers, n_layers "
                            f"{a.n_layers}; valid: one character per layer")
    unnamed = sorted(set(a.layer_pattern) - set(a.layer_kinds))
    if unnamed:
        raise ModelKeyError("layer_kinds", f"layer_pattern uses {unnamed}, which layer_kinds does not name")
    if "window" in a.kinds and a.sliding_window <= 0:
        raise ModelKeyError("sliding_window", "window layers need sliding_window > 0 (tokens each query sees)")
    for kind in set(a.kinds):
        table = NEEDS.get(kind)
        if table and getattr(a, table) is None:
            raise ModelKeyError(table, f"{kind} layers need a {table} table")


def _check_attention(a: Architecture) -> None:
    """MLA needs its latent table (and DSA its indexer); other attention layers need heads that group."""
    if a.attention in ("mla", "mla_dsa") and a.mla is None:
        raise ModelKeyError("mla", f"attention '{a.attention}' needs an mla table")
    if a.mla and a.attention not in ("mla", "mla_dsa", "hybrid"):
        raise ModelKeyError("attention", f"an mla table needs attention 'mla', 'mla_dsa' or 'hybrid' "
                            f"(got '{a.attention}')")
    if (a.attention == "mla_dsa") != (a.dsa is not None):
        raise ModelKeyError("dsa", "attention 'mla_dsa' and a dsa table (its indexer) go together")
    if "lightning" in a.kinds and not a.head_dim:
        raise ModelKeyError("head_dim", "lightning layers need head_dim > 0")
    if a.mla or not any(k in ATTENTION for k in a.kinds):
        return
    if not a.head_dim:
        raise ModelKeyError("head_dim", "attention layers need head_dim > 0")
    if not a.n_kv_heads or a.n_heads % a.n_kv_heads:
        raise ModelKeyError("n_kv_heads", f"n_kv_heads {a.n_kv_heads} must divide the {a.n_heads} query heads; "
                            f"valid: a divisor of n_heads")
    if a.attention == "mha" and a.n_kv_heads != a.n_heads:
        raise ModelKeyError("n_kv_heads", f"mha keeps a KV head per query head: n_kv_heads must be {a.n_heads} "
                            f"(got {a.n_kv_heads}); valid: {a.n_heads}, or attention = 'gqa'")


def _check_ffn(a: Architecture) -> None:
    if a.moe and a.ffn == "none":
        raise ModelKeyError("ffn", "a moe table needs an FFN kind for its experts; valid: swiglu, geglu, gelu, relu2")
    if a.moe and a.moe.first_dense_layers > a.n_layers:
        raise ModelKeyError("moe.first_dense_layers", f"first_dense_layers {a.moe.first_dense_layers} > n_layers "
                            f"{a.n_layers}")
    if a.n_dense_layers and a.ffn != "none" and not a.ffn_dim:
        raise ModelKeyError("ffn_dim", f"{a.n_dense_layers} dense layers need ffn_dim > 0")
    if a.vocab_padded and a.vocab_padded < a.vocab:
        raise ModelKeyError("vocab_padded", f"vocab_padded {a.vocab_padded} < vocab {a.vocab}; valid: 0 or at "
                            f"least vocab")
    if not a.max_context and (a.learned_positions or "attention" in a.kinds):
        raise ModelKeyError("max_context", "a model with full-attention layers or learned positions needs "
                            "max_context > 0 (0: no limit, for recurrent and sliding-window layers only)")


def _check_recurrent(a: Architecture) -> None:
    """Heads that tile the width they split: Mamba-2's expand x d into heads in groups, RWKV-7's d."""
    if a.ssm:
        inner = a.ssm.expand * a.d_model
        if inner % a.ssm.head_dim or (inner // a.ssm.head_dim) % a.ssm.n_groups:
            raise ModelKeyError("ssm.head_dim", f"expand x d_model = {inner} must split into heads of "
                                f"head_dim {a.ssm.head_dim}, in n_groups {a.ssm.n_groups} equal groups")
    if a.rwkv and a.n_heads * a.rwkv.head_size != a.d_model:
        raise ModelKeyError("n_heads", f"RWKV-7's {a.n_heads} heads of {a.rwkv.head_size} must tile d_model "
                            f"{a.d_model}; valid: n_heads = d_model / rwkv.head_size")


_SCHEMA = TypeAdapter(Architecture)


def _key_error(error: ValidationError) -> ModelKeyError:
    """pydantic's first error (a wrong value before a missing key) as one ModelKeyError: the key dotted
    (`moe.top_k`), a check of __post_init__ keeping its own key and message."""
    err = next((e for e in error.errors() if e["type"] != "missing"), error.errors()[0])
    path = [str(p) for p in err["loc"]]
    cause = err.get("ctx", {}).get("error")
    if isinstance(cause, ModelKeyError):
        return ModelKeyError(".".join(path + ([cause.key] if cause.key else [])) or None, str(cause))
    message = pydantic_message(err)
    if err["type"] == "missing":
        message += (f"; give every key of the {path[0]} table" if len(path) > 1
                    else "; give every key of a model, or base = NAME")
    return ModelKeyError(".".join(path) or None, message)


def build(name: str, entry: dict, models: dict[str, Architecture] | None = None) -> Architecture:
    """An Architecture from a TOML table, checked by its schema; `base = NAME` starts from that model and
    overrides the keys given (a scaled variant), stretching its layer pattern to a new n_layers and
    changing only the keys a partial subtable gives."""
    known = {f.name for f in fields(Architecture)} - {"name"}
    unknown = set(entry) - known
    if unknown:
        raise ModelKeyError(None, f"unknown keys {sorted(unknown)}; valid: {', '.join(sorted(known))}")
    table = dict(entry)
    if "base" in entry:
        models = catalog() if models is None else models
        base = models.get(entry["base"]) if isinstance(entry["base"], str) else None
        if base is None:
            raise ModelKeyError("base", f"unknown base model {entry['base']!r}; valid: {', '.join(sorted(models))}")
        n_layers = entry.get("n_layers")
        if base.layer_pattern and "layer_pattern" not in entry and type(n_layers) is int and 0 < n_layers <= MAX_LAYERS:
            table["layer_pattern"] = _tile(base.layer_pattern, n_layers)
        for key, value in entry.items():
            inherited = getattr(base, key)
            if key in SUBTABLES and isinstance(value, dict) and inherited is not None:
                table[key] = {**{f.name: getattr(inherited, f.name) for f in fields(inherited)}, **value}
        table = {**{f.name: getattr(base, f.name) for f in fields(Architecture)},
                 "display_name": f"{name} (scaled from {base.display_name})", **table}
    try:
        return _SCHEMA.validate_python({**table, "name": name})
    except ValidationError as e:
        raise _key_error(e) from None


@cache
def catalog() -> dict[str, Architecture]:
    with resources.files("sim").joinpath("data", "models.toml").open("rb") as f:
        table = tomllib.load(f)["models"]
    models: dict[str, Architecture] = {}
    for name, entry in table.items():
        try:
            models[name] = build(name, entry, models)
        except ModelKeyError as e:
            raise ValueError(f"model catalog entry {name!r} key {e.key!r}: {e}") from None
    return models
