"""`simrun sweep` (issue 'Sweeps on a laptop and on a cluster'): points by grid, zip and random draws;
every point validated before any runs; one hive-partitioned dataset; resumable, a failed point recorded;
the same summary on a local Ray instance; `simrun report SWEEP_DIR`."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from sim import config
from sim.cli import cli
from sim.sweep import plan, runner, store
from sim.sweep.points import key_of, parameter_rows, points
from test_cli_errors import one_line_exit_2

BASE = """
[run]
name = "tiny"
seed = 3
[workload]
kind = "podcast"
duration_h = {hours}
[deployments.a]
model = "llama31_8b"
gpu = "h100_sxm"
nodes = 1
replicas = 1
[deployments.b]
model = "mamba2_2p7b"
gpu = "h100_sxm"
nodes = 1
replicas = 1
"""
# 2 GPUs x 3 session counts x 2 (policy, brain) rows x 2 random speech rates = 24 points.
SWEEP = """
[sweep.grid]
"deployments.*.gpu" = ["h100_sxm", "h200"]
"workload.sessions" = [1, 2, 3]
[sweep.zip]
"deployments.a.context" = [{policy = "full"}, {policy = "window", window_tokens = 512}]
"report.brain_w" = [20, 25]
[sweep.random]
samples = 2
seed = 4
params = { "workload.words_per_minute" = { min = 120, max = 180 } }
"""


def write(tmp_path, sweep=SWEEP, hours=0.02, name="sweep.toml"):
    path = tmp_path / name
    path.write_text(BASE.format(hours=hours) + sweep)
    return path


def spec_of(path):
    return config.load(path).sweep


def test_points_are_the_grid_product_by_the_zip_rows_by_the_draws(tmp_path):
    rows = parameter_rows(spec_of(write(tmp_path)))
    assert len(rows) == 2 * 3 * 2 * 2
    # the grid varies its last list fastest; each grid cell takes every zip row, and each row every draw
    assert [(r["deployments.*.gpu"], r["workload.sessions"]) for r in rows[:8:4]] == [("h100_sxm", 1), ("h100_sxm", 2)]
    assert [r["report.brain_w"] for r in rows[:4]] == [20, 20, 25, 25]
    zipped = {(json.dumps(r["deployments.a.context"]), r["report.brain_w"]) for r in rows}
    assert zipped == {('{"policy": "full"}', 20), ('{"policy": "window", "window_tokens": 512}', 25)}
    draws = [r["workload.words_per_minute"] for r in rows]
    assert draws[:2] != [draws[0]] * 2 and draws[:2] * 12 == draws   # the same two draws at every cell
    assert all(120 <= d <= 180 for d in draws)
    assert parameter_rows(spec_of(write(tmp_path))) == rows   # seeded


def test_random_ranges_integers_log_and_lists(tmp_path):
    path = write(tmp_path, """
[sweep.random]
samples = 400
seed = 1
params = { "workload.sessions" = { min = 1, max = 3 }, "workload.human_median_words" = { min = 10.0, max = 1000.0, log = true }, "deployments.*.gpu" = ["h100_sxm", "h200"] }
""")
    rows = parameter_rows(spec_of(path))
    assert {r["workload.sessions"] for r in rows} == {1, 2, 3}    # integer bounds, both included
    words = sorted(r["workload.human_median_words"] for r in rows)
    assert 10 <= words[0] and words[-1] <= 1000
    assert 50 < words[200] < 200    # log-uniform: the median near sqrt(10 x 1000) = 100
    assert {r["deployments.*.gpu"] for r in rows} == {"h100_sxm", "h200"}


def test_a_star_sets_every_deployment_and_keys_follow_the_resolved_config(tmp_path):
    path = write(tmp_path, '[sweep.grid]\n"deployments.*.gpu" = ["h200", "h200", "h100_sxm"]\n')
    pts = points(str(path), config.read_toml(path), spec_of(path))
    assert [p.data["deployments"][d]["gpu"] for p in pts for d in ("a", "b")] == ["h200"] * 4 + ["h100_sxm"] * 2
    assert pts[0].key == pts[1].key != pts[2].key
    assert pts[2].key == key_of(config.load(tmp_path / "sweep.toml").model_copy(update={"sweep": None}))


@pytest.mark.parametrize("sweep, expect", [
    ('[sweep.grid]\n"deployments.c.tp" = [1, 2]\n', "[sweep.grid] key 'deployments.c.tp': no [deployments.c] in "
                                                    "the experiment; valid: a, b"),
    ('[sweep.grid]\n"run.seed.x" = [1, 2]\n', "[sweep.grid] key 'run.seed.x': [run.seed] is a value, not a table"),
    ('[sweep.grid]\n"sweep.grid" = [1]\n', "a sweep cannot set its own [sweep] table"),
    ('[sweep.zip]\n"run.seed" = [1, 2]\n"report.brain_w" = [1]\n', "[sweep]: the [sweep.zip] lists have lengths [1, 2]"),
    ('[sweep.grid]\n"run.seed" = []\n', "[sweep.grid] key 'run.seed': List should have at least 1 item"),
    ('[sweep]\ngrid = {}\n', "[sweep]: no parameters"),
    ('[sweep.random]\nsamples = 2\nparams = { "run.seed" = { min = 3, max = 1 } }\n', "needs min < max"),
    ('[sweep.grid]\n"run.seed" = [1]\n[sweep.zip]\n"run.seed" = [2]\n', "'run.seed' appears in more than one"),
    ('[sweep.grid]\n"run.seed" = [1]\nfoo = [1]\n[sweep.gird]\nx = 1\n', "[sweep] key 'gird': unknown key; valid keys: "
                                                                        "grid, zip, random"),
    # a point that does not validate, or does not build, is named before any point runs
    ('[sweep.grid]\n"deployments.a.tp" = [1, 3]\n', "point 2 of 2 (deployments.a.tp = 3): [deployments.a] key 'tp': "
                                                    "32 attention heads of llama31_8b do not split over tp 3"),
    # no podcast, and no background chats on the deployment: nothing to serve
    ('[sweep.grid]\n"workload.sessions" = [1, 0]\n', "point 2 of 2 (workload.sessions = 0): [deployments.a] key "
                                                     "'background': workload sessions = 0 leaves the chats alone"),
])
def test_a_bad_sweep_or_point_is_one_line_before_any_runs(tmp_path, sweep, expect):
    path = write(tmp_path, sweep)
    out = tmp_path / "out"
    line = one_line_exit_2(["sweep", str(path), "-o", str(out), "-q"])
    assert expect in line
    assert not out.exists()


def test_run_and_sweep_files_each_need_their_command(tmp_path):
    assert "valid: run its points with `simrun sweep`" in one_line_exit_2([str(write(tmp_path)), "-o",
                                                                          str(tmp_path / "o")])
    plain = tmp_path / "plain.toml"
    plain.write_text(BASE.format(hours=0.02))
    assert "[sweep]: no [sweep] table" in one_line_exit_2(["sweep", str(plain), "-o", str(tmp_path / "o")])


def summary_rows(folder):
    return duckdb.sql(f"select * exclude (point) from read_parquet('{folder}/summary/*/*.parquet', "
                      f"hive_partitioning = true) order by all").fetchall()


def test_a_killed_sweep_resumes_without_running_finished_points_and_duckdb_reads_it_whole(tmp_path):
    """The issue's done-when: 24 points on 2 cores with a progress bar, killed half-way (SIGKILL to the
    sweep and its workers), resumed; the points done before are not run again, and one read_parquet glob
    reads the dataset."""
    path, out = write(tmp_path, hours=0.1), tmp_path / "out"
    command = [sys.executable, "-m", "sim", "sweep", str(path), "-o", str(out), "--jobs", "2"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while len(list(out.glob("summary/*/part-0.parquet"))) < 8 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("summary/*/part-0.parquet")}
    assert 8 <= len(before) < 24
    assert not list(out.glob("turns/*/.*")) and all(
        (out / t / name / "part-0.parquet").is_file() for name in before for t in ("turns", "steps", "gpus"))
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    skipped = len(before)
    staged = len(list((out / store.STAGING).iterdir())) if (out / store.STAGING).exists() else 0
    assert done.stdout.strip().splitlines()[-1] == (
        f"sweep: 24 points: {24 - skipped} ran, {skipped} skipped (done before), 0 failed; dataset in {out}/ "
        f"(summary, turns, steps, gpus, faults)") and staged == 0
    assert "sweep: 100%" in done.stderr     # the progress bar
    assert {p.parent.name: p.stat().st_mtime_ns for p in out.glob("summary/*/part-0.parquet")
            if p.parent.name in before} == before
    turns = duckdb.sql(f"select point, deployment, count(*) as n, min(\"workload.sessions\") as sessions from "
                       f"read_parquet('{out}/turns/*/*.parquet', hive_partitioning = true) group by all").fetchall()
    assert len({t[0] for t in turns}) == 24 and {t[1] for t in turns} == {"a", "b"}
    assert len(summary_rows(out)) == 48     # a row per point and deployment


def test_a_failing_point_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    path, out = write(tmp_path, '[sweep.grid]\n"workload.sessions" = [1, 2, 3]\n'), tmp_path / "out"
    real = runner.simulate_experiment

    def flaky(label, experiment, built, *args):
        if experiment.workload.sessions == 2:
            raise RuntimeError("disk on fire")
        return real(label, experiment, built, *args)

    monkeypatch.setattr(runner, "simulate_experiment", flaky)
    first = CliRunner().invoke(cli, ["sweep", str(path), "-o", str(out), "-j", "1", "-q"])
    assert first.exit_code == 1
    assert "point 2 of 3 (workload.sessions = 2) failed: RuntimeError: disk on fire" in first.stderr
    assert first.stdout.strip().splitlines()[-1].startswith("sweep: 3 points: 2 ran, 0 skipped (done before), 1 failed")
    summary, _ = store.read_summary(out)
    lost = [r for r in summary.to_pylist() if r["status"] == "failed"]
    assert [(r["workload.sessions"], r["error"]) for r in lost] == [(2, "RuntimeError: disk on fire")]
    assert not (out / "turns" / f"point={lost[0]['point']}").exists()
    monkeypatch.setattr(runner, "simulate_experiment", real)
    second = CliRunner().invoke(cli, ["sweep", str(path), "-o", str(out), "-j", "1", "-q"])
    assert second.exit_code == 0
    assert "1 ran, 2 skipped (done before), 0 failed" in second.stdout
    assert (out / "turns" / f"point={lost[0]['point']}" / "part-0.parquet").is_file()
    # a changed sweep in the same folder keeps the points it shares and drops the others
    write(tmp_path, '[sweep.grid]\n"workload.sessions" = [2, 4]\n')
    third = CliRunner().invoke(cli, ["sweep", str(path), "-o", str(out), "-j", "1", "-q"])
    assert "1 ran, 1 skipped" in third.stdout
    assert sorted(r["workload.sessions"] for r in store.read_summary(out)[0].to_pylist()) == [2, 2, 4, 4]


def test_the_same_sweep_on_a_local_ray_instance_gives_the_same_summary(tmp_path):
    pytest.importorskip("ray")
    path = write(tmp_path, '[sweep.grid]\n"deployments.*.gpu" = ["h100_sxm", "h200"]\n"workload.sessions" = [1, 2]\n')
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    assert CliRunner().invoke(cli, ["sweep", str(path), "-o", str(local), "-j", "2", "-q"]).exit_code == 0
    result = subprocess.run([sys.executable, "-m", "sim", "sweep", str(path), "-o", str(on_ray), "--backend", "ray",
                             "-j", "2", "-q"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "4 ran, 0 skipped" in result.stdout
    assert summary_rows(on_ray) == summary_rows(local)
    for table, order in (("turns", ["point", "deployment", "session", "turn", "kind"]),
                         ("steps", ["point", "deployment", "replica", "step"])):
        # partitions are listed in the order the points finished, which differs from run to run
        a, b = (duckdb.sql(f"select * from read_parquet('{folder}/{table}/*/*.parquet', hive_partitioning = true) "
                           f"order by {', '.join(order)}").fetchall() for folder in (on_ray, local))
        assert a == b


def test_report_prints_the_summary_and_plots_a_figure_by_two_parameters(tmp_path):
    path, out = write(tmp_path, '[sweep.grid]\n"deployments.*.gpu" = ["h100_sxm", "h200"]\n'
                                '"workload.sessions" = [1, 2]\n'), tmp_path / "out"
    assert CliRunner().invoke(cli, ["sweep", str(path), "-o", str(out), "-q"]).exit_code == 0
    result = CliRunner().invoke(cli, ["report", str(out), "--metric", "total_kwh", "--x", "workload.sessions",
                                      "--lines", "deployments.*.gpu"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["deployments.*.gpu", "workload.sessions", "deployment", "status"]
    assert len([x for x in lines if " ok " in x]) == 8 and "4 of 4 points have run (0 failed)" in result.output
    assert (out / "plots" / "total_kwh_by_workload_sessions.png").stat().st_size > 10_000
    assert "--x: no swept parameter 'nope'; valid: deployments.*.gpu, workload.sessions" in one_line_exit_2(
        ["report", str(out), "--x", "nope"])


def test_the_shipped_policy_sweep_has_24_distinct_valid_points():
    path = Path(__file__).resolve().parent.parent / "experiments" / "sweep_policies.toml"
    every = plan.load(str(path))
    assert len(every) == len({p.key for p in every}) == 24
    assert {p.params["deployments.kimi.context.policy"] for p in every} == {"window", "summarize", "retrieve"}


def test_ray_unavailable_is_one_line_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)    # `import ray` fails as if it were not installed
    path, out = write(tmp_path, '[sweep.grid]\n"workload.sessions" = [1, 2]\n'), tmp_path / "out"
    result = CliRunner().invoke(cli, ["sweep", str(path), "-o", str(out), "--backend", "ray", "-q"])
    assert result.exit_code == 2 and not out.exists()
    assert result.output.strip() == ("error: --backend ray needs Ray; valid: pip install -e '.[ray]', or "
                                     "--backend local")


def test_a_disk_that_refuses_a_point_is_one_line_and_keeps_the_points_before(tmp_path, monkeypatch):
    path, out = write(tmp_path, '[sweep.grid]\n"workload.sessions" = [1, 2]\n'), tmp_path / "out"
    real, written = store.commit, []

    def full_after_one(sweep_dir, key, *args):
        if written:
            raise OSError(28, "No space left on device")
        written.append(key)
        return real(sweep_dir, key, *args)

    monkeypatch.setattr(store, "commit", full_after_one)
    result = CliRunner().invoke(cli, ["sweep", str(path), "-o", str(out), "-j", "1", "-q"])
    assert result.exit_code == 2
    assert "cannot write point" in result.output and "No space left on device" in result.output
    assert [p.parent.name for p in out.glob("summary/*/part-0.parquet")] == [f"point={written[0]}"]


def test_a_worker_killed_mid_point_fails_that_point_and_the_sweep_goes_on(tmp_path, monkeypatch):
    """The kernel's out-of-memory killer ends a worker with SIGKILL: its point is recorded failed, saying
    so, and the other points run (a shared process pool would have waited for it forever)."""
    path, out = write(tmp_path, '[sweep.grid]\n"workload.sessions" = [1, 2, 3]\n'), tmp_path / "out"
    real = runner.run_point

    def oom(task):   # in the forked worker
        if task.params["workload.sessions"] == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(task)

    monkeypatch.setattr(runner, "run_point", oom)
    result = CliRunner().invoke(cli, ["sweep", str(path), "-o", str(out), "-j", "2", "-q"])
    assert result.exit_code == 1
    assert ("point 2 of 3 (workload.sessions = 2) failed: its worker process was killed by SIGKILL: out of "
            "memory?") in result.stderr
    assert "2 ran, 0 skipped (done before), 1 failed" in result.stdout
    rows = store.read_summary(out)[0].to_pylist()
    # a row per deployment of each point that ran; one for the point that failed
    assert sorted((r["workload.sessions"], r["status"]) for r in rows) == [
        (1, "ok"), (1, "ok"), (2, "failed"), (3, "ok"), (3, "ok")]
