"""The cluster as a networkx graph: GPUs, scale-up switches, CPUs with DRAM, NVMe, NICs and fabric switches.

Every link carries `kind`, `bandwidth_bytes_per_s` (one direction; links are full duplex) and
`latency_s` (one traversal). Switch nodes carry their own `latency_s`, paid once per traversal.

Per node i (`n{i}/...`):
- scale-up: `switch` nodes link every GPU to one NVSwitch (`n{i}/nvswitch`) at the GPU's NVLink
  bandwidth; `mesh` nodes (AMD XGMI) link every GPU pair directly at scaleup_gb_s / (gpus - 1);
- host: CPUs `cpu{c}`, each with its DRAM `dram{c}`; GPU j reaches CPU j * cpus // gpus over PCIe or
  NVLink-C2C; NVMe drives hang off the CPUs in turn;
- GPU j links over PCIe to NIC j.
Fabric: rail-optimized puts NIC j of every node on leaf switch `rail{j}`; top-of-rack puts every NIC of
node i on `tor{i}`. Leaves join one `spine` through uplinks as wide as their downlinks (non-blocking).
GPU-to-GPU routes never cross a CPU (NCCL moves data GPU-direct), so host nodes are hidden from them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import networkx as nx

from hardware.catalog import Accelerator, Fabric, NodeType

HOST_KINDS = frozenset({"cpu", "dram", "nvme"})
SCALEUP_KINDS = frozenset({"nvlink", "xgmi"})


@dataclass(frozen=True)
class Path:
    """A route between two graph nodes: its directed links, bottleneck bandwidth and summed latency."""

    links: tuple[tuple[str, str], ...]
    bandwidth_bytes_per_s: float
    latency_s: float


def gpu_name(node: int, local: int) -> str:
    return f"n{node}/gpu{local}"


@dataclass
class Cluster:
    accelerator: Accelerator
    node_type: NodeType
    n_nodes: int
    fabric: Fabric | None
    rail_optimized: bool = True
    graph: nx.Graph = field(init=False)
    _paths: dict = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.n_nodes > 1 and self.fabric is None:
            raise ValueError("a cluster of more than one node needs a fabric")
        self.graph = nx.Graph()
        for i in range(self.n_nodes):
            _add_node(self.graph, i, self.accelerator, self.node_type)
        if self.fabric is not None and self.n_nodes > 1:
            _add_fabric(self.graph, self.n_nodes, self.node_type, self.fabric, self.rail_optimized)

    @cached_property
    def gpus(self) -> list[str]:
        return [n for n, d in self.graph.nodes(data=True) if d["kind"] == "gpu"]

    def node_of(self, gpu: str) -> int:
        return self.graph.nodes[gpu]["node"]

    def host_of(self, gpu: str) -> tuple[int, int]:
        """The host a GPU sits in: its node, and on a rack of compute trays its tray."""
        data = self.graph.nodes[gpu]
        return data["node"], data["local"] // self.node_type.host_gpus

    def path(self, src: str, dst: str) -> Path:
        """Lowest-latency route from `src` to `dst` (cached); GPU-to-GPU routes avoid host nodes."""
        key = (src, dst)
        if key not in self._paths:
            graph = self.graph
            gpu_to_gpu = graph.nodes[src]["kind"] == "gpu" and graph.nodes[dst]["kind"] == "gpu"

            def weight(u, v, d):
                if gpu_to_gpu and (graph.nodes[u]["kind"] in HOST_KINDS or graph.nodes[v]["kind"] in HOST_KINDS):
                    return None
                return d["latency_s"] + graph.nodes[v].get("latency_s", 0.0)

            nodes = nx.shortest_path(graph, src, dst, weight=weight)
            links = tuple(zip(nodes[:-1], nodes[1:]))
            bandwidth = min(graph.edges[u, v]["bandwidth_bytes_per_s"] for u, v in links)
            latency = sum(weight(u, v, graph.edges[u, v]) for u, v in links)
            self._paths[key] = Path(links, bandwidth, latency)
        return self._paths[key]

    def bandwidth_of(self, link: tuple[str, str]) -> float:
        return self.graph.edges[link]["bandwidth_bytes_per_s"]

    def achieved_bandwidth_of(self, link: tuple[str, str]) -> float:
        """What NCCL moves over `link`: a scale-up link's bandwidth x the share it was measured to reach
        there (the accelerator's scaleup_collective_share); other links at their bandwidth."""
        share = self.accelerator.scaleup_collective_share if self.kind_of(link) in SCALEUP_KINDS else 1.0
        return self.bandwidth_of(link) * share

    def kind_of(self, link: tuple[str, str]) -> str:
        return self.graph.edges[link]["kind"]

    def host_memory_of(self, gpu: str) -> tuple[str, Path]:
        """The DRAM a GPU offloads to (its CPU's) and the route there."""
        dram = self._cpu_of(gpu).replace("cpu", "dram")
        return dram, self.path(gpu, dram)

    def drive_of(self, gpu: str) -> tuple[str, Path]:
        """The first NVMe drive on a GPU's CPU and the route there."""
        cpu = self._cpu_of(gpu)
        drive = next(n for n in self.graph[cpu] if self.graph.nodes[n]["kind"] == "nvme")
        return drive, self.path(gpu, drive)

    def nvme_read_bytes_per_s(self, gpu: str) -> float:
        """What one GPU reads from its node's drives when every GPU of the node reads at once: its share of the
        drives, read in parallel, through its own host link."""
        node = self.node_type
        _, path = self.drive_of(gpu)
        _, host = self.host_memory_of(gpu)
        return min(path.bandwidth_bytes_per_s * node.nvme_drives / node.gpus_per_node, host.bandwidth_bytes_per_s)

    def network_read_bytes_per_s(self, port_bytes_per_s: float) -> float:
        """What one GPU receives from outside its node when every GPU of the node does at once: its PCIe link to
        a NIC and the NIC's fabric port (`port_bytes_per_s`), a NIC shared by the GPUs it serves."""
        node = self.node_type
        return min(node.pcie_gb_s * 1e9, port_bytes_per_s) * min(1.0, node.nics_per_node / node.gpus_per_node)

    def _cpu_of(self, gpu: str) -> str:
        return next(n for n in self.graph[gpu] if self.graph.nodes[n]["kind"] == "cpu")


def _link(g: nx.Graph, a: str, b: str, kind: str, bandwidth_bytes_per_s: float, latency_s: float) -> None:
    g.add_edge(a, b, kind=kind, bandwidth_bytes_per_s=bandwidth_bytes_per_s, latency_s=latency_s)


def _add_node(g: nx.Graph, i: int, accel: Accelerator, nt: NodeType) -> None:
    n_gpus = nt.gpus_per_node
    gpus = [gpu_name(i, j) for j in range(n_gpus)]
    for j, gpu in enumerate(gpus):
        g.add_node(gpu, kind="gpu", node=i, local=j, accelerator=accel.name, hbm_bytes=accel.hbm_bytes)
    link_bw, link_s = nt.scaleup_link_bytes_per_s(accel), nt.scaleup_link_latency_s
    if nt.scaleup == "switch":
        switch = f"n{i}/nvswitch"
        g.add_node(switch, kind="nvswitch", node=i, latency_s=0.0)
        for gpu in gpus:
            _link(g, gpu, switch, "nvlink", link_bw, link_s)
    else:
        for a in range(n_gpus):
            for b in range(a + 1, n_gpus):
                _link(g, gpus[a], gpus[b], "xgmi", link_bw, link_s)
    for c in range(nt.cpus):
        cpu, dram = f"n{i}/cpu{c}", f"n{i}/dram{c}"
        g.add_node(cpu, kind="cpu", node=i, latency_s=0.0)
        g.add_node(dram, kind="dram", node=i, capacity_bytes=nt.dram_gb_per_cpu * 1e9)
        _link(g, cpu, dram, "dram", nt.dram_gb_s_per_cpu * 1e9, 0.0)
    for j, gpu in enumerate(gpus):
        _link(g, gpu, f"n{i}/cpu{j * nt.cpus // n_gpus}", nt.host_link, nt.host_link_gb_s * 1e9,
              nt.pcie_link_latency_s)
    for d in range(nt.nvme_drives):
        nvme = f"n{i}/nvme{d}"
        g.add_node(nvme, kind="nvme", node=i, capacity_bytes=nt.nvme_tb_per_drive * 1e12)
        _link(g, nvme, f"n{i}/cpu{d % nt.cpus}", "pcie", nt.nvme_gb_s_per_drive * 1e9, nt.pcie_link_latency_s)
    for j in range(nt.nics_per_node):
        nic = f"n{i}/nic{j}"
        g.add_node(nic, kind="nic", node=i, latency_s=0.0)
        _link(g, gpus[j % n_gpus], nic, "pcie", nt.pcie_gb_s * 1e9, nt.pcie_link_latency_s)


def _add_fabric(g: nx.Graph, n_nodes: int, nt: NodeType, fabric: Fabric, rail_optimized: bool) -> None:
    port_bw = fabric.port_gb_s * 1e9
    g.add_node("spine", kind="switch", tier="spine", latency_s=fabric.switch_latency_s)
    leaves = [f"rail{j}" for j in range(nt.nics_per_node)] if rail_optimized else [f"tor{i}" for i in range(n_nodes)]
    for leaf in leaves:
        g.add_node(leaf, kind="switch", tier="leaf", latency_s=fabric.switch_latency_s)
    for i in range(n_nodes):
        for j in range(nt.nics_per_node):
            _link(g, f"n{i}/nic{j}", f"rail{j}" if rail_optimized else f"tor{i}", "fabric", port_bw, 0.0)
    downlinks = n_nodes if rail_optimized else nt.nics_per_node
    for leaf in leaves:
        _link(g, leaf, "spine", "fabric", port_bw * downlinks, 0.0)
