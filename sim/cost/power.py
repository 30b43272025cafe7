"""A GPU board's power over a step (DESIGN.md, 'Power and energy'), per GPU:

  P = P_idle + (E_compute + E_hbm + E_comm) / step time, the kernels' part held under the board's limit

P_idle is the board idle with a serving context loaded (hardware catalog). The dynamic energy is priced
per operation:
  E_compute = FLOPs x (TDP - P_idle) / (peak x measured matmul share): a matmul at the measured best rate
              (MAMF, measured on boards at their power limit) draws the TDP; FP8 FLOPs cost half of BF16's
  E_hbm     = bytes x hbm_pj_per_bit x 8 (DRAM, PHY and controller; hardware catalog) x ON_CHIP_BYTE_FACTOR
              (the byte's way on chip to the SMs; calibration)
  E_comm    = bytes sent x (LINK_PJ_PER_BIT x 8 + 2 x E_hbm per byte): each byte crosses a link and is read
              from one GPU's HBM and written to another's
A board holds its power at its limit (the TDP, or a lower power cap): when its kernels would draw more,
P_idle + (E_compute + E_hbm) / K > limit over kernel time K, it lowers its clock until they do not. The
kernels stretch by x >= 1; compute energy per operation falls as x^-(a - 1) (dynamic power ~ clock^a with
the voltage following the clock, a = POWER_CLOCK_EXPONENT); HBM energy per byte does not:

  (limit - P_idle) K x^a - E_hbm x^(a - 1) - E_compute = 0

so a memory-bound step slows too once its HBM power alone passes the cap. Communication and host time
draw P_idle plus the links' energy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hardware.catalog import Accelerator
from sim.cost import calibration

BITS_PER_BYTE = 8
# NVLink's energy per bit: 1.3 pJ/bit (NVIDIA, 'What is NVLink?', the figure it gives for NVLink-C2C; no
# NVLink 4/5 board figure is published). A minor term: 450 GB/s both ways is ~9 W.
LINK_PJ_PER_BIT = 1.3


@dataclass(frozen=True)
class BoardPower:
    idle_w: float
    limit_w: float               # the TDP, or a lower power cap
    tdp_w: float
    hbm_j_per_byte: float
    link_j_per_byte: float
    clock_exponent: float

    @classmethod
    def of(cls, accel: Accelerator, power_cap_w: float = 0.0) -> BoardPower:
        hbm = accel.hbm_pj_per_bit * 1e-12 * BITS_PER_BYTE * calibration.ON_CHIP_BYTE_FACTOR
        return cls(accel.idle_w, min(accel.tdp_w, power_cap_w) if power_cap_w else accel.tdp_w, accel.tdp_w,
                   hbm, LINK_PJ_PER_BIT * 1e-12 * BITS_PER_BYTE + 2 * hbm, calibration.POWER_CLOCK_EXPONENT)

    def j_per_flop(self, matmul_flops_per_s: float) -> float:
        """Dynamic energy of a FLOP on a GPU whose best measured matmul rate at this precision is
        `matmul_flops_per_s`: that rate draws the TDP."""
        return (self.tdp_w - self.idle_w) / matmul_flops_per_s

    def stretch(self, compute_j: np.ndarray, hbm_j: np.ndarray, kernel_s: np.ndarray) -> np.ndarray:
        """How much the kernels slow (x >= 1, per step) for the board to stay within its limit: the root of
        (limit - P_idle) K x^a - E_hbm x^(a - 1) - E_compute = 0 where the power at full clock passes it."""
        headroom_j = (self.limit_w - self.idle_w) * kernel_s
        over = compute_j + hbm_j > headroom_j
        x = np.ones_like(kernel_s, dtype=float)
        if not over.any():
            return x
        c, m, h, a = compute_j[over], hbm_j[over], headroom_j[over], self.clock_exponent
        if a == 2.0:
            x[over] = (m + np.sqrt(m * m + 4.0 * h * c)) / (2.0 * h)
            return x
        lo, hi = np.ones_like(h), np.maximum((c + m) / h, 1.0) + 1.0   # f(lo) < 0 <= f(hi)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            below = h * mid ** a - m * mid ** (a - 1.0) - c < 0
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        x[over] = 0.5 * (lo + hi)
        return x
