"""The hardware catalog: accelerators, node types and fabrics, read from the TOML files in `data/`.

Users add hardware by adding a TOML table; every entry carries a `source` string.
"""
from __future__ import annotations

import tomllib
from dataclasses import MISSING, dataclass, fields
from functools import cache
from importlib import resources

PRECISION_BYTES = {"fp4": 0.5, "fp8": 1.0, "bf16": 2.0, "fp16": 2.0}


@dataclass(frozen=True)
class Accelerator:
    name: str
    display_name: str
    bf16_tflops: float
    hbm_gb: float
    hbm_tb_s: float
    scaleup_gb_s: float
    scaleup_collective_share: float  # share of scale-up bandwidth NCCL moves bytes at (0 < share <= 1)
    tdp_w: float
    idle_w: float                # idle with a serving engine's context loaded
    hbm_pj_per_bit: float        # energy per bit moved to or from HBM (DRAM, PHY and controller)
    matmul_efficiency_bf16: float
    source: str
    power_source: str            # where idle_w and hbm_pj_per_bit come from
    hbm_mib: float | None = None
    fp8_tflops: float | None = None
    fp4_tflops: float | None = None
    matmul_efficiency_fp8: float | None = None
    matmul_efficiency_fp4: float | None = None
    nvls: bool = False    # NVLink SHARP: the NVSwitch reduces all-reduce traffic in the switch (NCCL's NVLS)

    def __post_init__(self) -> None:
        if not 0.0 < self.scaleup_collective_share <= 1.0:
            raise ValueError(f"hardware catalog entry {self.name!r}: scaleup_collective_share must be in (0, 1], "
                             f"not {self.scaleup_collective_share}")

    @property
    def hbm_bytes(self) -> float:
        """Memory the driver reports (MiB x 2^20) where known, else the datasheet GB x 1e9."""
        return self.hbm_mib * 2**20 if self.hbm_mib else self.hbm_gb * 1e9

    @property
    def hbm_bytes_per_s(self) -> float:
        return self.hbm_tb_s * 1e12

    def supports(self, precision: str) -> bool:
        return precision in ("bf16", "fp16") or getattr(self, f"{precision}_tflops", None) is not None

    def peak_flops_per_s(self, precision: str) -> float:
        """Dense tensor-core peak for matmuls whose inputs are `precision` (fp16 runs at the bf16 rate)."""
        tflops = self.bf16_tflops if precision in ("bf16", "fp16") else getattr(self, f"{precision}_tflops")
        if tflops is None:
            raise ValueError(f"{self.name} has no {precision} tensor cores")
        return tflops * 1e12

    def measured_matmul_efficiency(self, precision: str) -> float | None:
        """Measured best-case matmul share of peak at `precision` (fp16 as bf16), or None."""
        return getattr(self, f"matmul_efficiency_{'bf16' if precision == 'fp16' else precision}", None)

    def matmul_efficiency(self, precision: str) -> float:
        """Measured best-case matmul share of peak; precisions without a measurement use the bf16 share."""
        measured = self.measured_matmul_efficiency(precision)
        return measured if measured is not None else self.matmul_efficiency_bf16


@dataclass(frozen=True)
class NodeType:
    name: str
    display_name: str
    accelerators: tuple[str, ...]
    gpus_per_node: int
    scaleup: str                 # "switch": every GPU on one NVSwitch level; "mesh": a link per GPU pair
    scaleup_link_latency_s: float
    pcie_gb_s: float
    pcie_link_latency_s: float
    nics_per_node: int
    cpus: int
    dram_gb_per_cpu: float
    dram_gb_s_per_cpu: float
    host_link: str               # GPU <-> CPU: "pcie" or "c2c"
    host_link_gb_s: float
    nvme_drives: int
    nvme_tb_per_drive: float
    nvme_gb_s_per_drive: float
    host_idle_w: float           # everything but the GPU boards, at the node's power input, idle ...
    host_max_w: float            # ... and with every GPU at its TDP
    source: str
    power_source: str
    gpus_per_host: int = 0       # GPUs a server (or a rack's compute tray) carries; 0: the whole node is one

    @property
    def host_gpus(self) -> int:
        return self.gpus_per_host or self.gpus_per_node

    def scaleup_link_bytes_per_s(self, accel: Accelerator) -> float:
        """One scale-up link, one direction: a GPU's whole NVLink bandwidth to the switch, or its
        bandwidth split evenly over the links to its gpus_per_node - 1 peers in a mesh."""
        total = accel.scaleup_gb_s * 1e9
        return total if self.scaleup == "switch" else total / (self.gpus_per_node - 1)


@dataclass(frozen=True)
class Fabric:
    name: str
    display_name: str
    port_gb_s: float
    switch_latency_s: float
    port_w: float                # a switch port, its share of the switch and its optic
    nic_optic_w: float           # the optic at a NIC's end of its link
    source: str
    power_source: str


@dataclass(frozen=True)
class Pue:
    name: str
    value: float
    source: str


@dataclass(frozen=True)
class Grid:
    name: str
    gco2e_per_kwh: float
    source: str


@dataclass(frozen=True)
class ClusterType:
    """A shipped example cluster: `nodes` nodes of `node` carrying `gpu`, joined by `fabric`."""

    name: str
    display_name: str
    gpu: str
    node: str
    nodes: int
    fabric: str
    source: str
    rail_optimized: bool = True


@dataclass(frozen=True)
class FaultComponent:
    """A part of the cluster that fails; `scope` is what its fault takes down: `gpu`, the replica holding the
    GPU, or `host`, every replica with a GPU on the GPU's host (a server, or a rack's compute tray)."""

    name: str
    scope: str
    source: str


@dataclass(frozen=True)
class FaultStudy:
    """A fleet whose faults were counted: `gpus` GPUs over `days` days."""

    name: str
    gpus: int
    days: float
    source: str

    @property
    def gpu_hours(self) -> float:
        return self.gpus * self.days * 24.0


@dataclass(frozen=True)
class FaultCause:
    """A root cause of faults: the component it hits and how many its study counted."""

    name: str
    component: str
    study: str
    count: int
    source: str


@dataclass(frozen=True)
class Recovery:
    """What bringing a replica back after a fault takes, beside reloading its weights (sim.faults.recovery)."""

    name: str
    detect_s: float
    detect_source: str
    restart_s: float
    restart_source: str
    warmup_s: float
    warmup_source: str
    object_store_gb_s_per_gpu: float
    object_store_source: str
    source: str


def _read(filename: str) -> dict:
    with resources.files("hardware").joinpath("data", filename).open("rb") as f:
        return tomllib.load(f)


def _build(cls, table: dict) -> dict:
    known = {f.name for f in fields(cls)}
    out = {}
    for name, entry in table.items():
        unknown = set(entry) - known
        if unknown:
            raise ValueError(f"hardware catalog entry {name!r} has unknown keys {sorted(unknown)}")
        if not str(entry.get("source", "")).strip():
            raise ValueError(f"hardware catalog entry {name!r} has no source: every figure needs one")
        missing = {f.name for f in fields(cls) if f.default is MISSING and f.name != "name"} - set(entry)
        if missing:
            raise ValueError(f"hardware catalog entry {name!r} lacks keys {sorted(missing)}")
        out[name] = cls(name=name, **{k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()})
    return out


@cache
def accelerators() -> dict[str, Accelerator]:
    return _build(Accelerator, _read("accelerators.toml")["accelerators"])


@cache
def node_types() -> dict[str, NodeType]:
    return _build(NodeType, _read("nodes.toml")["nodes"])


@cache
def fabrics() -> dict[str, Fabric]:
    return _build(Fabric, _read("fabrics.toml")["fabrics"])


@cache
def clusters() -> dict[str, ClusterType]:
    return _build(ClusterType, _read("clusters.toml")["clusters"])


@cache
def pues() -> dict[str, Pue]:
    return _build(Pue, _read("facility.toml")["pue"])


@cache
def grids() -> dict[str, Grid]:
    return _build(Grid, _read("facility.toml")["grids"])


@cache
def fault_components() -> dict[str, FaultComponent]:
    return _build(FaultComponent, _read("faults.toml")["components"])


@cache
def fault_studies() -> dict[str, FaultStudy]:
    return _build(FaultStudy, _read("faults.toml")["studies"])


@cache
def fault_causes() -> dict[str, FaultCause]:
    return _build(FaultCause, _read("faults.toml")["causes"])


@cache
def recoveries() -> dict[str, Recovery]:
    return _build(Recovery, _read("faults.toml")["recovery"])


def all_entries() -> dict[str, dict]:
    """Every catalog table by name, for checks that must hold for each entry (a source, for one)."""
    return {"accelerators": accelerators(), "nodes": node_types(), "fabrics": fabrics(), "clusters": clusters(),
            "pue": pues(), "grids": grids(),
            "fault_components": fault_components(), "fault_studies": fault_studies(), "fault_causes": fault_causes(),
            "recovery": recoveries()}
