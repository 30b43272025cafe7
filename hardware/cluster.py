"""The cluster as a networkx graph: GPUs, NVSwitches, NICs and fabric switches joined by links.

Every link carries `bandwidth_bytes_per_s` (one direction; links are full duplex) and `latency_s`
(one traversal). Switch nodes carry their own `latency_s`, paid once per traversal.
Topology: `n_nodes` nodes of `node_type`; inside a node every GPU links to one NVSwitch; GPU j links
over PCIe to NIC j, and NIC j of every node to leaf switch j (rail-optimized); leaves join one spine.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import networkx as nx

from hardware.catalog import Accelerator, Fabric, NodeType


@dataclass(frozen=True)
class Path:
    """A route between two GPUs: its directed links, bottleneck bandwidth and summed latency."""

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
    graph: nx.Graph = field(init=False)
    _paths: dict = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.graph = _build_graph(self.accelerator, self.node_type, self.n_nodes, self.fabric)

    @cached_property
    def gpus(self) -> list[str]:
        return [n for n, d in self.graph.nodes(data=True) if d["kind"] == "gpu"]

    def path(self, src: str, dst: str) -> Path:
        """Lowest-latency route from `src` to `dst` (cached)."""
        key = (src, dst)
        if key not in self._paths:
            graph = self.graph

            def weight(u, v, d):
                return d["latency_s"] + graph.nodes[v].get("latency_s", 0.0)

            nodes = nx.shortest_path(graph, src, dst, weight=weight)
            links = tuple(zip(nodes[:-1], nodes[1:]))
            bandwidth = min(graph.edges[u, v]["bandwidth_bytes_per_s"] for u, v in links)
            latency = sum(weight(u, v, graph.edges[u, v]) for u, v in links)
            self._paths[key] = Path(links, bandwidth, latency)
        return self._paths[key]

    def bandwidth_of(self, link: tuple[str, str]) -> float:
        return self.graph.edges[link]["bandwidth_bytes_per_s"]


def _build_graph(accel: Accelerator, node_type: NodeType, n_nodes: int, fabric: Fabric | None) -> nx.Graph:
    if n_nodes > 1 and fabric is None:
        raise ValueError("a cluster of more than one node needs a fabric")
    g = nx.Graph()
    scaleup_bw = accel.scaleup_gb_s * 1e9
    pcie_bw = node_type.pcie_gb_s * 1e9
    for i in range(n_nodes):
        switch = f"n{i}/nvswitch"
        g.add_node(switch, kind="nvswitch", node=i, latency_s=0.0)
        for j in range(node_type.gpus_per_node):
            gpu = gpu_name(i, j)
            g.add_node(gpu, kind="gpu", node=i, local=j, accelerator=accel.name)
            g.add_edge(gpu, switch, kind="nvlink", bandwidth_bytes_per_s=scaleup_bw,
                       latency_s=node_type.scaleup_link_latency_s)
        if fabric is None:
            continue
        port_bw = fabric.port_gb_s * 1e9
        for j in range(node_type.nics_per_node):
            nic, leaf = f"n{i}/nic{j}", f"leaf{j}"
            g.add_node(nic, kind="nic", node=i, latency_s=0.0)
            g.add_node(leaf, kind="switch", tier="leaf", latency_s=fabric.switch_latency_s)
            g.add_edge(gpu_name(i, j % node_type.gpus_per_node), nic, kind="pcie",
                       bandwidth_bytes_per_s=pcie_bw, latency_s=node_type.pcie_link_latency_s)
            g.add_edge(nic, leaf, kind="fabric", bandwidth_bytes_per_s=port_bw, latency_s=0.0)
    if fabric is not None and n_nodes > 1:
        g.add_node("spine", kind="switch", tier="spine", latency_s=fabric.switch_latency_s)
        for j in range(node_type.nics_per_node):
            # One uplink per downlink: the spine tier is non-blocking.
            g.add_edge(f"leaf{j}", "spine", kind="fabric",
                       bandwidth_bytes_per_s=fabric.port_gb_s * 1e9 * n_nodes, latency_s=0.0)
    return g
