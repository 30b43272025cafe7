"""Request traces (workloads.traces): CSV, Parquet and JSONL files in Azure's schema (as Vidur ships it) or
Mooncake's, read by hand; lengths replayed in order and cycled (length_dist = "trace"); whole traces replayed
at their arrivals with Mooncake's shared prefixes cached (kind = "trace"); bad files one line naming the file,
the row and the column."""
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import run_all
from sim import config
from sim.run import run_experiment
from test_cli_errors import one_line_exit_2
from test_engine import assert_same_run, check_invariants
from workloads.benchmark import replay
from workloads.traces import Trace, TraceError, continuations, read_jsonl, read_lengths, read_trace

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
    assert "no columns for prompt and reply tokens (it has prompt, reply); valid: columns arrived_at" in \
        one_line_exit_2([str(path), "-o", str(tmp_path / "out")])
    (tmp_path / "bad.csv").write_text("num_prefill_tokens,num_decode_tokens\n10,2\n12,x\n")
    line = one_line_exit_2([str(path), "-o", str(tmp_path / "out")])
    assert f"[workload]: trace_file {tmp_path / 'bad.csv'}: row 2, column 'num_decode_tokens': " \
           f"'x' is not a number of tokens; valid: a whole number >= 0" in line


MOONCAKE = [   # a conversation of three turns, each prompt the last one's and more, and an unrelated request
    {"timestamp": 0, "input_length": 1100, "output_length": 50, "hash_ids": [0, 1, 2]},
    {"timestamp": 10_000, "input_length": 1700, "output_length": 40, "hash_ids": [0, 1, 2, 3]},
    {"timestamp": 20_000, "input_length": 2000, "output_length": 30, "hash_ids": [0, 1, 2, 3, 4]},
    {"timestamp": 30_000, "input_length": 300, "output_length": 0, "hash_ids": [9]},
]


def _jsonl(rows) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def test_every_format_and_schema_reads_the_same_requests(tmp_path):
    (tmp_path / "m.jsonl").write_text(_jsonl(MOONCAKE))
    pq.write_table(pa.Table.from_pylist(MOONCAKE), tmp_path / "m.parquet")
    for name in ("m.jsonl", "m.parquet"):
        trace = read_trace(str(tmp_path / name))
        assert trace.arrival_s.tolist() == [0.0, 10.0, 20.0, 30.0]       # milliseconds to seconds
        assert trace.input_tokens.tolist() == [1100, 1700, 2000, 300]
        assert trace.output_tokens.tolist() == [50, 40, 30, 1]           # a reply of 0 tokens samples one
        assert trace.hash_ids == ((0, 1, 2), (0, 1, 2, 3), (0, 1, 2, 3, 4), (9,))
    azure = "arrived_at,num_prefill_tokens,num_decode_tokens\n5.5,100,7\n6.0,20.0,3\n"
    (tmp_path / "a.csv").write_text(azure)
    rows = [{"arrived_at": 5.5, "num_prefill_tokens": 100, "num_decode_tokens": 7},
            {"arrived_at": 6.0, "num_prefill_tokens": 20, "num_decode_tokens": 3}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    for name in ("a.csv", "a.parquet"):
        trace = read_trace(str(tmp_path / name))
        assert trace.arrival_s.tolist() == [0.0, 0.5] and trace.input_tokens.tolist() == [100, 20]
        assert trace.output_tokens.tolist() == [7, 3] and trace.hash_ids is None


@pytest.mark.parametrize("rows, expect", [
    ([{"timestamp": 0, "input_length": "abc", "output_length": 1}],
     "t.jsonl: row 1, column 'input_length': 'abc' is not a number of tokens; valid: a whole number >= 1"),
    ([{"timestamp": 0, "input_length": 3.5, "output_length": 1}],
     "row 1, column 'input_length': 3.5 is not a whole number of tokens >= 1"),
    ([{"timestamp": 0, "input_length": 0, "output_length": 1}], "row 1, column 'input_length': 0 is not a whole"),
    ([{"timestamp": 0, "input_length": 5, "output_length": -1}], "row 1, column 'output_length': -1 is not a whole"),
    ([{"timestamp": 9, "input_length": 5, "output_length": 1}, {"timestamp": 3, "input_length": 5, "output_length": 1}],
     "row 2, column 'timestamp': 3 comes before the row above (9); valid: rows in arrival order"),
    ([{"timestamp": -1, "input_length": 5, "output_length": 1}], "row 1, column 'timestamp': -1 is not a time"),
    ([{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": [1, -2]}],
     "row 1, column 'hash_ids': '[1, -2]' is not a list of block ids; valid: whole numbers >= 0"),
    ([{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": "7"}], "column 'hash_ids': '7' is not a list"),
    ([{"when": 0, "prompt": 5}], "t.jsonl: no columns for prompt and reply tokens (it has when, prompt); valid:"),
])
def test_a_bad_row_is_named_by_row_and_column(rows, expect):
    with pytest.raises(TraceError, match=None) as e:
        read_jsonl(io.StringIO(_jsonl(rows)), "t.jsonl")
    assert expect in str(e.value)


def test_bad_files_are_named(tmp_path):
    (tmp_path / "t.jsonl").write_text('{"timestamp": 0, "input_length": 5, "output_length": 1}\n[1, 2]\n')
    with pytest.raises(TraceError, match="t.jsonl: row 2: not a JSON object; valid: one JSON object per line"):
        read_trace(str(tmp_path / "t.jsonl"))
    (tmp_path / "u.jsonl").write_text("{oops\n")
    with pytest.raises(TraceError, match="u.jsonl: row 1: not JSON"):
        read_trace(str(tmp_path / "u.jsonl"))
    (tmp_path / "t.txt").write_text("x")
    with pytest.raises(TraceError, match="unknown trace format '.txt'; valid: .csv, .parquet, .jsonl"):
        read_trace(str(tmp_path / "t.txt"))
    (tmp_path / "t.parquet").write_text("not parquet")
    with pytest.raises(TraceError, match="t.parquet: not a Parquet file"):
        read_trace(str(tmp_path / "t.parquet"))


def test_a_request_follows_the_latest_whose_whole_prompt_begins_its_own():
    ids = ((0, 1, 2), (0, 1, 2, 3, 4), (0, 5), (0, 1, 2, 3, 4, 6), (7,), (0, 1, 2))
    parent, shared = continuations(ids)
    # [0, 5] shares only block 0 with the others, and no request's whole prompt is [0]; the last request sends
    # the first's prompt again and follows it, whole.
    assert parent.tolist() == [-1, 0, -1, 1, -1, 0] and shared.tolist() == [0, 3, 0, 5, 0, 3]


def test_a_replay_shares_what_the_prompt_before_held_but_its_own_last_token():
    trace = Trace(np.array([0.0, 1.0, 2.0]), np.array([1100, 1700, 1700]), np.array([5, 5, 5]),
                  ((0, 1, 2), (0, 1, 2, 3), (0, 1, 2, 3)))
    reqs = replay(trace, 3)
    # 3 blocks x 512 = 1,536 > the 1,100 tokens the first prompt had (its block 2 is partial): 1,100. The third
    # sends the second's prompt again: 4 x 512 = 2,048, capped at 1,700 - 1 (its last token is computed).
    assert [(r.follows, r.shared_tokens) for r in reqs] == [(-1, 0), (0, 1100), (1, 1699)]
    assert [r.arrival_s for r in reqs] == [0.0, 1.0, 2.0]


REPLAY = """
[workload]
kind = "trace"
trace_file = "trace.jsonl"
[deployments.d]
model = "llama31_8b"
gpu = "h100_sxm"
nodes = 1
tp = 1
replicas = 2
"""


def test_a_mooncake_trace_replays_at_its_arrivals_and_hits_its_shared_prefixes(tmp_path):
    """A conversation's turns ten seconds apart (each ends long before the next): turn 2 finds the first
    prompt's 1,100 tokens cached but the last partial 16-token block (1,088), and recomputes 12; turn 3 finds
    1,696 of the 1,700 it shares, the whole blocks of what turn 2 left (its prompt and reply but the last
    token: 1,739 tokens, 108 blocks = 1,728). Session affinity by conversation keeps them on replica 0; the
    unrelated request starts on replica 1 (sessions go round the replicas)."""
    (tmp_path / "trace.jsonl").write_text(_jsonl(MOONCAKE))
    (tmp_path / "exp.toml").write_text(REPLAY)
    turns = run_experiment(str(tmp_path / "exp.toml")).tables["turns"].to_pylist()
    assert [t["status"] for t in turns] == ["ok"] * 4
    assert [t["arrival_s"] for t in turns] == [0.0, 10.0, 20.0, 30.0]
    assert [(t["context_tokens"], t["new_tokens"]) for t in turns] == [(0, 1100), (1100, 600), (1700, 300), (0, 300)]
    assert [t["cached_tokens"] for t in turns] == [0, 1088, 1696, 0]
    assert [t["recomputed_tokens"] for t in turns] == [0, 12, 4, 0]
    assert [t["replica"] for t in turns] == [0, 0, 0, 1]



@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 10_000), router=st.sampled_from(["session_affinity", "prefix_aware", "round_robin"]),
       rate=st.sampled_from([0.5, 20.0]), caching=st.booleans())
def test_replays_of_random_conversations_keep_the_books(tmp_path_factory, seed, router, rate, caching):
    """40 requests, each a new conversation or the next turn of a random earlier one (its blocks and 1-3 more),
    arriving fast enough that turns of one conversation overlap: every turn ends ok, the invariants hold, and
    bulk equals per-step."""
    rng = np.random.default_rng(seed)
    rows, next_id, at = [], 0, 0.0
    for i in range(40):
        base = list(rows[rng.integers(i)]["hash_ids"]) if i and rng.random() < 0.6 else []
        added = int(rng.integers(1, 4))
        ids = base + list(range(next_id, next_id + added))
        next_id += added
        at += rng.exponential(1000.0 / rate)
        rows.append({"timestamp": int(at), "input_length": 512 * (len(ids) - 1) + int(rng.integers(1, 513)),
                     "output_length": int(rng.integers(1, 200)), "hash_ids": ids})
    folder = tmp_path_factory.mktemp("replay")
    (folder / "trace.jsonl").write_text(_jsonl(rows))
    exp = config.Experiment.from_dict({
        "run": {"name": "t", "seed": seed},
        "workload": {"kind": "trace", "trace_file": str(folder / "trace.jsonl")},
        "deployments": {"d": {"model": "llama31_8b", "gpu": "h100_sxm", "nodes": 1, "tp": 1, "replicas": 2,
                              "router": router, "prefix_caching": caching}}})
    bulk = run_all(exp)
    check_invariants(bulk)
    assert all(t.status == "ok" for t in bulk[0].turns)
    assert_same_run(bulk, run_all(exp, bulk=False))
