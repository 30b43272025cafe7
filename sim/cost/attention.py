"""How fast attention kernels run: a share of the matmul rate that grows with the keys each query attends
and with the head dimension, from FlashAttention-3's published forward-pass measurements.

FlashAttention-3 (Shah et al., arXiv 2407.08608, figures of the forward pass on H100 SXM5, batch x
sequence = 16k tokens, hidden 2,048, non-causal), TFLOP/s at sequence 512 / 1k / 2k / 4k / 8k / 16k:

    head dim  64, BF16:  333 / 392 / 460 / 476 / 496 / 497
    head dim 128, BF16:  467 / 565 / 625 / 638 / 646 / 648
    head dim 128, FP8:   348 / 596 / 733 / 918 / 974 / 1008

(values read off the paper's figures; the headline, up to 740 TFLOP/s BF16 and ~1.2 PFLOP/s FP8, is the
paper's own). A kernel's tiles are as long as the keys a query attends, so short contexts leave the
tensor cores idle in each tile's prologue and epilogue; past ~4k keys the curve is flat. simrun expresses
each point over the best dense matmul measured on the same GPU (H100: 794.5 TFLOP/s BF16, 1,403 FP8;
published.md section 4), so that on another GPU attention keeps the same ratio to that GPU's measured
matmul rate; head dims between 64 and 128 interpolate, larger ones (MLA's 192 and absorbed 576) take the
128 curve (the paper's head-dim-256 curve reaches 740-756 TFLOP/s, so this errs slow), and keys outside
512-16k take the nearest end. Cross-checks: FlashMLA's compute-bound MLA decode, 660 TFLOP/s on H800
(deepseek-ai/FlashMLA docs/20250422-new-kernel-deep-dive.md), is 0.83 of H100's measured matmul rate, as
the head-dim-128 plateau here (0.82); tritonbench's FA3 run (pytorch/benchmark PR #2391, H100, head dim
128) gives 430-621 TFLOP/s over the same lengths, 4-8% under the paper.

Keys attended per query: a decode token attends its context; a causal prefill chunk of c tokens after p
cached ones attends p + (c + 1) / 2 on average. The recurrent mixers' state updates, priced with attention,
take the same curve at the sequence's length.
"""
from __future__ import annotations

import numpy as np

FA3_KEYS = np.array([512, 1024, 2048, 4096, 8192, 16384], dtype=float)
_H100_BF16_MATMUL_TFLOPS = 794.5
_H100_FP8_MATMUL_TFLOPS = 1403.0
FA3_BF16_TFLOPS = {64: np.array([333, 392, 460, 476, 496, 497], dtype=float),
                   128: np.array([467, 565, 625, 638, 646, 648], dtype=float)}
FA3_FP8_HDIM128_TFLOPS = np.array([348, 596, 733, 918, 974, 1008], dtype=float)


def attention_curve(head_dim: int, fp8: bool = False) -> np.ndarray:
    """Attention's rate over the GPU's measured matmul rate (at the same precision) at FA3_KEYS, for heads of
    `head_dim`. BF16: the head-dim-64 and -128 curves, interpolated linearly in head dim between them; FP8:
    the head-dim-128 curve (the only FP8 curve measured non-causal at that head dim)."""
    if fp8:
        return FA3_FP8_HDIM128_TFLOPS / _H100_FP8_MATMUL_TFLOPS
    weight = (min(max(head_dim, 64), 128) - 64) / 64
    low, high = FA3_BF16_TFLOPS[64], FA3_BF16_TFLOPS[128]
    return (low + weight * (high - low)) / _H100_BF16_MATMUL_TFLOPS


_LOG2_KEYS = np.log2(FA3_KEYS)


def share_at(curve: np.ndarray, keys) -> np.ndarray:
    """A curve over FA3_KEYS at `keys` (any shape), linear in log2(keys), clamped to the measured range."""
    return np.interp(np.log2(np.clip(np.asarray(keys, dtype=float), FA3_KEYS[0], FA3_KEYS[-1])), _LOG2_KEYS, curve)


def attention_share(keys, head_dim: int, fp8: bool = False) -> np.ndarray:
    """attention_curve(head_dim, fp8) at `keys` positions attended per query."""
    return share_at(attention_curve(head_dim, fp8), keys)
