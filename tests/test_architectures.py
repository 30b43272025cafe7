"""The seed question across architectures: experiments/architectures.toml end to end, the affine growth
fits of its report, and the PNGs of `simrun plot`."""
import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib import image

from sim.cli import cli as main
from sim.output import write
from sim.report import affine
from test_engine import check_invariants

ARCHITECTURES = "experiments/architectures.toml"


@pytest.fixture(scope="module")
def architectures():
    from sim.run import run_experiment
    return run_experiment(ARCHITECTURES)


def test_every_design_runs_the_ten_hours(architectures):
    names = [r.deployment.name for r in architectures.results]
    assert names == ["megatron_1t_mha", "megatron_1t_mha_nocache", "dense_gqa_1t", "kimi_k2", "deepseek_v32_sparse",
                     "hybrid_linear_1t", "recurrent_1t", "kimi_k2_window", "kimi_k2_summarize", "kimi_k2_retrieve"]
    check_invariants(architectures.results)
    for r in architectures.results:
        assert max(t.conversation_s for t in r.turns) > 590 * 60
    for name in ("megatron_1t_gqa", "hybrid_1t", "rwkv7_1t"):   # the 1T-scaled variants are 1.0T +- 2%
        arch = architectures.experiment.deployments[next(
            d for d, s in architectures.experiment.deployments.items() if s.model == name)].architecture
        assert arch.params_total == pytest.approx(1.0e12, rel=0.02)


def fits(run, column):
    rows = run.tables["turns"].to_pylist()
    return {r.deployment.name: affine(rows, r.deployment.name, column) for r in run.results}


@pytest.mark.parametrize("column", ["energy_prefill_j", "ttft_s"])
def test_affine_growth_ranks_the_designs(architectures, column):
    """What a phrase's prefill costs per token of context (b of a + b x context over every phrase): the
    pure recurrent model's state does not grow, so 100,000 tokens of context add under 5% to its fixed
    part; the full-attention model that re-reads its whole history every phrase (no prefix cache) grows
    fastest, more than twice any other design."""
    fit = fits(architectures, column)
    recurrent = fit["recurrent_1t"]
    assert abs(recurrent.b) * 100_000 < 0.05 * recurrent.a
    b = {name: f.b for name, f in fit.items()}
    assert max(b, key=b.get) == "megatron_1t_mha_nocache"
    assert b["megatron_1t_mha_nocache"] > 2 * max(v for k, v in b.items() if k != "megatron_1t_mha_nocache")


def test_policies_bound_what_the_model_sees(architectures):
    by_name = {r.deployment.name: r for r in architectures.results}
    late = lambda name: [t for t in by_name[name].turns if t.conversation_s > 300 * 60 and t.kind == "reply"]  # noqa: E731
    assert max(t.context_tokens for t in late("kimi_k2_window")) == 16384
    assert max(t.context_tokens for t in late("kimi_k2_retrieve")) == 8192
    assert max(t.context_tokens for t in late("kimi_k2_summarize")) < 16384 + 4000
    assert min(t.conversation_tokens for t in late("kimi_k2_window")) > 50_000
    # Full MHA runs out of KV before the podcast ends; the others never do.
    assert any(t.status == "kv_oom" for t in by_name["megatron_1t_mha"].turns)
    assert all(t.status == "ok" for name in ("recurrent_1t", "hybrid_linear_1t", "kimi_k2_window")
               for t in by_name[name].turns)


def test_report_prints_the_growth_beside_the_minute_table(architectures):
    from sim.run import render
    text = render(architectures.tables["turns"], architectures.info)
    assert text.count("growth per 1,000 tokens of context, a + b x context over") == 10


def test_plot_writes_four_pngs_that_are_not_blank(tmp_path, podcast10h):
    # The shipped experiment's run (the session's, shared with test_podcast10h), written as the command does.
    out = write(tmp_path / "run", podcast10h.tables, podcast10h.info, timing=podcast10h.timing)
    result = CliRunner().invoke(main, ["plot", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("energy_per_phrase.png", "energy_views.png", "latency.png", "kv_memory.png"):
        pixels = image.imread(out / "plots" / name)
        height, width = pixels.shape[:2]
        assert width >= 1000 and height >= 400
        rgb = pixels[..., :3].reshape(-1, 3)
        assert rgb.std() > 0.05                                   # not one flat colour
        assert len(np.unique((rgb * 255).astype(int), axis=0)) > 50   # lines of several colours, text
