"""A run cleans up after itself and says what happened: stale temporary folders of killed runs go, results
folders follow the umask, Ctrl-C exits 130 in one line with nothing written, --version, options before
the subcommand, and progress on long runs."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from conftest import LLAMA8B_H100, experiment
from sim import __version__, output
from sim.cli import cli as main
from sim.deployment import build
from sim.output import steps_table, turns_table
from sim.simulation import simulate

ROOT = Path(__file__).resolve().parent.parent
LONG = """
[run]
name = "long"
[workload]
duration_h = 10
sessions = 12
[deployments.d]
model = "llama31_8b"
gpu = "h100_sxm"
nodes = 1
tp = 8
"""


def dead_pid() -> int:
    """The id of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporary_folders_of_killed_runs_are_removed(tmp_path):
    """Only folders simrun named, and only those whose process is gone: a live run's folder, and
    anything else in the parent, stay."""
    stale = tmp_path / f".out.simrun-{dead_pid()}-abc123"
    stale_old = tmp_path / f".other.simrun-{dead_pid()}-old"
    live = tmp_path / f".out.simrun-{os.getpid()}-def456"
    mine = [tmp_path / ".out.keep", tmp_path / "notes.simrun-1-x", tmp_path / ".hidden"]
    for folder in (stale, stale_old, live, *mine):
        folder.mkdir()
        (folder / "turns.parquet").write_bytes(b"PAR1 half")
    output.write(tmp_path / "out", {"a": pa.table({"x": [1]})}, {"seed": 1})
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["out", live.name, *(p.name for p in mine)])


def test_kill_9_while_writing_then_a_new_run_leaves_no_hidden_folder(tmp_path):
    """A process killed with SIGKILL inside output.write (its plots being drawn) leaves its temporary
    folder; the next run to write beside it removes it."""
    marker = tmp_path / "writing"
    script = textwrap.dedent(f"""
        import time, pathlib, pyarrow as pa
        from sim import __version__, output
        def plots(folder):
            pathlib.Path({str(marker)!r}).write_text(str(folder))
            time.sleep(60)
        output.write({str(tmp_path / "out")!r}, {{"turns": pa.table({{"x": [1]}})}}, {{"seed": 1}}, plots)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the writer never reached its plots"
    proc.kill()
    proc.wait()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.simrun-")], "nothing was left to clean"
    exp = tmp_path / "exp.toml"
    exp.write_text(LONG.replace("duration_h = 10", "duration_h = 0.05").replace("sessions = 12", "sessions = 1"))
    result = CliRunner().invoke(main, [str(exp), "-o", str(tmp_path / "out"), "-q", "--no-plots"])
    assert result.exit_code == 0, result.output
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_stopped_between_the_two_renames_the_earlier_results_stay(tmp_path, monkeypatch):
    """Ctrl-C after the earlier results were moved aside and before the new ones took their place: the
    earlier ones go back, and nothing is left beside them."""
    from sim.errors import Interrupted
    out = output.write(tmp_path / "out", {"a": pa.table({"x": [1]})}, {"seed": 1})
    renames = []

    def interrupted_second(src, dst):
        renames.append(dst)
        if len(renames) == 2:
            raise Interrupted()
        os.rename(src, dst)

    monkeypatch.setattr(output.os, "replace", interrupted_second)
    with pytest.raises(Interrupted):
        output.write(out, {"a": pa.table({"x": [2]})}, {"seed": 2})
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert output.pq.read_table(out / "a.parquet")["x"].to_pylist() == [1]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o077, 0o700), (0o002, 0o775)])
def test_results_folders_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        out = output.write(tmp_path / "res", {"a": pa.table({"x": [1]})}, {"seed": 1})
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == mode
    assert (out / "a.parquet").stat().st_mode & 0o777 == mode & 0o666


def test_ctrl_c_exits_130_in_one_line_with_nothing_written(tmp_path):
    exp = tmp_path / "long.toml"
    exp.write_text(LONG)
    proc = subprocess.Popen([sys.executable, "-m", "sim", str(exp), "-o", str(tmp_path / "out"), "--no-plots"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr.readline() == "simulating d ...\n"     # under way: the run takes minutes
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and out == ""
    assert err == "interrupted: nothing half-written (a results folder is replaced only once complete)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.toml"]


def test_validate_stops_its_workers_when_only_it_is_interrupted(tmp_path):
    """SIGINT to the main process alone (a supervisor, `timeout -s INT`): the pool's workers are
    terminated, not waited for through two 60,000-request cases."""
    cases = [f"experiments/validation/mlperf/mlperf41_llama2_70b_{gpu}_server.toml" for gpu in ("h200", "h100")]
    proc = subprocess.Popen([sys.executable, "-m", "sim", "validate", *cases, "-j", "2", "-o", str(tmp_path / "v")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    time.sleep(6)   # the cases are loaded and running
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.count("\n") == 1 and err.startswith("interrupted:")
    assert not (tmp_path / "v").exists()


def test_version_and_options_before_the_subcommand(tmp_path):
    version = subprocess.run([sys.executable, "-m", "sim", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout == f"simrun {__version__}\n" == "simrun 0.3.0\n"
    exp = tmp_path / "exp.toml"
    exp.write_text(LONG.replace("duration_h = 10", "duration_h = 0.05").replace("sessions = 12", "sessions = 1"))
    run = CliRunner().invoke(main, ["-q", "--output", str(tmp_path / "out"), "--no-plots", str(exp)])
    assert run.exit_code == 0, run.output
    # `simrun --no-plots report RUN` is `simrun report --no-plots RUN`, not a file called "report".
    report = CliRunner().invoke(main, ["--no-plots", "report", str(tmp_path / "out")])
    assert report.exit_code == 0 and "d: Llama-3.1-8B" in report.output
    described = CliRunner().invoke(main, ["--graph", str(tmp_path / "g.graphml"), "describe", str(exp)])
    assert described.exit_code == 0 and (tmp_path / "g.graphml").exists()
    wrong = subprocess.run([sys.executable, "-m", "sim", "-o", str(tmp_path / "x"), "report", str(tmp_path / "out")],
                           capture_output=True, text=True)
    assert wrong.returncode == 2 and wrong.stderr == "error: simrun report: No such option '-o'.\n"


def test_progress_reports_the_clock_and_changes_nothing():
    """With a progress callback the run goes event by event as env.run would: identical tables; the
    callback sees the simulated hours rise to the horizon (a benchmark: requests ended, up to all)."""
    exp = experiment({"d": {**LLAMA8B_H100, "tp": 4}}, duration_h=0.5, sessions=3, session_stagger_s=60)
    spec = exp.deployments["d"]
    calls = []
    plain = simulate(exp, build("t.toml", "d", spec))
    shown = simulate(exp, build("t.toml", "d", spec), progress=lambda *a: calls.append(a))
    assert turns_table([plain]).equals(turns_table([shown])) and steps_table([plain]).equals(steps_table([shown]))
    horizon_h = (2 * 60 + 1800) / 3600
    assert {(round(total, 9), unit) for _, total, unit in calls} == {(round(horizon_h, 9), "h simulated")}
    done = [d for d, _, _ in calls]
    assert done == sorted(done) and done[-1] == pytest.approx(horizon_h) and 50 < len(calls) <= 201
    bench = experiment({"d": {**LLAMA8B_H100, "tp": 8}}, kind="offline", requests=30, input_tokens=100,
                       output_tokens=20)
    calls.clear()
    simulate(bench, build("t.toml", "d", bench.deployments["d"]), progress=lambda *a: calls.append(a))
    assert calls[-1] == (30, 30, "requests")
