"""[models.NAME] tables are validated like the rest of an experiment: every mistake is one line naming the
table and the key, and whatever table hypothesis writes is refused that way or gives finite, positive
costs, never a traceback."""
import math
import tomllib
from importlib import resources

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sim.config import parse
from sim.deployment import build
from sim.errors import ConfigError
from sim.models import ModelKeyError
from sim.models import build as build_model
from sim.models import catalog
from sim.simulation import simulate

CATALOG = tomllib.loads(resources.files("sim").joinpath("data", "models.toml").read_text())["models"]
SUBTABLES = ("mla", "moe", "dsa", "gdn", "kda", "mamba", "ssm", "rwkv")
TOP_KEYS = sorted(set().union(*CATALOG.values()) | {"layer_pattern", "layer_kinds", "sliding_window", "base"})
SUB_KEYS = {sub: sorted(set().union(*(t[sub] for t in CATALOG.values() if sub in t))) for sub in SUBTABLES}
SMALL = ["llama31_8b", "gemma3_27b", "qwen3_next_80b_a3b", "kimi_linear_48b_a3b", "mamba2_2p7b", "rwkv7_2p9b",
         "jamba_15_large", "gpt_oss_120b", "minimax_m1", "deepseek_v32_exp"]

PLAUSIBLE = st.one_of(st.integers(1, 64), st.sampled_from([128, 256, 512, 1024, 2048, 4096]))
VALUES = st.one_of(
    PLAUSIBLE, PLAUSIBLE, PLAUSIBLE, st.integers(-3, 5000),
    st.sampled_from([0, 1, 2, 4, 8, 64, 128, 1024, 10**7, 10**12, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.text(max_size=8),
    st.sampled_from(["attention", "window", "gdn", "kda", "mha", "gqa", "mla", "mla_dsa", "hybrid", "ssm", "linear",
                     "rmsnorm", "layernorm", "gelu", "relu2", "none", "LLLF", "bogus"]),
    st.lists(st.integers(0, 8), max_size=2), st.dictionaries(st.sampled_from(["L", "F", "x"]),
                                                             st.sampled_from(["attention", "gdn", "bogus"])))


@st.composite
def model_tables(draw):
    """A catalog model's table (whole, or as `base` with the keys it changes) with a few keys changed,
    deleted or unknown, its subtables' keys changed, or its sizes shrunk to fit one GPU, so that a fair
    share of the tables are valid and reach the engine."""
    name = draw(st.sampled_from(SMALL))
    table = ({"base": name} if draw(st.booleans()) else
             {k: (dict(v) if isinstance(v, dict) else v) for k, v in CATALOG[name].items()})
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["set", "set", "sub", "sub", "delete", "unknown", "shrink", "shrink",
                                       "shrink"]))
        if action == "set":
            table[draw(st.sampled_from(TOP_KEYS))] = draw(VALUES)
        elif action == "sub":
            sub = draw(st.sampled_from([s for s in SUBTABLES if s in CATALOG[name]] or list(SUBTABLES)))
            inner = table.get(sub) if isinstance(table.get(sub), dict) else {}
            table[sub] = {**inner, draw(st.sampled_from(SUB_KEYS[sub])): draw(VALUES)}
        elif action == "delete" and len(table) > 1:
            del table[draw(st.sampled_from(sorted(table)))]
        elif action == "unknown" and draw(st.integers(0, 3)) == 0:
            table[draw(st.sampled_from(["n_layer", "heads", "moe_experts"]))] = draw(VALUES)
        elif action == "shrink":
            d_model = draw(st.sampled_from([256, 512, 1024, 2048]))
            table.update(n_layers=draw(st.integers(4, 8)), d_model=d_model)
            if "rwkv" in CATALOG[name]:
                table["n_heads"] = d_model // 64    # RWKV-7's heads of 64 tile d_model
    return table


# Layouts a model is served in: one GPU; tensor x pipeline parallel; tensor x expert parallel.
LAYOUTS = ({"tp": 1, "replicas": 1}, {"tp": 2, "pp": 2, "replicas": 1}, {"tp": 8, "ep": 8})


def experiment_with(table: dict, layout: dict = LAYOUTS[0]) -> dict:
    return {"run": {"name": "fuzz"}, "workload": {"duration_h": 0.02},
            "models": {"m": table},
            "deployments": {"d": {"model": "m", "gpu": "b200", "nodes": 1, "weights": "fp8",
                                  "max_batched_tokens": 2048, "max_seqs": 16, **layout}}}


def finite_positive(*values) -> bool:
    return all(math.isfinite(v) and v > 0 for v in values)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model_tables(), st.sampled_from(LAYOUTS))
def test_a_model_table_is_refused_in_one_line_or_costs_finite_positive_amounts(table, layout):
    try:
        exp = parse("fuzz.toml", experiment_with(table, layout))
        built = build("fuzz.toml", "d", exp.deployments["d"])
    except ConfigError as e:
        assert "\n" not in str(e) and e.table in ("models.m", "deployments.d"), str(e)
        event(f"refused in [{e.table}]")
        return
    arch = exp.deployments["d"].architecture
    assert finite_positive(arch.params_total, arch.params_active, arch.matmul_flops_per_token)
    cost = built.replicas[0].cost
    for step in (cost.step([512], [0], [True], []), cost.step([], [], [], [1000, 50], n_steps=3)):
        assert finite_positive(*step.duration_s, *step.energy_j, *step.flops, *step.hbm_bytes)
    result = simulate(exp, built)
    ledger = result.ledger()
    assert result.turns and finite_positive(*(ledger[k] for k in ("gpu_j", "node_j", "facility_j", "co2e_g")))
    assert all(t.status == "ok" or t.reason for t in result.turns)
    event("simulated")


@pytest.mark.parametrize("base, key, value, where, expect", [
    ("llama31_8b", "head_dim", float("nan"), "head_dim", "valid integer (got nan)"),
    ("llama31_8b", "attention", "bogus", "attention", "'mha', 'gqa', 'mla', 'mla_dsa', 'ssm', 'linear' or 'hybrid'"),
    ("llama31_8b", "n_kv_heads", "8", "n_kv_heads", "valid integer (got '8')"),
    ("llama31_8b", "n_kv_heads", 1.5, "n_kv_heads", "valid integer (got 1.5)"),
    ("llama31_8b", "n_kv_heads", 5, "n_kv_heads", "n_kv_heads 5 must divide the 32 query heads"),
    ("llama31_8b", "head_dim", 0, "head_dim", "attention layers need head_dim > 0"),
    ("llama31_8b", "d_model", -8, "d_model", "greater than or equal to 1 (got -8)"),
    ("llama31_8b", "norm", "bogus", "norm", "'rmsnorm' or 'layernorm' (got 'bogus')"),
    ("llama31_8b", "attention", "mha", "n_kv_heads", "mha keeps a KV head per query head: n_kv_heads must be 32"),
    ("llama31_8b", "tie_embeddings", 1, "tie_embeddings", "valid boolean (got 1)"),
    ("llama31_8b", "moe", 3, "moe", "needs a table of keys (got 3)"),
    ("llama31_8b", "mla", {"kv_lora_rank": 1}, "mla.q_lora_rank", "required key is missing; give every key of "
                                                                   "the mla table"),
    ("qwen3_next_80b_a3b", "n_layers", 0, "n_layers", "greater than or equal to 1 (got 0)"),
    ("qwen3_next_80b_a3b", "moe", {"top_k": 0}, "moe.top_k", "greater than or equal to 1"),
    ("kimi_k2", "moe", {"n_experts": 3}, "moe.top_k", "top_k 8 routes to more experts than the 3 there are"),
    ("deepseek_v3", "moe", {"n_group": 7}, "moe.n_group", "n_group 7 does not divide the 256 experts"),
    ("deepseek_v3", "moe", {"topk_group": 9}, "moe.topk_group", "topk_group 9 picks more groups than the 8"),
    ("rwkv7_2p9b", "d_model", float("nan"), "d_model", "valid integer (got nan)"),
    ("rwkv7_2p9b", "n_heads", 3, "n_heads", "RWKV-7's 3 heads of 64 must tile d_model 2560"),
    ("gemma3_27b", "sliding_window", "64", "sliding_window", "valid integer (got '64')"),
    ("mamba2_2p7b", "ssm", {"head_dim": 7}, "ssm.head_dim", "must split into heads of head_dim 7"),
    ("qwen3_next_80b_a3b", "gdn", {"n_v_heads": 24}, "gdn.n_v_heads", "24 value heads do not group over 16 key heads"),
    ("llama31_8b", "layer_kinds", {"x": "bogus"}, "layer_kinds.x", "'attention', 'window', 'gdn'"),
    ("llama31_8b", "vocab_padded", 5, "vocab_padded", "vocab_padded 5 < vocab 128256"),
    ("llama31_8b", "ffn_dim", 0, "ffn_dim", "32 dense layers need ffn_dim > 0"),
    ("llama31_8b", "ffn", "none", "ffn", None),   # a model without FFNs (Mamba-2's kind) is valid
    ("llama31_8b", "max_context", 0, "max_context", "full-attention layers or learned positions needs max_context"),
    ("deepseek_v3", "attention", "gqa", "attention", "an mla table needs attention 'mla', 'mla_dsa' or 'hybrid'"),
    ("deepseek_v3", "attention", "mla_dsa", "dsa", "attention 'mla_dsa' and a dsa table (its indexer) go together"),
    ("llama31_8b", "display_name", "x" * 10_000, "display_name", "at most 200 characters"),
])
def test_each_mistake_names_its_key(base, key, value, where, expect):
    if expect is None:
        assert build_model("m", {"base": base, key: value}, catalog()).ffn == value
        return
    with pytest.raises(ModelKeyError) as err:
        build_model("m", {"base": base, key: value}, catalog())
    assert err.value.key == where and expect in str(err.value) and len(str(err.value)) < 400


def test_an_experiment_names_the_file_table_and_key():
    data = experiment_with({"base": "kimi_k2", "moe": {"n_experts": 3}})
    with pytest.raises(ConfigError) as err:
        parse("x.toml", data)
    assert str(err.value).startswith("x.toml: [models.m] key 'moe.top_k': top_k 8 routes to more experts")


def test_a_new_model_needs_every_key_and_the_catalog_passes_its_own_checks():
    with pytest.raises(ModelKeyError, match="required key is missing; give every key of a model, or base = NAME"):
        build_model("m", {"display_name": "x", "attention": "gqa"}, catalog())
    assert len(catalog()) == len(CATALOG) == 23
    rebuilt = {name: build_model(name, dict(table), catalog()) for name, table in CATALOG.items()}
    assert rebuilt == catalog()
