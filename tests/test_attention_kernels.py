"""Attention kernels' share of the matmul rate (sim.cost.attention) against FlashAttention-3's published
forward-pass figures (arXiv 2407.08608, H100 SXM5), and what it does to a step."""
import math

import pytest

from sim.cost.attention import attention_share


def test_measured_points_are_returned_over_h100s_measured_matmul():
    """At the paper's sequence lengths the share is the figure over H100's best matmul (794.5 BF16, 1,403
    FP8 TFLOP/s, published.md section 4): head dim 128 at 512 keys 467 / 794.5 = 0.588, at 16k 648 / 794.5
    = 0.816; head dim 64 at 2k 460 / 794.5 = 0.579; FP8 at 4k 918 / 1403 = 0.654."""
    assert attention_share(512, 128) == pytest.approx(467 / 794.5)
    assert attention_share(16384, 128) == pytest.approx(0.816, abs=1e-3)
    assert attention_share(2048, 64) == pytest.approx(460 / 794.5)
    assert attention_share(4096, 128, fp8=True) == pytest.approx(918 / 1403)


def test_between_points_log_keys_and_linear_head_dim_outside_the_nearest_end():
    """3k keys: log2(3072 / 2048) = 0.585 of the way from 625 to 638 = 632.6 TFLOP/s at head dim 128, and
    from 460 to 476 = 469.4 at 64; head dim 96 is halfway: 551.0 / 794.5 = 0.6935. Beyond the measured
    range: 100 keys take the 512 figure, 1M the 16k one, head dim 576 the 128 curve, 32 the 64 curve."""
    f = math.log2(1.5)
    hd128, hd64 = 625 + f * (638 - 625), 460 + f * (476 - 460)
    assert attention_share(3072, 96) == pytest.approx((hd128 + hd64) / 2 / 794.5)
    assert attention_share(100, 128) == attention_share(512, 128)
    assert attention_share(1 << 20, 128) == attention_share(16384, 128)
    assert attention_share(4096, 576) == attention_share(4096, 128)
    assert attention_share(4096, 32) == attention_share(4096, 64)


def test_share_grows_with_keys_and_head_dim_and_stays_below_the_matmul():
    keys = [256, 512, 1000, 3000, 9000, 40000]
    for fp8 in (False, True):
        shares = attention_share(keys, 128, fp8)
        assert all(b >= a for a, b in zip(shares, shares[1:]))
        assert all(0 < x < 1 for x in shares)
    assert all(attention_share(k, 128) > attention_share(k, 64) for k in keys)


def test_flashmla_decode_and_tritonbench_land_near_the_curve():
    """Cross-checks named in the module: FlashMLA's compute-bound MLA decode, 660 TFLOP/s on H800 (the
    H100's silicon), is 660 / 794.5 = 0.831 of the measured matmul, within 3% of the plateau; tritonbench's
    FA3 (pytorch/benchmark PR #2391, head dim 128) 430.3 at 512 and 620.7 at 16k TFLOP/s, within 10%."""
    assert attention_share(16384, 128) == pytest.approx(660 / 794.5, rel=0.03)
    assert attention_share(512, 128) == pytest.approx(430.3 / 794.5, rel=0.10)
    assert attention_share(16384, 128) == pytest.approx(620.7 / 794.5, rel=0.10)
