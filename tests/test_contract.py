"""The output contract (docs/outputs.md, sim/contract.py): every column written as documented, nulls for what
did not happen, byte-identical files for the same config and seed, and the README's DuckDB join."""
import json
import re
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from sim import contract
from sim.cli import cli as main

ROOT = Path(__file__).resolve().parent.parent
FAILING = """
[run]
name = "contract"
seed = 3
[workload]
duration_h = 0.4
reply_deadline_s = 0.6
[deployments.zeta]
model = "llama31_8b"
gpu = "h100_sxm"
nodes = 1
tp = 1
replicas = 1
max_context_tokens = 2500
[deployments.alpha]
model = "llama31_8b"
gpu = "h100_sxm"
nodes = 1
tp = 8
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run whose first deployment fails turns both ways: past its max context, and past the deadline."""
    folder = tmp_path_factory.mktemp("contract")
    exp = folder / "exp.toml"
    exp.write_text(FAILING)
    result = CliRunner().invoke(main, [str(exp), "-o", str(folder / "out"), "-q", "--no-plots"])
    assert result.exit_code == 0, result.output
    return folder / "out"


def sql_blocks(path: Path) -> list[str]:
    return re.findall(r"```sql\n(.*?)```", path.read_text(), re.S)


def test_the_docs_show_the_contract_the_code_writes():
    assert contract.markdown() in (ROOT / "docs" / "outputs.md").read_text(), \
        "docs/outputs.md is out of date: paste the output of `python -m sim.contract` into it"


def test_every_file_has_the_contract_schema(run_dir):
    for name, columns in contract.TABLES.items():
        schema = pq.read_schema(run_dir / f"{name}.parquet")
        assert [(f.name, f.type) for f in schema] == [(c.name, c.type) for c in columns]
        assert [f.metadata[b"description"].decode() for f in schema] == [c.meaning for c in columns]
        # Schema metadata: the run's config and seed, nothing the clock decides.
        info = json.loads(schema.metadata[b"simrun"])
        assert info == json.loads((run_dir / "run.json").read_text())
        assert info["seed"] == 3 and "wall_s" not in info
    assert json.loads((run_dir / "timing.json").read_text())["wall_s"] > 0


def test_nulls_say_what_did_not_happen(run_dir):
    turns = pd.read_parquet(run_dir / "turns.parquet")
    ok = turns.status == "ok"
    assert set(turns.status) == {"ok", "context_overflow", "timeout"}
    assert turns.e2e_s.isna().eq(~ok).all() and turns.finish_s.isna().eq(~ok).all()
    assert turns.reason.isna().eq(ok).all() and turns.end_s.notna().all()
    refused = turns[turns.status == "context_overflow"]
    assert refused.first_token_s.isna().all() and refused.first_step.isna().all()
    # refused once the API server has tokenised the prompt (vLLM's server: 6.6 ms, sim/data/engines.toml)
    assert list(refused.end_s - refused.arrival_s) == pytest.approx([6.6e-3] * len(refused), abs=1e-9)
    # A plain mean is the mean over the replies that came back: failed turns are not 0 s replies.
    zeta = turns[turns.deployment == "zeta"]
    assert zeta.e2e_s.mean() == pytest.approx(zeta[zeta.status == "ok"].e2e_s.mean())
    assert zeta.e2e_s.mean() > (zeta.e2e_s.fillna(0).sum() / len(zeta))
    assert "minute" not in turns and "speaker" not in turns
    assert (turns.conversation_s >= 0).all()


def test_steps_join_to_the_turns_they_served(run_dir):
    """Each ok turn's step range holds its first token and its finish, on its own replica; per replica
    the steps are numbered 0, 1, 2, ... in time order."""
    turns = pd.read_parquet(run_dir / "turns.parquet")
    steps = pd.read_parquet(run_dir / "steps.parquet")
    for (_, _), g in steps.groupby(["deployment", "replica"]):
        assert list(g.step) == list(range(len(g))) and g.start_s.is_monotonic_increasing
    gpus = steps.deployment.map({"alpha": 8, "zeta": 1})            # tp 8; tp 1 on one replica of one GPU
    assert list(steps.mean_gpu_power_w * gpus) == pytest.approx(list(steps.replica_power_w), rel=1e-12)
    steps["end_s"] = steps.start_s + steps.duration_s
    for t in turns[turns.status == "ok"].itertuples():
        mine = steps[(steps.deployment == t.deployment) & (steps.replica == t.replica)
                     & steps.step.between(t.first_step, t.last_step)]
        assert mine.start_s.iloc[0] >= t.arrival_s
        assert min(abs(mine.end_s - t.first_token_s)) < 1e-9         # the step that sampled its first token
        assert mine.end_s.iloc[-1] == pytest.approx(t.finish_s, abs=1e-9)


def test_the_readme_join_averages_over_ok_turns(run_dir):
    readme, docs = sql_blocks(ROOT / "README.md"), sql_blocks(ROOT / "docs" / "outputs.md")
    assert readme and readme[0] == docs[0]
    query = readme[0].replace("results/podcast10h", str(run_dir))
    got = {row[0]: row[1:] for row in duckdb.sql(query).fetchall()}
    turns = pd.read_parquet(run_dir / "turns.parquet")
    steps = pd.read_parquet(run_dir / "steps.parquet")
    for name, g in turns[turns.status == "ok"].groupby("deployment"):
        ok_turns, mean_e2e_s, mean_steps = got[name]
        assert ok_turns == len(g) and mean_e2e_s == pytest.approx(g.e2e_s.mean(), rel=1e-12)
        mine = steps[steps.deployment == name]
        counts = [((mine.replica == t.replica) & mine.step.between(t.first_step, t.last_step)).sum()
                  for t in g.itertuples()]
        assert mean_steps == pytest.approx(sum(counts) / len(counts), rel=1e-12)


def test_same_config_and_seed_give_byte_identical_files(run_dir, tmp_path, monkeypatch):
    """The same file given by another path, from another folder: the same bytes (the path given goes to
    timing.json with the wall time)."""
    again = tmp_path / "again"
    (tmp_path / "copy.toml").write_text((run_dir.parent / "exp.toml").read_text())
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["copy.toml", "-o", str(again), "-q", "--no-plots"])
    assert result.exit_code == 0, result.output
    assert json.loads((again / "timing.json").read_text())["experiment_file"] == "copy.toml"
    for name in ("turns.parquet", "steps.parquet", "gpus.parquet", "run.json"):
        assert (again / name).read_bytes() == (run_dir / name).read_bytes(), name


def test_report_keeps_the_experiments_deployment_order(run_dir):
    info = json.loads((run_dir / "run.json").read_text())
    assert list(info["deployments"]) == ["zeta", "alpha"]
    out = CliRunner().invoke(main, ["report", str(run_dir), "--no-plots"]).output
    assert out.index("zeta:") < out.index("alpha:")
