"""The kernels a step launches, layer by layer, and what each costs beyond its roofline time.

Counts are per layer of a forward pass on one GPU, from the module lists engines run (fused kernels count
once); collectives are priced apart (sim.cost.step):
- attention (MHA/GQA/MQA, sliding window): input norm, QKV GEMM, rotary + cache write, attention, output
  GEMM = 5, + 1 with QK-norm. The vLLM FP8 Llama trace of neuralmagic/nm-vllm PR #332 shows these sites.
- MLA: fused down-projection GEMM (q_a, kv_a, k_rope), the two latent norms, q_b GEMM, the absorbed K
  batched GEMM, rotary + cache concat, attention, the absorbed V batched GEMM, output GEMM = 8 (modules
  1-8 of TensorRT-LLM's DeepSeek-R1 layer, docs/source/blogs/tech_blog/blog1 (B200 min-latency)).
- DSA's lightning indexer adds its query and key GEMMs, key norm, rotary, head-weight GEMM, scoring and
  top-k = 7 (DeepSeek-V3.2-Exp inference/model.py Indexer).
- a recurrent mixer (GDN, KDA, lightning, Mamba, RWKV): input norm, input projection, short convolution or
  token shift, gates, the recurrent kernel, gated norm, output projection = 7.
- dense FFN: norm, gate/up GEMM, activation, down GEMM = 4.
- MoE FFN: norm, router GEMM, top-k, token permutation (dispatch), grouped gate/up GEMM, activation,
  grouped down GEMM, finalize (un-permute and weighted sum) = 8, + 3 (gate/up, activation, down) with
  shared experts (TensorRT-LLM's modules 9-13 ibid.; the routed GEMMs, finalize and shared expert of the
  DeepSeek-R1 decode trace in SemiAnalysisAI/InferenceX issue #863).
- once per step: embedding, final norm, LM head, sampling = 4.
Each kernel costs at least calibration.KERNEL_FLOOR_S on the GPU (its launch gap, ramp and tail, paid
inside a CUDA graph too); launched one by one (eager) the CPU needs calibration.EAGER_LAUNCH_S per kernel,
and the GPU waits when that is longer than the kernels themselves.
"""
from __future__ import annotations

from sim.layers import ATTENTION
from sim.models import Architecture

MIXER_KERNELS = {"attention": 5, "mla": 8, "dsa_indexer": 7, "recurrent": 7}
FFN_KERNELS = {"dense": 4, "moe": 8, "shared_expert": 3}
STEP_KERNELS = 4


def mixer_kernels(arch: Architecture, kind: str) -> int:
    """Kernels of one layer's token mixer of `kind`."""
    if kind not in ATTENTION:
        return MIXER_KERNELS["recurrent"]
    if arch.mla:
        return MIXER_KERNELS["mla"] + (MIXER_KERNELS["dsa_indexer"] if arch.dsa else 0)
    return MIXER_KERNELS["attention"] + (1 if arch.qk_norm else 0)


def ffn_kernels(arch: Architecture, moe_layer: bool) -> int:
    """Kernels of one layer's FFN (none where the model has no FFN)."""
    if moe_layer:
        return FFN_KERNELS["moe"] + (FFN_KERNELS["shared_expert"] if arch.moe.n_shared else 0)
    return FFN_KERNELS["dense"] if arch.ffn != "none" else 0


def layer_kernels(arch: Architecture, layers: range) -> int:
    """Kernels a GPU launches for `layers` in one forward pass."""
    return sum(mixer_kernels(arch, arch.kinds[i]) + ffn_kernels(arch, arch.is_moe_layer(i)) for i in layers)
