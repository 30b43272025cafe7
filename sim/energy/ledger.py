"""The energy ledger by boundary (DESIGN.md, 'Power and energy' and 'Attribution'): what a replica draws
beyond its GPU boards, and how joules become a facility's and the grid's.

Per replica of n GPUs on nodes of N GPUs each:
  GPU layer      P_idle x n over time + the dynamic energy of its steps (sim.cost.power)
  node layer     host: (host_idle_w + host_slope x GPU dynamic power) x n / N, where
                 host_slope = (host_max_w - host_idle_w) / (N x (TDP - P_idle)): fans, voltage regulators,
                 power-supply losses and CPUs follow the GPUs' load from the node's idle to its maximum;
                 switches: the NICs' optics and, per NIC, a leaf port, a leaf uplink and a spine port
                 (a non-blocking two-tier fabric), where the deployment spans nodes
  facility       (PUE - 1) x (GPU + node)
  carbon         grid gCO2e/kWh x (GPU + node + facility)
The baseline (what the replica draws doing nothing) is P_idle n + host idle + switches; the rest follows
the GPUs' dynamic energy, so a joule of GPU dynamic energy costs 1 + host_slope at the node boundary.
"""
from __future__ import annotations

from dataclasses import dataclass

J_PER_KWH = 3.6e6
SWITCH_PORTS_PER_NIC = 3   # leaf downlink, leaf uplink, spine port


@dataclass(frozen=True)
class Boundary:
    """One replica's powers outside its GPUs' dynamic energy, and the facility around it."""

    gpu_idle_w: float        # its GPUs idle with a serving context
    host_idle_w: float       # its share of its nodes' host power at idle
    host_slope: float        # host watts per watt of GPU dynamic power
    switch_w: float          # its NICs' optics and their switch ports
    pue: float
    gco2e_per_kwh: float

    @classmethod
    def of(cls, accel, node, fabric, n_gpus: int, pue: float, gco2e_per_kwh: float) -> Boundary:
        share = n_gpus / node.gpus_per_node
        nics = node.nics_per_node * share
        switch_w = nics * (fabric.nic_optic_w + SWITCH_PORTS_PER_NIC * fabric.port_w) if fabric else 0.0
        slope = (node.host_max_w - node.host_idle_w) / (node.gpus_per_node * (accel.tdp_w - accel.idle_w))
        return cls(accel.idle_w * n_gpus, node.host_idle_w * share, slope, switch_w, pue, gco2e_per_kwh)

    @property
    def baseline_w(self) -> float:
        """What the replica draws with no work, at the facility boundary."""
        return (self.gpu_idle_w + self.host_idle_w + self.switch_w) * self.pue

    def layers(self, dynamic_j: float, baseline_s: float) -> dict[str, float]:
        """GPU, node and facility joules and grams of CO2e of `dynamic_j` joules of GPU dynamic energy and
        `baseline_s` seconds of the replica's baseline."""
        gpu = dynamic_j + self.gpu_idle_w * baseline_s
        node = dynamic_j * self.host_slope + (self.host_idle_w + self.switch_w) * baseline_s
        facility = (self.pue - 1.0) * (gpu + node)
        return {"gpu_j": gpu, "node_j": node, "facility_j": facility,
                "co2e_g": (gpu + node + facility) / J_PER_KWH * self.gco2e_per_kwh}

    def facility_j(self, dynamic_j: float, baseline_s: float) -> float:
        """Joules at the facility boundary: (dynamic x (1 + host_slope) + baseline power x seconds) x PUE."""
        return (dynamic_j * (1.0 + self.host_slope) + (self.gpu_idle_w + self.host_idle_w + self.switch_w)
                * baseline_s) * self.pue
