"""Hardware faults (sim.faults): the rates against Llama 3's counts and their closed form, a replica's recovery by
hand, what a fault does to the turns in flight and the next ones, hot spares, node-wide faults, and the books kept
over random faults (hypothesis)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import poisson

from hardware import catalog as hw
from sim.config import Experiment
from sim.deployment import build
from sim.faults import injector
from sim.faults.arrivals import Arrival, counts, rng_for
from sim.faults.rates import HOURS_PER_YEAR, SECONDS_PER_HOUR, scenario
from sim.faults.recovery import recovery_time
from sim.simulation import simulate
from tests.test_engine import assert_same_run, check_invariants

ONE_GPU = {"model": "llama31_8b", "gpu": "h100_sxm", "nodes": 1, "tp": 1}
LLAMA3_GPU_HOURS = 16_384 * 54 * 24      # = 21,233,664


def faulty(deployments: dict, faults: dict, seed: int = 7, **workload) -> Experiment:
    return Experiment.from_dict({"run": {"name": "test", "seed": seed}, "faults": faults,
                                 "workload": {"duration_h": 0.25, **workload}, "deployments": deployments})


def run(exp: Experiment, bulk: bool = True):
    return [simulate(exp, build("test.toml", name, spec, exp.faults.hot_spares), bulk=bulk)
            for name, spec in exp.deployments.items()]


def scripted(monkeypatch, *faults):
    """Faults at set times instead of drawn ones: (time_s, cause index, GPU index into the deployment's GPUs)."""
    def arrivals(rates, n_gpus, rng):
        clock = 0.0
        for time_s, cause, gpu in faults:
            yield Arrival(time_s - clock, cause, gpu)
            clock = time_s
    monkeypatch.setattr(injector, "arrivals", arrivals)


# ---- rates ------------------------------------------------------------------------------------------------------

def test_llama3_rates_are_its_counts_over_its_gpu_hours():
    """419 interruptions / 21,233,664 GPU-hours x 8,766 h = 0.173 per GPU-year (hardware.md's derived figure); the
    GPU-category causes (faulty GPU 148, HBM3 72, SRAM 19, system processor 17, thermal 6, SDC 6: 268) 0.111."""
    rates = scenario("llama3")
    assert hw.fault_studies()["llama3"].gpu_hours == LLAMA3_GPU_HOURS
    assert sum(c.count for c in hw.fault_causes().values()) == 419
    per_year = rates.per_gpu_year()
    assert sum(per_year.values()) == pytest.approx(419 / LLAMA3_GPU_HOURS * 8766, rel=1e-12)
    assert sum(per_year.values()) == pytest.approx(0.173, abs=0.0005)
    assert per_year["gpu"] + per_year["hbm"] == pytest.approx(268 / LLAMA3_GPU_HOURS * 8766, rel=1e-12)
    assert per_year["gpu"] + per_year["hbm"] == pytest.approx(0.111, abs=0.0005)
    assert rates.expected(LLAMA3_GPU_HOURS).sum() == pytest.approx(419, rel=1e-12)
    assert "nvlink" not in per_year   # Table 5 has no NVLink row
    # A custom rate per GPU-year, scaled: 2 x 0.5 a GPU-year on 100 GPUs over a year = 100 expected.
    custom = scenario({"nvlink": 0.5}, scale=2.0)
    assert custom.expected(100 * HOURS_PER_YEAR).sum() == pytest.approx(100.0, rel=1e-12)


def test_the_generator_reproduces_llama3_within_the_poisson_interval():
    """16,384 GPUs over 54 days, drawn without simulating training: the total within the 99% Poisson interval
    around 419, each cause within its own 99.9% interval around count x 1 (its closed form), for three seeds."""
    rates = scenario("llama3")
    expected = rates.expected(LLAMA3_GPU_HOURS)
    for seed in (0, 1, 2):
        drawn = counts(rates, 16_384, 54 * 86_400, rng_for(seed))
        assert poisson.ppf(0.005, 419) <= drawn.sum() <= poisson.ppf(0.995, 419)
        for n, mu in zip(drawn, expected):
            assert poisson.ppf(0.0005, mu) <= n <= poisson.ppf(0.9995, mu)


def test_intervals_over_replicate_seeds_shrink_as_one_over_sqrt_n():
    """Faults of a 16-GPU deployment over ten hours at 100x Llama 3's rates (0.28 expected), one count per
    replicate seed (sim.replicates.seeds): the 95% interval's half-width x sqrt(N) holds within 25% from N = 64 to
    N = 1024, and the interval over 1024 covers the closed form."""
    from sim.intervals import interval
    from sim.replicates import seeds
    rates = scenario("llama3", scale=100.0)
    mu = rates.expected(16 * 10).sum()
    assert mu == pytest.approx(100 * 419 / LLAMA3_GPU_HOURS * 160, rel=1e-12)
    draws = [counts(rates, 16, 10 * 3600, rng_for(s)).sum() for s in seeds(3, 1024)]
    widths = {n: interval(draws[:n])[1] * math.sqrt(n) for n in (64, 256, 1024)}
    assert widths[64] == pytest.approx(widths[1024], rel=0.25)
    assert widths[256] == pytest.approx(widths[1024], rel=0.25)
    mean, half = interval(draws)
    assert abs(mean - mu) <= half
    assert widths[1024] / math.sqrt(1024) < widths[64] / math.sqrt(64) / 3


# ---- recovery ---------------------------------------------------------------------------------------------------

def test_recovery_by_hand_and_the_published_load_rates():
    """Llama-3.1-8B on one H100 of an HGX node: detect 30 s + restart 16 s + warm-up 77 s (hardware/data/faults.toml)
    + its 16.06 GB shard read from its share of the node's drives, 8 x 6.5 GB/s over 8 GPUs = 6.5 GB/s (under its
    63 GB/s PCIe link). fastsafetensors read 26.4 GB/s on 4 GPUs, 6.6 GB/s a GPU: 2% from the graph's. A peer sends
    over a 400 Gb/s NDR port, 50 GB/s: Dynamo PR #8037 measured 365-509 Gb/s a rank. Object storage: marin #7136's
    134.2 GB in 14.29 s over 8 GPUs, 1.174 GB/s a GPU."""
    built = build("x.toml", "d", faulty({"d": {**ONE_GPU, "replicas": 1}}, {}).deployments["d"])
    rep = built.replicas[0]
    shard = rep.cost.weights_bytes_per_gpu()
    assert shard == pytest.approx(16.06e9, rel=0.01)
    nvme = recovery_time(built.cluster, rep.placement.gpus, shard, "nvme", "ib_ndr")
    assert (nvme.detect_s, nvme.restart_s, nvme.warmup_s) == (30.0, 16.0, 77.0)
    assert nvme.reload_s == pytest.approx(shard / 6.5e9, rel=1e-12)
    assert nvme.total_s == pytest.approx(30 + 16 + shard / 6.5e9 + 77, rel=1e-12)
    assert 6.5e9 == pytest.approx(26.4e9 / 4, rel=0.05)
    peer = recovery_time(built.cluster, rep.placement.gpus, shard, "peer", "ib_ndr")
    assert peer.reload_s == pytest.approx(shard / 50e9, rel=1e-12)
    assert 365 <= 50e9 * 8 / 1e9 <= 509
    store = recovery_time(built.cluster, rep.placement.gpus, 134.18e9 / 8, "object_store", "ib_ndr")
    assert store.reload_s == pytest.approx(14.29, rel=0.01)


# ---- what a fault does ------------------------------------------------------------------------------------------

def _calm(deployments, **workload):
    """The same run without faults: when each turn arrived and ended."""
    (r,) = run(faulty(deployments, {}, **workload))
    return r


def test_a_fault_mid_turn_on_the_only_replica_fails_it_and_the_next_turn_prefills_the_whole_history(monkeypatch):
    dep = {"d": {**ONE_GPU, "replicas": 1}}
    calm = _calm(dep)
    turn = calm.turns[3]
    fault_s = (turn.arrival_ns + (turn.end_ns - turn.arrival_ns) / 2) / 1e9   # mid-turn
    scripted(monkeypatch, (fault_s, 0, 0))
    (r,) = run(faulty(dep, {"rates": {"gpu": 1.0}}))
    check_invariants([r])
    hit = r.turns[3]
    assert hit.status == "hardware" and hit.fault == 0 and "replica 0 died: gpu (gpu)" in hit.reason
    assert hit.end_ns == round(fault_s * 1e9) and hit.retries == 0   # no other replica to retry on
    assert hit.lost_tokens > 0
    assert hit.fault_lost_s == pytest.approx(fault_s - hit.arrival_ns / 1e9 + hit.reply_speech_s, rel=1e-9)
    (row,) = r.faults.rows
    rep = r.deployment.replicas[0]
    down_s = 30 + 16 + rep.cost.weights_bytes_per_gpu() / 6.5e9 + 77
    assert row.down_s == pytest.approx(down_s, abs=1e-9)
    assert row.turns_affected == 1 and row.scope == "gpu" and row.gpu == "n0/gpu0" and not row.spare
    back_ns = row.time_ns + round(down_s * 1e9)
    during = [t for t in r.turns[4:] if t.arrival_ns < back_ns]
    after = [t for t in r.turns[4:] if t.arrival_ns >= back_ns]
    assert all(t.status == "hardware" and t.reason == "every replica is down (sim.faults)" and t.fault == 0
               and t.fault_lost_s == pytest.approx(t.reply_speech_s) for t in during)
    first = after[0]
    assert first.status == "ok" and first.fault == 0
    assert first.cached_tokens == 0 and first.recomputed_tokens == first.context_tokens > 0   # whole history again
    # The turn in flight held the session's whole KV (its cached history joined its blocks when admitted).
    assert row.kv_lost_tokens == hit.lost_tokens >= hit.context_tokens // 16 * 16
    assert row.tokens_recomputed == min(row.kv_lost_tokens, first.recomputed_tokens)
    # The replica drew its baseline while down: the row's energy, which the ledger already holds.
    assert row.recovery_j == pytest.approx(r.boundary.facility_j(0.0, down_s), rel=1e-9)
    assert all(t.status == "ok" for t in after)


def test_a_turn_whose_replica_dies_is_retried_on_another_with_its_whole_history(monkeypatch):
    dep = {"d": {**ONE_GPU, "replicas": 2}}
    calm = _calm(dep)
    turn = calm.turns[3]
    assert turn.replica == 0
    fault_s = (turn.arrival_ns + (turn.end_ns - turn.arrival_ns) / 2) / 1e9
    scripted(monkeypatch, (fault_s, 0, 0))
    (r,) = run(faulty(dep, {"rates": {"gpu": 1.0}, "retries": 1}))
    check_invariants([r])
    hit = r.turns[3]
    assert hit.status == "ok" and hit.retries == 1 and hit.replica == 1 and hit.fault == 0
    assert hit.cached_tokens == 0 and hit.recomputed_tokens == hit.context_tokens
    # Resent at the fault: what it lost is the time from its arrival to then.
    assert hit.fault_lost_s == pytest.approx(fault_s - hit.arrival_ns / 1e9, abs=1e-9)
    assert all(t.replica == 1 and t.status == "ok" for t in r.turns[4:])   # the session stays where it moved
    assert r.faults.rows[0].turns_affected == 1


def test_a_hot_spare_takes_over_after_detection_and_a_second_fault_waits_for_the_whole_recovery(monkeypatch):
    """One replica and one hot spare: the first fault keeps replica 0 down for its detection (30 s) alone; the
    spare's GPUs then recover as the spare for the whole recovery, so a fault 60 s later finds none free."""
    dep = {"d": {**ONE_GPU, "replicas": 1}}
    scripted(monkeypatch, (100.0, 0, 0), (160.0, 0, 0))
    exp = faulty(dep, {"rates": {"gpu": 1.0}, "hot_spares": 1})
    (r,) = run(exp)
    check_invariants([r])
    assert len(r.engines) == 2 and r.deployment.pools == ["both", "spare"]
    first, second = r.faults.rows
    total_s = recovery_time(r.deployment.cluster, ["n0/gpu0"], r.deployment.replicas[0].cost.weights_bytes_per_gpu(),
                            "nvme", "ib_ndr").total_s
    assert first.spare and first.down_s == pytest.approx(30.0)
    assert not second.spare and second.down_s == pytest.approx(total_s)
    assert all(t.replica == 0 for t in r.turns if t.status == "ok")   # the spare never serves under its own index
    # The spare's GPU idles all run: its baseline is in the ledger (check_invariants counted two replicas).
    assert r.baselines == 2.0


def test_a_host_fault_takes_every_replica_on_its_host(monkeypatch):
    dep = {"d": {**ONE_GPU, "tp": 4}}    # two replicas of 4 GPUs on one node
    scripted(monkeypatch, (120.0, 0, 5))
    (r,) = run(faulty(dep, {"rates": {"host": 1.0}}, sessions=2, session_stagger_s=30.0))
    check_invariants([r])
    rows = r.faults.rows
    assert [(f.fault, f.replica, f.scope, f.gpu) for f in rows] == [(0, 0, "host", "n0/gpu5"), (0, 1, "host", "n0/gpu5")]
    back_ns = rows[0].time_ns + round(rows[0].down_s * 1e9)
    assert all(t.status == "hardware" for t in r.turns if rows[0].time_ns <= t.arrival_ns < back_ns)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), retries=st.integers(0, 2), spares=st.integers(0, 1),
       per_gpu_year=st.sampled_from([100_000.0, 300_000.0]), disaggregated=st.booleans(), chats=st.booleans())
def test_random_faults_lose_no_turn_token_or_joule(seed, retries, spares, per_gpu_year, disaggregated, chats):
    """Faults drawn at random (GPU and host causes, a few an hour a GPU) on three podcasts, with chats or not:
    every turn ends ok or with a reason; tokens add up (context = cached + read back + recomputed for every turn
    served; a fault's recomputed tokens within what it lost; each attempt a fault ended is a retry or a failed
    turn); per-turn energy sums to the deployment's; KV never passes a pool's capacity. Without chats (whose
    thousands of steps per-step mode takes long to run), bulk equals per-step, faults table included."""
    dep = {**ONE_GPU, "replicas": 2, **({"background": {"clients": 1}} if chats else {})}
    if disaggregated:
        dep["prefill"] = {"replicas": 1, "tp": 1}
    exp = faulty({"d": dep}, {"rates": {"gpu": per_gpu_year, "host": per_gpu_year / 8}, "retries": retries,
                              "hot_spares": spares}, seed=seed, sessions=3, duration_h=0.04 if chats else 0.1,
                 session_stagger_s=11.0)
    bulk = run(exp)
    check_invariants(bulk)
    (r,) = bulk
    for t in r.turns:
        if t.status == "ok":
            assert t.context_tokens == t.cached_tokens + t.reloaded_tokens + t.recomputed_tokens
        assert t.retries <= retries and t.lost_tokens >= 0 and t.fault_lost_s >= 0
        assert (t.fault is not None) >= (t.retries > 0 or t.status == "hardware")
    rows = r.faults.rows
    assert all(0 <= f.tokens_recomputed <= f.kv_lost_tokens and f.down_s >= 0 for f in rows)
    died = sum(t.retries for t in r.turns) + sum(1 for t in r.turns if t.status == "hardware"
                                                 and t.reason.startswith("replica "))
    assert sum(f.turns_affected for f in rows) == died
    if not chats:
        per_step = run(exp, bulk=False)
        assert_same_run(bulk, per_step)
        assert [vars(f) for f in rows] == [vars(f) for f in per_step[0].faults.rows]


def test_faults_none_changes_nothing():
    """Without faults no injector runs: a run with [faults] rates = none and one with rates scaled to 0 are the
    same run."""
    dep = {"d": {**ONE_GPU, "replicas": 2}}
    plain, = run(faulty(dep, {}, sessions=2))
    zero, = run(faulty(dep, {"rates": "llama3", "scale": 0.0}, sessions=2))
    assert plain.faults is None and zero.faults is None
    assert_same_run([plain], [zero])
    assert np.array_equal(plain.steps.columns()["duration_s"], zero.steps.columns()["duration_s"])


def test_a_host_is_a_server_or_a_compute_tray():
    """An HGX server's 8 GPUs share a host; a GB200 NVL72 rack is 18 compute trays of 4 GPUs (hardware/data/nodes.toml),
    so a host fault there takes the replicas on one tray, and its rate is 4 GPUs' (Llama 3's per 8-GPU host, halved)."""
    from sim.faults.rates import replica_rate_per_s
    hgx = build("x.toml", "d", faulty({"d": ONE_GPU}, {}).deployments["d"]).cluster
    rack = build("x.toml", "d", faulty({"d": {"model": "llama31_8b", "cluster": "gb200_nvl72", "tp": 4}},
                                       {}).deployments["d"]).cluster
    assert hgx.host_of("n0/gpu5") == hgx.host_of("n0/gpu0") == (0, 0)
    assert rack.host_of("n0/gpu5") == rack.host_of("n0/gpu7") == (0, 1) != rack.host_of("n0/gpu8")
    host = scenario({"host": 1.0})
    per_year = SECONDS_PER_HOUR * HOURS_PER_YEAR
    rack_gpus = [f"n0/gpu{i}" for i in range(72)]
    assert replica_rate_per_s(host, rack_gpus[4:8], rack_gpus, rack.host_of) * per_year == pytest.approx(4.0)
    assert replica_rate_per_s(host, rack_gpus[2:6], rack_gpus, rack.host_of) * per_year == pytest.approx(8.0)
    # Two GPUs of an 8-GPU server: gpu-scoped causes on those 2, host-scoped ones on all 8 of the host.
    both = scenario({"gpu": 1.0, "host": 1.0})
    server = [f"n0/gpu{i}" for i in range(8)]
    assert replica_rate_per_s(both, server[:2], server, hgx.host_of) * per_year == pytest.approx(2.0 + 8.0)


def test_the_faults_experiment_runs_as_its_comments_say(tmp_path):
    """experiments/faults.toml: Kimi K2 on one NVL72 rack (nine replicas of 8 GPUs) and on 2x HGX H200 (one tp 8 x
    pp 2 replica), Llama 3's rates, 100 replicates; here three minutes of two podcasts, rates x 30,000 so that
    faults come, two replicates: the report gives each deployment's fault figures, the tables both replicates."""
    from click.testing import CliRunner

    from sim import config
    from sim.cli import cli
    from sim.run import build_all
    path = "experiments/faults.toml"
    exp = config.load(path)
    assert (exp.run.replicates, exp.faults.rates, exp.workload.sessions, exp.workload.duration_h) == (100, "llama3", 1, 10)
    shapes = {b.name: (len(b.replicas), len(b.replicas[0].placement.gpus)) for b in build_all(path, exp)}
    assert shapes == {"nvl72": (9, 8), "hgx": (1, 16)}
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [path, "-o", str(out), "-q", "--no-plots", "--replicates", "2", "-j", "1",
                                      "--set", "workload.duration_h=0.05", "--set", "workload.sessions=2",
                                      "--set", "faults.scale=30000", "--set", "report.minutes=[1, 2]"])
    assert result.exit_code == 0, result.output
    for name in ("nvl72", "hgx"):
        assert f"\n{name}:\nover 2 replicates" in result.output
    assert result.output.count("per run (the rates expect") == 2
    import pyarrow.parquet as pq
    assert set(pq.read_table(out / "turns.parquet")["replicate"].to_pylist()) == {0, 1}


def test_a_spare_on_the_faulted_host_dies_with_it(monkeypatch):
    """A replica of 4 GPUs and its hot spare on the other 4 of one server: a host fault takes both, so no spare
    stands in (down for the whole recovery, not its detection)."""
    scripted(monkeypatch, (100.0, 0, 2))
    (r,) = run(faulty({"d": {**ONE_GPU, "tp": 4, "replicas": 1}}, {"rates": {"host": 1.0}, "hot_spares": 1}))
    check_invariants([r])
    rows = {f.pool: f for f in r.faults.rows}
    assert set(rows) == {"both", "spare"} and not rows["both"].spare
    assert rows["both"].down_s == pytest.approx(recovery_time(
        r.deployment.cluster, r.deployment.replicas[0].placement.gpus,
        r.deployment.replicas[0].cost.weights_bytes_per_gpu(), "nvme", "ib_ndr").total_s)


def test_an_nvme_span_outlives_a_gpu_fault_only_when_nothing_before_it_was_lost():
    """Key 1 held 50 tokens in DRAM and the next 100 on NVMe; key 2 only 80 on NVMe; key 3 30 on NVMe after HBM
    tokens the fault took. The fault empties DRAM; of NVMe only key 2's span, a whole prefix, is still of use."""
    from sim.serving.offload import OffloadPlan, TierLink, TierStore
    store = TierStore(OffloadPlan((TierLink("dram", 100, 1e9, 0.0), TierLink("nvme", 1000, 1e9, 0.0)), 1.0))
    for level, key, tokens in ((0, 1, 50), (1, 1, 100), (1, 2, 80), (1, 3, 30)):
        store._put(level, key, tokens)
    assert store.clear(keep_nvme=True, broken={3}) == {1: 150, 3: 30}
    assert store.tokens_of(2) == [0, 80] and store.used == [0, 80]
    assert store.clear(keep_nvme=False, broken=set()) == {2: 80} and store.used == [0, 0]


def test_the_fault_stream_is_none_of_the_workloads():
    """numpy pads a seed list with zeros: [seed, 6, 0] would be podcast session 6's stream ([seed, 6])."""
    drawn = rng_for(7).random(4)
    assert not np.allclose(drawn, np.random.default_rng([7, 6]).random(4))
    assert np.allclose(np.random.default_rng([7, 6, 0]).random(4), np.random.default_rng([7, 6]).random(4))
