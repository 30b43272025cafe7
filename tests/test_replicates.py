"""[run] replicates (sim.replicates, sim.intervals): seeds drawn from the run's, the same tables however many
processes run them, the first replicate the plain run, and the report's means and 95% intervals."""
from __future__ import annotations

import math

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from sim.cli import cli
from sim.intervals import interval
from sim.replicates import seeds
from sim.run import run_experiment

EXPERIMENT = """
[run]
name = "replicated"
seed = 11
replicates = 3
[workload]
duration_h = 0.1
sessions = 2
session_stagger_s = 20.0
[faults]
rates = { gpu = 200000.0, host = 20000.0 }
retries = 1
[deployments.d]
model = "llama31_8b"
gpu = "h100_sxm"
nodes = 1
tp = 1
replicas = 2
"""


@pytest.fixture
def path(tmp_path):
    exp = tmp_path / "replicated.toml"
    exp.write_text(EXPERIMENT)
    return str(exp)


def test_seeds_are_the_runs_first_then_drawn_from_it():
    drawn = seeds(11, 5)
    assert drawn[0] == 11 and len(set(drawn)) == 5 and drawn == seeds(11, 5)
    assert seeds(11, 3) == drawn[:3] and seeds(12, 3)[1:] != drawn[1:3]
    assert all(0 <= s < 2**63 for s in drawn)


def test_an_interval_by_hand():
    """1, 2, 3, 4: mean 2.5, s = sqrt(5/3) = 1.291, t(0.975, 3) = 3.182: half-width 3.182 x 1.291 / 2 = 2.054."""
    mean, half = interval([1.0, 2.0, 3.0, 4.0, math.nan])
    assert mean == 2.5 and half == pytest.approx(3.18245 * math.sqrt(5 / 3) / 2, rel=1e-5)
    assert math.isnan(interval([3.0])[1]) and math.isnan(interval([])[0])


def test_replicates_are_reproducible_whatever_the_processes_and_the_first_is_the_plain_run(path):
    serial = run_experiment(path, jobs=1)
    parallel = run_experiment(path, jobs=2)
    for name, table in serial.tables.items():
        assert table.equals(parallel.tables[name]), name
    turns = serial.tables["turns"]
    assert set(turns["replicate"].to_pylist()) == {0, 1, 2}
    assert [r["seed"] for r in serial.info["replicates"]] == seeds(11, 3)
    assert serial.tables["faults"].num_rows > 0    # ~3 faults a run at these rates
    # The closed form: 2 GPUs x 200,000 + their host's 8 GPUs x 20,000 faults a GPU-year, over the run's hours.
    exposure = serial.info["replicates"][0]["faults"]["d"]
    hours = exposure["gpu_hours"] / 2
    assert exposure["expected_faults"] == pytest.approx((2 * 200_000 + 8 * 20_000) / 8766 * hours, rel=1e-12)
    plain = run_experiment(path, replicates=1)
    for name, table in plain.tables.items():
        first = serial.tables[name].filter(serial.tables[name]["replicate"].to_numpy() == 0)
        assert first.equals(table), name
    # Each replicate's turns sum to its own ledger (every joule kept, run by run).
    for r in serial.info["replicates"]:
        mine = turns.filter(turns["replicate"].to_numpy() == r["replicate"])
        ledger = r["ledger_j"]["d"]
        assert sum(mine["energy_j"].to_pylist()) + ledger["unallocated_j"] == pytest.approx(ledger["total_j"], rel=1e-9)


def test_the_report_gives_intervals_and_fault_figures_and_rereads_them(path, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [path, "-o", str(out), "-q", "--no-plots", "--replicates", "4", "-j", "2"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "over 4 replicates (mean +- 95% interval" in text
    assert "faults: " in text and "per run (the rates expect" in text
    assert "6-minute podcast" not in text and "a 0.1-hour podcast met a fault" in text
    assert "minutes a podcast lost to faults" in text
    assert set(pq.read_table(out / "faults.parquet")["replicate"].to_pylist()) <= {0, 1, 2, 3}
    again = CliRunner().invoke(cli, ["report", str(out), "--no-plots"])
    assert again.exit_code == 0 and again.output.strip() in text
