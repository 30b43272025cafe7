"""Speed and memory of the simulator on the cases of issue 21 ('a simulator fast enough for sweeps'), each in a
fresh process, on this machine, in one run:

- podcast10h: every deployment of experiments/podcast10h.toml (target: under 2 s);
- N concurrent ten-hour podcasts on one deployment (podcast10h's Kimi K2 on 2 x 8 H200, prefix caching),
  N = 1, 10, 100, 1,000 (target for 1,000: under 60 s on one core and under 2 GB), and the growth exponents
  of wall time in N and in the turns served (1: cost grows as the work does);
- N concurrent ten-hour podcasts at cluster scale (issue 22): a deployment of experiments/cluster.toml
  (--cluster-deployment, hgx_offload by default: the same Kimi K2 layout as four replicas on 8 x HGX H200,
  turns routed by session affinity, evicted KV offloaded to host DRAM and NVMe; its background chats too),
  beside the single-replica case (N = --cluster-sessions, 1,000 by default; 0 skips it);
- Vidur's README example as a serving benchmark, 10,000 requests (benchmarks/vidur_readme.toml; target:
  under 1 s and 0.5 GB; Vidur needs 40-51 s and 6 GB warm on this kind of machine).

    python benchmarks/bench_speed.py [--sessions 1,10,100,1000] [--cluster-sessions 1000]
                                     [--cluster-deployment hgx_offload] [--hours 10]
                                     [--requests 10000] [--timeout 1800]

Wall time is the simulation's (loading the experiment and building its deployments included; the
interpreter's start and imports not); peak memory is the process's maximum resident set. A case past
--timeout is reported as such.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PODCAST = ROOT / "experiments" / "podcast10h.toml"
VIDUR = HERE / "vidur_readme.toml"
CLUSTER = ROOT / "experiments" / "cluster.toml"

CHILD = """
import json, resource, sys, time
from sim import config
from sim.run import build_all, simulate_experiment
from sim.sweep.points import set_path
case = json.loads(sys.argv[1])
data = config.resolve_paths(case["path"], config.read_toml(case["path"]))
for path, value in case["set"].items():
    set_path(data, path, value)
if case["only"]:
    data["deployments"] = {case["only"]: data["deployments"][case["only"]]}
started = time.perf_counter()
experiment = config.parse(case["path"], data)
result = simulate_experiment(case["path"], experiment, build_all(case["path"], experiment))
wall = time.perf_counter() - started
print(json.dumps({"wall_s": wall, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "turns": result.tables["turns"].num_rows, "steps": result.tables["steps"].num_rows}))
"""


def run_case(path: Path, settings: dict, only: str | None, timeout_s: float) -> dict | None:
    case = json.dumps({"path": str(path), "set": settings, "only": only})
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, case], capture_output=True, text=True,
                              timeout=timeout_s, check=True)
    except subprocess.TimeoutExpired:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def line(name: str, figures: dict | None, target: str, timeout_s: float) -> str:
    if figures is None:
        return f"{name:<34} {'> ' + format(timeout_s, '.0f'):>9} {'':>8} {'':>8} {'':>9}  {target}"
    return (f"{name:<34} {figures['wall_s']:>9.2f} {figures['peak_mb']:>8.0f} {figures['turns']:>8,} "
            f"{figures['steps']:>9,}  {target}")


def growth_exponent(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of log(wall) on log(N)."""
    xs, ys = [math.log(n) for n, _ in points], [math.log(w) for _, w in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", default="1,10,100,1000")
    parser.add_argument("--hours", type=float, default=10.0)
    parser.add_argument("--cluster-sessions", type=int, default=1000)
    parser.add_argument("--cluster-deployment", default="hgx_offload", help="a deployment of experiments/cluster.toml")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per case")
    args = parser.parse_args()
    print(f"{'case':<34} {'wall s':>9} {'peak MB':>8} {'turns':>8} {'steps':>9}  target")
    print(line("podcast10h (5 deployments)", run_case(PODCAST, {}, None, args.timeout), "< 2 s", args.timeout))
    walls, per_turn = [], []
    for n in (int(s) for s in args.sessions.split(",")):
        figures = run_case(PODCAST, {"workload.sessions": n, "workload.duration_h": args.hours}, "kimi_k2_h200",
                           args.timeout)
        target = "< 60 s, < 2 GB" if n == 1000 else ""
        print(line(f"{n:,} x {args.hours:g} h podcasts, Kimi K2", figures, target, args.timeout), flush=True)
        if figures:
            walls.append((n, figures["wall_s"]))
            per_turn.append((figures["turns"], figures["wall_s"]))
    if len(walls) > 1:
        print(f"{'':<34} growth exponent of wall time in sessions: {growth_exponent(walls):.2f} "
              f"(over N = {', '.join(str(n) for n, _ in walls)})")
        # A deployment that saturates serves fewer turns per session: wall time against the work done.
        print(f"{'':<34} growth exponent of wall time in turns served: {growth_exponent(per_turn):.2f}")
    if args.cluster_sessions:
        cluster = {"workload.sessions": args.cluster_sessions, "workload.duration_h": args.hours}
        figures = run_case(CLUSTER, cluster, args.cluster_deployment, args.timeout)
        print(line(f"{args.cluster_sessions:,} x {args.hours:g} h, cluster.toml {args.cluster_deployment}", figures, "",
                   args.timeout), flush=True)
    figures = run_case(VIDUR, {"workload.requests": args.requests}, None, args.timeout)
    print(line(f"Vidur README, {args.requests:,} requests", figures, "< 1 s, < 0.5 GB", args.timeout))


if __name__ == "__main__":
    main()
