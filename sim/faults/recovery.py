"""What a replica's recovery from a fault takes (DESIGN.md, 'Failures'; published.md section 11).

down = detect + restart + reload + warm-up, each part from hardware/data/faults.toml's [recovery] (sources there)
but the reload, priced on the cluster graph: every GPU of the replica reads its own shard of the weights at once,
so the reload lasts shard bytes / one GPU's read bandwidth from the source:
- `nvme`: its share of its node's drives through its host link (hardware.cluster.Cluster.nvme_read_bytes_per_s);
- `peer`: a replica elsewhere sends it over the fabric, at its NIC's port (network_read_bytes_per_s);
- `object_store`: the measured per-GPU rate of a streaming loader (marin #7136, 1.17 GB/s a GPU).
A hot spare, its weights loaded and warm, takes a dead replica's place once the fault is detected: down = detect.
"""
from __future__ import annotations

from dataclasses import dataclass

from hardware import catalog as hw
from hardware.cluster import Cluster


@dataclass(frozen=True)
class RecoveryTime:
    detect_s: float
    restart_s: float
    reload_s: float
    warmup_s: float

    @property
    def total_s(self) -> float:
        return self.detect_s + self.restart_s + self.reload_s + self.warmup_s


def read_bytes_per_s(cluster: Cluster, gpu: str, source: str, fabric: str) -> float:
    """One GPU's weight-read bandwidth from `source` while the replica's other GPUs read theirs."""
    if source == "nvme":
        return cluster.nvme_read_bytes_per_s(gpu)
    if source == "peer":
        return cluster.network_read_bytes_per_s(hw.fabrics()[fabric].port_gb_s * 1e9)
    return hw.recoveries()["vllm"].object_store_gb_s_per_gpu * 1e9


def recovery_time(cluster: Cluster, gpus: list[str], shard_bytes: float, source: str, fabric: str) -> RecoveryTime:
    """The recovery of a replica on `gpus`, each holding `shard_bytes` of weights, reloading from `source`."""
    parts = hw.recoveries()["vllm"]
    reload_s = max(shard_bytes / read_bytes_per_s(cluster, gpu, source, fabric) for gpu in gpus)
    return RecoveryTime(parts.detect_s, parts.restart_s, reload_s, parts.warmup_s)
