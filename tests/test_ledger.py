"""The energy ledger by boundary (sim.energy.ledger): GPU, node, facility, carbon, by hand and against
published measurements (published.md sections 5 and 10)."""
import pytest

from hardware import catalog as hw
from sim.energy.ledger import J_PER_KWH, Boundary


def test_idle_power_is_with_a_serving_context_loaded():
    """published.md section 10: an idle H100 with a CUDA context draws 121.7 W (71.8 W without), an A100
    80.0 W (53.7 W without); the catalog bills a deployment's idle GPUs at the loaded figures."""
    gpus = hw.accelerators()
    assert gpus["h100_sxm"].idle_w == 121.7 and gpus["a100_80gb"].idle_w == 80.0
    for a in gpus.values():   # a context adds 26-57 W to the bare idle of every GPU in our sources
        assert 0.07 < a.idle_w / a.tdp_w < 0.3


def test_boundary_of_two_hgx_h100_nodes_by_hand():
    """16 H100s on two HGX nodes joined by NDR InfiniBand: GPUs idle 16 x 121.7 = 1,947.2 W; hosts idle
    2 x 399 W; host watts per GPU dynamic watt (2,880 - 399) / (8 x (700 - 121.7)) = 0.53627; 16 NICs,
    each an 8 W optic and 3 switch ports (leaf down, leaf up, spine) at 15.35 W: 864.8 W."""
    b = Boundary.of(hw.accelerators()["h100_sxm"], hw.node_types()["hgx_8gpu"], hw.fabrics()["ib_ndr"], 16,
                    pue=1.58, gco2e_per_kwh=350)
    assert b.gpu_idle_w == pytest.approx(1947.2)
    assert b.host_idle_w == pytest.approx(798.0)
    assert b.host_slope == pytest.approx(2481 / 4626.4, rel=1e-12)
    assert b.switch_w == pytest.approx(864.8)
    assert b.baseline_w == pytest.approx((1947.2 + 798.0 + 864.8) * 1.58)
    # One hour idle: 3,610 W x 1.58 = 5.704 kWh at the facility, 1,996 g CO2e at 350 g/kWh.
    layers = b.layers(0.0, 3600.0)
    total_kwh = (layers["gpu_j"] + layers["node_j"] + layers["facility_j"]) / J_PER_KWH
    assert total_kwh == pytest.approx(3610.0 * 1.58 / 1000)
    assert layers["co2e_g"] == pytest.approx(total_kwh * 350)


def test_busy_node_boundary_lands_near_googles_production_measurement():
    """Google's Gemini serving (arXiv 2508.15734, published.md section 10): active accelerators 58% of a
    prompt's energy, host CPU and DRAM 25%, so the node boundary over the accelerators alone is
    (58 + 25) / 58 = 1.43, and the facility over the node its PUE (1.09-1.10). A busy HGX H100 node, its
    8 GPUs at 550 W each for a second (428.3 W above idle each): GPUs 4,400 J; host 399 + 0.53627 x 8 x
    428.3 = 2,236.5 J; node over GPU (4,400 + 2,236.5) / 4,400 = 1.508, within 10% of 1.43."""
    b = Boundary.of(hw.accelerators()["h100_sxm"], hw.node_types()["hgx_8gpu"], None, 8,
                    pue=hw.pues()["google"].value, gco2e_per_kwh=0.0)
    layers = b.layers(8 * (550.0 - 121.7), 1.0)
    assert layers["gpu_j"] == pytest.approx(4400.0)
    assert layers["node_j"] == pytest.approx(399 + 2481 / 4626.4 * 8 * 428.3)
    node_over_gpu = (layers["gpu_j"] + layers["node_j"]) / layers["gpu_j"]
    assert node_over_gpu == pytest.approx(1.508, abs=0.001)
    assert node_over_gpu == pytest.approx((58 + 25) / 58, rel=0.10)
    facility_over_node = 1 + layers["facility_j"] / (layers["gpu_j"] + layers["node_j"])
    assert facility_over_node == pytest.approx(1.10, rel=1e-12)


def test_grid_and_pue_come_from_the_catalog_or_the_experiment():
    from conftest import experiment
    exp = experiment({"d": {"model": "llama31_8b", "gpu": "h100_sxm", "nodes": 1}},
                     energy={"pue": "google", "grid": "france"})
    assert exp.energy.pue_value == 1.10 and exp.energy.gco2e_per_kwh == 56
    own = experiment({"d": {"model": "llama31_8b", "gpu": "h100_sxm", "nodes": 1}}, energy={"pue": 1.3, "grid": 420.0})
    assert own.energy.pue_value == 1.3 and own.energy.gco2e_per_kwh == 420.0
