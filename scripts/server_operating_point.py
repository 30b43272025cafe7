"""The cost model at the operating point a measured MLPerf Server run reveals.

    python scripts/server_operating_point.py

A Server run at Poisson rate r per instance settles where the batch B satisfies Little's law,
B = r x E2E, and each step takes about TPOT. From the published E2E and TPOT this prints, per case:
the measured batch and step, and simrun's step at that same batch with the same prompt arrivals
(r x step prompts per step, solved by fixed point), with the output rate that step gives against the
rate the server had to sustain. A step a few percent short of the measured one is enough to make the
simulated batch settle far lower: B = r L a / (1 - r L b) for a step of a + b x B, with r L b near 1.

Then, for a deployment measured Offline and in at least two Server runs, what the measurements alone
say a step costs: step = a + c x (decodes + prompt tokens) + s x decodes, s the host cost per streamed
token (Offline does not stream), solved by least squares over those rows.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sim.deployment import build
from sim.fidelity import load_case

CASES = sorted(Path("experiments/validation/mlperf").glob("*_server.toml"))
OFFLINE = sorted(Path("experiments/validation/mlperf").glob("*_offline.toml"))


def steady_step_s(cost, batch: int, context_tokens: int, prompt_tokens: int, prompts_per_s: float) -> float:
    """Step time when each step carries `batch` decodes and the prompts that arrived during it: the step
    is linear in whole prompts, so T = T0 + (T1 - T0) x prompts_per_s x T, i.e. T = T0 / (1 - (T1 - T0) x rate)."""
    t0 = float(cost.step([], [], [], [context_tokens] * batch).duration_s[0])
    t1 = float(cost.step([prompt_tokens], [0], [True], [context_tokens] * batch).duration_s[0])
    return t0 / (1.0 - (t1 - t0) * prompts_per_s)


def measured_step(case) -> tuple[tuple, float, float, float, bool]:
    """((gpu, tp, power cap), decodes, prompt tokens, step_s, streams) per instance of one measured MLPerf row.
    Server: decodes = rate x E2E (Little), step = TPOT p50. Offline: decodes = the batch cap (the queue
    keeps it full), step = batch / output rate. Prompt tokens per step = request rate x step x mean input."""
    (_, spec), = case.experiment.deployments.items()
    workload, measured = case.experiment.workload, case.measured
    instances = spec.replicas
    key = (spec.gpu, spec.tp, spec.power_cap_w)
    if workload.rate_per_s:
        rate = workload.rate_per_s / instances
        decodes, step_s = rate * measured["e2e_mean_s"][0], measured["tpot_p50_s"][0]
    else:
        rate = measured["requests_per_s"][0] / instances
        decodes = spec.max_seqs
        step_s = decodes / (measured["output_tokens_per_s"][0] / instances)
    return key, decodes, rate * step_s * workload.input_tokens, step_s, spec.streaming


def step_from_measurements() -> None:
    """Per deployment with an Offline row and two or more Server rows: a, c and s of the docstring."""
    rows = {}
    for path in OFFLINE + CASES:
        case = load_case(str(path))
        needed = {"tpot_p50_s", "e2e_mean_s"} if case.experiment.workload.rate_per_s else {"requests_per_s"}
        if not needed <= case.measured.keys():
            continue
        key, *row = measured_step(case)
        rows.setdefault(key, []).append(row)
    print()
    for (gpu, tp, _cap), found in rows.items():
        if sum(streamed for *_, streamed in found) < 2 or all(streamed for *_, streamed in found):
            continue
        design = np.array([[1.0, d + p, d if streamed else 0.0] for d, p, _, streamed in found])
        (a, c, s), *_ = np.linalg.lstsq(design, np.array([t for _, _, t, _ in found]), rcond=None)
        print(f"{gpu} tp{tp}: from {len(found)} measured rows, step = {a * 1e3:.1f} ms + {c * 1e3:.3f} ms x tokens"
              f" + {s * 1e6:.1f} us x streamed decodes")


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
    step_from_measurements()
