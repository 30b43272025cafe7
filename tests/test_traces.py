"""Request lengths replayed from a trace file (workload length_dist = "trace"): Vidur's processed-trace CSV
format, rows in order and cycled, paths relative to the experiment file, bad files one line."""
import io
import shutil
from pathlib import Path

import pytest

from sim import config
from sim.run import run_experiment
from test_cli_errors import one_line_exit_2
from workloads.traces import TraceError, read_lengths

TRACE = Path(__file__).resolve().parents[2] / "shared" / "traces" / "vidur_readme_512.csv"
EXPERIMENT = """
[workload]
kind = "poisson"
requests = {requests}
rate_per_s = 6.45
length_dist = "trace"
trace_file = "{trace}"
[deployments.d]
model = "llama31_8b"
gpu = "a100_80gb"
nodes = 1
replicas = 1
max_batched_tokens = 512
"""


def test_rows_are_read_by_their_header_names():
    prompts, replies = read_lengths(io.StringIO("num_decode_tokens,x,num_prefill_tokens\n7,a,100\n0,b,5.0\n"))
    assert prompts.tolist() == [100, 5] and replies.tolist() == [7, 1]   # a reply of 0 tokens samples one
    for bad in ("a,b\n1,2\n", "num_prefill_tokens,num_decode_tokens\n", "num_prefill_tokens,num_decode_tokens\nx,1\n"):
        with pytest.raises(TraceError):
            read_lengths(io.StringIO(bad))


def test_requests_replay_the_trace_in_order_cycled_from_a_relative_path(tmp_path):
    shutil.copy(TRACE, tmp_path / "trace.csv")
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "exp.toml"
    path.write_text(EXPERIMENT.format(requests=520, trace="../trace.csv"))
    result = run_experiment(str(path))
    turns = result.tables["turns"]
    prompts, replies = read_lengths(TRACE.open())
    assert turns["new_tokens"].to_pylist() == prompts.tolist() + prompts[:8].tolist()   # 512 rows, then again
    ok = [t for t in turns.to_pylist() if t["status"] == "ok"]
    assert len(ok) == 520 and [t["output_tokens"] for t in ok[:512]] == replies.tolist()
    assert config.load(path).workload.trace_file == str(tmp_path / "trace.csv")


def test_a_missing_or_malformed_trace_is_one_line(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(EXPERIMENT.format(requests=10, trace="nope.csv"))
    line = one_line_exit_2([str(path), "-o", str(tmp_path / "out")])
    assert "[workload]" in line and f"trace_file '{tmp_path / 'nope.csv'}': No such file or directory" in line
    (tmp_path / "bad.csv").write_text("prompt,reply\n1,2\n")
    path.write_text(EXPERIMENT.format(requests=10, trace="bad.csv"))
    assert "no header with columns num_prefill_tokens and num_decode_tokens; valid: a CSV" in one_line_exit_2(
        [str(path), "-o", str(tmp_path / "out")])
