"""Hardware catalog, cluster graph and graph-priced collectives, each against a hand computation."""
import pytest

from hardware import catalog as hw
from hardware.cluster import Cluster
from hardware.collectives import all_to_all, point_to_point, ring_allreduce
from hardware.deployment import DoesNotFit, place_replicas, plan_memory

MB16 = 16e6
NVLINK_HOP_S = 2 * 0.71e-6          # GPU -> NVSwitch -> GPU
CROSS_NODE_S = 0.71e-6 + 3 * 330e-9 + 0.71e-6  # PCIe, leaf, spine, leaf, PCIe


def cluster(n_nodes, gpu="h100_sxm"):
    return Cluster(hw.accelerators()[gpu], hw.node_types()["hgx_8gpu"], n_nodes,
                   hw.fabrics()["ib_ndr"] if n_nodes > 1 else None)


def test_every_catalog_entry_has_a_source():
    for table in (hw.accelerators(), hw.node_types(), hw.fabrics()):
        for entry in table.values():
            assert len(entry.source) > 20, entry.name


def test_catalog_has_issue_accelerators_and_measured_efficiencies():
    acc = hw.accelerators()
    for name in ("h100_sxm", "h200", "b200", "a100_80gb", "mi300x"):
        assert name in acc
    # MAMF / peak (published.md section 4): H100 794.5 of 989.4 BF16, 1,403 of 1,978.9 FP8.
    assert acc["h100_sxm"].matmul_efficiency("bf16") == pytest.approx(794.5 / 989.4, rel=0.005)
    assert acc["h100_sxm"].matmul_efficiency("fp8") == pytest.approx(1403 / 1978.9, rel=0.005)
    assert acc["b200"].matmul_efficiency("fp8") == pytest.approx(3433 / 4500, rel=0.005)
    assert acc["h200"].peak_flops_per_s("fp8") == 1978.9e12
    assert not acc["a100_80gb"].supports("fp8")


def test_graph_shape():
    c = cluster(2)
    kinds = [d["kind"] for _, d in c.graph.nodes(data=True)]
    assert kinds.count("gpu") == 16 and kinds.count("nvswitch") == 2 and kinds.count("nic") == 16
    assert kinds.count("switch") == 8 + 1  # 8 rail leaves + spine
    link = c.graph.edges["n0/gpu0", "n0/nvswitch"]
    assert link["bandwidth_bytes_per_s"] == 450e9


def test_tp8_allreduce_16mb_in_one_hgx_h100_node():
    c = cluster(1)
    price = ring_allreduce(c, c.gpus[:8])
    by_hand = 2 * 7 / 8 * MB16 / 450e9 + 2 * 7 * NVLINK_HOP_S  # = 62.22 us + 19.88 us
    assert price.time_s(MB16) == pytest.approx(by_hand, rel=0.01)


def test_tp8_allreduce_16mb_across_two_nodes_over_ndr():
    c = cluster(2)
    group = c.gpus[0:4] + c.gpus[8:12]  # 4 GPUs on each node: two ring edges cross InfiniBand
    price = ring_allreduce(c, group)
    # 14 steps, each moving 16 MB / 8 over the 50 GB/s NIC port (the ring's bottleneck link).
    by_hand = 2 * 7 * (MB16 / 8) / 50e9 + 2 * 7 * CROSS_NODE_S
    assert price.time_s(MB16) == pytest.approx(by_hand, rel=0.01)
    assert price.time_s(MB16) > 5 * ring_allreduce(c, c.gpus[:8]).time_s(MB16)


def test_ep16_all_to_all_dispatch_across_two_nodes():
    c = cluster(2)
    price = all_to_all(c, c.gpus[:16])
    # Each GPU holds 16 MB and sends 1/16 to each peer: 8 of 16 shares leave the node through its own
    # 50 GB/s NIC port, the slowest link it uses; 15 pairwise rounds each pay the cross-node latency.
    by_hand = 8 * (MB16 / 16) / 50e9 + 15 * CROSS_NODE_S
    assert price.time_s(MB16) == pytest.approx(by_hand, rel=0.01)


def test_point_to_point_and_zero_bytes():
    c = cluster(2)
    p2p = point_to_point(c, "n0/gpu7", "n1/gpu0")
    assert p2p.time_s(1e6) == pytest.approx(1e6 / 50e9 + CROSS_NODE_S, rel=0.01)
    assert p2p.time_s(0.0) == 0.0
    assert ring_allreduce(c, ["n0/gpu0"]).time_s(MB16) == 0.0


def test_placement_keeps_tp_inside_a_node():
    c = cluster(2)
    (replica,) = place_replicas(c, 1, tp=8, pp=2)
    assert {g.split("/")[0] for g in replica.stages[0]} == {"n0"}
    assert {g.split("/")[0] for g in replica.stages[1]} == {"n1"}
    with pytest.raises(DoesNotFit, match="need 32 GPUs; the cluster has 16"):
        place_replicas(c, 2, tp=8, pp=2)


def test_memory_plan_by_hand_and_shortfall():
    plan = plan_memory(80e9, 0.9, 63e9, 1e9)
    assert plan.kv_pool_bytes == pytest.approx(72e9 - 63e9 - 1e9)
    with pytest.raises(DoesNotFit, match=r"by 2\.0 GB"):
        plan_memory(80e9, 0.9, 73e9, 1e9)
