"""Fit NCCL's achieved share of NVLink bandwidth (and the intercept beside it) to measured profiles.

    python scripts/fit_collectives.py

The measured profiles are Vidur's NCCL all-reduce on one 8x H100 and one 8x A100 DGX node (tests/data/,
groups of 2, 4 and 8 GPUs, 2-64 MiB). With the per-link latency the catalog already takes from the H100
profile's floor, a straight line through the profile from 8 MiB is

    t = 2(n-1)/n x S / (B x share) + 2(n-1) x hop latency + intercept

B the GPU's NVLink bandwidth per direction. t is linear in 1 / share and the intercept, so the two come
from weighted least squares on the relative error. Below 8 MiB NCCL's time bends away from that line
(the script prints by how much). hardware/data/accelerators.toml records each GPU's share; simrun's
collectives leave the intercept out (hardware/collectives.py says why), and the script prints the error
of simrun's price against the profile both without it and with it.
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
    """(share, intercept_s) minimising sum(((line - t) / t)^2) over `rows` (gpus, size_bytes, t_s) of `gpu`."""
    node, accel = hw.node_types()[NODE], hw.accelerators()[gpu]
    n, size_bytes, t_s = rows.T
    steps = 2 * (n - 1)
    bandwidth_s = steps / n * size_bytes / node.scaleup_link_bytes_per_s(accel)   # t = this / share + ...
    hops_s = steps * 2 * node.scaleup_link_latency_s                               # GPU -> switch -> GPU
    design = np.column_stack([bandwidth_s / t_s, 1.0 / t_s])
    (inverse_share, intercept_s), *_ = np.linalg.lstsq(design, 1.0 - hops_s / t_s, rcond=None)
    return 1.0 / inverse_share, intercept_s


def priced(rows: np.ndarray, gpu: str) -> np.ndarray:
    """simrun's all-reduce time for each row (gpus, size_bytes, ...) on one HGX node of `gpu`, from the catalog."""
    cluster = Cluster(hw.accelerators()[gpu], hw.node_types()[NODE], 1, None)
    n, size_bytes = rows[:, 0].astype(int), rows[:, 1]
    price_s = np.empty(len(rows))
    for group in np.unique(n):
        mine = n == group
        price_s[mine] = all_reduce(cluster, cluster.gpus[:group]).time_s(size_bytes[mine])
    return price_s


def errors(price_s: np.ndarray, rows: np.ndarray, intercept_s: float = 0.0) -> np.ndarray:
    """(simrun's price + intercept_s) / measured - 1 per row of `rows` (gpus, size_bytes, t_s)."""
    return (price_s + intercept_s) / rows[:, 2] - 1


def main() -> None:
    for gpu in PROFILES:
        rows = measured(gpu)
        large = rows[:, 1] >= FIT_FROM_BYTES
        share, intercept_s = fit(rows[large], gpu)
        print(f"{gpu}: from {int(large.sum())} rows >= {FIT_FROM_BYTES / 2**20:g} MiB: share of NVLink bandwidth "
              f"{share:.3f}, intercept {intercept_s * 1e6:.1f} us")
        price_s = priced(rows, gpu)
        without, with_intercept = errors(price_s, rows) * 100, errors(price_s, rows, intercept_s) * 100
        print("  simrun's price against the profile, error %: median [min, max], without | with the intercept")
        for n in np.unique(rows[:, 0]):
            for label, part in ((f"< {FIT_FROM_BYTES / 2**20:g} MiB", ~large), (f">= {FIT_FROM_BYTES / 2**20:g} MiB", large)):
                cells = [f"{np.median(e):+5.1f} [{e.min():+5.1f}, {e.max():+5.1f}]"
                         for e in (without[(rows[:, 0] == n) & part], with_intercept[(rows[:, 0] == n) & part])]
                print(f"    {int(n)} GPUs {label:>9}: {cells[0]} | {cells[1]}")


if __name__ == "__main__":
    main()
