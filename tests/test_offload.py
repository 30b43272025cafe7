"""KV offload below HBM (sim.serving.offload): the tiers' bookkeeping by hand, the reload priced on the graph's
links by hand, recomputation turned into reloads, and the books kept in both engine modes."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import experiment, run_all
from sim.deployment import build
from sim.serving.offload import OffloadPlan, TierLink, TierStore, read_or_recompute
from test_engine import assert_same_run, check_invariants

# Llama-3.1-8B on one H100 at 26% of HBM: a small pool that eight 20-minute podcasts overflow.
SMALL = {"model": "llama31_8b", "gpu": "h100_sxm", "nodes": 1, "tp": 1, "replicas": 1, "gpu_memory_utilization": 0.26}
KV_BYTES_PER_TOKEN = 2 * 8 * 128 * 32 * 2     # K and V, 8 KV heads of 128, 32 layers, BF16: 131,072 B on one GPU
PCIE_BYTES_PER_S, PCIE_S = 63e9, 0.71e-6      # hardware/data/nodes.toml, hgx_8gpu: PCIe 5 x16 and its hop
NVME_BYTES_PER_S = 6.5e9                      # one drive per GPU (8 drives, 8 GPUs), each 6.5 GB/s


def store(dram_tokens, nvme_tokens):
    plan = OffloadPlan((TierLink("dram", dram_tokens, 1.0, 0.0), TierLink("nvme", nvme_tokens, 1.0, 0.0)), 1.0)
    return TierStore(plan)


def test_evicted_tails_go_down_the_tiers_whole_and_the_last_drops():
    s = store(100, 150)
    s.evicted(1, 64)
    s.evicted(2, 32)
    assert s.tokens_of(1) == [64, 0] and s.tokens_of(2) == [32, 0] and s.used == [96, 0]
    # Key 1's prefix shrinks again: its DRAM span grows to 80 and is the newest; 112 > 100, so the least
    # recently written, key 2 (32), goes to NVMe whole.
    s.evicted(1, 16)
    assert s.tokens_of(1) == [80, 0] and s.tokens_of(2) == [0, 32] and s.used == [80, 32]
    s.evicted(3, 96)            # 176 > 100: key 1 (80) goes down, 80 + 32 = 112 <= 150
    assert s.tokens_of(1) == [0, 80] and s.used == [96, 112]
    s.evicted(4, 48)            # 144 > 100: key 3 (96) goes down, 208 > 150: key 2 (32) is dropped, 176 > 150: key 1
    assert s.tokens_of(3) == [0, 96] and s.tokens_of(2) == [0, 0] and s.tokens_of(1) == [0, 0]
    assert s.used == [48, 96]


def test_a_turn_takes_back_what_its_prompt_shares_in_order_down_the_tiers():
    s = store(1000, 1000)
    s.evicted(7, 64)            # HBM [0, h) then DRAM [h, h + 64) ...
    s.spans[0].move_to_end(7)
    s.spans[1][7] = 32          # ... then NVMe [h + 64, h + 96)
    s.used[1] = 32
    # 160 resident in HBM, the prompt shares 240: DRAM gives 64 (160-224), NVMe 16 of its 32 (224-240).
    assert s.take(7, 160, 240) == [64, 16] and s.tokens_of(7) == [0, 0] and s.used == [0, 0]
    s.evicted(8, 64)
    assert s.take(8, 160, 192) == [32, 0]          # the DRAM span cut short: nothing below it follows
    s.evicted(9, 64)
    assert s.take(9, 300, 200) == [0, 0]           # shares less than HBM already holds: nothing read


def _podcasts(offload: str, bulk: bool = True, **extra):
    exp = experiment({"d": {**SMALL, "kv_offload": offload, **extra}}, sessions=8, duration_h=20 / 60,
                     session_stagger_s=3.0)
    return run_all(exp, bulk=bulk)


def test_offload_turns_recomputation_into_reloads_priced_on_the_links():
    """Eight podcasts overflow the pool: without offload the evicted history is prefilled again; with a DRAM
    tier (half the pool) almost all of it is read back instead, each read every GPU's shard over its PCIe link:
    tokens x 131,072 B / 63 GB/s + 0.71 us. Every turn's history is cached, read back or recomputed."""
    (plain,), (offloaded,) = _podcasts("none"), _podcasts("dram", dram_kv_ratio=0.5)
    assert all(t.status == "ok" for t in plain.turns + offloaded.turns)
    recomputed = sum(t.recomputed_tokens for t in plain.turns)
    assert recomputed > 5_000 and sum(t.reloaded_tokens for t in plain.turns) == 0
    assert sum(t.recomputed_tokens for t in offloaded.turns) < recomputed / 5
    reloads = [t for t in offloaded.turns if t.reloaded_tokens]
    assert reloads and all(t.history_tier == "dram" for t in reloads)
    for t in reloads:
        assert t.reload_s == pytest.approx(t.reloaded_tokens * KV_BYTES_PER_TOKEN / PCIE_BYTES_PER_S + PCIE_S, rel=1e-12)
    for t in offloaded.turns:
        assert t.context_tokens == t.cached_tokens + t.reloaded_tokens + t.recomputed_tokens


def test_the_tiers_are_sized_and_priced_from_the_node():
    """DRAM: dram_kv_ratio x the GPU's KV pool, at most its share of the node's 2 TB; NVMe: its share of
    8 x 3.84 TB; read back over PCIe (DRAM) or one 6.5 GB/s drive then PCIe, latency one or two PCIe hops."""
    from sim.config import Experiment
    spec = Experiment.from_dict({"workload": {}, "deployments": {"d": {**SMALL, "kv_offload": "dram_nvme"}}}
                                ).deployments["d"]
    rep = build("t.toml", "d", spec).replicas[0]
    dram, nvme = rep.offload.tiers
    assert dram.capacity_tokens == int(min(2.0 * rep.memory.kv_pool_bytes, 2 * 1024e9 / 8) // KV_BYTES_PER_TOKEN)
    assert nvme.capacity_tokens == int(8 * 3.84e12 / 8 // KV_BYTES_PER_TOKEN)
    assert (dram.bytes_per_s, dram.latency_s) == (PCIE_BYTES_PER_S, pytest.approx(PCIE_S))
    assert (nvme.bytes_per_s, nvme.latency_s) == (NVME_BYTES_PER_S, pytest.approx(2 * PCIE_S))


def test_a_tier_too_small_spills_to_nvme_and_the_read_adds_both_links():
    (result,) = _podcasts("dram_nvme", dram_kv_ratio=0.02)
    reads = [t for t in result.turns if t.history_tier == "nvme"]
    assert reads
    for t in reads:   # some from DRAM then the rest from NVMe: at least the NVMe link's latency, at most all NVMe
        assert t.reload_s >= 2 * PCIE_S
        assert t.reload_s <= t.reloaded_tokens * KV_BYTES_PER_TOKEN / NVME_BYTES_PER_S + 3 * PCIE_S


TIERS = OffloadPlan((TierLink("dram", 10**9, PCIE_BYTES_PER_S, PCIE_S), TierLink("nvme", 10**9, NVME_BYTES_PER_S, 2 * PCIE_S)),
                    KV_BYTES_PER_TOKEN)


def test_a_read_back_is_chosen_against_prefilling_the_tokens_again_by_hand():
    """Llama-3.1-8B's 131,072 B per token: 1,000 tokens from DRAM read in 1,000 x 131,072 / 63e9 + 0.71 us =
    2.0812 ms, 16 from NVMe in 16 x 131,072 / 6.5e9 + 1.42 us = 0.3240 ms. Against a prefill of 20 us a token
    (say) the NVMe span is prefilled again (0.320 ms < 0.324 ms) and the DRAM span read (2.08 ms < 20 ms); at
    30 us a token both are read; at 1 us a token neither."""
    dram_s = 1000 * KV_BYTES_PER_TOKEN / PCIE_BYTES_PER_S + PCIE_S
    nvme_s = 16 * KV_BYTES_PER_TOKEN / NVME_BYTES_PER_S + 2 * PCIE_S
    for per_token_s, read, wait_s in ((20e-6, [1000, 0], dram_s), (30e-6, [1000, 16], dram_s + nvme_s),
                                      (1e-6, [0, 0], 0.0)):
        chosen, waited = read_or_recompute(TIERS, [1000, 16], lambda tokens, k: tokens * per_token_s, 0.0, 32, False)
        assert chosen == read and waited == pytest.approx(wait_s, rel=1e-12)


def test_a_layer_by_layer_read_waits_for_what_the_first_chunk_does_not_hide_by_hand():
    """The same 1,000 DRAM tokens read layer by layer (32 layers) under a first chunk of 1.5 ms: the turn waits
    2.0812 - 1.5 = 0.581 ms; under a 5 ms chunk, one layer's share, 2.0812 / 32 = 65 us."""
    read_s = 1000 * KV_BYTES_PER_TOKEN / PCIE_BYTES_PER_S + PCIE_S
    for overlap_s, wait_s in ((1.5e-3, read_s - 1.5e-3), (5e-3, read_s / 32)):
        chosen, waited = read_or_recompute(TIERS, [1000, 0], lambda tokens, k: tokens * 1.0, overlap_s, 32, True)
        assert chosen == [1000, 0] and waited == pytest.approx(wait_s, rel=1e-12)


def test_layer_by_layer_reads_wait_less_and_keep_the_books():
    """The eight podcasts with kv_load_layerwise: each read waits between one layer's share of it and all of it
    (tokens x 131,072 B / 63 GB/s + 0.71 us), in all less than half of the whole reads; the books kept, and both
    modes alike on a shorter load that reads back (six podcasts over six minutes on a smaller pool)."""
    layered, = _podcasts("dram", dram_kv_ratio=0.5, kv_load_layerwise=True)
    check_invariants([layered])
    reads = [t for t in layered.turns if t.reloaded_tokens]
    assert reads
    read_s = [t.reloaded_tokens * KV_BYTES_PER_TOKEN / PCIE_BYTES_PER_S + PCIE_S for t in reads]
    for t, whole_s in zip(reads, read_s):
        assert whole_s / 32 * (1 - 1e-9) <= t.reload_s <= whole_s * (1 + 1e-9)
    assert sum(t.reload_s for t in reads) < 0.5 * sum(read_s)
    short = experiment({"d": {**SMALL, "gpu_memory_utilization": 0.235, "kv_offload": "dram", "dram_kv_ratio": 2.0,
                              "kv_load_layerwise": True}}, sessions=6, duration_h=6 / 60, session_stagger_s=2.0)
    bulk = run_all(short)
    assert any(t.reloaded_tokens for t in bulk[0].turns)
    assert_same_run(bulk, run_all(short, bulk=False))


@settings(max_examples=3, deadline=None)
@given(offload=st.sampled_from(["dram", "dram_nvme"]), ratio=st.sampled_from([0.02, 0.3, 2.0]),
       sessions=st.integers(2, 8), seed=st.integers(0, 1000), kv=st.sampled_from(["reserve", "on_demand"]),
       layerwise=st.booleans())
def test_offload_keeps_the_books_in_both_modes(offload, ratio, sessions, seed, kv, layerwise):
    exp = experiment({"d": {**SMALL, "kv_offload": offload, "dram_kv_ratio": ratio, "kv_allocation": kv,
                            "kv_load_layerwise": layerwise}},
                     sessions=sessions, duration_h=5 / 60, session_stagger_s=2.0, seed=seed)
    bulk = run_all(exp)
    check_invariants(bulk)
    for t in bulk[0].turns:
        if t.status == "ok":
            assert t.context_tokens == t.cached_tokens + t.reloaded_tokens + t.recomputed_tokens
    assert_same_run(bulk, run_all(exp, bulk=False))


@pytest.mark.parametrize("extra, expect", [
    ({"prefix_caching": False}, "kv_offload 'dram' moves cached prefixes, and prefix_caching is off"),
    ({"model": "gemma3_27b", "tp": 2}, "gemma3_27b keeps window or recurrent state (window) only at a prefix's end"),
    ({"kv_offload": "none", "kv_load_layerwise": True}, "kv_load_layerwise reads offloaded KV back, and kv_offload is 'none'"),
])
def test_offload_needs_prefix_caching_and_growing_kv(extra, expect):
    with pytest.raises(ValueError, match=expect.replace("(", r"\(").replace(")", r"\)")):
        experiment({"d": {**SMALL, "kv_offload": "dram", **extra}})
