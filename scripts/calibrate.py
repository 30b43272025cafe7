"""Fit the cost model's free constants to the validation cases of the fit split, and report both splits.

    python scripts/calibrate.py [--passes 2] [--jobs N]
    python scripts/calibrate.py --try STREAM_TOKEN_HOST_S=15e-6 [--try NAME=VALUE ...]

Fits sim.cost.calibration's COMPUTE_EFFICIENCY, HBM_EFFICIENCY, HOST_STEP_S, KERNEL_FLOOR_S,
MOE_EXPERT_VISIT_S, STREAM_TOKEN_HOST_S, FP4_MATMUL_EFFICIENCY, ROOFLINE_SHARPNESS and POWER_CLOCK_EXPONENT
by coordinate descent (KERNEL_FLOOR_S within its measured bounds):
each constant in turn is tried at a few values around its current one, every fit-split case is run,
and the value with the lowest objective (median |error| + 0.25 x mean |error| over all measured keys
of the fit split) is kept. The held-out third (crc32 of the case name mod 3 == 0) is never run during
the search; it is reported at the end, beside the fit split, for the constants found. Paste the values
printed into sim/cost/calibration.py together with the date and the case count it prints. With --try it
only prints the fit-split objective at the current constants with the given ones changed (one point of
a hand grid), and runs no search and no held-out case.
"""
from __future__ import annotations

import argparse
import statistics
from concurrent.futures import ProcessPoolExecutor

from sim import fidelity
from sim.cost import calibration
from sim.pool import default_jobs

SEARCH = {  # constant -> (lowest, highest) values tried
    "COMPUTE_EFFICIENCY": (0.6, 1.0),
    "HBM_EFFICIENCY": (0.70, 0.95),
    "HOST_STEP_S": (0.2e-3, 6.0e-3),
    "KERNEL_FLOOR_S": (1.75e-6, 6.9e-6),     # DeepGEMM's fitted floor .. a one-token RMSNorm in a CUDA graph
    "MOE_EXPERT_VISIT_S": (0.0, 2.0e-6),
    "EXPERT_HBM_EFFICIENCY": (0.42, 0.62),   # the measured range of grouped expert GEMMs in decode
    "FP4_MATMUL_EFFICIENCY": (0.30, 0.85),
    "ROOFLINE_SHARPNESS": (1.0, 4.0),
    "STREAM_TOKEN_HOST_S": (0.0, 60e-6),
    "POWER_CLOCK_EXPONENT": (1.0, 3.0),   # 1: voltage fixed; 3: voltage in proportion to the clock
}


def _set(constants: dict) -> None:
    for name, value in constants.items():
        setattr(calibration, name, value)


def _errors(paths: list[str], constants: dict, jobs: int) -> list[float]:
    with ProcessPoolExecutor(max_workers=jobs, initializer=_set, initargs=(constants,)) as pool:
        rows = [row for rows, _ in pool.map(fidelity.run_case, paths) for row in rows]
    return [abs(r["error_pct"]) for r in rows]


def objective(errors: list[float]) -> float:
    return statistics.median(errors) + 0.25 * statistics.fmean(errors)


def _override(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    if name not in SEARCH:
        raise argparse.ArgumentTypeError(f"{name!r} is not fitted here; one of {', '.join(SEARCH)}")
    try:
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name} needs a number (got {value!r})") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--points", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=default_jobs())
    parser.add_argument("--cases", action="append", default=[], metavar="DIR",
                        help="case files or folders (default: experiments/validation)")
    parser.add_argument("--try", dest="trial", type=_override, action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    cases = [fidelity.load_case(p) for p in fidelity.discover(args.cases)]
    fit = [c.path for c in cases if c.split == "fit"]
    held_out = [c.path for c in cases if c.split == "held_out"]
    constants = {name: getattr(calibration, name) for name in SEARCH}
    if args.trial:
        trial = {**constants, **dict(args.trial)}
        print(f"{dict(args.trial)}: fit-split objective {objective(_errors(fit, trial, args.jobs)):.3f} "
              f"over {len(fit)} cases")
        return
    best = objective(_errors(fit, constants, args.jobs))
    print(f"start {constants}: objective {best:.2f}", flush=True)
    for sweep in range(args.passes):
        for name, (low, high) in SEARCH.items():
            span = (high - low) / 2 ** (sweep + 1)
            centre = constants[name]
            for k in range(args.points):
                value = min(high, max(low, centre - span + 2 * span * k / (args.points - 1)))
                trial = {**constants, name: value}
                score = objective(_errors(fit, trial, args.jobs))
                print(f"  pass {sweep + 1} {name} = {value:.4g}: objective {score:.2f}", flush=True)
                if score < best:
                    best, constants = score, trial
        print(f"after pass {sweep + 1}: {constants}, objective {best:.2f}", flush=True)
    for split, paths in (("fit", fit), ("held_out", held_out)):
        errors = _errors(paths, constants, args.jobs)
        print(f"{split}: {len(paths)} cases, {len(errors)} keys, median |error| {statistics.median(errors):.1f}%, "
              f"max {max(errors):.1f}%")
    print("fitted:", {k: round(v, 5) for k, v in constants.items()}, f"over {len(fit)} fit-split cases")


if __name__ == "__main__":
    main()
