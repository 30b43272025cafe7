"""Model catalog: parameter counts, FLOPs and KV bytes built layer by layer, checked by hand and against
the published configs (reference figures transcribed from the project's reference sheet, models.toml,
which recomputes them from the public configs and checks them against transformers' meta-instantiation)."""
import pytest

from sim.models import catalog

# (params_total, params_active, matmul_flops_per_token, kv_bytes_per_token_bf16, published total)
REFERENCE = {
    "kimi_k2": (1_026_408_232_448, 32_861_500_928, 63_374_191_616, 70_272, 1.0e12),
    "ling_1t": (999_705_328_640, 51_054_427_136, 99_533_551_616, 327_680, 1.0e12),
    "megatron_1t": (1_008_038_758_400, 1_008_038_758_400, 2_015_972_659_200, 13_107_200, 1.008e12),
    "llama31_405b": (405_853_388_800, 405_853_388_800, 807_504_084_992, 516_096, 405.9e9),
    "deepseek_v3": (671_026_419_200, 37_552_297_472, 73_251_236_864, 70_272, 671e9),
    "llama31_70b": (70_553_706_496, 70_553_706_496, 139_006_066_688, 327_680, 70.6e9),
    "llama31_8b": (8_030_261_248, 8_030_261_248, 15_009_849_344, 131_072, 8.03e9),
    "gpt3_175b": (174_604_259_328, 174_604_259_328, 349_158_187_008, 4_718_592, 175e9),
    "qwen3_235b_a22b": (235_093_634_560, 22_190_763_520, 43_136_867_328, 192_512, 235e9),
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_counts_match_reference_within_1pct(name):
    m = catalog()[name]
    total, active, flops, kv, published = REFERENCE[name]
    assert m.params_total == pytest.approx(total, rel=0.01)
    assert m.params_active == pytest.approx(active, rel=0.01)
    assert m.matmul_flops_per_token == pytest.approx(flops, rel=0.01)
    assert m.kv_bytes_per_token(2) == pytest.approx(kv, rel=0.01)
    # Marketing totals are rounded ("1T" for Kimi K2's 1.026T): within 3%.
    assert m.params_total == pytest.approx(published, rel=0.03)


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
    assert ling.kv_elements_per_token_per_layer(tp=8) == 2 * 1 * 128      # 8 KV heads over 8 GPUs
    assert ling.kv_elements_per_token_per_layer(tp=16) == 2 * 1 * 128     # a KV head is replicated, not split
    assert k2.kv_elements_per_token_per_layer(tp=8) == 576                # MLA latent kept whole on every rank
    assert meg.kv_elements_per_token_per_layer(tp=8) == 2 * 20 * 160
