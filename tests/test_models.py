"""Model catalog: parameter counts, FLOPs and KV bytes built layer by layer, checked by hand and against
the published configs (reference figures transcribed from the project's reference sheet, models.toml,
which recomputes them from the public configs and checks them against transformers' meta-instantiation)."""
import pytest

from sim.models import catalog

# Every model of the reference sheet (models.toml, which recomputes them from the public configs and
# checks them against transformers' meta-instantiation): params_total, params_active,
# matmul_flops_per_token, KV bytes per token BF16 and FP8, recurrent state bytes per sequence,
# sliding-window-layer KV bytes per token BF16, published total.
REFERENCE = {
    "deepseek_v3": (671_026_419_200, 37_552_297_472, 73_251_236_864, 70_272, 35_136, 0, 0, 6.71e+11),
    "deepseek_v32_exp": (671_877_944_064, 38_403_822_336, 74_954_286_592, 78_324, 43_188, 0, 0, 6.71e+11),
    "gemma3_27b": (27_009_346_304, 27_009_346_304, 54_018_692_608, 81_920, 40_960, 0, 425_984, 2.7e+10),
    "gpt3_175b": (174_604_259_328, 174_604_259_328, 349_158_187_008, 4_718_592, 2_359_296, 0, 0, 1.75e+11),
    "gpt4_estimate": (1_848_559_596_032, 281_774_715_392, 560_828_314_112, 1_628_160, 814_080, 0, 0, 1.8e+12),
    "gpt_oss_120b": (116_829_156_672, 5_711_982_912, 10_265_698_944, 36_864, 18_432, 0, 36_864, 1.1683e+11),
    "jamba_15_large": (398_555_145_696, 94_149_338_592, 187_224_935_360, 36_864, 18_432, 72_253_440, 0, 3.98e+11),
    "kimi_k2": (1_026_408_232_448, 32_861_500_928, 63_374_191_616, 70_272, 35_136, 0, 0, 1e+12),
    "kimi_linear_48b_a3b": (49_122_681_728, 3_484_459_904, 6_213_945_088, 8_064, 4_032, 43_417_600, 0, 4.8e+10),
    "ling_1t": (999_705_328_640, 51_054_427_136, 99_533_551_616, 327_680, 163_840, 0, 0, 1e+12),
    "llama31_405b": (405_853_388_800, 405_853_388_800, 807_504_084_992, 516_096, 258_048, 0, 0, 4.059e+11),
    "llama31_70b": (70_553_706_496, 70_553_706_496, 139_006_066_688, 327_680, 163_840, 0, 0, 7.06e+10),
    "llama31_8b": (8_030_261_248, 8_030_261_248, 15_009_849_344, 131_072, 65_536, 0, 0, 8.03e+09),
    "mamba2_2p7b": (2_702_599_680, 2_702_599_680, 5_405_199_360, 0, 0, 169_836_544, 0, 2.7e+09),
    "megatron_1t": (1_008_038_758_400, 1_008_038_758_400, 2_015_972_659_200, 13_107_200, 6_553_600, 0, 0, 1.008e+12),
    "minimax_m1": (456_089_655_296, 48_403_306_496, 94_348_226_560, 40_960, 20_480, 293_601_280, 0, 4.56e+11),
    "mixtral_8x22b": (140_620_634_112, 39_152_031_744, 77_910_847_488, 229_376, 114_688, 0, 0, 1.41e+11),
    "qwen3_235b_a22b": (235_093_634_560, 22_190_763_520, 43_136_867_328, 192_512, 96_256, 0, 0, 2.35e+11),
    "qwen3_next_80b_a3b": (79_674_391_296, 3_874_929_408, 7_127_528_960, 24_576, 12_288, 77_266_944, 0, 8e+10),
    "rwkv7_2p9b": (2_947_735_040, 2_947_735_040, 5_559_925_760, 0, 0, 21_299_200, 0, 2.9e+09),
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_counts_and_cache_bytes_match_the_reference(name):
    m = catalog()[name]
    total, active, flops, kv_bf16, kv_fp8, state, window, published = REFERENCE[name]
    # Exact for every model but the GPT-4 estimate, whose third-party shape fit is off by 0.01%.
    assert m.params_total == pytest.approx(total, rel=5e-4)
    assert m.params_active == pytest.approx(active, rel=5e-4)
    assert m.matmul_flops_per_token == pytest.approx(flops, rel=5e-4)
    # Marketing totals are rounded ("1T" for Kimi K2's 1.026T): within 3%.
    assert m.params_total == pytest.approx(published, rel=0.03)
    assert m.kv_bytes_per_token(2) == kv_bf16
    assert m.kv_bytes_per_token(1) == kv_fp8
    assert m.state_bytes_per_sequence == state
    assert m.window_kv_bytes_per_token(2) == window


def test_catalog_holds_every_reference_model():
    assert set(REFERENCE) <= set(catalog())


def test_recurrent_state_by_hand():
    """models.md section 1: FP32 state + BF16 conv / token-shift state per layer."""
    c = catalog()
    # Gated DeltaNet: 32 V heads x 128 x 128 x 4 B + (2 x 16 x 128 + 32 x 128) x (4 - 1) x 2 B; 36 layers.
    assert c["qwen3_next_80b_a3b"].state_bytes_layer("gdn") == 32 * 128 * 128 * 4 + 8192 * 3 * 2 == 2_146_304
    # Mamba-1 in Jamba: d_inner 16,384 x d_state 16 x 4 B + 16,384 x 3 x 2 B.
    assert c["jamba_15_large"].state_bytes_layer("mamba1") == 16384 * 16 * 4 + 16384 * 3 * 2 == 1_146_880
    # RWKV-7: 40 heads x 64 x 64 x 4 B + 2 token-shift vectors of 2,560 x 2 B; 32 layers.
    assert c["rwkv7_2p9b"].state_bytes_per_sequence == 32 * (40 * 64 * 64 * 4 + 2 * 2560 * 2) == 21_299_200
    # Lightning attention: 64 heads x 128 x 128 x 4 B, no conv.
    assert c["minimax_m1"].state_bytes_layer("lightning") == 64 * 128 * 128 * 4


def test_gated_deltanet_layer_params_by_hand():
    """Qwen3-Next GDN: in_proj_qkvz 2048 x (2 x 16 x 128 + 2 x 32 x 128), in_proj_ba 2048 x 64, conv
    8,192 channels x 4, dt_bias + A_log 2 x 32, gated norm 128, out 4,096 x 2,048."""
    by_hand = 2048 * 12288 + 2048 * 64 + 8192 * 4 + 64 + 128 + 4096 * 2048
    assert catalog()["qwen3_next_80b_a3b"].mixer_params("gdn") == by_hand == 33_718_464


def test_layer_patterns():
    c = catalog()
    assert c["gemma3_27b"].kinds.count("window") == 52 and c["gemma3_27b"].kinds.count("attention") == 10
    assert c["jamba_15_large"].n_moe_layers == 36 and c["jamba_15_large"].is_moe_layer(1)
    assert c["kimi_linear_48b_a3b"].kinds[3] == "attention" and c["kimi_linear_48b_a3b"].kinds[26] == "attention"
    assert set(c["mamba2_2p7b"].kinds) == {"mamba2"} and set(c["rwkv7_2p9b"].kinds) == {"rwkv7"}


def test_catalog_has_the_issue_models_and_sources():
    models = catalog()
    for name in ("kimi_k2", "ling_1t", "megatron_1t", "llama31_405b"):
        assert name in models
    for m in models.values():
        assert m.source.strip(), m.name


def test_megatron_params_by_hand():
    d = 25600
    per_layer = 4 * d * d + 4 * d + 2 * d * 4 * d + 4 * d + d + 2 * 2 * d  # attn+bias, GELU FFN+bias, 2 LayerNorms
    assert per_layer == 12 * d * d + 13 * d == 7_864_652_800
    total = 128 * per_layer + 51200 * d + 2048 * d + 2 * d  # layers, tokens, positions, final LN; head tied
    assert catalog()["megatron_1t"].params_total == total == 1_008_038_758_400


def test_kimi_k2_params_by_hand():
    d, h = 7168, 64
    attn = (d * 1536 + 1536 + 1536 * h * 192 + d * 576 + 512 + 512 * h * 256 + h * 128 * d)
    assert attn == 101_124_096
    expert = 3 * d * 2048
    dense_layer = attn + 2 * d + 3 * d * 18432
    moe_layer = attn + 2 * d + 384 * expert + expert + d * 384 + 384
    total = dense_layer + 60 * moe_layer + 2 * 163840 * d + d
    m = catalog()["kimi_k2"]
    assert m.params_total == total
    assert m.params_active == total - 60 * (384 - 8) * expert


def test_kv_and_attention_flops_by_hand():
    k2, meg, ling = catalog()["kimi_k2"], catalog()["megatron_1t"], catalog()["ling_1t"]
    assert k2.kv_bytes_per_token(2) == 61 * (512 + 64) * 2 == 70_272
    assert meg.kv_bytes_per_token(2) == 128 * 2 * 160 * 160 * 2 == 13_107_200
    assert ling.kv_bytes_per_token(1) == 80 * 2 * 8 * 128 * 1 == 163_840
    # MLA absorbed decode: 2H(kv_lora + rope) + 2H kv_lora per layer; prefill MHA form 2H(nope+rope) + 2H v.
    assert k2.attention_flops_per_position("decode") * 61 == (2 * 64 * 576 + 2 * 64 * 512) * 61 == 8_495_104
    assert k2.attention_flops_per_position("prefill") * 61 == (2 * 64 * 192 + 2 * 64 * 128) * 61 == 2_498_560
    assert ling.attention_flops_per_position("decode") * 80 == 4 * 64 * 128 * 80 == 2_621_440


def test_kv_sharding_per_gpu():
    ling, k2, meg = catalog()["ling_1t"], catalog()["kimi_k2"], catalog()["megatron_1t"]
    assert ling.kv_elements_per_token("attention", tp=8) == 2 * 1 * 128      # 8 KV heads over 8 GPUs
    assert ling.kv_elements_per_token("attention", tp=16) == 2 * 1 * 128     # a KV head is copied, not split
    assert k2.kv_elements_per_token("attention", tp=8) == 576                # MLA latent kept whole on every rank
    assert meg.kv_elements_per_token("attention", tp=8) == 2 * 20 * 160


def test_how_each_layer_kind_pays_for_context_by_hand():
    """Decode cache bytes (read, excluding the token written) and attention FLOPs per layer as the
    context P doubles."""
    c = catalog()
    llama, gemma, mamba, v32 = c["llama31_8b"], c["gemma3_27b"], c["mamba2_2p7b"], c["deepseek_v32_exp"]
    # Full attention: 2 x 8 KV heads x 128 x 2 B per position; doubling the context doubles the bytes read.
    assert llama.cache_bytes("attention", 10_000, 0, 2.0, 1) == 10_000 * 4096
    assert llama.cache_bytes("attention", 20_000, 0, 2.0, 1) == 2 * llama.cache_bytes("attention", 10_000, 0, 2.0, 1)
    # Pure recurrent: read and write the 2,653,696 B state, whatever the context.
    assert mamba.cache_bytes("mamba2", 1_000, 1, 2.0, 1) == mamba.cache_bytes("mamba2", 1_000_000, 1, 2.0, 1) \
        == 2 * 2_653_696
    assert mamba.decode_flops("mamba2", 10**6) == mamba.decode_flops("mamba2", 10) == 6 * 5120 * 128
    # Sliding window (Gemma 3 local layers, 1,024 tokens, 2 x 16 x 128 x 2 B): grows up to the window only.
    per_position = 2 * 16 * 128 * 2
    assert gemma.cache_bytes("window", 512, 0, 2.0, 1) == 512 * per_position
    assert gemma.cache_bytes("window", 2048, 0, 2.0, 1) == gemma.cache_bytes("window", 4096, 0, 2.0, 1) \
        == 1024 * per_position
    assert gemma.decode_flops("window", 4096) == 1024 * 4 * 32 * 128
    # DSA: core MLA attention over the top-2,048 positions (absorbed: 2 x 128 x 576 + 2 x 128 x 512 per
    # position) stops growing; the indexer (2 x 64 x 128 per position) keeps scoring every position.
    core, indexer = 2 * 128 * 576 + 2 * 128 * 512, 2 * 64 * 128
    assert v32.decode_flops("attention", 4096) == 2048 * core + 4096 * indexer
    assert v32.decode_flops("attention", 8192) - v32.decode_flops("attention", 4096) == 4096 * indexer
    # Its cache reads: the top-2,048 latents (576 x 2 B) + every indexer key (128 B FP8 + 4 B scale).
    assert v32.cache_bytes("attention", 8192, 0, 2.0, 1) == 2048 * 576 * 2 + 8192 * 132


def test_window_prefill_positions_by_hand():
    """A 1,000-token chunk after 500 cached tokens, window 1,024: queries 1..524 see 501..1,024
    positions, the other 476 see 1,024."""
    from sim.layers import positions_attended
    by_hand = sum(min(500 + i, 1024) for i in range(1, 1001))
    assert positions_attended(1000, 500, 1024) == by_hand == 524 * 500 + 524 * 525 / 2 + 476 * 1024
    assert positions_attended(1000, 500) == 1000 * 500 + 1000 * 1001 / 2


def test_scaled_model_inherits_and_stretches_its_pattern():
    from sim.models import build
    hybrid = build("hybrid_1t", {"base": "qwen3_next_80b_a3b", "n_layers": 64, "d_model": 6144}, catalog())
    assert hybrid.layer_pattern == "LLLF" * 16 and hybrid.kinds.count("gdn") == 48
    assert hybrid.base == "qwen3_next_80b_a3b" and hybrid.params_total > catalog()["qwen3_next_80b_a3b"].params_total
    with pytest.raises(ValueError, match="unknown base model 'nope'"):
        build("x", {"base": "nope"}, catalog())


def test_an_experiment_defines_a_scaled_model():
    from sim.config import Experiment
    exp = Experiment.from_dict({
        "models": {"llama_deep": {"base": "llama31_8b", "n_layers": 64, "display_name": "Llama-3.1-8B x2 deep"}},
        "deployments": {"d": {"model": "llama_deep", "gpu": "h100_sxm", "nodes": 1, "tp": 8}}})
    arch = exp.deployments["d"].architecture
    base = catalog()["llama31_8b"]
    # 32 more layers of 218,112,000 weights each (by hand in test_cost's Llama-3.1-8B step).
    assert arch.params_total - base.params_total == 32 * base.layer_always_params(0) == 32 * 218_112_000
    assert "llama_deep" not in catalog()


def test_scaled_models_merge_subtables_and_need_a_window():
    from sim.models import ModelKeyError, build
    c = catalog()
    wide = build("next_wide", {"base": "qwen3_next_80b_a3b", "moe": {"n_experts": 1024}}, c)
    assert wide.moe.n_experts == 1024 and wide.moe.top_k == 10          # the rest of the base's moe table
    assert wide.display_name == "next_wide (scaled from Qwen3-Next-80B-A3B (Gated DeltaNet + gated attention, 3:1))"
    with pytest.raises(ModelKeyError, match="window layers need sliding_window > 0"):
        build("w", {"base": "llama31_8b", "layer_kinds": {"a": "attention", "w": "window"},
                    "layer_pattern": "aw" * 16}, c)
