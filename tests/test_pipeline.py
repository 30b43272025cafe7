"""Pipeline parallelism with micro-batches in flight (sim.cost.step.pipelined): the period of two stages by
hand, the bubbles in the steps table, and the books kept."""
import numpy as np
import pytest

from conftest import experiment, run_all
from sim.cost import calibration
from sim.cost.engines import engines
from test_cost import BF16_RATE, EFF_BW, attention_rate, cost_model, roofline
from test_engine import assert_same_run, check_invariants

LLAMA8B_PP2 = {"model": "llama31_8b", "gpu": "h100_sxm", "nodes": 1, "tp": 1, "pp": 2, "weights": "bf16"}
PROMPT = 4096


def stage_s_by_hand(layers: int, kernels: int, c: int, head: bool) -> float:
    """One pipeline stage of Llama-3.1-8B on one H100 prefilling a c-token prompt from scratch: `layers` of
    its 32 layers, their kernels' floors, and on the last stage the LM head for the one token it samples
    (the arithmetic of test_cost.test_prefill_chunk_by_hand, per stage)."""
    layer = (2 * 4096 * 4096 + 2 * 4096 * 1024) + 2 * 4096 + 3 * 4096 * 14336
    head_params = 128256 * 4096 if head else 0
    lin_s = roofline((2 * layers * layer * c + 2 * head_params) / BF16_RATE,
                     (layers * layer + head_params) * 2 / EFF_BW)
    attn_flops = c * (c + 1) // 2 * 4 * 32 * 128 * layers
    attn_s = roofline(attn_flops / attention_rate((c + 1) / 2), c * (2 * 8 * 128 * 2) * layers / EFF_BW)
    return lin_s + attn_s + kernels * calibration.KERNEL_FLOOR_S


def test_two_stage_pipeline_period_and_throughput_by_hand():
    """Llama-3.1-8B split over two H100s (16 layers each), two 4,096-token prompts. Each stage of one prompt
    is compute-bound, t0 and t1 ~ 51.5 ms. One prompt alone crosses the stages in turn:
        L = max(t0 + send + t1, 292 launches) + host,  send = 4,096 x 4,096 x 2 B over NVLink
    Crossing together as one batch, a step is L of both (~ 2 t each stage: 205 ms). Dealt into two
    micro-batches in flight, each stage serves one while the other stage serves the other:
        P = max(L, 2 t0, 2 t1, 2 host) = L ~ 103 ms,
    so two prompts' 8,192 tokens take P: 1.98x the tokens per second, and the stages wait ~0.1 ms of it
    (the bubble: mean over stages of min(P, 2 t0 + 2 t1) - 2 t_s) instead of half the stages' work."""
    serial = cost_model("llama31_8b", "h100_sxm", 1, 1, 2, 1, "bf16")
    piped = cost_model("llama31_8b", "h100_sxm", 1, 1, 2, 1, "bf16", micro_batches=2)
    t0 = stage_s_by_hand(16, 16 * 9, PROMPT, head=False)
    t1 = stage_s_by_hand(16, 16 * 9 + 4, PROMPT, head=True)
    one = serial.step([PROMPT], [0], [True], [])
    assert one.stage_s[0][0] == pytest.approx(t0, rel=1e-9)
    assert one.stage_s[1][0] == pytest.approx(t1, rel=1e-9)
    send_s = PROMPT * 4096 * 2 / (0.786 * 450e9) + 2 * 0.71e-6
    host_s = calibration.HOST_STEP_S + engines()["vllm"].host_seq_s
    launches_s = 292 * calibration.EAGER_LAUNCH_S
    latency_s = max(max(t0 + send_s + t1, launches_s), host_s + launches_s)   # vLLM overlaps its host work
    assert one.duration_s[0] == pytest.approx(latency_s, rel=1e-6)
    assert one.bubble_s[0] == pytest.approx((t0 + t1) / 2, rel=1e-9)          # (pp - 1) / pp of the stages' work

    period_s = max(latency_s, 2 * t0, 2 * t1, 2 * host_s)
    both = piped.step([PROMPT, PROMPT], [0, 0], [True, True], [])
    assert both.duration_s[0] == pytest.approx(period_s, rel=1e-6)
    assert both.bubble_s[0] == pytest.approx(np.mean([min(period_s, 2 * t0 + 2 * t1) - 2 * t for t in (t0, t1)]),
                                             rel=1e-6, abs=1e-9)
    together = serial.step([PROMPT, PROMPT], [0, 0], [True, True], [])
    speedup = together.duration_s[0] / both.duration_s[0]
    assert speedup == pytest.approx(1.98, abs=0.01)


def test_pipelined_decodes_at_batch_one_wait_on_the_host_by_hand():
    """Two decodes at 5,000 tokens, one per micro-batch: each stage's weights are read for each micro-batch
    (~3 ms a stage), and the engine's one CPU schedules each micro-batch: P = max(L, 2 t_s, 2 host) =
    2 x 4.0011 ms. Crossing the stages together the two decodes share one read of the weights and one
    step's host work: 6.0 ms. Memory-bound decode at batch one gains nothing from a pipeline."""
    serial = cost_model("llama31_8b", "h100_sxm", 1, 1, 2, 1, "bf16")
    piped = cost_model("llama31_8b", "h100_sxm", 1, 1, 2, 1, "bf16", micro_batches=2)
    one = serial.step([], [], [], [5001])
    host_s = calibration.HOST_STEP_S + engines()["vllm"].host_seq_s
    both = piped.step([], [], [], [5001, 5001])
    expected = max(one.duration_s[0], 2 * one.stage_s[0][0], 2 * one.stage_s[1][0], 2 * host_s)
    assert expected == 2 * host_s
    assert both.duration_s[0] == pytest.approx(expected, rel=1e-12)
    assert serial.step([], [], [], [5001, 5001]).duration_s[0] < both.duration_s[0]


def test_a_pipelined_run_equals_its_steps_and_keeps_the_books():
    """Three micro-batches of a chunk and four decodes over four steps price as four single steps; every
    GPU idles over the period and adds each micro-batch's dynamic energy; the shares of it sum to one."""
    m = cost_model("kimi_k2", "h200", 2, 8, 2, 8, "fp8", micro_batches=3)
    run = m.step([1000], [2000], [False], [3000, 5000, 7000, 9000], n_steps=4)
    for k in range(4):
        one = m.step([1000], [2000 + 1000 * k], [False], [3000 + k, 5000 + k, 7000 + k, 9000 + k])
        for field in ("duration_s", "energy_j", "dynamic_j", "bubble_s"):
            assert getattr(one, field)[0] == getattr(run, field)[k]
        assert (one.shares[0] == run.shares[k]).all()
    assert run.shares.sum(axis=1) == pytest.approx(np.ones(4))
    assert run.energy_j == pytest.approx(m.accel.idle_w * run.duration_s * 16 + run.dynamic_j, rel=1e-12)
    assert sum(run.stage_energy_j) * 8 == pytest.approx(run.energy_j, rel=1e-12)


def offline(micro_batches: int, requests: int = 8):
    dep = {**LLAMA8B_PP2, "micro_batches": micro_batches, "api_server": False}
    return experiment({"d": dep}, kind="offline", requests=requests, input_tokens=PROMPT, output_tokens=1)


def test_an_engine_prefills_two_prompts_a_step_in_the_hand_computed_period():
    """Eight 4,096-token prompts under an 8,192-token budget: four steps of two prompts each. Serially
    each step lasts L of both; pipelined, the hand-computed P of the first test, each step's bubble
    nearly gone; the turns all end ok, joules add up, bulk and per-step agree."""
    t0 = stage_s_by_hand(16, 16 * 9, PROMPT, head=False)
    t1 = stage_s_by_hand(16, 16 * 9 + 4, PROMPT, head=True)
    send_s = PROMPT * 4096 * 2 / (0.786 * 450e9) + 2 * 0.71e-6
    host_s = calibration.HOST_STEP_S + engines()["vllm"].host_seq_s
    period_s = max(t0 + send_s + t1, 2 * t0, 2 * t1, 2 * host_s)
    piped, serial = run_all(offline(2)), run_all(offline(1))
    for result in (piped, serial):
        check_invariants(result)
        assert all(t.status == "ok" for t in result[0].turns)
    steps, serial_steps = piped[0].steps.columns(), serial[0].steps.columns()
    assert list(steps["prefill_tokens"]) == [2 * PROMPT] * 4
    assert steps["duration_s"] == pytest.approx([period_s] * 4, rel=1e-6)
    assert 8 * PROMPT / steps["duration_s"].sum() == pytest.approx(2 * PROMPT / period_s, rel=1e-6)
    assert serial_steps["duration_s"].sum() / steps["duration_s"].sum() == pytest.approx(1.98, abs=0.01)
    assert (steps["bubble_s"] < 1e-3 * steps["duration_s"]).all()
    assert serial_steps["bubble_s"] == pytest.approx(serial_steps["duration_s"] / 2, rel=0.01)
    assert_same_run(piped, run_all(offline(2), bulk=False))


def test_pipelined_podcasts_keep_the_books_in_bulk_and_step_by_step():
    """Three podcasts on a two-stage Llama-3.1-8B pipeline with two micro-batches in flight: every turn ends
    ok or with a reason, tokens and joules add up, bulk and per-step agree; with one podcast there is only
    one micro-batch, so every step's bubble is half the stages' work."""
    exp = experiment({"d": LLAMA8B_PP2}, sessions=3, duration_h=0.05, session_stagger_s=7.0)
    bulk = run_all(exp)
    check_invariants(bulk)
    assert_same_run(bulk, run_all(exp, bulk=False))
    steps = bulk[0].steps.columns()
    alone = steps["decode_seqs"] + (steps["prefill_tokens"] > 0) == 1
    busy = steps["duration_s"] - steps["bubble_s"]
    assert (steps["bubble_s"][alone] > 0.3 * busy[alone]).all()
