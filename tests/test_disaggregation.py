"""Prefill/decode disaggregation (sim.serving.disaggregation): the KV transfer by hand, tokens and joules kept
across the pools, the pools' own GPUs, and the errors a user can make."""
import pytest

from conftest import experiment, run_all
from hardware import catalog as hw
from hardware.cluster import Cluster
from sim.config import parse
from sim.deployment import build
from sim.errors import ConfigError
from sim.output import gpus_table, turns_table
from sim.serving.disaggregation import KVTransfer
from test_engine import assert_same_run, check_invariants

# Llama-3.1-8B, one HGX H100 node of prefill (tp 8) and one of decode (tp 8), over NDR InfiniBand.
PD = {"model": "llama31_8b", "gpu": "h100_sxm", "nodes": 2, "fabric": "ib_ndr", "tp": 8, "replicas": 1,
      "prefill": {"replicas": 1, "tp": 8}, "api_server": False}
# One GPU's shard of a token's KV: K and V x 8 KV heads x 128 x 2 bytes x 32 layers, over tp 8.
KV_BYTES_PER_TOKEN_PER_GPU = 2 * 8 * 128 * 2 * 32 / 8      # = 16,384 B
# n0/gpu0 -> its NIC (PCIe, 0.71 us) -> the rail switch (330 ns) -> n1's NIC -> n1/gpu0 (0.71 us); the NIC's
# 50 GB/s is the narrowest link.
PATH_LATENCY_S = 2 * 0.71e-6 + 330e-9
PATH_BYTES_PER_S = 50e9


def test_a_transfer_by_hand():
    """8,000 tokens: 8,000 x 16,384 B = 131 MB per GPU, 2.62 ms at 50 GB/s. Sent layer by layer under a
    25 ms prefill only the last of 32 layers' share shows (82 us); under a 1 ms prefill, 1.62 ms; alone, all."""
    cluster = Cluster(hw.accelerators()["h100_sxm"], hw.node_types()["hgx_8gpu"], 2, hw.fabrics()["ib_ndr"])
    built = build("test.toml", "d", experiment({"d": PD}).deployments["d"])
    link = KVTransfer.between(cluster, built.prefill[0], built.replicas[0], 32)
    sent_s = 8000 * KV_BYTES_PER_TOKEN_PER_GPU / PATH_BYTES_PER_S + PATH_LATENCY_S    # = 2.6232 ms
    assert link.sent_s(8000) == pytest.approx(sent_s, rel=1e-12)
    assert link.exposed_s(8000, 25e-3) == pytest.approx(sent_s / 32, rel=1e-12)
    assert link.exposed_s(8000, 1e-3) == pytest.approx(sent_s - 1e-3, rel=1e-12)
    assert link.exposed_s(8000, 0.0) == pytest.approx(sent_s, rel=1e-12)
    assert link.sent_s(0) == link.exposed_s(0, 0.0) == 0.0


def offline(**workload):
    return experiment({"d": PD}, kind="offline", **{"requests": 1, "input_tokens": 8000, "output_tokens": 8,
                                                   **workload})


def test_a_request_prefills_on_one_node_and_decodes_on_the_other():
    """One 8,000-token prompt: the prefill replica runs one step of 8,000 tokens, the decode replica, sent all
    8,000 tokens' KV (it held none), decodes the other 7 tokens; the first token reaches the client when the
    KV is in: TTFT = the prefill step + the transfer left after it."""
    (r,) = run_all(offline())
    check_invariants([r])
    (turn,) = r.turns
    assert (turn.status, turn.replica, turn.prefill_replica) == ("ok", 0, 1)
    assert turn.transferred_tokens == 8000 and turn.cached_tokens == 0 and turn.recomputed_tokens == 0
    steps = r.steps.columns()
    prefill_steps, decode_steps = steps["replica"] == 1, steps["replica"] == 0
    assert list(steps["prefill_tokens"][prefill_steps]) == [8000]
    assert list(steps["decode_seqs"][decode_steps]) == [1] * 7 and not steps["prefill_tokens"][decode_steps].any()
    prefill_s = float(steps["duration_s"][prefill_steps][0])
    sent_s = 8000 * KV_BYTES_PER_TOKEN_PER_GPU / PATH_BYTES_PER_S + PATH_LATENCY_S
    assert turn.transfer_s == pytest.approx(max(sent_s / 32, sent_s - prefill_s), rel=1e-9)
    row = turn.row(r.boundary)
    assert row["ttft_s"] == pytest.approx(prefill_s + turn.transfer_s, abs=2e-9)   # (whole nanoseconds)
    assert float(steps["start_s"][decode_steps][0]) == pytest.approx(row["first_token_s"], abs=1e-9)
    assert turn.output_tokens == 8 and turn.first_step == 0 and turn.last_step == 6   # the decode replica's
    pools = gpus_table([r]).to_pydict()
    assert pools["pool"] == ["decode"] * 8 + ["prefill"] * 8
    assert set(pools["gpu"][:8]) == {f"n1/gpu{g}" for g in range(8)}


def test_a_one_token_reply_ends_on_the_prefill_replica():
    (r,) = run_all(offline(output_tokens=1))
    check_invariants([r])
    (turn,) = r.turns
    assert (turn.status, turn.replica, turn.prefill_replica, turn.transferred_tokens) == ("ok", 1, 1, 0)
    assert set(r.steps.columns()["replica"].tolist()) == {1}


def test_podcasts_across_pools_keep_every_token_and_joule_bulk_equal_to_per_step():
    """Four podcasts on one prefill replica of 4 GPUs (tp 4) and one decode replica of 8: the prefill replica
    caches the prompts it computed, so each turn recomputes the last reply (which only the decode replica
    saw); the decode replica holds each session's history, so only the rest of the prompt is sent. Tokens:
    context = cached + recomputed on the prefill side; transferred + held on the decode side = the prompt.
    Joules: the prefill replica's baseline counts half (4 GPUs of 8), and every layer sums to the ledger's."""
    dep = {**PD, "prefill": {"replicas": 1, "tp": 4}, "api_server": True}
    exp = experiment({"d": dep}, sessions=4, duration_h=0.05, session_stagger_s=7.0)
    bulk = run_all(exp)
    check_invariants(bulk)
    assert_same_run(bulk, run_all(exp, bulk=False))
    (r,) = bulk
    assert [e.baseline.weight for e in r.engines] == [1.0, 0.5]
    assert r.baselines == 1.5
    turns = [t for t in r.turns if t.status == "ok"]
    assert len(turns) >= 12
    for t in turns:
        assert t.context_tokens == t.cached_tokens + t.reloaded_tokens + t.recomputed_tokens
        assert t.new_tokens <= t.transferred_tokens <= t.context_tokens + t.new_tokens
        assert (t.replica, t.prefill_replica) == (0, 1)
    later = [t for t in turns if t.turn > 0]
    assert all(t.recomputed_tokens > 0 for t in later)           # the last reply, which the prefill never saw
    assert all(t.transferred_tokens < t.context_tokens for t in later if t.context_tokens > 64)
    steps = r.steps.columns()
    assert not steps["prefill_tokens"][steps["replica"] == 0].any()   # decode steps are never held up by prompts
    # Prefill tokens the prefill replica ran = what the turns did not find cached there.
    assert steps["prefill_tokens"][steps["replica"] == 1].sum() == sum(
        t.context_tokens + t.new_tokens - t.cached_tokens for t in turns)


def test_offload_on_both_pools_keeps_each_turns_history_counted_once():
    """Eight podcasts on a small pool (Llama-3.1-8B at 26% of an H100's HBM, one GPU a replica), prefill and
    decode each with DRAM below: the prefill replica reads evicted history back (or prefills it again), the
    decode replica is sent what its HBM lacks, so every turn's context is cached + read back + recomputed once.
    Both modes alike on a shorter load that reads back (six podcasts over six minutes on a smaller pool)."""
    small = {"model": "llama31_8b", "gpu": "h100_sxm", "nodes": 1, "tp": 1, "replicas": 1,
             "gpu_memory_utilization": 0.26, "kv_offload": "dram", "dram_kv_ratio": 0.5,
             "prefill": {"replicas": 1, "tp": 1}}
    exp = experiment({"d": small}, sessions=8, duration_h=20 / 60, session_stagger_s=3.0)
    bulk = run_all(exp)
    check_invariants(bulk)
    turns = [t for t in bulk[0].turns if t.status == "ok"]
    assert sum(t.reloaded_tokens for t in turns) > 0
    for t in turns:
        assert t.context_tokens == t.cached_tokens + t.reloaded_tokens + t.recomputed_tokens
        assert t.transferred_tokens <= t.context_tokens + t.new_tokens
    short = experiment({"d": {**small, "gpu_memory_utilization": 0.23}}, sessions=6, duration_h=6 / 60,
                       session_stagger_s=3.0)
    bulk = run_all(short)
    assert any(t.reloaded_tokens for t in bulk[0].turns)
    assert_same_run(bulk, run_all(short, bulk=False))


@pytest.mark.parametrize("prefill, table, key, words", [
    ({"replicas": 1, "tp": 3}, "deployments.d.prefill", "tp", "do not split over tp 3; valid: a divisor of 32"),
    ({"replicas": 3, "tp": 8}, "deployments.d.prefill", "replicas", "need 24 GPUs; the cluster has 16; valid: at most 2"),
    # Two nodes of prefill leave none for the decode replica.
    ({"replicas": 2, "tp": 8}, "deployments.d", "replicas", "leaves 0 of the cluster's 16; valid: more nodes, or a "
                                                            "smaller prefill pool"),
])
def test_a_prefill_pool_that_cannot_be_placed_is_one_line(prefill, table, key, words):
    with pytest.raises(ConfigError) as e:
        build("x.toml", "d", experiment({"d": {**PD, "prefill": prefill}}).deployments["d"])
    assert (e.value.table, e.value.key) == (table, key) and words in e.value.message


@pytest.mark.parametrize("deployment, table, key, words", [
    ({**PD, "prefill": {"replicas": 1, "tp": 8, "dp": 2}}, "deployments.d", None, "prefill: ep and dp share experts"),
    ({**PD, "prefill": {"replicas": 1, "tpp": 8}}, "deployments.d.prefill", "tpp", "valid keys: replicas, tp, pp"),
    ({**PD, "tp": 1, "gpus": ["n1/gpu0"]}, "deployments.d", None, "valid: no gpus list with a prefill table"),
    ({**PD, "queue_limit": 4}, "deployments.d", None, "valid: another router, queue_limit = 0"),
])
def test_prefill_keys_are_checked_like_the_deployments(deployment, table, key, words):
    with pytest.raises(ConfigError) as e:
        parse("x.toml", {"run": {"name": "t"}, "workload": {"duration_h": 0.1}, "deployments": {"d": deployment}})
    assert (e.value.table, e.value.key) == (table, key) and words in e.value.message
