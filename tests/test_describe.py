"""`simrun describe` on every example cluster, GraphML export, and layouts that do not fit."""
import networkx as nx
import pytest
from click.testing import CliRunner

from conftest import experiment, run_all
from hardware import catalog as hw
from sim.cost import calibration
from sim.cli import cli as main
from sim.config import load
from sim.deployment import build
from sim.errors import ConfigError
from test_engine import check_invariants

CLUSTERS_EXPERIMENT = "experiments/clusters.toml"


def test_clusters_experiment_uses_every_example_cluster():
    exp = load(CLUSTERS_EXPERIMENT)
    assert {d.cluster for d in exp.deployments.values()} == set(hw.clusters())


def test_describe_every_example_cluster():
    result = CliRunner().invoke(main, ["describe", CLUSTERS_EXPERIMENT])
    assert result.exit_code == 0, result.output
    exp = load(CLUSTERS_EXPERIMENT)
    for name, spec in exp.deployments.items():
        built = build(CLUSTERS_EXPERIMENT, name, spec)
        rep = built.replicas[0]
        layout = rep.placement.layout
        block = result.output.split(f"{name}: ")[1].split("\n\n")[0]
        assert f"{spec.nodes} x {built.cluster.node_type.display_name}" in block
        assert f"tp {layout.tp} x dp {layout.dp} x pp {layout.pp}" in block
        assert f"KV capacity: {rep.kv_capacity_blocks * spec.block_tokens:,} tokens per attention group" in block
        assert f"x {layout.dp} group(s)" in block
        assert f"KV pool {rep.memory.kv_pool_bytes / 1e9:.1f} GB" in block
        assert "slowest link" in block
    # The NVL72's all-to-all stays on NVLink; the MI355X all-reduce runs on its XGMI mesh.
    assert "ep all-to-all (dispatch, per GPU): slowest link nvlink 900 GB/s x 0.786 achieved" in result.output
    assert "tp all-reduce: slowest link xgmi 76.5 GB/s x 0.786 achieved" in result.output
    # The TP group placed across two nodes is flagged, with the link it crosses.
    assert ("warning: replica 0 stage 0: tp group n0/gpu0..n1/gpu3 spans nodes n0, n1; its all-reduces cross "
            "fabric 50 GB/s links") in result.output
    assert result.output.count("warning:") == 1


def test_describe_exports_graphml(tmp_path):
    out = tmp_path / "cluster.graphml"
    result = CliRunner().invoke(main, ["describe", "experiments/podcast10h.toml", "--graph", str(out)])
    assert result.exit_code == 0, result.output
    exp = load("experiments/podcast10h.toml")
    for name, spec in exp.deployments.items():
        graph = nx.read_graphml(tmp_path / f"cluster.{name}.graphml")
        built = build("x", name, spec)
        assert graph.number_of_nodes() == built.cluster.graph.number_of_nodes()
        assert graph.number_of_edges() == built.cluster.graph.number_of_edges()
        assert graph.edges["n0/gpu0", "n0/nvswitch"]["bandwidth_bytes_per_s"] == 450e9


def test_describe_bad_input_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["describe", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "no such file" in result.output
    result = CliRunner().invoke(main, ["describe", "experiments/podcast10h.toml", "--graph",
                                       str(tmp_path / "no" / "such" / "dir.graphml")])
    assert result.exit_code == 2 and result.output.strip().splitlines()[-1].startswith("error: ")


def test_a_model_that_does_not_fit_names_the_smallest_layout_that_does():
    """Megatron 1T in BF16 is 2.0 TB: 63 GB on each of 32 H100s fits (podcast10h); on 16 it does not."""
    exp = experiment({"d": {"model": "megatron_1t", "gpu": "h100_sxm", "nodes": 4, "tp": 8, "pp": 2}})
    with pytest.raises(ConfigError) as e:
        build("x.toml", "d", exp.deployments["d"])
    assert e.value.key == "pp"
    d = 25600
    layer_per_gpu = 4 * d + (12 * d * d + 13 * d - 4 * d) / 8            # LayerNorms whole, the rest / 8
    weights = (64 * layer_per_gpu + (51200 + 2048) * d / 8) * 2          # 64 layers + token/position tables
    activations = 8192 * 2 * (2 * d + 2 * 102400 / 8) + 1024 * 51200 * 4 / 8
    short = weights + activations + 2 * 1.79 * 2**30 - 0.9 * 81559 * 2**20
    assert round(short / 1e9, 1) == 54.3
    assert "by 54.3 GB" in e.value.message
    assert "valid: the smallest layout that fits is tp 8 x dp 1 x pp 4 (32 GPUs)" in e.value.message
    one_node = experiment({"d": {"model": "megatron_1t", "gpu": "h100_sxm", "nodes": 1, "tp": 8}})
    with pytest.raises(ConfigError, match="no layout fits on these 8 GPUs"):
        build("x.toml", "d", one_node.deployments["d"])


def test_clusters_experiment_runs():
    exp = load(CLUSTERS_EXPERIMENT).model_copy(update={"workload": load(CLUSTERS_EXPERIMENT).workload.model_copy(
        update={"duration_h": 0.25})})
    results = [r for r in run_all(exp)]
    check_invariants(results)
    assert all(t.status == "ok" for r in results for t in r.turns)


def test_buffers_and_reserve_count_before_activations_are_blamed():
    """Llama-3.1-70B BF16 on 2 H100s at 86%: 70.6 GB of weights + 3.8 GB of buffers and reserve exceed
    the usable 73.6 GB, so the model does not fit, whatever the step's activations."""
    exp = experiment({"d": {"model": "llama31_70b", "gpu": "h100_sxm", "nodes": 1, "tp": 2, "replicas": 1,
                            "gpu_memory_utilization": 0.86}})
    with pytest.raises(ConfigError) as e:
        build("x.toml", "d", exp.deployments["d"])
    assert e.value.key == "pp" and "does not fit" in e.value.message


def test_describe_shows_tensorrt_llm_memory_rule(tmp_path):
    """With kv_cache_free_fraction the KV pool is that share of what the whole GPU has free."""
    path = tmp_path / "trt.toml"
    path.write_text('[run]\nname = "t"\n[workload]\nkind = "offline"\nrequests = 4\ninput_tokens = 10\n'
                    'output_tokens = 10\n[deployments.d]\nmodel = "llama31_8b"\ngpu = "h100_sxm"\nnodes = 1\n'
                    'tp = 1\nreplicas = 1\nkv_cache_free_fraction = 0.9\n')
    result = CliRunner().invoke(main, ["describe", str(path)])
    assert result.exit_code == 0, result.output
    m = build(str(path), "d", load(str(path)).deployments["d"]).replicas[0].memory   # by hand: test_hardware
    assert "memory per GPU: 85.5 GB usable = weights" in result.output
    assert f"free {m.free_bytes / 1e9:.1f} GB, of which the KV pool takes 0.9: {m.kv_pool_bytes / 1e9:.1f} GB" \
        in result.output


def test_describe_says_how_kv_is_allocated(tmp_path):
    path = tmp_path / "on_demand.toml"
    deployment = 'model = "llama31_8b"\ngpu = "h100_sxm"\nnodes = 1\ntp = 1\nreplicas = 1\nengine = "trtllm"\n'
    path.write_text(f'[deployments.a]\n{deployment}\n[deployments.b]\n{deployment}kv_allocation = "reserve"\n')
    result = CliRunner().invoke(main, ["describe", str(path)])
    assert result.exit_code == 0, result.output
    on_demand, reserve = result.output.split("\nb: ")   # the default, then reserve
    assert "allocated on demand, preempting when full" in on_demand
    assert "allocated for prompt + reply at admission" in reserve


def test_describe_states_the_engine_settings(tmp_path):
    """Batch and step budget, whole or chunked prompts, streaming with its host cost, and a power cap."""
    path = tmp_path / "engine.toml"
    deployment = 'model = "llama31_8b"\ngpu = "h100_sxm"\nnodes = 1\ntp = 1\nreplicas = 1\nengine = "trtllm"\n'
    path.write_text(f'[deployments.a]\n{deployment}\n[deployments.b]\n{deployment}streaming = false\n'
                    'chunked_prefill = false\nmax_seqs = 64\nmax_batched_tokens = 2048\npower_cap_w = 500\n')
    result = CliRunner().invoke(main, ["describe", str(path)])
    assert result.exit_code == 0, result.output
    default, custom = result.output.split("\nb: ")
    assert (f"scheduler: up to 1,024 sequences and 8,192 tokens a step, prompts chunked; tokens streamed "
            f"({calibration.STREAM_TOKEN_HOST_S * 1e6:g} us of host time each)") in default
    assert ("scheduler: up to 64 sequences and 2,048 tokens a step, prompts whole; replies returned whole; "
            "power capped at 500 W per GPU") in custom
    vllm = tmp_path / "vllm.toml"
    vllm.write_text(f'[deployments.a]\n{deployment.replace("trtllm", "vllm")}')
    assert "tokens streamed by a process of their own (no step host time)" in CliRunner().invoke(
        main, ["describe", str(vllm)]).output


def test_describe_says_which_engine_and_where_the_time_goes(tmp_path):
    """The engine line (overlap, CUDA graphs, FP8 attention) and, for a decode step at batch 1 and at a large
    batch and an 8,192-token prefill, the step and each part in ms: the numbers of sim.cost.step itself."""
    from sim import config
    from sim.cost.step import PARTS
    from sim.deployment import build
    path = tmp_path / "ds.toml"
    path.write_text('[deployments.ds]\nmodel = "deepseek_v3"\ngpu = "h200"\nnodes = 1\ntp = 8\nep = 8\n'
                    'weights = "fp8"\nkv_cache = "fp8"\nengine = "trtllm"\ncuda_graphs = false\nmax_seqs = 64\n')
    result = CliRunner().invoke(main, ["describe", str(path)])
    assert result.exit_code == 0, result.output
    assert ("engine: TensorRT-LLM (1.x, PyTorch backend); overlap scheduler (host work under the kernels); no CUDA graphs (every kernel "
            "launched by the CPU); FP8 attention in decode") in result.output
    assert "    step                    total " + " ".join(f"{p:>11s}" for p in PARTS) in result.output
    (name, spec), = config.load(str(path)).deployments.items()
    cost = build(str(path), name, spec).replicas[0].cost
    for label, step in (("decode, batch 1", cost.step([], [], [], [8192])),
                        ("decode, batch 64", cost.step([], [], [], [8192] * 64)),
                        ("prefill of 8,192", cost.step([8192], [0], [1], []))):
        line = next(x for x in result.output.splitlines() if x.strip().startswith(label))
        assert float(line.split()[-len(PARTS) - 1]) == pytest.approx(step.duration_s[0] * 1e3, abs=0.006)
        assert float(line.split()[PARTS.index("launches") - len(PARTS)]) == pytest.approx(
            step.parts_s["launches"][0] * 1e3, abs=0.006)


def test_describe_spreads_the_large_decode_batch_over_the_attention_groups(tmp_path):
    """With attention data parallel (dp 16, 64 sequences a group) the large decode batch of 256 is 16 per
    group, as the groups' own schedulers would hold it, not 256 on one group."""
    from sim import config
    from sim.cost.step import PARTS
    from sim.deployment import build
    path = tmp_path / "dp.toml"
    path.write_text('[deployments.dp]\nmodel = "deepseek_v3"\ngpu = "h200"\nnodes = 2\ntp = 1\ndp = 16\nep = 16\n'
                    'weights = "fp8"\nengine = "sglang"\nmax_seqs = 64\n')
    result = CliRunner().invoke(main, ["describe", str(path)])
    assert result.exit_code == 0, result.output
    (name, spec), = config.load(str(path)).deployments.items()
    cost = build(str(path), name, spec).replicas[0].cost
    step = cost.step([], [], [], [8192] * 256, decode_rank=[i % 16 for i in range(256)])
    line = next(x for x in result.output.splitlines() if x.strip().startswith("decode, batch 256"))
    assert float(line.split()[-len(PARTS) - 1]) == pytest.approx(step.duration_s[0] * 1e3, abs=0.006)
    assert step.duration_s[0] < cost.step([], [], [], [8192] * 256).duration_s[0]
