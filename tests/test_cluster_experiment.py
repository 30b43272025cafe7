"""experiments/cluster.toml: every deployment builds as its comments say and serves a short load with its
books kept (the full experiment is a benchmark-sized run: README, 'Serving many conversations on a cluster')."""
import pytest

from sim import config
from sim.deployment import build
from sim.simulation import simulate
from sim.sweep.points import set_path
from test_engine import check_invariants

CLUSTER = "experiments/cluster.toml"


def short(deployment: str, sessions: int = 6, minutes: float = 3.0):
    """The experiment with fewer, shorter podcasts, on one of its deployments."""
    data = config.read_toml(CLUSTER)
    set_path(data, "workload.sessions", sessions)
    set_path(data, "workload.duration_h", minutes / 60)
    set_path(data, "workload.session_stagger_s", 5.0)
    data["deployments"] = {deployment: data["deployments"][deployment]}
    return config.parse(CLUSTER, data)


def test_the_deployments_are_the_racks_and_pools_the_comments_say():
    exp = config.load(CLUSTER)
    assert exp.workload.sessions == 256 and exp.workload.duration_h == 10
    shapes = {}
    for name, spec in exp.deployments.items():
        built = build(CLUSTER, name, spec)
        shapes[name] = (len(built.replicas), len(built.prefill), spec.kv_offload,
                        sum(len(r.placement.gpus) for r in built.replicas + built.prefill))
    assert shapes == {
        "nvl72": (9, 0, "none", 72), "nvl72_offload": (9, 0, "dram_nvme", 72),
        "nvl72_pd": (7, 2, "none", 72), "nvl72_pd_offload": (7, 2, "dram_nvme", 72),
        "hgx": (4, 0, "none", 64), "hgx_offload": (4, 0, "dram_nvme", 64),
        "hgx_pd": (3, 1, "none", 64), "hgx_pd_offload": (3, 1, "dram_nvme", 64)}


@pytest.mark.parametrize("deployment", ["nvl72_pd_offload", "hgx_pd"])
def test_a_short_load_keeps_the_books(deployment):
    exp = short(deployment)
    result = simulate(exp, build(CLUSTER, deployment, exp.deployments[deployment]))
    check_invariants([result])
    replies = [t for t in result.turns if t.kind == "reply"]
    assert replies and all(t.status == "ok" for t in replies)
    assert {t.prefill_replica for t in replies} <= {e.index for e in result.engines[len(result.deployment.replicas):]}
    assert any(t.kind == "chat" for t in result.turns)
