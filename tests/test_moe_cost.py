"""MoE serving physics against arithmetic written out here: a batch-1 decode step and an 8,192-token
prefill of DeepSeek-V3 on 8x H200 (TP8, EP8, FP8 weights and KV, TensorRT-LLM 0.21 as in the published
rows), every term by hand (kernel launches and floors, the per-expert cost of its MoE kernels, the engine's
all-reduce floor, narrow expert GEMMs, block-scaled FP8 GEMMs, the softened roofline, the overlap
scheduler); then the layout facts the published rows show."""
import math

import numpy as np
import pytest

from hardware import catalog as hw
from hardware.cluster import Cluster
from hardware.deployment import Layout, place_replicas, price_replica
from sim.cost import calibration
from sim.cost.engines import engines
from sim.cost.step import ReplicaCostModel
from sim.models import catalog

D, H, LAYERS, DENSE, MOE = 7168, 128, 61, 3, 58
# Per layer (sim.layers, MLA): q_a d x 1536 + norm, q_b 1536 x H x 192, kv_a d x 576 + norm, kv_b 512 x H x 256,
# o H x 128 x d; two RMSNorms of d.
MIXER = 7168 * 1536 + 1536 + 1536 * 128 * 192 + 7168 * 576 + 512 + 512 * 128 * 256 + 128 * 128 * 7168  # 187,107,328
REPLICATED = 2 * 7168 + 7168 * 1536 + 1536 + 7168 * 576 + 512      # norms, q_a, kv_a: 15,155,200, whole on each rank
ROUTER = 256 * 7168 + 256                                           # + its bias: 1,835,264, whole on each rank
EXPERT = 3 * 7168 * 2048                                            # SwiGLU expert: 44,040,192
DENSE_LAYER = MIXER + 2 * 7168 + 3 * 7168 * 18432                   # 583,483,392
MOE_LAYER = MIXER + 2 * 7168 + EXPERT + ROUTER                      # + 1 shared expert: 232,997,120
ALWAYS_PER_GPU = (DENSE * (REPLICATED + (DENSE_LAYER - REPLICATED) / 8)
                  + MOE * (REPLICATED + ROUTER + (MOE_LAYER - REPLICATED - ROUTER) / 8))   # 2,810,083,840
HEAD_PER_GPU = 129280 * 7168 / 8                                    # LM head split over TP8, BF16
# Kernels a GPU launches per forward pass (sim.cost.kernels): MLA 8, dense FFN 4, MoE 8 + 3 for the shared
# expert, + 4 per step.
KERNELS = DENSE * (8 + 4) + MOE * (8 + 8 + 3) + 4                   # 1,142

H200_FP8 = 1978.9e12 * 0.734 * calibration.COMPUTE_EFFICIENCY      # FP8 at its measured share, engine share
HBM = 4.8e12 * calibration.HBM_EFFICIENCY
EXPERT_HBM = 4.8e12 * calibration.EXPERT_HBM_EFFICIENCY          # grouped expert GEMMs' own share
NVLINK = 0.786 * 450e9                                              # NCCL's measured share of NVLink 4


def roofline(compute_s, memory_s):
    k = calibration.ROOFLINE_SHARPNESS
    return (compute_s ** k + memory_s ** k) ** (1 / k)


ENGINE = engines()["trtllm_0_21"]


def deepseek(ep=8, cuda_graphs=None, **options):
    cluster = Cluster(hw.accelerators()["h200"], hw.node_types()["hgx_8gpu"], 1, None)
    layout = Layout(8, 1, ep, 1)
    (replica,) = place_replicas(cluster, 1, layout)
    engine = ENGINE.with_overrides(cuda_graphs=cuda_graphs)
    return ReplicaCostModel(catalog()["deepseek_v3"], cluster.accelerator,
                            price_replica(cluster, replica, engine.allreduce_floor), layout, "fp8", 1.0,
                            engine=engine, **options)


def busiest_of_8(g: int, q: float) -> float:
    """E[max] of 8 independent Binomial(g, q): sum over m < g of 1 - F(m)^8."""
    cdf, total = 0.0, 0.0
    for m in range(g):
        cdf += math.comb(g, m) * q ** m * (1 - q) ** (g - m)
        total += 1 - cdf ** 8
    return total


def test_batch1_decode_step_by_hand():
    """One token at 4,000 cached positions, with CUDA graphs (off by default in 0.21, on here so that the
    kernels' floors, not the CPU's launches, show), overlap scheduler."""
    positions = 4001
    block = ENGINE.fp8_block_gemm_share          # DeepSeek's 128 x 128 scales on CUTLASS block GEMMs: 0.43
    rate = H200_FP8 * block
    expert_rate = rate * 2048 / (2048 + calibration.GEMM_HALF_WIDTH)   # whole experts on a GPU: 2,048 wide
    # Weights: every GPU its always-on share at the dense HBM share; the busiest of the 8 reads E[max Bin(32,
    # 8/256)] whole experts, at grouped GEMMs' own share.
    experts = busiest_of_8(32, 8 / 256)
    weight_s = (ALWAYS_PER_GPU + HEAD_PER_GPU * 2) / HBM + experts * EXPERT * MOE / EXPERT_HBM
    lin_c = (2 * ALWAYS_PER_GPU / rate + 2 * MOE * 8 * EXPERT / 8 / expert_rate + 2 * HEAD_PER_GPU / rate)
    lin_s = roofline(lin_c, weight_s)
    # MLA decode, absorbed: 2H(512 + 64) + 2H x 512 FLOPs per position per layer, heads split over TP8, in FP8
    # (TensorRT-LLM's FP8 generation MLA) at FlashAttention-3's FP8 rate for 4,001 keys over H100's measured
    # FP8 matmul (sim.cost.attention): 733 + log2(4001 / 2048) x (918 - 733) = 911.7 TFLOP/s of 1,403, 0.650,
    # of H200's measured FP8 matmul rate; the 576-element FP8 latent of every position read, one written.
    fp8_attention = 1978.9e12 * 0.734 * (733 + math.log2(positions / 2048) * (918 - 733)) / 1403
    assert fp8_attention / (1978.9e12 * 0.734) == pytest.approx(0.650, abs=1e-3)
    attn_c = positions * (2 * H * 576 + 2 * H * 512) * LAYERS / 8 / fp8_attention
    attn_s = roofline(attn_c, (positions + 1) * 576 * 1.0 * LAYERS / HBM)
    fixed_s = KERNELS * calibration.KERNEL_FLOOR_S + MOE * 32 * calibration.MOE_EXPERT_VISIT_S
    # 2 all-reduces per layer of one 14,336-byte token: the one-shot kernel, 5.9 us + 7 peers' buffers.
    allreduce_s = 2 * LAYERS * (5.9e-6 + 7 * 14336 / NVLINK)
    gpu_s = lin_s + attn_s + fixed_s + allreduce_s
    host_s = calibration.HOST_STEP_S + 1.1e-6
    step = deepseek(cuda_graphs=True).step([], [], [], decode_ctx=[positions])
    assert float(step.duration_s[0]) == pytest.approx(max(gpu_s, host_s), rel=1e-9)
    assert float(step.parts_s["launches"][0]) == pytest.approx(fixed_s, rel=1e-9)
    assert float(step.parts_s["collectives"][0]) == pytest.approx(allreduce_s, rel=1e-9)


def test_prefill_of_8192_tokens_by_hand():
    """8,192 new tokens, no cache: every expert is hit, MLA prefill in its MHA form, eager launches."""
    c = 8192
    block = ENGINE.fp8_block_gemm_share
    rate = H200_FP8 * block
    expert_rate = rate * 2048 / (2048 + calibration.GEMM_HALF_WIDTH)
    q = 1 - (1 - 8 / 256) ** c                                   # 1 to double precision: all 32 experts read
    weight_s = (ALWAYS_PER_GPU + HEAD_PER_GPU * 2) / HBM + busiest_of_8(32, q) * EXPERT * MOE / EXPERT_HBM
    lin_c = 2 * ALWAYS_PER_GPU * c / rate + 2 * MOE * 8 * EXPERT / 8 * c / expert_rate + 2 * HEAD_PER_GPU / rate
    lin_s = roofline(lin_c, weight_s)
    # MHA form: 2H(128 + 64) + 2H x 128 = 81,920 FLOPs per (query, position), c(c + 1)/2 pairs, BF16 at
    # FlashAttention-3's rate for a query's mean (c + 1)/2 = 4,096.5 keys, head dim 192 taking the 128 curve:
    # 638 + log2(4096.5 / 4096) x (646 - 638) TFLOP/s over H100's measured 794.5, 0.803, of H200's measured
    # BF16 matmul rate.
    bf16_attention = 989.4e12 * 0.803 * (638 + math.log2(4096.5 / 4096) * (646 - 638)) / 794.5
    assert bf16_attention / (989.4e12 * 0.803) == pytest.approx(0.803, abs=1e-3)
    attn_c = c * (c + 1) / 2 * 81920 * LAYERS / 8 / bf16_attention
    attn_s = roofline(attn_c, c * 576 * LAYERS / HBM)
    fixed_s = KERNELS * calibration.KERNEL_FLOOR_S + MOE * 32 * calibration.MOE_EXPERT_VISIT_S
    # 117 MB all-reduces: the two-shot kernel, 2 x 5.9 us + 2 x 7/8 of the bytes over NVLink.
    size = c * 14336
    allreduce_s = 2 * LAYERS * (2 * 5.9e-6 + 2 * 7 / 8 * size / NVLINK)
    gpu_s = lin_s + attn_s + fixed_s + allreduce_s
    launch_s = KERNELS * calibration.EAGER_LAUNCH_S            # a prefill step launches kernel by kernel
    host_s = calibration.HOST_STEP_S + 1.1e-6
    step = deepseek().step([c], [0], [True], decode_ctx=[])
    assert float(step.duration_s[0]) == pytest.approx(max(gpu_s, launch_s, host_s + launch_s), rel=1e-9)
    assert float(step.parts_s["compute"][0]) == pytest.approx(lin_c + attn_c, rel=1e-9)


def test_expert_parallelism_beats_sliced_experts_at_batch_1_as_measured():
    """TensorRT-LLM issue #5929 (published.md section 7): at batch 1 on 8x H200 EP8 decodes faster than every
    expert sliced over TP8 (ITL 11.00 vs 13.78 ms) though its busiest GPU reads more expert bytes: sliced,
    each GPU's MoE kernels walk all 256 experts (narrow, 256 wide) instead of 32 whole ones."""
    sliced, ep8 = deepseek(ep=1, cuda_graphs=False), deepseek(ep=8, cuda_graphs=False)
    assert sliced.experts_read_per_gpu(1) < ep8.experts_read_per_gpu(1)
    t_sliced = float(sliced.step([], [], [], decode_ctx=[2000]).duration_s[0])
    t_ep8 = float(ep8.step([], [], [], decode_ctx=[2000]).duration_s[0])
    assert t_ep8 < t_sliced
    prefill = lambda m: float(m.step([8192], [0], [True], decode_ctx=[]).duration_s[0])  # noqa: E731
    assert prefill(ep8) < prefill(sliced)     # TTFT 352.8 vs 515.8 ms measured at ISL 8,192


def test_expert_groups_need_not_be_whole_gpus_and_redundant_experts_fill_slots():
    """EP4 over TP8: 4 groups of 2 GPUs, each GPU holding half of each of its group's 64 experts; 32 redundant
    experts make 288 slots, 72 per group: each GPU holds 36 expert-equivalents, 4 more than EP8 without."""
    ep4 = deepseek(ep=4)
    q = 8 / 256
    g = 64
    cdf, busiest = 0.0, 0.0
    for m in range(g):
        cdf += math.comb(g, m) * q ** m * (1 - q) ** (g - m)
        busiest += 1 - cdf ** 4
    assert ep4.experts_read_per_gpu(1) == pytest.approx(busiest / 2, rel=1e-9)
    plain, redundant = deepseek(ep=8), deepseek(ep=8, redundant_experts=32)
    extra = redundant.stage_weights_bytes(0) - plain.stage_weights_bytes(0)
    assert extra == pytest.approx(32 / 8 * EXPERT * MOE * 1.0, rel=1e-9)


def test_dsa_indexer_is_computed_whole_on_every_rank():
    """DeepSeek-V3.2's lightning indexer (64 heads x 128) scores every position at 2 x 64 x 128 FLOPs on every
    rank, so TP8 does 7 more copies of it than TP1; the sparse MLA over its top-2,048 splits its heads. The
    only other work TP8 repeats is what every rank holds whole: norms, q_a, kv_a and the router."""
    cluster = Cluster(hw.accelerators()["h200"], hw.node_types()["hgx_8gpu"], 1, None)
    arch = catalog()["deepseek_v32_exp"]
    positions = 100_001
    total = {}
    for tp in (1, 8):
        layout = Layout(tp, 1, 1, 1)
        (replica,) = place_replicas(cluster, 1, layout)
        m = ReplicaCostModel(arch, cluster.accelerator, price_replica(cluster, replica), layout, "fp8", 1.0)
        total[tp] = float(m.step([], [], [], decode_ctx=[positions]).flops[0])
    index = positions * 2 * 64 * 128 * LAYERS
    repeated = 2 * (LAYERS * REPLICATED + MOE * ROUTER)        # per token, on each extra rank
    assert total[8] - total[1] == pytest.approx(7 * (index + repeated), rel=1e-9)


def test_multi_token_prediction_speedup_at_batch_1_against_published():
    """One MTP draft token (DeepSeek's NextN head): 1.63x fewer ms per token at 1 req/s in vLLM (PR #12755),
    1.76x in SGLang (PR #3582), 1.78x in TensorRT-LLM on B200 (tech blog 1) at batch 1; simrun within 15% of
    their middle, 1.72x."""
    plain = deepseek()
    mtp = deepseek(mtp_draft_tokens=1, mtp_accept_length=1.92)
    t0 = float(plain.step([], [], [], decode_ctx=[2000]).duration_s[0])
    t1 = float(mtp.step([], [], [], decode_ctx=[2000]).duration_s[0])
    assert t0 / t1 == pytest.approx(1.72, rel=0.15)


def test_fp4_weights_on_a_gpu_without_fp4_math_run_as_bf16_matmuls():
    """MXFP4 gpt-oss on H100 (Marlin): 0.5 B per weight read, BF16 matmul rate."""
    cluster = Cluster(hw.accelerators()["h100_sxm"], hw.node_types()["hgx_8gpu"], 1, None)
    (replica,) = place_replicas(cluster, 1, Layout(1, 1, 1, 1))
    m = ReplicaCostModel(catalog()["gpt_oss_120b"], cluster.accelerator, price_replica(cluster, replica),
                         Layout(1, 1, 1, 1), "fp4", 2.0)
    assert m.linear_flops_per_s == pytest.approx(989.4e12 * 0.803 * calibration.COMPUTE_EFFICIENCY)
    assert m.weight_bytes == 0.5


def test_group_limited_routing_reaches_fewer_expert_groups():
    """Expected distinct ep groups a token's 8 experts reach. Free routing (Kimi K2), G groups: G(1 - (1 -
    1/G)^8): 8 groups 5.251. DeepSeek-V3 routes within 4 of its 8 expert groups: with 8 ep groups the
    token's experts sit on 4 of them, 4(1 - (3/4)^8) = 3.600; with 32 on 16, 16(1 - (15/16)^8) = 6.452; with
    4 ep groups each holds 2 expert groups and is missed when neither is picked, C(6,4)/C(8,4) = 15/70:
    4 x 55/70 = 3.143; with 2, C(4,4)/C(8,4) = 1/70: 2 x 69/70 = 1.971. At most 4 nodes of 8 GPUs: never
    more than 4 x 8 groups' worth."""
    from sim.cost.step import dispatch_destinations
    models = catalog()
    ds, kimi = models["deepseek_v3"].moe, models["kimi_k2"].moe
    assert (ds.n_group, ds.topk_group, kimi.n_group, kimi.topk_group) == (8, 4, 1, 1)
    assert dispatch_destinations(8, kimi) == pytest.approx(8 * (1 - (7 / 8) ** 8))
    assert dispatch_destinations(8, ds) == pytest.approx(4 * (1 - 0.75 ** 8))
    assert dispatch_destinations(32, ds) == pytest.approx(16 * (1 - (15 / 16) ** 8))
    assert dispatch_destinations(4, ds) == pytest.approx(4 * 55 / 70)
    assert dispatch_destinations(2, ds) == pytest.approx(2 * 69 / 70)
    assert dispatch_destinations(1, ds) == dispatch_destinations(1, kimi) == 1.0


def test_decode_context_parallelism_stripes_mlas_copied_latent():
    """DeepSeek-V3 on TP8: every rank keeps the whole 576-element latent, FP8 here: 61 x 576 = 35,136 B per
    token per GPU; DCP8 stripes it, 4,392 B, so the pool holds 8x the tokens. A decode token then reads
    1/8 of its positions' KV on each GPU and, per attention layer, exchanges its group's 128 heads' queries
    (576 wide) and partial outputs (512 wide) in BF16 with an FP32 log-sum-exp: 128 x (1,088 x 2 + 4) =
    279,040 B per token."""
    plain = deepseek(ep=1)
    cluster = Cluster(hw.accelerators()["h200"], hw.node_types()["hgx_8gpu"], 1, None)
    layout = Layout(8, 1, 1, 1, dcp=8)
    (replica,) = place_replicas(cluster, 1, layout)
    assert replica.dcp_groups(0) == [[f"n0/gpu{i}" for i in range(8)]]
    striped = ReplicaCostModel(catalog()["deepseek_v3"], cluster.accelerator,
                               price_replica(cluster, replica, ENGINE.allreduce_floor), layout, "fp8", 1.0,
                               engine=ENGINE)
    assert plain.stage_kv_bytes_per_token(0) == 61 * 576
    assert striped.stage_kv_bytes_per_token(0) == 61 * 576 / 8
    assert striped._dcp_bytes_per_token == 128 * (1088 * 2 + 4)
    a, b = (m.step([], [], [], decode_ctx=[100_000]) for m in (plain, striped))
    assert float(b.parts_s["kv"][0]) == pytest.approx(float(a.parts_s["kv"][0]) / 8, rel=1e-9)
    exchange_s = 61 * striped.comm.dcp_all_to_all[0].time_s(128 * (1088 * 2 + 4))
    assert float(b.parts_s["collectives"][0]) == pytest.approx(float(a.parts_s["collectives"][0]) + exchange_s,
                                                               rel=1e-9)


def test_dcp_must_stripe_copies_the_tp_group_holds():
    """Llama-3.1-70B has 8 KV heads: at TP8 each GPU holds one, no copies, so dcp 2 is refused with one line
    naming the key; DeepSeek-V3's latent is copied on all 8 ranks, so dcp 8 is taken."""
    from sim.config import DeploymentSpec
    base = dict(gpu="h200", nodes=1, tp=8, weights="fp8")
    with pytest.raises(ValueError, match="dcp 2 must divide tp 8"):
        DeploymentSpec.model_validate(dict(base, model="llama31_70b", dcp=2))
    assert DeploymentSpec.model_validate(dict(base, model="deepseek_v3", dcp=8)).dcp == 8


# DeepEP README, low-latency kernels on H800 with one CX7 400 Gb/s NIC each: 128 tokens per GPU, hidden 7,168,
# top-8, FP8 dispatch and BF16 combine; (dispatch us, combine us) by EP size.
# (EP 256, 194 / 360 us, is left out: pricing its 65,280 GPU pairs takes most of a minute.)
DEEPEP_LOW_LATENCY_US = {32: (155, 273), 64: (173, 314), 128: (192, 369)}


def test_deepep_low_latency_kernels_against_their_published_table():
    """One message per (token, routed expert): 128 x 8 x 7,168 x (1 + 4/128) = 7,569,408 B dispatched per GPU
    and 128 x 8 x 7,168 x 2 = 14,680,064 B combined, (n - 8) / n of it leaving the node through its 50 GB/s
    NIC. simrun prices the NIC at line rate; DeepEP's kernels reach 39-48 GB/s of it, so simrun comes out
    17-25% fast at EP 32-128, within 30%. From EP 64 to 128 the time grows 7% (measured 11%), not by n - 1
    rounds of latency, because every message is posted at once: one pair latency."""
    from hardware.collectives import one_sided_all_to_all
    dispatch_b, combine_b = 128 * 8 * 7168 * (1 + 4 / 128), 128 * 8 * 7168 * 2
    assert (dispatch_b, combine_b) == (7_569_408, 14_680_064)
    for n, (dispatch_us, combine_us) in DEEPEP_LOW_LATENCY_US.items():
        cluster = Cluster(hw.accelerators()["h800"], hw.node_types()["hgx_8gpu"], n // 8, hw.fabrics()["ib_ndr"])
        price = one_sided_all_to_all(cluster, cluster.gpus)
        (algorithm,) = price.algorithms
        # By hand: the busiest NIC carries (n - 8) / n of the bytes at 50 GB/s, plus one path's latency.
        assert float(price.time_s(dispatch_b)) == pytest.approx(dispatch_b * (n - 8) / n / 50e9
                                                                + algorithm.latency_s, rel=1e-6)
        assert algorithm.latency_s < 3e-6
        assert float(price.time_s(dispatch_b)) * 1e6 == pytest.approx(dispatch_us, rel=0.30)
        assert float(price.time_s(combine_b)) * 1e6 == pytest.approx(combine_us, rel=0.30)


def dp16_over_two_nodes(**options):
    """DeepSeek-V3 over 2 nodes of 8 H200, attention data parallel over 16 GPUs (tp 1, dp 16, ep 16)."""
    cluster = Cluster(hw.accelerators()["h200"], hw.node_types()["hgx_8gpu"], 2, hw.fabrics()["ib_ndr"])
    layout = Layout(1, 1, 16, 16)
    (replica,) = place_replicas(cluster, 1, layout)
    engine = engines()["sglang"]
    comm = price_replica(cluster, replica, engine.allreduce_floor,
                         one_sided_ep=options.get("ep_dispatch", "normal") != "normal")
    return ReplicaCostModel(catalog()["deepseek_v3"], cluster.accelerator, comm, layout, "fp8", 2.0, engine=engine,
                            **options)


def test_two_batch_overlap_prices_a_run_of_chunks_as_its_steps():
    """Each half of a chunk attends the prompt so far: over a run both halves' priors grow by the whole
    chunk (800 tokens) at each step, as when each step is priced alone."""
    m = dp16_over_two_nodes(two_batch_overlap=True)
    run = m.step([800], [4000], [False], [2000] * 8, 3, [0], list(range(8)))
    for k in range(3):
        one = m.step([800], [4000 + 800 * k], [False], [2000 + k] * 8, 1, [0], list(range(8)))
        assert one.duration_s[0] == run.duration_s[k] and (one.shares[0] == run.shares[k]).all()


def test_low_latency_dispatch_sends_every_routed_copy_on_decode_steps_only():
    """DeepSeek-V3 over 2 nodes of 8 H200, attention data parallel over 16 GPUs (tp 1, dp 16, ep 16), 16
    decodes (one per group). 'auto' decodes with DeepEP's low-latency kernels: each token's 8 routed copies
    (1 x 7,168 x 8 elements, FP8 out, BF16 back) one-sided over the 16 GPUs, instead of the normal kernels'
    one copy per GPU holding any of its experts (fewer than 16 x (1 - (15/16)^8) = 6.45 GPUs with DeepSeek's
    group-limited routing, dispatch_destinations) through a pairwise all-to-all of 15 rounds. A step with a
    prompt keeps the normal kernels."""
    from hardware.collectives import all_to_all, one_sided_all_to_all
    from sim.cost.step import dispatch_destinations
    normal, auto = dp16_over_two_nodes(), dp16_over_two_nodes(ep_dispatch="auto")
    cluster = Cluster(hw.accelerators()["h200"], hw.node_types()["hgx_8gpu"], 2, hw.fabrics()["ib_ndr"])
    ranks = list(range(16))
    decode = dict(decode_ctx=[2000] * 16, decode_rank=ranks)
    a, b = normal.step([], [], [], **decode), auto.step([], [], [], **decode)
    pairwise, one_sided = all_to_all(cluster, cluster.gpus), one_sided_all_to_all(cluster, cluster.gpus)
    moe = catalog()["deepseek_v3"].moe
    deduplicated = dispatch_destinations(16, moe)
    assert deduplicated < 16 * (1 - (15 / 16) ** 8)
    normal_s = MOE * (pairwise.time_s(D * deduplicated * (1 + 4 / 128)) + pairwise.time_s(D * deduplicated * 2))
    one_sided_s = MOE * (one_sided.time_s(D * 8 * (1 + 4 / 128)) + one_sided.time_s(D * 8 * 2))
    assert float(b.parts_s["collectives"][0] - a.parts_s["collectives"][0]) == pytest.approx(
        float(one_sided_s - normal_s), rel=1e-9)
    assert one_sided_s < normal_s        # at one token per GPU the rounds' latencies, not the bytes, decide
    prompt = dict(chunk_tokens=[4096], chunk_prior=[0], chunk_sampled=[True], decode_ctx=[], chunk_rank=[0])
    assert float(normal.step(**prompt).duration_s[0]) == float(auto.step(**prompt).duration_s[0])


def test_low_latency_dispatch_and_two_batch_overlap_need_data_parallel_attention():
    from sim.config import DeploymentSpec
    base = dict(model="deepseek_v3", gpu="h200", nodes=2, weights="fp8", ep_dispatch="auto")
    with pytest.raises(ValueError, match="ep_dispatch 'auto' sends tokens to whole experts"):
        DeploymentSpec.model_validate(dict(base, tp=8, ep=8))
    assert DeploymentSpec.model_validate(dict(base, tp=1, dp=16, ep=16)).ep_dispatch == "auto"
    with pytest.raises(ValueError, match="two_batch_overlap hides the expert all-to-alls"):
        DeploymentSpec.model_validate(dict(base, tp=8, ep=8, ep_dispatch="normal", two_batch_overlap=True))


def test_two_batch_overlap_hides_one_micro_batchs_collectives_under_the_others_kernels():
    """Each group's decodes split in turn between two micro-batches, each priced alone; with both in flight
    the step lasts max(kernels of both, collectives of both). 4 decodes per group: the halves' kernels
    re-read the weights, so the overlap loses at this batch; 16 prompts of 4,096 tokens (one per group, each
    cut at its middle token): the all-to-alls of 32k tokens are worth hiding, and it wins."""
    from sim.cost.step import Batch
    plain, tbo = dp16_over_two_nodes(), dp16_over_two_nodes(two_batch_overlap=True)
    ranks = [g for g in range(16) for _ in range(4)]
    decode = Batch([], [], [], [3000 + 7 * i for i in range(64)], None, ranks)
    (first, i0), (second, i1) = decode.halves()
    assert sorted(np.concatenate([i0, i1])) == list(range(64)) and len(i0) == len(i1) == 32
    a, b = (plain.step(h.chunk_tokens, h.chunk_prior, h.chunk_sampled, h.decode_ctx, 1, h.chunk_rank,
                       h.decode_rank) for h in (first, second))
    kernels_s = sum(float(x.duration_s[0] - x.parts_s["collectives"][0]) for x in (a, b))  # GPU-bound steps
    collectives_s = sum(float(x.parts_s["collectives"][0]) for x in (a, b))
    both = tbo.step([], [], [], decode.decode_ctx, 1, None, ranks)
    assert float(both.duration_s[0]) == pytest.approx(max(kernels_s, collectives_s), rel=1e-9)
    assert float(both.hbm_bytes[0]) == pytest.approx(float(a.hbm_bytes[0] + b.hbm_bytes[0]), rel=1e-12)
    assert float(both.shares.sum()) == pytest.approx(1.0) and both.shares.shape == (1, 64)
    whole = plain.step([], [], [], decode.decode_ctx, 1, None, ranks)
    assert float(both.duration_s[0]) > float(whole.duration_s[0])
    prompts = dict(chunk_tokens=[4096] * 16, chunk_prior=[0] * 16, chunk_sampled=[True] * 16, decode_ctx=[],
                   chunk_rank=list(range(16)))
    assert float(tbo.step(**prompts).duration_s[0]) < 0.85 * float(plain.step(**prompts).duration_s[0])


def test_two_batch_overlap_splits_a_prompt_at_its_middle_token():
    from sim.cost.step import Batch
    (first, i0), (second, i1) = Batch([7, 1], [100, 50], [True, False], [900], None, None).halves()
    assert (first.chunk_tokens, first.chunk_prior, first.chunk_sampled, first.decode_ctx) == ([3], [100], [False],
                                                                                              [900])
    assert (second.chunk_tokens, second.chunk_prior, second.chunk_sampled, second.decode_ctx) == ([4, 1], [103, 50],
                                                                                                  [True, False], [])
    assert list(i0) == [0, 2] and list(i1) == [0, 1]
    assert Batch([], [], [], [900], None, None).halves() is None    # one decode: nothing to overlap


def test_each_attention_group_schedules_and_captures_its_own_batch():
    """dp 16, 40 decodes in each group: 640 in all, past SGLang's 512-sequence CUDA graphs, but each rank
    replays its own graph of 40 and its own scheduler handles 40 sequences: host 4 ms + 40 x 1.1 us, no CPU
    launches (1,142 kernels x 7 us = 8.0 ms had the whole batch counted)."""
    model = dp16_over_two_nodes()
    step = model.step([], [], [], [2000] * 640, 1, None, [g for g in range(16) for _ in range(40)])
    assert float(step.parts_s["host"][0]) == pytest.approx(calibration.HOST_STEP_S + 40 * 1.1e-6, rel=1e-12)
    assert float(step.parts_s["launches"][0]) == pytest.approx(KERNELS * calibration.KERNEL_FLOOR_S, rel=1e-9)
