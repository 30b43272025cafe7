"""Bad input: one line naming file, table and key, exit code 2, no traceback, no output directory."""
import subprocess
import sys

import pytest
from click.testing import CliRunner

from sim.cli import cli as main

GOOD = """
[run]
name = "t"
[workload]
duration_h = 0.05
[deployments.d]
model = "llama31_8b"
gpu = "h100_sxm"
nodes = 1
tp = 8
"""


def run_cli(tmp_path, text):
    exp = tmp_path / "exp.toml"
    exp.write_text(text)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [str(exp), "--output", str(out), "-q"])
    return result, exp, out


@pytest.mark.parametrize("old, new, table, key, expect", [
    ("tp = 8", "tpp = 8", "deployments.d", "tpp", "unknown key; valid keys: gpu, node, nodes, fabric, rail_optimized, model, cluster, context, background, prefill, tp,"),
    ("tp = 8", 'tp = "eight"', "deployments.d", "tp", "valid integer"),
    ('gpu = "h100_sxm"', 'gpu = "h900"', "deployments.d", "gpu",
     "unknown gpu 'h900'; valid: a100_80gb, b200, gb200, gb300, h100_sxm, h200, h800, mi300x, mi325x, mi355x"),
    ('model = "llama31_8b"', 'model = "llama9"', "deployments.d", "model", "unknown model 'llama9'; valid:"),
    ('model = "llama31_8b"', 'model = "megatron_1t"', "deployments.d", "pp",
     "does not fit on h100_sxm with tp 8 x dp 1 x pp 1"),
    ('model = "llama31_8b"', 'model = "qwen3_235b_a22b"\nep = 3', "deployments.d", None,
     "ep 3 does not divide the stage's tp x dp = 8 GPUs; valid: a divisor of 8"),
    ('model = "llama31_8b"', 'model = "qwen3_235b_a22b"\nep = 8\nredundant_experts = 2',
     "deployments.d", None, "128 experts of qwen3_235b_a22b + 2 redundant do not split over ep 8"),
    ("tp = 8", "tp = 8\nep = 8", "deployments.d", None, "llama31_8b has none: valid: ep = 1, dp = 1"),
    ('gpu = "h100_sxm"', 'gpu = "mi300x"', "deployments.d", None,
     "gpu 'mi300x' does not sit in node type 'hgx_8gpu'; valid gpus for it: h100_sxm, h800, h200, b200, a100_80gb"),
    ('gpu = "h100_sxm"', 'cluster = "hgx_h200_x2"', "deployments.d", None,
     "set either cluster = 'hgx_h200_x2' or nodes, not both"),
    ('gpu = "h100_sxm"\nnodes = 1', 'cluster = "hgx_h900"', "deployments.d", "cluster",
     "unknown cluster 'hgx_h900'; valid: gb200_nvl72, hgx_h100_x4, hgx_h200_x2, mi355x_x8"),
    ("tp = 8", "tp = 8\ngpus = [\"n0/gpu0\", \"n0/gpu9\"]", "deployments.d", "gpus", "no GPU named 'n0/gpu9'"),
    ('tp = 8', 'tp = 8\nengine = "tensorrt"', "deployments.d", "engine", "'vllm', 'sglang', 'trtllm', 'trtllm_0_21'"),
    ('tp = 8', 'tp = 8\nmtp_draft_tokens = 1\nmtp_accept_length = 2.5', "deployments.d", None,
     "mtp_accept_length 2.5 is outside 1 .. mtp_draft_tokens + 1 = 2"),
    ('name = "t"', 'name = "t"\nmode = "fast"', "run", "mode", "'bulk' or 'per_step'"),
    ("duration_h = 0.05", "duration_h = -1", "workload", "duration_h", "greater than 0"),
    ("nodes = 1", "", "deployments.d", "nodes", "required key is missing"),
    ("[run]", "[runn]", "top level", "runn",
     "unknown key; valid keys: run, workload, report, energy, slo, clusters, models, deployments"),
    ("tp = 8", "tp = 3", "deployments.d", "tp", "do not split over tp 3; valid: a divisor of 32"),
    ("tp = 8", "tp = 8\npp = 3", "deployments.d", "nodes", "multiple of 24"),
    ("tp = 8", "tp = 8\npower_cap_w = 60", "deployments.d", None, "at or below h100_sxm's idle power (121.7 W)"),
    ("[deployments.d]", "[energy]\npue = 0.5\n[deployments.d]", "energy", "pue",
     "pue 0.5 is outside 1-3; valid: a number from 1 (no overhead) to 3, or one of google, industry, meta"),
    ("[deployments.d]", "[energy]\ngrid = \"mars\"\n[deployments.d]", "energy", "grid", "unknown grid 'mars'; valid:"),
    ("[deployments.d]", "[energy]\npue_x = 1.1\n[deployments.d]", "energy", "pue_x",
     "unknown key; valid keys: pue, grid, idle_capacity"),
    ("tp = 8", "tp = 8\n[deployments.d.background]\nclient = 2", "deployments.d.background", "client",
     "unknown key; valid keys: clients, rate_per_s"),
    ("tp = 8", "tp = 8\nbackground = { clients = 2, rate_per_s = 1.0 }", "deployments.d", "background",
     "background needs one of clients > 0 or rate_per_s > 0 (not both)"),
    ("duration_h = 0.05", 'kind = "offline"\nrequests = 4\ninput_tokens = 10\noutput_tokens = 10\nwarmup_requests = 4',
     "workload", None, "leave none of the 4 requests to measure"),
    ("duration_h = 0.05", 'kind = "offline"\nrequests = 4\ninput_tokens = 10\noutput_tokens = 10\nwarmup_requests = 2'
     '\ncooldown_requests = 2', "workload", None, "(2 + 2) leave none of the 4 requests to measure"),
    ("tp = 8", "tp = 8\ngpu_memory_utilization = 0.8\nkv_cache_free_fraction = 0.9", "deployments.d", None,
     "set gpu_memory_utilization (vLLM's rule) or kv_cache_free_fraction (TensorRT-LLM's), not both"),
    ("duration_h = 0.05", 'kind = "poisson"\nrequests = 4\ninput_tokens = 10\noutput_tokens = 10', "workload", None,
     "kind 'poisson' needs rate_per_s > 0"),
    ("tp = 8", "tp = 2\nreplicas = 5", "deployments.d", "replicas", "valid: at most 4 replicas"),
    ('name = "t"', 'name = "t"\nseed = -1', "run", "seed", "greater than or equal to 0"),
    ("[deployments.d]", "[models.big]\nbase = \"llama31_8b\"\nn_layerz = 64\n[deployments.d]", "models.big", None,
     "unknown keys ['n_layerz']; valid:"),
    ("[deployments.d]", "[models.big]\nbase = \"llama9\"\n[deployments.d]", "models.big", "base",
     "unknown base model 'llama9'"),
    ("tp = 8", "tp = 8\n[deployments.d.context]\npolicy = \"window\"", "deployments.d", "context",
     "policy 'window' needs window_tokens > 0"),
    ("duration_h = 0.05", "duration_h = inf", "workload", "duration_h", "finite number"),
    ("duration_h = 0.05", "duration_h = 0.05\nhuman_median_words = 1e300", "workload", "human_median_words",
     "less than or equal to 10000"),
    ("tp = 8", "tp = 8\nmax_batched_tokens = 10000000", "deployments.d", "max_batched_tokens",
     "leaves no KV cache"),
    ("duration_h = 0.05", 'duration_h = 0.05\nsession_starts = "uniform"', "workload", None,
     "session_starts 'uniform' needs session_window_s > 0"),
    ("duration_h = 0.05", 'duration_h = 0.05\nsession_starts = "bursty"', "workload", "session_starts",
     "'staggered', 'poisson' or 'uniform'"),
    ("tp = 8", 'tp = 8\nrouter = "random"', "deployments.d", "router",
     "'session_affinity', 'round_robin', 'least_outstanding_tokens' or 'prefix_aware'"),
    ("tp = 8", "tp = 8\nqueue_limit = -1", "deployments.d", "queue_limit", "greater than or equal to 0"),
    ("[deployments.d]", "[faults]\nrates = \"llama4\"\n[deployments.d]", "faults", "rates",
     "unknown fault rates 'llama4'; valid: llama3, none"),
    ("[deployments.d]", "[faults]\nrates = { gpux = 0.1 }\n[deployments.d]", "faults", "rates",
     "unknown fault component 'gpux'; valid: gpu, hbm, host, network, nic, nvlink, software"),
    ("[deployments.d]", "[faults]\nrates = { gpu = -1 }\n[deployments.d]", "faults", "rates",
     "rate of gpu -1 per GPU-year is outside 0-1e6"),
    ("[deployments.d]", "[faults]\nretry = 1\n[deployments.d]", "faults", "retry",
     "unknown key; valid keys: rates, scale, retries, hot_spares, weights_from"),
    ("[deployments.d]", "[faults]\nhot_spares = 1\n[deployments.d]", "faults", "hot_spares",
     "1 hot spares leave deployment d no replica to serve (its cluster holds 1); valid: fewer spares, or more nodes"),
    ('name = "t"', 'name = "t"\nreplicates = 0', "run", "replicates", "greater than or equal to 1"),
    ("[deployments.d]", "[slo]\nttft = 1.0\n[deployments.d]", "slo", "ttft",
     "unknown key; valid keys: ttft_s, tpot_s, e2e_s, stall_s, attainment"),
    ("[deployments.d]", "[slo]\nattainment = 1.5\n[deployments.d]", "slo", "attainment", "less than or equal to 1"),
    ("tp = 8", "tp = 8\nbackground = { clients = 2, turns = 4 }", "deployments.d", "background",
     "background turns 4 needs think_s, message_tokens > 0"),
])
def test_bad_input_is_one_line(tmp_path, old, new, table, key, expect):
    result, exp, out = run_cli(tmp_path, GOOD.replace(old, new))
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line and "Traceback" not in line
    assert str(exp) in line and f"[{table}]" in line and expect in line
    if key:
        assert f"key '{key}'" in line
    assert not out.exists()


def one_line_exit_2(args, **kwargs):
    proc = subprocess.run([sys.executable, "-m", "sim", *args], capture_output=True, text=True, **kwargs)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr and "Usage" not in proc.stderr
    return proc.stderr


def test_usage_errors_are_one_line(tmp_path):
    exp = tmp_path / "exp.toml"
    exp.write_text(GOOD)
    (tmp_path / "afile").write_text("x")
    assert "is a directory" in one_line_exit_2([str(tmp_path)])
    assert "not a folder" in one_line_exit_2([str(exp), "-o", str(tmp_path / "afile" / "sub")])
    assert "is a file" in one_line_exit_2([str(exp), "-o", str(tmp_path / "afile")])
    assert "No such option" in one_line_exit_2([str(exp), "--frobnicate"])
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe[run]\n")
    assert "invalid TOML" in one_line_exit_2([str(tmp_path / "bin.toml")])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run.json").write_text("{}")
    pa_table = __import__("pyarrow").table({"x": [1]})
    __import__("pyarrow.parquet").parquet.write_table(pa_table, broken / "turns.parquet")
    assert "not a simrun results folder" in one_line_exit_2(["report", str(broken)])


def test_options_may_come_before_the_file(tmp_path):
    exp = tmp_path / "exp.toml"
    exp.write_text(GOOD)
    proc = subprocess.run([sys.executable, "-m", "sim", "-q", "--no-plots", "-o", str(tmp_path / "o"), str(exp)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o" / "turns.parquet").exists()


def test_bad_toml_and_missing_file(tmp_path):
    result, exp, out = run_cli(tmp_path, "[run\n")
    assert result.exit_code == 2 and "invalid TOML" in result.output and not out.exists()
    result = CliRunner().invoke(main, [str(tmp_path / "nope.toml")])
    assert result.exit_code == 2 and "no such file" in result.output


def test_error_through_the_console_entry_point(tmp_path):
    exp = tmp_path / "exp.toml"
    exp.write_text(GOOD.replace('gpu = "h100_sxm"', 'gpu = "h900"'))
    proc = subprocess.run([sys.executable, "-m", "sim", str(exp), "-o", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_good_file_runs_and_writes(tmp_path):
    result, exp, out = run_cli(tmp_path, GOOD)
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {"turns.parquet", "steps.parquet", "gpus.parquet", "faults.parquet", "run.json",
                                              "timing.json", "plots"}
    assert {p.name for p in (out / "plots").iterdir()} == {"energy_per_phrase.png", "energy_views.png", "latency.png",
                                                          "kv_memory.png"}


def test_report_rerenders_from_files_alone(tmp_path):
    result, exp, out = run_cli(tmp_path, GOOD)
    exp.unlink()  # the experiment file is gone: the report needs only the results folder
    (out / "plots").rename(tmp_path / "old_plots")
    again = CliRunner().invoke(main, ["report", str(out)])
    assert again.exit_code == 0, again.output
    table = result.output.split("tables written")[0].strip()
    assert again.output.strip().startswith(table)
    assert (out / "plots" / "latency.png").exists()
    missing = CliRunner().invoke(main, ["report", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "not a simrun results folder" in missing.output


def test_output_folder_problems_are_one_line_before_simulating(tmp_path):
    exp = tmp_path / "exp.toml"
    exp.write_text(GOOD)
    (tmp_path / "notes.txt").write_text("mine")
    # The current folder (or any folder holding other files) would be replaced whole: refused.
    assert "not a simrun run (no run.json)" in one_line_exit_2([str(exp), "-o", "."], cwd=tmp_path)
    assert "not a simrun run" in one_line_exit_2([str(exp), "-o", str(tmp_path)])
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert "File name too long" in one_line_exit_2([str(exp), "-o", str(tmp_path / ("x" * 300))])
    assert "not a simrun run" in one_line_exit_2([str(exp), "-o", "/"])


def test_the_current_folder_is_never_replaced(tmp_path):
    """An empty folder or an earlier run may be replaced, but not while it is (or holds) the current folder:
    the shell would be left in a deleted folder."""
    exp = tmp_path / "exp.toml"
    exp.write_text(GOOD)
    here = tmp_path / "here"
    (here / "sub").mkdir(parents=True)
    (here / "run.json").write_text("{}")
    assert "current folder" in one_line_exit_2([str(exp), "-o", "."], cwd=here / "sub")
    assert "current folder" in one_line_exit_2([str(exp), "-o", ".."], cwd=here / "sub")
    assert "current folder" in one_line_exit_2([str(exp), "-o", str(here)], cwd=here)
    assert "current folder" in one_line_exit_2([str(exp), "-o", ""], cwd=here / "sub")  # "" is "."
    assert sorted(p.name for p in here.iterdir()) == ["run.json", "sub"]


def test_unwritable_output_fails_in_one_line_without_leftovers(tmp_path, monkeypatch):
    import sim.output
    exp = tmp_path / "exp.toml"
    exp.write_text(GOOD)

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sim.output.tempfile, "mkdtemp", no_space)
    result = CliRunner().invoke(main, [str(exp), "-o", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "cannot write results there: No space left on device" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.toml"]


def test_a_previous_run_or_an_empty_folder_may_be_replaced(tmp_path):
    exp = tmp_path / "exp.toml"
    exp.write_text(GOOD)
    (tmp_path / "empty").mkdir()
    for folder in ("empty", "empty"):   # the second time it holds the first run's run.json
        result = CliRunner().invoke(main, [str(exp), "-o", str(tmp_path / folder), "-q", "--no-plots"])
        assert result.exit_code == 0, result.output


def test_report_on_a_malformed_run_is_one_line(tmp_path):
    result, exp, out = run_cli(tmp_path, GOOD)
    info = __import__("json").loads((out / "run.json").read_text())
    info["deployments"] = list(info["deployments"])
    (out / "run.json").write_text(__import__("json").dumps(info))
    assert "not a simrun results folder" in one_line_exit_2(["report", str(out)])


def test_no_arguments_is_one_line():
    assert "usage: simrun EXPERIMENT.toml" in one_line_exit_2([])
    proc = subprocess.run([sys.executable, "-m", "sim", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "describe" in proc.stdout and "report" in proc.stdout


@pytest.mark.parametrize("line, key", [("nodes = 100000000", "nodes"), ("tp = 4096", "tp"), ("pp = 4096", "pp"),
                                       ("ep = 4096", "ep"), ("replicas = 1000000", "replicas")])
def test_sizes_are_bounded(tmp_path, line, key):
    """A huge size is refused at once (a 10^8-node graph would never finish building)."""
    keys = [k for k in ("nodes = 1", "tp = 8") if not k.startswith(f"{key} ")] + [line]
    text = GOOD.replace("nodes = 1\n", "").replace("tp = 8\n", "") + "\n".join(keys) + "\n"
    result, exp, out = run_cli(tmp_path, text)
    assert result.exit_code == 2 and f"[deployments.d] key '{key}'" in result.output
    assert "less than or equal to" in result.output


@pytest.mark.parametrize("change, key, expect", [
    ("workload", "workload", "no value after '='; valid: PATH=VALUE, e.g. workload.sessions=100"),
    ("deployments.x.tp=2", "deployments.x.tp=2", "no [deployments.x] in the experiment; valid: d"),
])
def test_a_bad_set_is_one_line(tmp_path, change, key, expect):
    exp = tmp_path / "exp.toml"
    exp.write_text(GOOD)
    result = CliRunner().invoke(main, [str(exp), "--output", str(tmp_path / "out"), "-q", "--set", change])
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line and f"[--set] key '{key}'" in line and expect in line
    assert not (tmp_path / "out").exists()


def test_a_set_changes_the_run(tmp_path):
    exp = tmp_path / "exp.toml"
    exp.write_text(GOOD)
    result = CliRunner().invoke(main, [str(exp), "--output", str(tmp_path / "out"), "-q", "--no-plots",
                                       "--set", "run.name=renamed", "--set", "workload.sessions=2"])
    assert result.exit_code == 0, result.output
    import json
    info = json.loads((tmp_path / "out" / "run.json").read_text())
    assert info["config"]["run"]["name"] == "renamed" and info["config"]["workload"]["sessions"] == 2


def test_replicates_in_a_sweep_are_refused_in_one_line(tmp_path):
    exp = tmp_path / "exp.toml"
    exp.write_text(GOOD.replace('name = "t"', 'name = "t"\nreplicates = 2')
                   + '[sweep.grid]\n"workload.sessions" = [1, 2]\n')
    result = CliRunner().invoke(main, ["sweep", str(exp), "--output", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line and "[run] key 'replicates': a sweep runs each point once" in line
