"""Fit how GEMMs fall below the roofline, on DeepGEMM's published FP8 table (tests/data/deepgemm_h800_fp8.csv).

Model of one GEMM kernel (G groups of m x k by k x n, FP8 inputs, BF16 output) on an H800:
    time = floor + roofline_s(2 G m n k / (peak x MAMF share x w / (w + w_half)), bytes / (BW x HBM_EFFICIENCY))
with w = min(n, k), the narrower of the weight's two dimensions (a tensor-parallel slice of an expert is
narrow), bytes = G (n k + m k + 2 m n), roofline_s the cost model's softened roofline. A grid search on the
RMS of log(predicted / measured) time gives the kernel floor and w_half that sim/cost/calibration.py uses;
a rows term m / (m + m_half) was tried too and fits best at m_half = 0: the soft roofline already carries
the small-m fall-off, which is memory-bound.

    python scripts/fit_gemm_efficiency.py
"""
from __future__ import annotations

import csv
import sys
from itertools import product
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from hardware.catalog import accelerators  # noqa: E402
from sim.cost import calibration  # noqa: E402
from sim.cost.step import roofline_s  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "deepgemm_h800_fp8.csv"
# H800 SXM5: H100's compute and HBM3 (its NVLink is cut, not its SMs); MAMF share of H100 FP8.
H800 = accelerators()["h100_sxm"]


def load() -> list[dict]:
    with open(DATA) as f:
        return [{k: (v if k == "layout" else float(v)) for k, v in row.items()}
                for row in csv.DictReader(line for line in f if not line.startswith("#"))]


def predicted_s(row: dict, floor_s: float, w_half: float) -> float:
    g, m, n, k = row["groups"], row["m"], row["n"], row["k"]
    width = min(n, k)
    peak = H800.peak_flops_per_s("fp8") * H800.matmul_efficiency("fp8") * width / (width + w_half)
    hbm = H800.hbm_bytes_per_s * calibration.HBM_EFFICIENCY
    return floor_s + float(roofline_s(2 * g * m * n * k / peak, g * (n * k + m * k + 2 * m * n) / hbm))


def measured_s(row: dict) -> float:
    return 2 * row["groups"] * row["m"] * row["n"] * row["k"] / (row["tflops"] * 1e12)


def rms_log_error(rows: list[dict], floor_s: float, w_half: float) -> float:
    return float(np.sqrt(np.mean([np.log(predicted_s(r, floor_s, w_half) / measured_s(r)) ** 2 for r in rows])))


def fit(rows: list[dict]) -> tuple[float, float, float]:
    """(rms log error, floor_s, w_half) at the best point of the grid."""
    return min((rms_log_error(rows, f, w), f, w)
               for f, w in product(np.arange(0, 10.25, 0.25) * 1e-6, range(0, 1025, 32)))


if __name__ == "__main__":
    rows = load()
    err, floor_s, w_half = fit(rows)
    print(f"kernel floor {floor_s * 1e6:.2f} us, narrow half-width {w_half}, RMS log error {err:.3f} over {len(rows)} rows")
    for r in rows:
        p, m = predicted_s(r, floor_s, w_half), measured_s(r)
        print(f"{r['layout']:10s} G{r['groups']:.0f} m{r['m']:5.0f} n{r['n']:5.0f} k{r['k']:5.0f}  "
              f"measured {m * 1e6:7.1f} us  predicted {p * 1e6:7.1f} us  {100 * (p / m - 1):+4.0f}%")
