"""Command line: `simrun EXPERIMENT.toml` runs an experiment; `simrun describe EXPERIMENT.toml` shows its
deployments on their clusters; `simrun report DIR` re-renders a run."""
from __future__ import annotations

import shutil
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import click
import pyarrow as pa
from tqdm import tqdm

from sim import __version__, config, fidelity, plots
from sim.describe import describe, graph_path, write_graph
from sim.errors import ConfigError, Interrupted
from sim.output import ResultsError, output_problem, read, read_faults, write
from sim.pool import default_jobs
from sim.run import build_all, default_output, render, run_experiment
from sim.serving import capacity
from sim.serving.slo import describe_targets
from sim.sweep import plan as sweep_plan
from sim.sweep import report as sweep_report
from sim.sweep import runner, store


class _RunByDefault(click.Group):
    """`simrun [OPTIONS] FILE` means `simrun run [OPTIONS] FILE`, and a subcommand's options may come
    before its name: `simrun --no-plots report RUN` is `simrun report --no-plots RUN`."""

    def parse_args(self, ctx, args):
        takes_value = {opt for cmd in self.commands.values() for p in cmd.params
                       if isinstance(p, click.Option) and not p.is_flag and not p.count for opt in p.opts}
        i = 0
        while i < len(args) and args[i].startswith("-") and args[i] != "--":
            i += 2 if args[i] in takes_value else 1
        if i < len(args) and args[i] in self.commands:
            args = [args[i], *args[:i], *args[i + 1:]]
        elif i < len(args) or not {"-h", "--help", "--version"} & set(args):
            args = ["run", *args]     # a file (or `-- FILE`), or run's options with the file missing
        return super().parse_args(ctx, args)


USAGE = ("simrun EXPERIMENT.toml | simrun sweep EXPERIMENT.toml | simrun describe EXPERIMENT.toml | "
         "simrun report RESULTS_DIR | simrun plot RESULTS_DIR | simrun validate (simrun --help)")


def _interrupt(signum, frame) -> None:
    raise Interrupted()


def main() -> None:
    """Console entry point: every usage error is one line on stderr with exit code 2; Ctrl-C one line
    and exit code 130, with nothing half-written (sim.output writes a folder whole or not at all)."""
    if len(sys.argv) < 2:
        _fail(f"no experiment given; usage: {USAGE}")
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:   # not where the shell ignores it
        signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)   # `simrun report DIR | head` ends quietly, as other tools do
    try:
        code = cli.main(prog_name="simrun", standalone_mode=False)
    except click.ClickException as e:
        ctx = getattr(e, "ctx", None)   # a usage error names the subcommand it was for
        where = f"{ctx.command_path}: " if ctx is not None and ctx.parent is not None else ""
        click.echo(f"error: {where}{e.format_message()}", err=True)
        sys.exit(2)
    except (click.Abort, Interrupted):
        click.echo("interrupted: nothing half-written (a results folder is replaced only once complete)", err=True)
        sys.exit(130)
    sys.exit(code or 0)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _check_output(out_dir: Path) -> None:
    """Refuse, before any work, an output folder results could not be written to."""
    problem = output_problem(out_dir)
    if problem:
        _fail(f"{out_dir}: cannot write results there: {problem}; valid: a folder path you may write to")


def _write(out_dir: Path, tables: dict, info: dict, extras=None, timing: dict | None = None) -> Path:
    """Write the tables whole, or fail in one line if the disk refuses them."""
    try:
        return write(out_dir, tables, info, extras, timing)
    except OSError as e:
        _fail(f"{out_dir}: cannot write results there: {e.strerror or e}; valid: a folder path you may write to")


@contextmanager
def _results_folder(run_dir: str):
    """Whatever a malformed or foreign results folder raises while it is read becomes one line, exit 2."""
    try:
        yield
    except ResultsError as e:
        _fail(f"{run_dir}: {e}")
    except (OSError, KeyError, TypeError, ValueError, AttributeError) as e:
        _fail(f"{run_dir}: not a simrun results folder ({type(e).__name__}: {e}); valid: a folder `simrun` wrote")


@contextmanager
def _simulating(name: str):
    """A line on stderr as a deployment starts, and on runs longer than a few seconds a progress bar:
    simulated hours against the horizon (a benchmark: requests ended against all of them)."""
    terminal = sys.stderr.isatty()
    # The size from shutil, which falls back to 80 x 24 where a terminal reports none (tqdm draws nothing then)
    columns, rows = shutil.get_terminal_size()
    with tqdm(desc=f"  {name}", total=1, file=sys.stderr, delay=3, leave=False, mininterval=0.5 if terminal else 30,
              ncols=columns, nrows=rows) as bar:
        # The line after the bar is made: a Ctrl-C right after it finds the bar whole (a half-made one complains
        # at exit).
        click.echo(f"simulating {name} ...", err=True)
        def tick(done: float, total: float, unit: str) -> None:
            if bar.unit != unit:
                number = ".1f" if unit.startswith("h") else ",.0f"
                bar.bar_format = (f"{{desc}}: {{percentage:3.0f}}%|{{bar:24}}| {{n:{number}}} of {{total:{number}}} "
                                  f"{unit} [{{elapsed}}<{{remaining}}]")
                bar.unit = unit
            bar.total = total
            bar.update(done - bar.n)
        yield tick


@contextmanager
def _replicates_bar(quiet: bool):
    """A progress bar over replicates, made when the first replicate ends (a run of one makes none), shown when
    the run takes a few seconds."""
    if quiet:
        yield None
        return
    bars: list[tqdm] = []

    def done(finished: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(desc="  replicates", total=total, file=sys.stderr, delay=3, leave=False, unit="run"))
        bars[0].update(finished - bars[0].n)
    try:
        yield done
    finally:
        for bar in bars:
            bar.close()


@click.group(cls=_RunByDefault, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="simrun", message="%(prog)s %(version)s")
def cli() -> None:
    """Simulate long LLM conversations on GPU clusters: latency, failures and energy per phrase.

    simrun EXPERIMENT.toml runs an experiment (see `simrun run --help`).
    """


@cli.command("run")
@click.argument("experiment", type=click.Path(dir_okay=False))
@click.option("--output", "-o", "output_dir", type=click.Path(file_okay=False),
              help="Where to write the tables (default: results/<experiment name>/).")
@click.option("--mode", type=click.Choice(["bulk", "per_step"]), default=None,
              help="Override [run] mode: bulk decode (fast) or one event per step (reference).")
@click.option("--replicates", type=click.IntRange(1, 10_000), default=None,
              help="Override [run] replicates: runs with seeds drawn from the experiment's, reported with 95% intervals.")
@click.option("--jobs", "-j", type=click.IntRange(1, 4096), default=None,
              help="Processes the replicates run in (default: the cores).")
@click.option("--set", "sets", multiple=True, metavar="PATH=VALUE",
              help="Change a key of the experiment, a dotted path as a sweep's (e.g. workload.sessions=100); repeatable.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option("--quiet", "-q", is_flag=True, help="Print no progress lines.")
def run_command(experiment: str, output_dir: str | None, mode: str | None, replicates: int | None, jobs: int | None,
                sets: tuple[str, ...], no_plots: bool, quiet: bool) -> None:
    """Simulate EXPERIMENT on its deployments; print the minute-mark table (or a benchmark workload's
    metrics); write tables and plots."""
    out_dir = Path(output_dir) if output_dir is not None else default_output(experiment)
    _check_output(out_dir)
    try:
        with _replicates_bar(quiet) as done:
            result = run_experiment(experiment, mode, None if quiet else _simulating, replicates, jobs, done, sets)
    except ConfigError as e:
        _fail(str(e))
    extras = None if no_plots else (
        lambda folder: plots.render(result.tables["turns"], result.info, folder / "plots"))
    out = _write(out_dir, result.tables, result.info, extras, result.timing)
    click.echo(render(result.tables["turns"], result.info, result.tables["faults"]))
    click.echo(f"\ntables written to {out}/ (turns, steps, gpus, faults .parquet; run.json, timing.json"
               + ("" if no_plots else "; plots/*.png") + ")")


@cli.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--plots/--no-plots", "with_plots", default=True, help="Redraw the PNG plots into RUN_DIR/plots.")
@click.option("--metric", default=None, help="A sweep: the summary figure to plot (default: the first shown).")
@click.option("--x", "x_param", default=None, help="A sweep: the parameter along x (default: the first swept).")
@click.option("--lines", "lines_param", default=None,
              help="A sweep: one line per value of this parameter (default: the second swept).")
def report_command(run_dir: str, with_plots: bool, metric, x_param, lines_param) -> None:
    """Re-render a finished run's report (minute marks, or benchmark metrics) and plots from its files alone;
    for a sweep's folder, its summary table and a plot of --metric against --x, a line per value of --lines."""
    if (Path(run_dir) / "sweep.json").is_file():
        _sweep_report(run_dir, with_plots, metric, x_param, lines_param)
        return
    with _results_folder(run_dir):
        turns, info = read(run_dir)
        table = render(turns, info, read_faults(run_dir))
        written = plots.render(turns, info, Path(run_dir) / "plots") if with_plots else []
    click.echo(table)
    for path in written:
        click.echo(f"wrote {path}")


def _sweep_report(sweep_dir: str, with_plots: bool, metric, x_param, lines_param) -> None:
    with _results_folder(sweep_dir):
        try:
            summary, description = store.read_summary(sweep_dir)
            path = sweep_report.plot(summary, description, metric, x_param, lines_param,
                                     Path(sweep_dir) / "plots") if with_plots else None
        except (sweep_report.ReportError, store.SweepFolderError) as e:
            _fail(f"{sweep_dir}: {e}")
    click.echo(sweep_report.render(summary, description))
    if path:
        click.echo(f"wrote {path}")


@cli.command("plot")
@click.argument("run_dir", type=click.Path(file_okay=False))
def plot_command(run_dir: str) -> None:
    """Draw a finished run's PNGs into RUN_DIR/plots: energy per phrase (beside a human brain), reply
    latency, KV or state memory, each vs conversation minute, failures marked."""
    with _results_folder(run_dir):
        turns, info = read(run_dir)
        written = plots.render(turns, info, Path(run_dir) / "plots")
    for path in written:
        click.echo(f"wrote {path}")


@cli.command("sweep")
@click.argument("experiment", type=click.Path(dir_okay=False))
@click.option("--output", "-o", "output_dir", type=click.Path(file_okay=False),
              help="The sweep's dataset folder (default: results/<experiment name>/).")
@click.option("--jobs", "-j", type=click.IntRange(1, 4096), default=None,
              help="Points run at once (default: the cores; with --backend ray and --address, the cluster's CPUs).")
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local",
              help="Local processes, or Ray tasks (pip install -e '.[ray]').")
@click.option("--address", default=None, help="A running Ray cluster's address (default: start a local instance).")
@click.option("--mode", type=click.Choice(["bulk", "per_step"]), default=None,
              help="Override [run] mode at every point.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def sweep_command(experiment, output_dir, jobs, backend, address, mode, quiet) -> None:
    """Run every point of EXPERIMENT's [sweep] table (a grid, zipped lists, random draws of parameters by
    dotted path) into one Parquet dataset; run again, it skips the points done. Exit 1 if a point failed."""
    sweep_dir = Path(output_dir) if output_dir is not None else default_output(experiment)
    problem = store.folder_problem(sweep_dir) or (output_problem(sweep_dir) if not sweep_dir.exists() else None)
    if problem:
        _fail(f"{sweep_dir}: cannot write the sweep there: {problem}; valid: an empty folder or a sweep's")
    try:
        every = sweep_plan.load(experiment, mode)
    except ConfigError as e:
        _fail(str(e))
    jobs = jobs or default_jobs()
    try:
        ray_lib = runner.connect_ray(jobs, address) if backend == "ray" else None
    except runner.RayMissing as e:
        _fail(str(e))
    try:
        plan = sweep_plan.prepare(experiment, sweep_dir, every)
    except OSError as e:
        _fail(f"{sweep_dir}: cannot write the sweep there: {e.strerror or e}; valid: a folder you may write to")
    outcomes = runner.on_ray(ray_lib, plan.todo) if ray_lib else runner.local(plan.todo, jobs)
    ran = failed = 0
    labels = {task.key: task.label for task in plan.todo}
    with tqdm(desc="sweep", total=len(plan.points), initial=plan.skipped, unit="point", file=sys.stderr,
              disable=quiet, mininterval=0.5 if sys.stderr.isatty() else 10, dynamic_ncols=True) as bar:
        try:
            for outcome in outcomes:
                try:
                    store.commit(sweep_dir, outcome.key, outcome.tables, outcome.summary, outcome.files)
                except OSError as e:
                    _fail(f"{sweep_dir}: cannot write point {outcome.key} there: {e.strerror or e}; the points "
                          f"written before it are kept, and the same command resumes once there is room")
                ran += 1
                if outcome.error:
                    failed += 1
                    bar.write(f"{labels[outcome.key]} failed: {outcome.error}", file=sys.stderr)
                bar.update(1)
        except Interrupted:
            click.echo(f"\nsweep: {plan.skipped + ran - failed} of {len(plan.points)} points done; the same command "
                       f"resumes", err=True)
            raise
    merged = f" ({plan.merged} with a config another point has, run once)" if plan.merged else ""
    click.echo(f"sweep: {len(plan.points)} points{merged}: {ran - failed} ran, {plan.skipped} skipped (done before), "
               f"{failed} failed; dataset in {sweep_dir}/ (summary, turns, steps, gpus, faults)")
    if failed:
        sys.exit(1)


@cli.command("validate")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--case", "case_name", help="Run only the case of this name.")
@click.option("--check", is_flag=True, help="Exit 1 when a case misses its tolerance.")
@click.option("--jobs", "-j", type=click.IntRange(1, 256), default=None, help="Processes (default: the cores).")
@click.option("--output", "-o", "output_dir", type=click.Path(file_okay=False), default="results/validation",
              help="Where to write validation.parquet and summary.parquet.")
@click.option("--quiet", "-q", is_flag=True, help="Print no progress lines.")
def validate_command(paths, case_name, check, jobs, output_dir, quiet) -> None:
    """Run the validation cases (default experiments/validation/) against published measurements."""
    out_dir = Path(output_dir)
    _check_output(out_dir)
    try:
        files = fidelity.discover(list(paths))
        cases = [fidelity.load_case(f) for f in files]   # every case file checked before any runs
    except ConfigError as e:
        _fail(str(e))
    if case_name:
        files = [c.path for c in cases if c.name == case_name]
        if not files:
            _fail(f"no case named {case_name!r}; valid: one of the {len(cases)} case names, e.g. {cases[0].name}")
    progress = None if quiet else (lambda msg: click.echo(msg, err=True))
    rows = fidelity.run_all(files, jobs or default_jobs(), progress)
    sums = fidelity.summary(rows)
    click.echo(fidelity.render(rows, sums))
    measured, predicted = fidelity.knee(rows)
    if measured:
        click.echo(f"\nNIM sweep knee (first concurrency with mean TTFT > 2 s): measured {measured}, predicted {predicted}")
    out = _write(out_dir, fidelity.tables(rows, sums), {"cases": len(files), "simrun_version": __version__})
    click.echo(f"\ntables written to {out}/ (validation, summary .parquet)")
    if check and not all(r["within"] for r in rows):
        sys.exit(1)


@cli.command("describe")
@click.argument("experiment", type=click.Path(dir_okay=False))
@click.option("--graph", "graph_file", type=click.Path(dir_okay=False),
              help="Export each deployment's cluster graph as GraphML (FILE, or FILE.NAME.graphml for several).")
def describe_command(experiment: str, graph_file: str | None) -> None:
    """Show each deployment: GPUs and where they sit, layout, memory plan, links, KV capacity."""
    try:
        exp = config.load(experiment)
        built = build_all(experiment, exp)
    except ConfigError as e:
        _fail(str(e))
    click.echo("\n\n".join(describe(b) for b in built))
    if graph_file:
        for b in built:
            path = graph_path(Path(graph_file), b.name, len(built))
            try:
                write_graph(b, path)
            except OSError as e:
                _fail(f"{path}: cannot write the graph there: {e.strerror or e}; valid: a file path you may write to")
            click.echo(f"wrote {path}")


@cli.command("capacity")
@click.argument("experiment", type=click.Path(dir_okay=False))
@click.option("--most", type=click.FloatRange(min=1.0), default=4096.0, show_default=True,
              help="The most sessions (or requests per second) to try.")
@click.option("--output", "-o", "output_dir", type=click.Path(file_okay=False),
              help="Where to write capacity.parquet, every point tried (default: results/<name>_capacity/).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def capacity_command(experiment: str, most: float, output_dir: str | None, quiet: bool) -> None:
    """Find, for each deployment, the most concurrent podcasts (or the highest Poisson request rate) it holds
    within the experiment's [slo]: runs at doubling loads, then a bisection (sim.serving.capacity)."""
    out_dir = Path(output_dir) if output_dir is not None else Path(f"{default_output(experiment)}_capacity")
    _check_output(out_dir)
    try:
        exp = config.load(experiment)
        if not exp.slo.targets:
            raise ConfigError(experiment, "slo", None, "capacity needs a target to hold; valid: an [slo] table "
                              "with ttft_s, tpot_s, e2e_s or stall_s > 0")
        if exp.workload.kind not in capacity.KNOBS:
            raise ConfigError(experiment, "workload", "kind", f"capacity varies a podcast's sessions or a Poisson "
                              f"benchmark's rate_per_s, not kind '{exp.workload.kind}'; valid: podcast, poisson")
        built = build_all(experiment, exp)
    except ConfigError as e:
        _fail(str(e))
    points, lines = [], []
    for b in built:
        with tqdm(desc=f"capacity {b.name}", unit="point", file=sys.stderr, disable=quiet, leave=False) as bar:
            def tick(p: capacity.Point) -> None:
                bar.set_postfix_str(f"{p.knob} {p.load:g}: {p.attainment:.0%} met")
                bar.update()
            mine = capacity.search(exp, b, most, tick)
        points += mine
        best = capacity.capacity_of(mine)
        at = next((p for p in mine if p.within and p.load == best), None)
        lines.append(f"  {b.name:<28} {best:>10g} {mine[0].knob}"
                     + (f"   ({at.attainment:.1%} met, goodput {at.goodput_per_s:.4g} turns/s; {len(mine)} runs)"
                        if at else f"   (none within; {len(mine)} runs)"))
    table = pa.Table.from_pylist(capacity.rows(points))
    out = _write(out_dir, {"capacity": table}, {"simrun_version": __version__, "config": exp.model_dump(mode="json")})
    click.echo(f"capacity within the SLO ({describe_targets(exp.slo.targets)}; at least {exp.slo.attainment:.0%} "
               f"of turns):")
    click.echo("\n".join(lines))
    click.echo(f"\nevery point tried written to {out}/capacity.parquet")
