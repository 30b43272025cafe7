"""The cost model at the operating point a measured MLPerf Server run reveals.

    python scripts/server_operating_point.py

A Server run at Poisson rate r per instance settles where the batch B satisfies Little's law,
B = r x E2E, and each step takes about TPOT. From the published E2E and TPOT this prints, per case:
the measured batch and step, and simrun's step at that same batch with the same prompt arrivals
(r x step prompts per step, solved by fixed point), with the output rate that step gives against the
rate the server had to sustain. A step a few percent short of the measured one is enough to make the
simulated batch settle far lower: B = r L a / (1 - r L b) for a step of a + b x B, with r L b near 1.
"""
from __future__ import annotations

from pathlib import Path

from sim.deployment import build
from sim.validate import load_case

CASES = sorted(Path("experiments/validation/mlperf").glob("*_server.toml"))


def steady_step_s(cost, batch: int, context_tokens: int, prompt_tokens: int, prompts_per_s: float) -> float:
    """Step time when each step carries `batch` decodes and the prompts that arrived during it: the step
    is linear in whole prompts, so T = T0 + (T1 - T0) x prompts_per_s x T, i.e. T = T0 / (1 - (T1 - T0) x rate)."""
    t0 = float(cost.step([], [], [], [context_tokens] * batch).duration_s[0])
    t1 = float(cost.step([prompt_tokens], [0], [True], [context_tokens] * batch).duration_s[0])
    return t0 / (1.0 - (t1 - t0) * prompts_per_s)


def main() -> None:
    print(f"{'case':<40} {'batch':>6} {'step meas':>10} {'step sim':>9} {'sim/meas':>9} {'tok/s need':>11} "
          f"{'tok/s sim':>10}")
    for path in CASES:
        case = load_case(str(path))
        if "tpot_p50_s" not in case.measured:
            continue
        (name, spec), = case.experiment.deployments.items()
        built = build(str(path), name, spec)
        workload = case.experiment.workload
        instances = len(built.replicas)
        rate = workload.rate_per_s / instances
        step_s = case.measured["tpot_p50_s"][0]
        batch = round(rate * case.measured["e2e_mean_s"][0])
        # Mean context of a decoding sequence: its prompt plus, time-weighted, half its reply so far.
        context = workload.input_tokens + workload.output_tokens // 2
        sim_s = steady_step_s(built.replicas[0].cost, batch, context, workload.input_tokens, rate)
        need = case.measured["output_tokens_per_s"][0] / instances
        print(f"{case.name:<40} {batch:>6} {step_s * 1e3:>8.1f}ms {sim_s * 1e3:>7.1f}ms {sim_s / step_s:>9.3f} "
              f"{need:>11.0f} {batch / sim_s:>10.0f}")


if __name__ == "__main__":
    main()
