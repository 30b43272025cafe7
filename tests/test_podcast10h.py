"""The shipped experiment end to end: what issue 'simrun end to end' promises a newcomer."""
import statistics

import duckdb
import pandas as pd
import polars as pl
import pytest
from click.testing import CliRunner

from conftest import REPO_EXPERIMENT
from sim.cli import cli as main
from sim.output import write
from test_engine import check_invariants
from workloads.podcast import exchanges

# DESIGN.md's turn columns; its `minute` is `conversation_s` (seconds everywhere) and its `speaker`, always
# the model, is left out: every row is a request the model served (docs/outputs.md).
DESIGN_TURN_COLUMNS = {
    "run", "deployment", "session", "turn", "conversation_s", "context_tokens", "new_tokens", "output_tokens",
    "cached_tokens", "recomputed_tokens", "arrival_s", "first_token_s", "finish_s", "ttft_s", "tpot_s", "e2e_s",
    "energy_j", "energy_prefill_j", "energy_decode_j", "energy_baseline_j", "replica", "status", "reason"}


def turns_of(podcast10h, name):
    return next(r for r in podcast10h.results if r.deployment.name == name).turns


def test_invariants_hold_on_all_five(podcast10h):
    assert [r.deployment.name for r in podcast10h.results] == [
        "kimi_k2_h200", "ling_1t_h200", "megatron_1t_h100", "kimi_k2_h200_nocache", "kimi_k2_h200_nocache_shared"]
    check_invariants(podcast10h.results)
    turns = podcast10h.tables["turns"]
    assert DESIGN_TURN_COLUMNS <= set(turns.column_names)
    assert turns.num_rows == sum(len(r.turns) for r in podcast10h.results)


def test_megatron_kv_runs_out_where_the_hand_computation_says(podcast10h):
    """Free HBM per GPU / KV bytes per token per GPU, by hand (TP8 x PP4 on 32 H100, BF16)."""
    d = 25600
    layer_params = 12 * d * d + 13 * d                               # MHA + GELU FFN + biases + 2 LayerNorms
    layer_per_gpu = 4 * d + (layer_params - 4 * d) / 8               # LayerNorms whole on each rank, rest / 8
    first_stage_weights = (32 * layer_per_gpu + (51200 + 2048) * d / 8) * 2   # + token/position tables
    activations = 8192 * 2 * (2 * d + 2 * 102400 / 8) + 1024 * 51200 * 4 / 8  # 8,192-token step, FP32 logits
    # nvidia-smi's 81,559 MiB x vLLM's 0.9, less the framework reserve and the tp group's buffers
    # (1.79 GiB each, vLLM's profiler on H100, PR #10511)
    free_hbm = 81559 * 2**20 * 0.9 - first_stage_weights - activations - 2 * 1.79 * 2**30
    assert free_hbm == pytest.approx(8.576e9, rel=1e-3)
    kv_per_token = 32 * 2 * (160 // 8) * 160 * 2                      # 32 layers, 20 of 160 heads, K and V
    assert kv_per_token == 409_600 == 13_107_200 / 32
    capacity_tokens = int(free_hbm // (16 * kv_per_token)) * 16      # whole 16-token blocks
    assert capacity_tokens == 20_928

    turns = turns_of(podcast10h, "megatron_1t_h100")
    spec = podcast10h.experiment.workload.podcast_spec()
    plan = exchanges(spec, podcast10h.experiment.run.seed, 0)
    reply = {ex.index: ex.reply.tokens for ex, _ in zip(plan, range(len(turns)))}
    needed = [t.context_tokens + t.new_tokens + reply[t.turn] for t in turns]
    first_over = next(i for i, n in enumerate(needed) if n > capacity_tokens)
    statuses = [t.status for t in turns]
    assert statuses[:first_over] == ["ok"] * first_over
    assert statuses[first_over] == "kv_oom"
    assert f"({capacity_tokens} tokens)" in turns[first_over].reason
    minute = turns[first_over].conversation_s / 60
    # The conversation reaches the capacity in the second hour, well before the 10th.
    assert 60 < minute < 600
    assert turns[first_over - 1].context_tokens < capacity_tokens < needed[first_over]


def test_prefill_grows_without_caching_and_barely_with_it(podcast10h):
    def ttft_by_hour(name):
        turns = [t for t in turns_of(podcast10h, name) if t.status == "ok"]
        first = [t.first_token_ns - t.arrival_ns for t in turns if t.conversation_s < 3600]
        last = [t.first_token_ns - t.arrival_ns for t in turns if t.conversation_s > 540 * 60]
        return statistics.median(first), statistics.median(last)

    cached_first, cached_last = ttft_by_hour("kimi_k2_h200")
    full_first, full_last = ttft_by_hour("kimi_k2_h200_nocache")
    # With the cache only the new phrase is prefilled; it still attends the whole history, so TTFT grows
    # a little (1.6x from the first hour to the tenth), far from the uncached growth.
    assert cached_last < 2 * cached_first
    assert full_last > 10 * full_first
    assert full_last > 20 * cached_last


def test_cli_prints_the_minute_table_and_tables_read_everywhere(tmp_path, podcast10h):
    out = tmp_path / "results"
    result = CliRunner().invoke(main, [REPO_EXPERIMENT, "--output", str(out), "-q"])
    assert result.exit_code == 0, result.output
    # Two runs of the same file and seed (the fixture's, written here, and the command's): identical bytes.
    again = write(tmp_path / "again", podcast10h.tables, podcast10h.info, timing=podcast10h.timing)
    for name in ("turns.parquet", "steps.parquet", "gpus.parquet", "run.json"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    for name in ("kimi_k2_h200", "ling_1t_h200", "megatron_1t_h100", "kimi_k2_h200_nocache",
                 "kimi_k2_h200_nocache_shared"):
        assert f"{name}:" in result.output
    assert "kv_oom" in result.output and "attributed" in result.output and "brain" in result.output
    turns = out / "turns.parquet"
    pdf = pd.read_parquet(turns)
    assert len(pl.read_parquet(turns)) == len(pdf)
    count = duckdb.sql(f"select count(*) from '{turns}' where status = 'ok'").fetchall()[0][0]
    assert count == (pdf.status == "ok").sum()
    steps = pd.read_parquet(out / "steps.parquet")
    gpus = pd.read_parquet(out / "gpus.parquet")
    assert len(gpus) == 16 + 16 + 32 + 16 + 16
    # The turns' GPU layer and the per-GPU energy are two views of the same joules.
    for name, g in pdf.groupby("deployment"):
        assert g.gpu_j.sum() == pytest.approx(gpus[gpus.deployment == name].energy_j.sum(), rel=1e-9)
    # The turns' marginal (prefill + decode) energy is exactly the steps' energy above idle, taken to the
    # facility boundary: shares sum to one.
    boundaries = {r.deployment.name: r.boundary for r in podcast10h.results}
    for name, g in pdf.groupby("deployment"):
        dynamic_j = steps[steps.deployment == name].replica_dynamic_j.sum()
        assert g.marginal_j.sum() == pytest.approx(boundaries[name].facility_j(dynamic_j, 0.0), rel=1e-9)
