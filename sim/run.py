"""An experiment end to end: validate, build every deployment, simulate, write tables, render the report."""
from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from hardware.catalog import PRECISION_BYTES
from sim import __version__, config, intervals, output, report
from sim.deployment import build
from sim.faults.rates import SECONDS_PER_HOUR, exposed, rate_per_s, replica_rate_per_s, scenario
from sim.records import NS_PER_S
from sim.serving.slo import slo_lines
from sim.simulation import DeploymentResult, simulate


@dataclass
class RunResult:
    experiment: config.Experiment
    results: list[DeploymentResult]
    tables: dict[str, pa.Table]
    info: dict       # what the config and seed determine: run.json and every table's schema metadata
    timing: dict     # what they do not (the path given, the wall time): timing.json


def one_line(built) -> str:
    spec, rep = built.spec, built.replicas[0]
    return (f"{spec.architecture.display_name} ({spec.weights} weights, {spec.kv_cache} KV) on {spec.nodes} x "
            f"{built.cluster.node_type.gpus_per_node} {built.cluster.accelerator.display_name}; "
            f"{len(built.replicas)} replica(s) of tp {spec.tp} x pp {spec.pp} x ep {spec.ep}; "
            + (f"a prefill pool of {len(built.prefill)} x tp {pool.tp} x pp {pool.pp} x ep {pool.ep}; "
               if (pool := spec.prefill_pool) else "") +
            f"prefix caching {'on' if spec.prefix_caching else 'off'}; "
            f"KV pool {rep.kv_capacity_text()} per attention group")


def memory_per_token(arch, kv_dtype_bytes: float) -> dict:
    """What a conversation of T tokens holds, whole model: kv x T + window x min(T, window_tokens) + state."""
    return {"kv_bytes_per_token": arch.kv_bytes_per_token(kv_dtype_bytes),
            "window_kv_bytes_per_token": arch.window_kv_bytes_per_token(kv_dtype_bytes),
            "window_tokens": arch.sliding_window, "state_bytes": arch.state_bytes_per_sequence}


def run_experiment(path: str, mode: str | None = None, progress=None, replicates: int | None = None,
                   jobs: int | None = None, replicate_done=None, sets: tuple[str, ...] = ()) -> RunResult:
    """Load, build, simulate every deployment in turn and make the tables. `progress(name)`, when given,
    is a context manager around each deployment's simulation yielding the callback simulate reports to.
    `replicates` (default [run] replicates) runs of more than one go over `jobs` processes (sim.replicates),
    `replicate_done(done, total)` called as each ends. `sets`: the command line's PATH=VALUE changes."""
    started = time.perf_counter()
    experiment = config.load(path, sets)
    if experiment.sweep is not None:
        raise config.ConfigError(path, "sweep", None, "the file describes a sweep of many runs; valid: run its "
                                 "points with `simrun sweep`, or remove [sweep] to run the experiment once")
    run = experiment.run.model_copy(update={"mode": mode or experiment.run.mode,
                                            "replicates": replicates or experiment.run.replicates})
    experiment = experiment.model_copy(update={"run": run})
    built = build_all(path, experiment)   # a deployment that cannot be built is refused before any run
    if run.replicates == 1:
        return simulate_experiment(path, experiment, built, progress, started)
    from sim.replicates import run_replicates   # (sim.replicates runs this module's simulate_experiment)
    return run_replicates(path, experiment, jobs, replicate_done, started)


def build_all(path: str, experiment: config.Experiment) -> list:
    """Every deployment of an experiment built on its cluster (a ConfigError names `path` where one cannot be)."""
    spares = experiment.faults.hot_spares
    return [build(path, name, spec, spares) for name, spec in experiment.deployments.items()]


def simulate_experiment(path: str, experiment: config.Experiment, built: list, progress=None,
                        started: float | None = None, replicate: int = 0) -> RunResult:
    """Simulate an experiment's built deployments in turn and make the tables, marked as `replicate`; `path` is
    where it came from."""
    started = time.perf_counter() if started is None else started
    results = []
    for b in built:
        with progress(b.name) if progress else nullcontext() as tick:
            results.append(simulate(experiment, b, progress=tick))
    tables = output.tables(results, replicate)
    info = {
        "simrun_version": __version__, "seed": experiment.run.seed,
        "mode": experiment.run.mode, "config": experiment.model_dump(mode="json"),
        "deployments": {b.name: {
            "description": one_line(b),
            **memory_per_token(b.spec.architecture, PRECISION_BYTES[b.spec.kv_cache]),
            "kv_capacity_tokens": b.replicas[0].kv_capacity_tokens,
            "gpus": sum(len(r.placement.gpus) for r in b.places),
        } for b in built},
        "ledger_j": {r.deployment.name: r.ledger() for r in results},
        "faults": {r.deployment.name: exposure(r, experiment.faults) for r in results} if experiment.faults.enabled
        else {},
        "steps_table": "one row per engine step (not sampled or aggregated)",
    }
    # How it was run, which the config and seed do not fix: the path it was given by, the time it took.
    timing = {"experiment_file": str(path), "wall_s": time.perf_counter() - started,
              "python": sys.version.split()[0]}
    return RunResult(experiment, results, tables, info, timing)


def exposure(result: DeploymentResult, faults: config.FaultSpec) -> dict:
    """A deployment's fault exposure over a run (sim.faults.rates): its GPU-hours, the faults the rates expect
    over the run (the closed form the faults table's count is drawn around: its GPUs' gpu-scoped causes, its
    hosts' GPUs' host-scoped ones), and the rate at which faults hit one serving replica."""
    built, rates, cluster = result.deployment, scenario(faults.rates, faults.scale), result.deployment.cluster
    gpus = [g for rep in built.places for g in rep.placement.gpus]
    hours = result.end_ns / NS_PER_S / SECONDS_PER_HOUR
    on_hosts = len(exposed(gpus, cluster.gpus, cluster.host_of))
    return {"gpu_hours": len(gpus) * hours,
            "expected_faults": rate_per_s(rates, len(gpus), on_hosts) * hours * SECONDS_PER_HOUR,
            "replica_faults_per_h": replica_rate_per_s(rates, built.replicas[0].placement.gpus, cluster.gpus,
                                                       cluster.host_of) * SECONDS_PER_HOUR}


def default_output(path: str) -> Path:
    return Path("results") / Path(path).stem


def render(turns: pa.Table, info: dict, faults: pa.Table | None = None) -> str:
    """The report from a run's turns table, faults table and run.json (what `simrun report` re-reads): the
    minute-mark table of a podcast, the benchmark metrics of a benchmark workload; with replicates, each
    podcast deployment's minute marks over them (mean and 95% interval); with faults, what they cost."""
    cfg, workload = info["config"]["report"], info["config"]["workload"]
    descriptions = {n: d["description"] for n, d in info["deployments"].items()}
    replicates = info["config"]["run"]["replicates"]
    # Rates and counts are one run's: with replicates, the first's (the minute marks' intervals span them all).
    first = turns.filter(pc.equal(turns["replicate"], 0)) if replicates > 1 else turns
    if workload["kind"] != "podcast":
        text = report.render_benchmark(first, descriptions, workload["warmup_requests"], workload["cooldown_requests"])
    else:
        text = report.render(turns, descriptions, cfg["minutes"], cfg["brain_w"])
    lines = [text if replicates == 1 else f"{text}\n(replicate 0 above; seed {info['seed']})"]
    exposures = info.get("replicates") or [info]
    for name in descriptions:
        more = intervals.minute_lines(turns, name, cfg["minutes"], replicates) \
            if replicates > 1 and workload["kind"] == "podcast" else []
        if info["faults"] and faults is not None:
            more += intervals.fault_lines(turns, faults, name, [e["faults"][name] for e in exposures], replicates,
                                          workload["duration_h"] if workload["kind"] == "podcast" else 0.0)
        if more:
            lines += ["", f"{name}:", *more]
    slo = config.SloSpec(**info["config"].get("slo", {}))   # results written before [slo] existed have none
    if slo.targets:
        lines += slo_lines(first, descriptions, slo.targets, slo.attainment)
    return "\n".join(lines)
