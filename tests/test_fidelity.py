"""Benchmark workloads, benchmark metrics, and `simrun validate` (cases, splits, summary, knee, --check)."""
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from conftest import LLAMA8B_H100, experiment, run_all, script
from sim import fidelity
from sim.cli import cli as main
from sim.errors import ConfigError
from sim.metrics import benchmark_metrics, table_metrics
from workloads.benchmark import Lengths, requests

TINY_CASE = """
[case]
name = "tiny"
source = "a test"
trust = "T4"
[measured]
output_tokens_per_s = {measured}
ttft_mean_s = {{ value = 0.05, tolerance = 10.0 }}
[run]
name = "tiny"
[workload]
kind = "offline"
requests = 40
input_tokens = 256
output_tokens = 64
[deployments.d]
model = "llama31_8b"
gpu = "h100_sxm"
nodes = 1
tp = 1
replicas = 1
"""


def test_lengths_by_hand():
    rng = np.random.default_rng(0)
    assert (Lengths(128).draw(rng, 5) == 128).all()
    drawn = Lengths(290, "lognormal", 0.8).draw(rng, 200_000)
    assert drawn.mean() == pytest.approx(290, rel=0.01)          # mu = ln 290 - 0.8^2 / 2 puts the mean at 290
    assert Lengths(290, "lognormal", 0.8, max_tokens=1024).draw(rng, 10_000).max() == 1024


def test_poisson_arrivals_have_the_rate():
    reqs = requests("poisson", 20_000, Lengths(10), Lengths(10), seed=3, rate_per_s=75.0)
    assert len(reqs) / reqs[-1].arrival_s == pytest.approx(75.0, rel=0.02)
    assert all(r.arrival_s == 0 for r in requests("offline", 10, Lengths(10), Lengths(10), seed=3))


def test_metrics_by_hand_on_one_request():
    """One request: arrives at 0, first token at 0.1 s, 11 tokens by 1.1 s: TPOT (1.1 - 0.1) / 10 = 0.1 s.
    Its GPU energy: 20 + 25 J above idle + 0.5 s of a 20 W idle replica = 55 J, 5 J per token (the host and
    facility layers are not in a benchmark's GPU energy)."""
    from types import SimpleNamespace
    from sim.energy.ledger import Boundary
    from sim.records import TurnRecord
    t = TurnRecord("r", "d", 0, 0, 0.0, 0, 100, 11, 0.0, 0, 0, status="ok", output_tokens=11,
                   first_token_ns=100_000_000, finish_ns=1_100_000_000,
                   dynamic_prefill_j=20.0, dynamic_decode_j=25.0, baseline_s=0.5)
    boundary = Boundary(gpu_idle_w=20.0, host_idle_w=300.0, host_slope=0.5, switch_w=50.0, pue=1.5, gco2e_per_kwh=350)
    m = benchmark_metrics(SimpleNamespace(turns=[t], boundary=boundary))
    assert m["output_tokens_per_s"] == pytest.approx(11 / 1.1)
    assert m["input_tokens_per_s"] == pytest.approx(100 / 1.1)
    assert m["ttft_p50_s"] == m["ttft_p99_s"] == pytest.approx(0.1)
    assert m["tpot_mean_s"] == m["itl_mean_s"] == pytest.approx(0.1)
    assert m["energy_per_output_token_j"] == pytest.approx(5.0)
    assert m["in_flight_mean"] == pytest.approx(1.0)


def test_a_key_with_nothing_to_measure_is_left_out_not_nan():
    """One-token replies have no TPOT: the keys are absent (the report prints -), and a case measuring one
    gets no prediction, no error and no place in the summary, rather than NaN."""
    exp = experiment({"d": {**LLAMA8B_H100, "tp": 8}}, kind="offline", requests=10, input_tokens=100,
                     output_tokens=1)
    m = benchmark_metrics(run_all(exp)[0])
    assert not {"tpot_p50_s", "tpot_p99_s", "tpot_mean_s", "itl_mean_s"} & m.keys() and m["ttft_mean_s"] > 0
    rows = [{"case": "c", "key": "tpot_p50_s", "family": "tpot_itl", "measured": 0.01, "predicted": None,
             "error_pct": None, "within": False, "split": "fit"},
            {"case": "c", "key": "ttft_p50_s", "family": "ttft", "measured": 0.1, "predicted": 0.11,
             "error_pct": 10.0, "within": True, "split": "fit"}]
    assert [(s["family"], s["keys"]) for s in fidelity.summary(rows) if s["split"] == "all"] == [("ttft", 1),
                                                                                                  ("all", 1)]
    assert f"{'tpot_p50_s':<26} {0.01:>11.4g} {'-':>11} {'-':>8}  fit  !" in fidelity.render(rows, [])


def test_concurrency_keeps_that_many_requests_in_flight():
    exp = experiment({"d": {"model": "llama31_8b", "gpu": "h100_sxm", "nodes": 1, "tp": 1, "replicas": 1}},
                     kind="concurrency", clients=8, requests=64, input_tokens=500, output_tokens=100)
    r, = run_all(exp)
    m = benchmark_metrics(r)
    assert len(r.turns) == 64 and all(t.status == "ok" for t in r.turns)
    assert 7.0 < m["in_flight_mean"] <= 8.0       # Little's law: 8 clients, minus the ramp-down at the end
    # Every request measured: the requests' energy is the cluster's. With 8 warm-up requests left out,
    # their energy leaves with their tokens: the last 56 requests' joules over their 56 x 100 tokens.
    gpu_j = lambda t: t.energy(r.boundary)["gpu_j"]   # noqa: E731
    # (a request shares the baseline from its admission: before the first, in the API server, none is held)
    unallocated_s = sum(e.baseline.unallocated_s for e in r.engines)
    assert 0 < unallocated_s < 0.1
    requests_j = r.ledger()["gpu_j"] - r.boundary.layers(0.0, unallocated_s)["gpu_j"]
    assert m["energy_per_output_token_j"] * 64 * 100 == pytest.approx(requests_j, rel=1e-9)
    measured_j = sum(gpu_j(t) for t in r.turns if t.session >= 8)
    warm = benchmark_metrics(r, warmup_requests=8)["energy_per_output_token_j"]
    assert warm == pytest.approx(measured_j / (56 * 100), rel=1e-12)
    assert measured_j < r.ledger()["gpu_j"]
    # Cool-down: the last 8 requests sent (sessions 56-63) are left out the same way.
    cool = benchmark_metrics(r, cooldown_requests=8)
    assert cool["energy_per_output_token_j"] == pytest.approx(
        sum(gpu_j(t) for t in r.turns if t.session < 56) / (56 * 100), rel=1e-12)
    last_finish_s = max(t.finish_ns for t in r.turns if t.session < 56) / 1e9
    assert cool["requests_per_s"] == pytest.approx(56 / (last_finish_s - 0.0))   # all 8 clients start at 0


def test_every_published_row_has_a_case():
    cases = [fidelity.load_case(p) for p in fidelity.discover([])]
    names = {c.name for c in cases}
    assert len(cases) == 126
    assert sum(n.startswith("trtllm_") for n in names) == 84          # 10 x 8 cells + 4 Qwen3 cells
    assert sum(n.startswith("mlperf41_") for n in names) == 7          # 6 published rows + the Triton run
    assert sum(n.startswith("nim_") for n in names) == 9
    assert "mlenergy_llama31_8b_h100_batch64" in names
    # MoE at small batch (published.md section 7): TensorRT-LLM #5929's 3 loads x 3 EP layouts, SGLang over
    # 2x8 H100 (3 prompt lengths) and on 8x H200 (4 concurrencies), Qwen3 on GB200 (6), gpt-oss on H100 (3).
    for prefix, count in (("trtllm5929_", 9), ("sglang356_", 3), ("sglang870_", 4), ("trtllm11612_", 6),
                          ("inferencex828_", 3)):
        assert sum(n.startswith(prefix) for n in names) == count
    held_out = [c for c in cases if c.split == "held_out"]
    assert 0.25 < len(held_out) / len(cases) < 0.42                    # a third, by crc32(name) % 3


def test_summary_and_knee_by_hand():
    rows = [{"case": f"nim_llama33_70b_h100_tp2_c{c:03d}_5000_500", "key": "ttft_mean_s", "family": "ttft",
             "measured": m, "predicted": p, "error_pct": (p - m) / m * 100, "split": "fit"}
            for c, m, p in ((50, 0.8, 1.0), (100, 8.0, 2.5), (150, 30.0, 20.0))]
    assert fidelity.knee(rows) == (100, 100)     # the first concurrency whose mean TTFT passes 2 s, both
    summary = {(s["split"], s["family"]): s for s in fidelity.summary(rows)}
    # Errors +25% (c50), -68.75% (c100), -33.3% (c150): median |error| 33.3%, max 68.75%.
    assert summary["fit", "ttft"]["median_abs_error_pct"] == pytest.approx(100 / 3)
    assert summary["all", "all"]["max_abs_error_pct"] == pytest.approx(68.75)
    assert ("held_out", "ttft") not in summary


def write_case(tmp_path, measured):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_CASE.format(measured=measured))
    return path


def test_validate_runs_a_case_and_check_fails_outside_tolerance(tmp_path):
    path = write_case(tmp_path, 1e9)    # a throughput no H100 reaches: far outside 40%
    result = CliRunner().invoke(main, ["validate", str(path), "-q", "-o", str(tmp_path / "out"), "-j", "1"])
    assert result.exit_code == 0, result.output
    assert "tiny" in result.output and "output_tokens_per_s" in result.output and "  !" in result.output
    assert "1 of 2 measured keys outside their tolerance" in result.output
    assert (tmp_path / "out" / "validation.parquet").exists() and (tmp_path / "out" / "summary.parquet").exists()
    checked = CliRunner().invoke(main, ["validate", str(path), "--check", "-q", "-o", str(tmp_path / "out"), "-j", "1"])
    assert checked.exit_code == 1


def test_bad_case_files_are_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY_CASE.format(measured=1000).replace("output_tokens_per_s =", "tokens_per_s ="))
    proc = subprocess.run([sys.executable, "-m", "sim", "validate", str(bad), "-o", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "[measured] key 'tokens_per_s': unknown key; valid keys: output_tokens_per_s" in proc.stderr
    huge = tmp_path / "huge.toml"
    huge.write_text(TINY_CASE.format(measured=1000).replace('"llama31_8b"', '"megatron_1t"'))
    proc = subprocess.run([sys.executable, "-m", "sim", "validate", str(huge), "-o", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "does not fit" in proc.stderr and "Traceback" not in proc.stderr
    missing = CliRunner().invoke(main, ["validate", str(write_case(tmp_path, 1000)), "--case", "nope", "-q"])
    assert missing.exit_code == 2 and "no case named 'nope'" in missing.output


def test_cases_run_alike_in_one_process_and_in_a_pool(tmp_path):
    paths = [str(write_case(tmp_path, 1000))]
    (tmp_path / "two.toml").write_text(TINY_CASE.format(measured=2000).replace('name = "tiny"', 'name = "two"'))
    paths.append(str(tmp_path / "two.toml"))
    assert fidelity.run_all(paths, jobs=2) == fidelity.run_all(paths, jobs=1)


def test_config_loads_a_case_as_an_experiment_with_its_measurements(tmp_path):
    """One road: sim.config reads [case] and [measured] like any table; a plain number takes the default
    tolerance (40%), an inline table its own."""
    from sim import config
    exp = config.load(write_case(tmp_path, 1000))
    assert exp.case.name == "tiny" and exp.case.trust == "T4"
    assert exp.measurements == {"output_tokens_per_s": (1000.0, 0.40), "ttft_mean_s": (0.05, 10.0)}
    assert fidelity.load_case(str(write_case(tmp_path, 1000))).measured == exp.measurements
    assert config.load("experiments/podcast10h.toml").case is None


@pytest.mark.parametrize("old, new, table, key, expect", [
    ("output_tokens_per_s = 5", "output_tokens_per_s = -5", "measured", "output_tokens_per_s",
     "needs a positive number (at most 1e15) or { value = x, tolerance = 0.2 } (got -5)"),
    ("output_tokens_per_s = 5", "output_tokens_per_s = nan", "measured", "output_tokens_per_s", "(got nan)"),
    ("output_tokens_per_s = 5", 'output_tokens_per_s = "fast"', "measured", "output_tokens_per_s",
     "needs a positive number (at most 1e15) or { value = x, tolerance = 0.2 }"),
    ("tolerance = 10.0", "tolerance = 0", "measured", "ttft_mean_s.tolerance", "greater than 0"),
    ('source = "a test"\n', "", "case", "source", "required key is missing"),
    ('name = "tiny"\nsource', 'name = ""\nsource', "case", "name", "at least 1 character"),
    ("[case]", "[cases]", "top level", "cases", "unknown key; valid keys: run, workload"),
    ('[case]\nname = "tiny"\nsource = "a test"\ntrust = "T4"\n', "", "case", None,
     "a case needs a [case] table with name and source beside [measured]"),
    ("[measured]\noutput_tokens_per_s = 5\nttft_mean_s = { value = 0.05, tolerance = 10.0 }", "[measured]",
     "measured", None, "no measured keys; valid: output_tokens_per_s"),
    ('kind = "offline"', 'kind = "podcast"', "workload", "kind", "a case has a benchmark workload; valid: offline"),
    ("[deployments.d]", '[deployments.e]\nmodel = "llama31_8b"\ncluster = "hgx_h200_x2"\n[deployments.d]',
     "deployments", None, "a case has one deployment (got 2)"),
])
def test_case_table_mistakes_are_one_line(tmp_path, old, new, table, key, expect):
    from sim import config
    path = write_case(tmp_path, 5)
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert (err.value.table, err.value.key) == (table, key) and expect in err.value.message


def test_trtllm_bench_limits_by_hand():
    """trtllm-bench's own max_batch_size / max_num_tokens (tuning.py), by hand.
    Llama-3.1-405B FP8 on 8x H100 (81,559 MiB each), ISL 128 / OSL 4096: 8 x 81,559 / 1,024 = 637.18 GiB,
    less 405,853,388,800 B of FP8 weights (377.98 GiB) = 259.2 GiB, x 0.95 = 246.2 GiB for KV; a token
    holds 2 x 126 layers x 8 heads x 128 x 1 B = 258,048 B, a request 4,224 tokens (1.0152 GiB): 242.5
    requests -> under 256, rounded up to a multiple of 32: 256; tokens 242.5 x (1 + 128 / 4096) = 250
    -> the floor of 2,048. Llama-3.1-8B on one H200 at 128/128 holds 8,081 requests: capped at 4,096,
    tokens 4,096 x 2 = 8,192. Llama-3.1-8B on one H100 at 20000/2000: (79.65 - 7.48) x 0.95 = 68.56 GiB
    over 22,000 x 65,536 B = 1.343 GiB per request = 51.1 requests -> 64 (the floor); tokens 51.1 x 11
    = 562 -> 2,048, then raised for whole-prompt prefill to ISL + batch = 20,000 + 64 = 20,064."""
    make_cases = script("make_validation_cases")
    assert make_cases.trtllm_bench_limits("llama31_405b", "h100_sxm", 8, "fp8", 128, 4096) == (256, 2048)
    assert make_cases.trtllm_bench_limits("llama31_8b", "h200", 1, "fp8", 128, 128) == (4096, 8192)
    assert make_cases.trtllm_bench_limits("llama31_8b", "h100_sxm", 1, "fp8", 20000, 2000) == (64, 20064)


def test_step_from_the_h200_measurements_by_hand(capsys):
    """Per H200: Offline 806 decodes, 107.48 / 8 req/s, 31,302.7 / 8 tok/s -> step 806 / 3,912.84 =
    205.99 ms, prompt tokens 13.435 x 0.20599 x 226 = 625.5; Server 101.25 / 8 x 35.85 s = 453.7 decodes,
    12.656 x 0.1243 x 226 = 355.5 prompt tokens, 124.3 ms; Triton 104.11 / 8 x 44.40 = 577.8 decodes,
    13.014 x 0.1540 x 226 = 452.9 prompt tokens, 154.0 ms. Step = a + c x (decodes + prompt tokens) +
    s x decodes (Server rows stream). Triton - Server: 221.47 c + 124.08 s = 29.7 ms; Offline - Server:
    622.25 c - 453.72 s = 81.69 ms. So (2.8096 x 124.08 + 453.72) s = 2.8096 x 29.7 - 81.69 ms:
    s = 2.19 us, c = (29.7 ms - 124.08 s) / 221.47 = 0.1329 ms, a = 205.99 - 1,431.5 c = 15.8 ms."""
    point = script("server_operating_point")
    server = fidelity.load_case("experiments/validation/mlperf/mlperf41_llama2_70b_h200_server.toml")
    key, decodes, prompt_tokens, step_s, streams = point.measured_step(server)
    assert key == ("h200", 1, 0.0) and streams
    assert (decodes, prompt_tokens, step_s) == pytest.approx((453.72, 355.53, 0.1243), rel=1e-4)
    offline = fidelity.load_case("experiments/validation/mlperf/mlperf41_llama2_70b_h200_offline.toml")
    _, *offline_row, streams = point.measured_step(offline)
    assert offline_row == pytest.approx([806, 625.5, 0.20599], rel=2e-4) and not streams
    rows = np.array([[1, 806 + 625.5, 0], [1, 453.72 + 355.53, 453.72], [1, 577.80 + 452.92, 577.80]])
    a, c, s = np.linalg.solve(rows, [0.20599, 0.1243, 0.1540])
    point.step_from_measurements()
    assert (f"h200 tp1: from 3 measured rows, step = {a * 1e3:.1f} ms + {c * 1e3:.3f} ms x tokens + "
            f"{s * 1e6:.1f} us x streamed decodes") in capsys.readouterr().out
    assert (round(a * 1e3, 1), round(c * 1e3, 3), round(s * 1e6, 1)) == (15.8, 0.133, 2.2)


def test_a_case_file_runs_and_describes_as_the_experiment_it_is(tmp_path):
    """`simrun run` and `simrun describe` take a case file: its [case] and [measured] tables are checked,
    then set aside, and the run simulates what `simrun validate` does (same config and seed, same turns)."""
    path = write_case(tmp_path, 1000)
    described = CliRunner().invoke(main, ["describe", str(path)])
    assert described.exit_code == 0, described.output
    assert "Llama-3.1-8B" in described.output and "KV capacity" in described.output
    ran = CliRunner().invoke(main, ["run", str(path), "-o", str(tmp_path / "run")])
    assert ran.exit_code == 0, ran.output
    # A benchmark has no conversation minutes: its one plot is each request's latency against when it was sent.
    assert [p.name for p in (tmp_path / "run" / "plots").iterdir()] == ["requests.png"]
    turns = pq.read_table(tmp_path / "run" / "turns.parquet")
    assert turns.num_rows == 40 and set(turns.column("status").to_pylist()) == {"ok"}
    rows, _ = fidelity.run_case(str(path))
    predicted = {r["key"]: r["predicted"] for r in rows}
    out = sum(turns.column("output_tokens").to_pylist())
    span = max(turns.column("finish_s").to_pylist()) - min(turns.column("arrival_s").to_pylist())
    assert predicted["output_tokens_per_s"] == pytest.approx(out / span, rel=1e-9)
    # A benchmark run reports the benchmark metrics, read back from its turns table, as validate computes them.
    from_table = table_metrics(turns, "d")
    assert from_table["ttft_mean_s"] == pytest.approx(predicted["ttft_mean_s"], rel=1e-9)
    assert f"{'output_tokens_per_s':<26} {from_table['output_tokens_per_s']:>12.4g}" in ran.output
    reported = CliRunner().invoke(main, ["report", str(tmp_path / "run"), "--no-plots"])
    assert reported.exit_code == 0 and f"{'ttft_mean_s':<26} {from_table['ttft_mean_s']:>12.4g}" in reported.output
    bad = tmp_path / "bad.toml"
    bad.write_text(path.read_text().replace("output_tokens_per_s =", "tokens_per_s ="))
    proc = subprocess.run([sys.executable, "-m", "sim", "run", str(bad), "-o", str(tmp_path / "bad_out")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "[measured] key 'tokens_per_s'" in proc.stderr and not (tmp_path / "bad_out").exists()


def test_calibrate_try_takes_only_fitted_constants():
    """`scripts/calibrate.py --try NAME=VALUE` prices one point of a hand grid; a name it does not fit, or a
    value that is not a number, is refused by argparse with the valid names."""
    import argparse
    calibrate = script("calibrate")
    assert calibrate._override("STREAM_TOKEN_HOST_S=15e-6") == ("STREAM_TOKEN_HOST_S", 15e-6)
    with pytest.raises(argparse.ArgumentTypeError, match="one of COMPUTE_EFFICIENCY"):
        calibrate._override("HBM=0.9")
    with pytest.raises(argparse.ArgumentTypeError, match="needs a number"):
        calibrate._override("HOST_STEP_S=fast")
