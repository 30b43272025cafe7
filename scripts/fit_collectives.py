"""Fit NCCL's achieved share of NVLink bandwidth, and its fixed cost per call, to measured profiles.

    python scripts/fit_collectives.py

The measured profiles are Vidur's NCCL all-reduce on one 8x H100 and one 8x A100 DGX node (tests/data/,
2, 4 and 8 GPUs, 2-64 MiB). With the per-link latency the catalog already takes from the H100 profile's
floor, NCCL's all-reduce over n GPUs of one NVSwitch node costs

    t = 2(n-1)/n x S / (B x share) + 2(n-1) x hop latency + call

B the GPU's NVLink bandwidth per direction. t is linear in 1 / share and call, so the two come from
weighted least squares on the relative error, from 8 MiB up (below it the profile wanders by 2x between
neighbouring sizes). hardware/data/accelerators.toml records each GPU's share; simrun's collectives leave
the call out (engines' own all-reduce kernels skip it, hardware/collectives.py), so the error printed is
of simrun's price + the call against the profile.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from hardware import catalog as hw
from hardware.cluster import Cluster
from hardware.collectives import all_reduce

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
PROFILES = {"h100_sxm": DATA / "vidur_h100_dgx_all_reduce.csv", "a100_80gb": DATA / "vidur_a100_dgx_all_reduce.csv"}
NODE = "hgx_8gpu"
FIT_FROM_BYTES = 8 * 2**20


def measured(gpu: str) -> np.ndarray:
    """Rows of (gpus, size_bytes, median_s) from the GPU's profile."""
    lines = [line for line in PROFILES[gpu].read_text().splitlines() if not line.startswith("#")]
    return np.array([(float(r["gpus"]), float(r["size_bytes"]), float(r["median_ms"]) * 1e-3)
                     for r in csv.DictReader(lines)])


def fit(rows: np.ndarray, gpu: str) -> tuple[float, float]:
    """(share, call_s) minimising sum(((model - t) / t)^2) over `rows` (gpus, size_bytes, t_s) of `gpu`."""
    node, accel = hw.node_types()[NODE], hw.accelerators()[gpu]
    n, size, t = rows.T
    steps = 2 * (n - 1)
    bandwidth_part = steps / n * size / node.scaleup_link_bytes_per_s(accel)    # t = this / share + ...
    latency_part = steps * 2 * node.scaleup_link_latency_s                      # GPU -> switch -> GPU
    design = np.column_stack([bandwidth_part / t, 1.0 / t])
    (inverse_share, call_s), *_ = np.linalg.lstsq(design, 1.0 - latency_part / t, rcond=None)
    return 1.0 / inverse_share, call_s


def priced(rows: np.ndarray, gpu: str) -> np.ndarray:
    """simrun's all-reduce time for each row (gpus, size_bytes, ...) on one HGX node of `gpu`, from the catalog."""
    cluster = Cluster(hw.accelerators()[gpu], hw.node_types()[NODE], 1, None)
    return np.array([float(all_reduce(cluster, cluster.gpus[:int(n)]).time_s(size)) for n, size, *_ in rows])


def main() -> None:
    for gpu in PROFILES:
        rows = measured(gpu)
        fitted = rows[rows[:, 1] >= FIT_FROM_BYTES]
        share, call_s = fit(fitted, gpu)
        print(f"{gpu}: fitted on {len(fitted)} rows >= 8 MiB: share of NVLink bandwidth {share:.3f}, "
              f"NCCL's fixed cost per call {call_s * 1e6:.1f} us")
        error = (priced(rows, gpu) + call_s) / rows[:, 2] - 1
        print("  simrun's price (catalog share) + the call against the profile, error %: median [min, max]")
        for n in np.unique(rows[:, 0]):
            for label, part in (("2-6 MiB", rows[:, 1] < FIT_FROM_BYTES), (">= 8 MiB", rows[:, 1] >= FIT_FROM_BYTES)):
                e = error[(rows[:, 0] == n) & part] * 100
                print(f"    {int(n)} GPUs {label:>9}: {np.median(e):+5.1f} [{e.min():+5.1f}, {e.max():+5.1f}]")


if __name__ == "__main__":
    main()
