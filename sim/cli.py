"""`simrun EXPERIMENT.toml [--output DIR] [--mode bulk|per_step]`."""
from __future__ import annotations

import sys

import click

from sim.errors import ConfigError
from sim.output import write
from sim.run import default_output, render, run_experiment


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("experiment", type=click.Path(dir_okay=False))
@click.option("--output", "-o", "output_dir", type=click.Path(file_okay=False),
              help="Where to write the tables (default: results/<experiment name>/).")
@click.option("--mode", type=click.Choice(["bulk", "per_step"]), default=None,
              help="Override [run] mode: bulk decode (fast) or one event per step (reference).")
@click.option("--quiet", "-q", is_flag=True, help="Print no progress lines.")
def main(experiment: str, output_dir: str | None, mode: str | None, quiet: bool) -> None:
    """Simulate the conversations of EXPERIMENT on its deployments; print the minute-mark table."""
    progress = None if quiet else (lambda msg: click.echo(msg, err=True))
    try:
        result = run_experiment(experiment, mode, progress)
    except ConfigError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    out = write(output_dir or default_output(experiment), result.tables, result.info)
    click.echo(render(result))
    click.echo(f"\ntables written to {out}/ (turns, steps, gpus .parquet; run.json)")
