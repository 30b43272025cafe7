"""Experiment files: TOML read with tomllib, validated into typed objects by pydantic.

`load` is the one road from a file to an `Experiment`, for every subcommand. A validation case is an
experiment plus two tables: [case] (the published row it reproduces) and [measured] (the figures
measured there, keys of sim.metrics.KEYS). Every problem becomes one `ConfigError` line: file, table,
key, what is wrong, what would be valid.
"""
from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, create_model,
                      field_validator, model_validator)

from hardware import catalog as hw
from sim.errors import NAME_LIMIT, ConfigError, printable, pydantic_message
from sim.metrics import KEYS as MEASURED_KEYS
from sim.models import Architecture, ModelKeyError
from sim.models import build as build_model
from sim.models import catalog as model_catalog
from workloads import benchmark, podcast, starts
from workloads.traces import Trace, TraceError, file_lengths, read_trace


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


def _one_of(kind: str, name: str, valid) -> str:
    if name not in valid:
        raise ValueError(f"unknown {kind} '{printable(name, NAME_LIMIT)}'; valid: {', '.join(sorted(valid))}")
    return name


# A token count: ten million is beyond any prompt, reply or window a deployment serves.
TokenCount = Annotated[int, Field(ge=0, le=10_000_000)]


def _require(table: BaseModel, keys, what: str) -> None:
    """The keys a choice needs set above zero, named in one error."""
    missing = [k for k in keys if not getattr(table, k)]
    if missing:
        raise ValueError(f"{what} needs {', '.join(missing)} > 0")


class RunSpec(_Strict):
    name: str = "run"
    seed: int = Field(0, ge=0, lt=2**63)
    # bulk: steps of a batch that keeps its shape computed at once; per_step: the reference, one event per step.
    mode: Literal["bulk", "per_step"] = "bulk"
    # Runs of the experiment with seeds drawn from `seed` (the first: `seed` itself), spread over the cores; the
    # tables hold them all, by their `replicate` column, and the report gives the mean and a 95% interval.
    replicates: int = Field(1, ge=1, le=10_000)


class FaultSpec(_Strict):
    """[faults]: hardware faults and the recovery from them (sim.faults; hardware/data/faults.toml).

    rates: `none`, `llama3` (Llama 3's 419 interruptions over 16,384 GPUs x 54 days, by root cause), or a table of
    per-GPU-year rates by component (gpu, hbm, nvlink, nic, software, host, network); scale multiplies them.
    retries: how many times a turn whose replica died is sent again (the OpenAI Python client's default
    max_retries is 2). hot_spares: standby replicas per deployment, weights loaded and warm, placed after its
    replicas: one takes a dead replica's place once the fault is detected. weights_from: where a restarting
    replica reads its weights (local `nvme`, a `peer` replica over the fabric, `object_store`).
    """

    rates: str | dict[str, float] = "none"
    scale: float = Field(1.0, ge=0, le=1e6)
    retries: int = Field(2, ge=0, le=100)
    hot_spares: int = Field(0, ge=0, le=4096)
    weights_from: Literal["nvme", "peer", "object_store"] = "nvme"

    @field_validator("rates")
    @classmethod
    def _known_rates(cls, v):
        if isinstance(v, str):
            return _one_of("fault rates", v, ["none", *hw.fault_studies()])
        for component, rate in v.items():
            _one_of("fault component", component, hw.fault_components())
            if not 0 <= rate <= 1e6:
                raise ValueError(f"rate of {component} {rate:g} per GPU-year is outside 0-1e6; valid: a number "
                                 "of faults per GPU-year from 0")
        return v

    @property
    def enabled(self) -> bool:
        return self.scale > 0 and self.rates != "none" and (not isinstance(self.rates, dict) or any(self.rates.values()))


class WorkloadSpec(_Strict):
    # podcast: the long conversation; offline / poisson / concurrency: benchmark requests (workloads.benchmark);
    # trace: a trace_file's requests replayed at their arrivals, Mooncake's shared prefixes cached (workloads.traces).
    kind: Literal["podcast", "offline", "poisson", "concurrency", "trace"] = "podcast"
    # Bounds keep every count and nanosecond clock finite; they are far beyond any real conversation.
    duration_h: float = Field(10.0, gt=0, le=1000)
    # Podcasts at once; 0 leaves the deployments' background chats alone (each deployment needs one).
    sessions: int = Field(1, ge=0, le=100_000)
    session_stagger_s: float = Field(0.0, ge=0, le=1e6)
    # When the sessions begin (workloads.starts): `staggered` one every session_stagger_s; `poisson` a Poisson
    # process whose mean gap is session_stagger_s; `uniform` each at random over [0, session_window_s).
    session_starts: Literal["staggered", "poisson", "uniform"] = "staggered"
    session_window_s: float = Field(0.0, ge=0, le=1e7)
    words_per_minute: float = Field(podcast.WORDS_PER_MINUTE, ge=1, le=1000)
    tokens_per_word: float = Field(podcast.TOKENS_PER_WORD, ge=0.1, le=10)
    human_median_words: float = Field(40.0, ge=1, le=10_000)
    human_log_sigma: float = Field(0.6, ge=0, le=3)
    reply_median_tokens: float = Field(podcast.REPLY_MEDIAN_TOKENS, ge=1, le=100_000)
    reply_log_sigma: float = Field(podcast.REPLY_LOG_SIGMA, ge=0, le=3)
    # When the model speaks: "streamed" from its first token, at the speech rate while it decodes, the voice
    # stalling when a token is late (turns.stall_s); "after_reply" once the whole reply is decoded. The
    # human replies when the model's speech ends.
    speech: Literal["streamed", "after_reply"] = "streamed"
    # What a session does after a failed turn: go on with the next phrase, or end.
    on_failure: Literal["continue", "stop"] = "continue"
    # A reply that takes longer than this (seconds, 0 = no deadline) ends as `timeout` and is dropped.
    reply_deadline_s: float = Field(0.0, ge=0, le=1e6)

    # Benchmark workloads: how many requests, how they arrive, and their input / output lengths.
    requests: int = Field(0, ge=0, le=1_000_000)
    rate_per_s: float = Field(0.0, ge=0, le=1e6)
    clients: int = Field(0, ge=0, le=100_000)
    input_tokens: TokenCount = 0
    output_tokens: TokenCount = 0
    # fixed or lognormal around input_tokens / output_tokens, or `trace`: the rows of trace_file (a CSV, Parquet
    # or JSONL file in Azure's schema as Vidur ships it or Mooncake's, workloads.traces; a path relative to the
    # experiment file), replayed in order and cycled.
    length_dist: Literal["fixed", "lognormal", "trace"] = "fixed"
    trace_file: str = ""
    input_log_sigma: float = Field(0.0, ge=0, le=3)
    output_log_sigma: float = Field(0.0, ge=0, le=3)
    max_input_tokens: TokenCount = 0
    max_output_tokens: TokenCount = 0
    # The first requests sent are warm-up, left out of the metrics (genai-perf --warmup-request-count).
    warmup_requests: int = Field(0, ge=0, le=1_000_000)
    # The last requests sent are left out too: a steady-state window that closes before the batch drains
    # (ML.ENERGY's ends when all but max_num_seqs requests have started).
    cooldown_requests: int = Field(0, ge=0, le=1_000_000)

    @model_validator(mode="after")
    def _benchmark_needs(self):
        if self.kind == "podcast":
            if self.session_starts != "staggered":
                key = {"poisson": "session_stagger_s", "uniform": "session_window_s"}[self.session_starts]
                _require(self, [key], f"session_starts '{self.session_starts}'")
            return self
        if self.kind == "trace":
            _require(self, ["trace_file"], "kind 'trace'")
        else:
            lengths = ["trace_file"] if self.length_dist == "trace" else ["input_tokens", "output_tokens"]
            _require(self, ["requests", *lengths] + {"poisson": ["rate_per_s"], "concurrency": ["clients"]}.get(
                self.kind, []), f"kind '{self.kind}'")
        if self.trace_file and (self.kind == "trace" or self.length_dist == "trace"):
            trace = self._read_trace()
            if self.kind == "trace" and trace.arrival_s is None:
                raise ValueError(f"trace_file '{printable(self.trace_file, 200)}' has no arrival column (arrived_at "
                                 f"or timestamp) to replay; valid: a trace with arrivals, or kind 'poisson' with "
                                 f"length_dist 'trace'")
            if self.kind == "trace" and self.requests > len(trace):
                raise ValueError(f"requests {self.requests} is more than the {len(trace)} rows of trace_file "
                                 f"'{printable(self.trace_file, 200)}'; valid: at most {len(trace)}, or 0 for all")
        n = self.request_count()
        if self.warmup_requests + self.cooldown_requests >= n:
            raise ValueError(f"warmup_requests + cooldown_requests ({self.warmup_requests} + "
                             f"{self.cooldown_requests}) leave none of the {n} requests to measure; "
                             f"valid: together fewer than requests")
        return self

    def _read_trace(self) -> Trace:
        try:
            return read_trace(self.trace_file)
        except OSError as e:
            raise ValueError(f"trace_file '{printable(self.trace_file, 200)}': {e.strerror}; valid: a CSV, Parquet or "
                             f"JSONL trace file") from None
        except TraceError as e:
            raise ValueError(f"trace_file {e}") from None

    def request_count(self) -> int:
        """Requests a benchmark sends: `requests`, or for a trace replay with none given, every row."""
        return self.requests or (len(self._read_trace()) if self.kind == "trace" else 0)

    def lengths(self) -> tuple[benchmark.Lengths, benchmark.Lengths]:
        return (benchmark.Lengths(self.input_tokens, self.length_dist, self.input_log_sigma, self.max_input_tokens),
                benchmark.Lengths(self.output_tokens, self.length_dist, self.output_log_sigma, self.max_output_tokens))

    def trace(self) -> tuple | None:
        """(prompt tokens, reply tokens) of the trace's rows, for length_dist `trace`."""
        return file_lengths(self.trace_file) if self.length_dist == "trace" else None

    def replay(self) -> list[benchmark.Request]:
        """A trace replay's requests (kind `trace`): its first request_count() rows at their arrivals."""
        return benchmark.replay(self._read_trace(), self.request_count())

    def session_starts_s(self, seed: int) -> np.ndarray:
        """When each podcast session begins, seconds from the start of the run (workloads.starts)."""
        return starts.session_starts_s(self.session_starts, self.sessions, self.session_stagger_s,
                                       self.session_window_s, seed)

    def podcast_spec(self) -> podcast.PodcastSpec:
        return podcast.PodcastSpec(
            duration_s=self.duration_h * 3600.0, words_per_minute=self.words_per_minute,
            tokens_per_word=self.tokens_per_word, human_median_words=self.human_median_words,
            human_log_sigma=self.human_log_sigma, reply_median_tokens=self.reply_median_tokens,
            reply_log_sigma=self.reply_log_sigma)


class ReportSpec(_Strict):
    minutes: list[Annotated[float, Field(ge=0, le=60_000)]] = [5, 55, 205, 305, 505]
    # Human brain power: ~20 W (Raichle & Gusnard 2002, PNAS 99:10237, 'Appraising the brain's energy budget').
    brain_w: float = Field(20.0, gt=0, le=1000)


class SloSpec(_Strict):
    """[slo]: what a turn must meet (0: no target) and the share of turns that must meet it for a load to be
    within the SLO (sim.serving.slo; DistServe's SLO attainment goal, 90% in its evaluation)."""

    ttft_s: float = Field(0.0, ge=0, le=1e6)
    tpot_s: float = Field(0.0, ge=0, le=1e6)
    e2e_s: float = Field(0.0, ge=0, le=1e6)
    stall_s: float = Field(0.0, ge=0, le=1e6)
    attainment: float = Field(0.9, gt=0, le=1)

    @property
    def targets(self) -> dict[str, float]:
        """The turns table's columns with a target, and their targets."""
        return {k: v for k, v in (("ttft_s", self.ttft_s), ("tpot_s", self.tpot_s), ("e2e_s", self.e2e_s),
                                  ("stall_s", self.stall_s)) if v > 0}


class EnergySpec(_Strict):
    """[energy]: the facility around the deployments and how idle capacity is billed (sim.energy).

    pue: a name from hardware/data/facility.toml (industry 1.58, google 1.10, meta 1.09) or a number;
    grid: a region from the same file (gCO2e per kWh) or a number; idle_capacity: a replica no session
    reaches is billed to the deployment's sessions (`spread`, as Google spreads idle capacity over
    prompts) or left `unallocated` (run.json's ledger reports it).
    """

    pue: float | str = "industry"
    grid: float | str = "us"
    idle_capacity: Literal["spread", "unallocated"] = "spread"

    @field_validator("pue", "grid")
    @classmethod
    def _named_or_number(cls, v, info: ValidationInfo):
        """A name from hardware/data/facility.toml, or a number within the key's bounds."""
        key = info.field_name
        names, (low, high, what) = {"pue": (hw.pues(), (1.0, 3.0, "from 1 (no overhead) to 3")),
                                    "grid": (hw.grids(), (0.0, 2000.0, "of gCO2e/kWh from 0 to 2000"))}[key]
        if isinstance(v, str):
            return _one_of(key, v, names)
        if not low <= v <= high:
            raise ValueError(f"{key} {v:g} is outside {low:g}-{high:g}; valid: a number {what}, or one of "
                             f"{', '.join(sorted(names))}")
        return v

    @property
    def pue_value(self) -> float:
        return hw.pues()[self.pue].value if isinstance(self.pue, str) else float(self.pue)

    @property
    def gco2e_per_kwh(self) -> float:
        return hw.grids()[self.grid].gco2e_per_kwh if isinstance(self.grid, str) else float(self.grid)


def _known_hardware(key: str, name: str) -> str:
    catalog = {"gpu": hw.accelerators, "node": hw.node_types, "fabric": hw.fabrics}[key]()
    return _one_of({"node": "node type"}.get(key, key), name, catalog)


def _check_gpu_in_node(gpu: str, node: str) -> None:
    fits = hw.node_types()[node].accelerators
    if gpu not in fits:
        raise ValueError(f"gpu '{gpu}' does not sit in node type '{node}'; valid gpus for it: {', '.join(fits)}")


class _ClusterKeys(_Strict):
    """`nodes` nodes of type `node` carrying `gpu`, joined by `fabric`."""

    gpu: str
    node: str = "hgx_8gpu"
    # The graph is built node by node; 4,096 nodes is far beyond any one deployment's cluster.
    nodes: int = Field(ge=1, le=4096)
    fabric: str = "ib_ndr"
    # NIC j of every node on leaf j (true), or every NIC of a node on its own top-of-rack leaf (false).
    rail_optimized: bool = True

    @field_validator("gpu", "node", "fabric")
    @classmethod
    def _hardware(cls, v: str, info: ValidationInfo) -> str:
        return _known_hardware(info.field_name, v)

    @model_validator(mode="after")
    def _gpu_in_node(self):
        _check_gpu_in_node(self.gpu, self.node)
        return self


CLUSTER_KEYS = tuple(_ClusterKeys.model_fields)


class ClusterSpec(_ClusterKeys):
    """[clusters.NAME]: a cluster a deployment may name."""

    display_name: str = ""
    source: str = ""


class ContextSpec(_Strict):
    """[deployments.NAME.context]: what of the conversation the model sees each turn.

    full: the whole history until the model's max context, then `on_overflow` (fail the turn, or
    truncate the oldest history). window: the last `window_tokens` of history. summarize: once the
    history exceeds `every_tokens`, the model compacts it into `summary_tokens` (a request of its own).
    retrieve: the last `window_tokens` plus `chunks` retrieved chunks of `chunk_tokens` each turn,
    prefilled every turn (never cached), after a retrieval taking `retrieval_s` and `retrieval_j`.
    """

    policy: Literal["full", "window", "summarize", "retrieve"] = "full"
    on_overflow: Literal["fail", "truncate"] = "fail"
    window_tokens: TokenCount = 0
    every_tokens: TokenCount = 0
    summary_tokens: int = Field(0, ge=0, le=1_000_000)
    chunks: int = Field(0, ge=0, le=1000)
    chunk_tokens: int = Field(0, ge=0, le=100_000)
    retrieval_s: float = Field(0.0, ge=0, le=3600)
    retrieval_j: float = Field(0.0, ge=0, le=1e9)

    @model_validator(mode="after")
    def _needs(self):
        _require(self, {"window": ("window_tokens",), "summarize": ("every_tokens", "summary_tokens"),
                        "retrieve": ("window_tokens", "chunks", "chunk_tokens")}.get(self.policy, ()),
                 f"policy '{self.policy}'")
        if self.policy == "summarize" and self.summary_tokens >= self.every_tokens:
            raise ValueError(f"summary_tokens ({self.summary_tokens}) must be below every_tokens "
                             f"({self.every_tokens}) for a summary to shrink the history")
        return self


# Mean tokens per verify step by MTP draft tokens, DeepSeek-R1 at batch 1 (TensorRT-LLM tech blog 1, B200).
MTP_ACCEPT_LENGTH = {1: 1.92, 2: 2.58, 3: 2.82, 4: 2.99, 5: 3.01}


class BackgroundSpec(_Strict):
    """[deployments.NAME.background]: chat traffic sharing the deployment with the podcast
    (workloads.background: lengths from Azure's conversation trace), `clients` kept in flight or
    `rate_per_s` Poisson arrivals of chat sessions, one of the two. A session has `turns` turns on average
    (geometric; 1: a single request), the user thinking `think_s` on average (exponential) after each reply
    and sending `message_tokens` more, the whole conversation so far in the prompt (scenario choices: no
    default)."""

    clients: int = Field(0, ge=0, le=10_000)
    rate_per_s: float = Field(0.0, ge=0, le=10_000)
    turns: float = Field(1.0, ge=1, le=10_000)
    think_s: float = Field(0.0, ge=0, le=1e6)
    message_tokens: int = Field(0, ge=0, le=1_000_000)

    @model_validator(mode="after")
    def _one_load(self):
        if (self.clients > 0) == (self.rate_per_s > 0):
            raise ValueError("background needs one of clients > 0 or rate_per_s > 0 (not both)")
        if self.turns > 1:
            _require(self, ["think_s", "message_tokens"], f"background turns {self.turns:g}")
        return self


# A parallel dimension of a layout; 1,024 is far beyond any published deployment.
LayoutSize = Annotated[int, Field(ge=1, le=1024)]
# Micro-batches a pipeline (pp > 1) keeps in flight, the running sequences dealt among them: 0, one per stage
# (vLLM V1 keeps pp batches in flight, v1/engine/core.py step_with_batch_queue; SGLang runs pp micro-batches);
# 1, one batch crossing the stages in turn.
MicroBatches = Annotated[int, Field(ge=0, le=1024)]


class PrefillSpec(_Strict):
    """[deployments.NAME.prefill]: a pool of replicas that only prefill (disaggregated serving,
    sim.serving.disaggregation): each turn's prompt is prefilled there and its KV sent over the cluster to the
    deployment's own replicas, which decode the reply. Its own layout and replica count, placed on the
    cluster's first GPUs (the decode replicas on the GPUs after them); model, engine, precision and limits are
    the deployment's."""

    replicas: int = Field(1, ge=1, le=65536)
    tp: LayoutSize = 1
    pp: LayoutSize = 1
    ep: LayoutSize = 1
    dp: LayoutSize = 1
    micro_batches: MicroBatches = 0


class DeploymentSpec(_ClusterKeys):
    """[deployments.NAME]: a model on a cluster (named by `cluster`, or by the cluster keys here)."""

    model: str
    cluster: str = ""
    context: ContextSpec = ContextSpec()
    background: BackgroundSpec | None = None
    prefill: PrefillSpec | None = None
    _architecture: Architecture = PrivateAttr()
    _prefill_pool: DeploymentSpec | None = PrivateAttr(None)
    # Parallel layout.
    tp: LayoutSize = 1
    pp: LayoutSize = 1
    # Expert parallelism: ep groups of (tp x dp) / ep GPUs each hold their share of the experts, each
    # expert sliced over its group's GPUs; 1 slices every expert over the tp group, tp x dp spreads whole
    # experts one group per GPU.
    ep: LayoutSize = 1
    # Redundant copies of hot experts (EPLB) added to the expert slots, so that ep need only divide the
    # experts plus these: DeepSeek's prefill deployment adds 32 to 256 over EP32 (arXiv 2412.19437 s3.4.1).
    redundant_experts: int = Field(0, ge=0, le=100_000)
    # Routed tokens of the busiest ep group over the mean (ep > 1): 1 is uniform routing. Measured on
    # DeepSeek-R1 over EP32 with real traffic: 2.56 without redundant experts, 1.11 with 32 (TensorRT-LLM
    # tech blog 'Scaling Expert Parallelism in TensorRT-LLM'); benchmarks of random tokens route near-uniformly.
    expert_imbalance: float = Field(1.0, ge=1.0, le=1000.0)
    # Data-parallel attention groups per stage (MoE models): each attends its own sessions' tokens.
    dp: LayoutSize = 1
    # Decode context parallelism: each tp group stripes its KV over dcp GPUs that would otherwise hold copies
    # (MLA's latent is copied on every TP rank; GQA's KV heads when tp exceeds them), token p on rank p mod
    # dcp; attention gathers the queries and merges partial outputs by log-sum-exp (docs.sglang.io
    # advanced_features/dcp; vLLM --decode-context-parallel-size, RFC vllm-project/vllm#25749).
    dcp: LayoutSize = 1
    # Context parallelism for long prompts (ring attention): each stage runs cp copies of its tp group; a
    # prompt's tokens are split evenly over the copies, each attending with the others' KV passed around
    # the ring under its own attention (Liu et al., arXiv 2310.01889; vLLM's prefill context parallelism,
    # RFC vllm-project/vllm#25749), and every sequence's KV stays striped over them. A decode token runs on
    # every copy, each attending its stripe; their partial outputs merge by log-sum-exp (an all-reduce).
    cp: LayoutSize = 1
    # Kernels that send tokens to their experts across data-parallel attention groups (dp > 1): "normal",
    # DeepEP's normal kernels (a token once to each GPU holding one of its experts, NVLink-forwarded);
    # "low_latency", DeepEP's low-latency kernels (one message per routed expert, all posted at once by
    # GPU-initiated RDMA); "auto", low-latency for decode-only steps and normal for steps with a prompt
    # (SGLang --deepep-mode, default auto with --moe-a2a-backend deepep).
    ep_dispatch: Literal["normal", "low_latency", "auto"] = "normal"
    # Two micro-batches in flight (dp > 1): one's expert all-to-alls run under the other's kernels, each
    # reading the weights and launching the kernels itself (SGLang --enable-two-batch-overlap; DeepSeek's own
    # serving system, arXiv 2412.19437 s3.4).
    two_batch_overlap: bool = False
    micro_batches: MicroBatches = 0
    # Replicas of tp x dp x pp GPUs; 0 fills every GPU of the nodes. GPUs left over are not simulated.
    replicas: int = Field(0, ge=0, le=65536)
    # How turns find a replica (sim.serving.router): "session_affinity" (a session's turns stay on the replica
    # holding its history, falling back to the least loaded when that one is full), "round_robin",
    # "least_outstanding_tokens", "prefix_aware" (the replica with the longest cached prefix of the prompt).
    router: Literal["session_affinity", "round_robin", "least_outstanding_tokens", "prefix_aware"] = "session_affinity"
    # Admission control: turns a replica keeps queued at most (0: no limit); a turn no replica has room for
    # is refused, status `rejected`.
    queue_limit: int = Field(0, ge=0, le=1_000_000)
    # KV offload below HBM (sim.serving.offload): evicted prefixes go to the host's DRAM ("dram"), then local
    # NVMe ("dram_nvme"), and are read back over the graph's links when their session's next turn comes. The
    # DRAM tier holds dram_kv_ratio x the GPU's KV pool (SGLang --hicache-ratio; 2 in its best practices), at
    # most the GPU's share of its node's DRAM.
    kv_offload: Literal["none", "dram", "dram_nvme"] = "none"
    dram_kv_ratio: float = Field(2.0, gt=0, le=1000)
    # Read offloaded KV back layer by layer under the turn's first chunk (LMCache use_layerwise, SGLang HiCache,
    # vLLM-Ascend's layerwise KV pool) instead of whole before it prefills (vLLM's offloading connector, LMCache's
    # default).
    kv_load_layerwise: bool = False
    # Explicit placement: every replica's GPUs in rank order (stage by stage, tp group by tp group),
    # named like "n0/gpu3"; empty places them packed.
    gpus: list[str] = []
    # The serving engine (sim/data/engines.toml): its host work, CUDA graphs, all-reduce and attention kernels.
    engine: Literal["vllm", "sglang", "trtllm", "trtllm_0_21", "trtllm_cpp"] = "vllm"
    # Overrides the engine's overlap scheduler (CPU work of the next step under this step's kernels).
    overlap_scheduler: bool | None = None
    # Overrides whether the engine's MoE kernels walk every local expert: true for CUTLASS grouped GEMMs
    # (TensorRT-LLM's default MoE backend), false for kernels that tile tokens (trtllm-gen, Triton, DeepGEMM).
    moe_kernels_visit_experts: bool | None = None
    # Multi-token prediction (DeepSeek's MTP module used as a draft, or any speculative decoder of one layer):
    # draft tokens per step, and the mean tokens a verify step emits per sequence. 0 drafts: plain decoding.
    mtp_draft_tokens: int = Field(0, ge=0, le=16)
    # Default by draft tokens: 1.92, 2.58, 2.82, 2.99, 3.01 for 1-5 drafts, measured at batch 1 for DeepSeek-R1
    # on 8x B200 (TensorRT-LLM tech blog 'Pushing Latency Boundaries ... B200'); past 5, 3.01.
    mtp_accept_length: float = Field(0.0, ge=0.0, le=17.0)
    # Overrides whether the engine replays CUDA graphs for decode-only batches (false: every kernel launched
    # by the CPU; TensorRT-LLM's PyTorch backend had them off by default until its CudaGraphConfig,
    # TorchLlmArgs.use_cuda_graph = False).
    cuda_graphs: bool | None = None
    weights: Literal["bf16", "fp8", "fp4"] = "bf16"
    kv_cache: Literal["bf16", "fp8"] = "bf16"
    prefix_caching: bool = True
    # Overrides the model's published context (e.g. a YaRN extension); 0 keeps the catalog value.
    max_context_tokens: int = Field(0, ge=0, le=100_000_000)
    # Scheduler token budget per step (`max_num_batched_tokens`) and sequence cap (`max_num_seqs`):
    # vLLM V1's API-server defaults on GPUs of 70 GB or more (EngineArgs.get_batch_defaults, arg_utils.py).
    max_batched_tokens: int = Field(8192, ge=1, le=10_000_000)
    max_seqs: int = Field(1024, ge=1, le=1_000_000)
    # Split prompts across steps to fit the token budget (vLLM V1 always does); false prefills each prompt
    # whole in one step, as TensorRT-LLM does by default (LlmArgs.enable_chunked_prefill = False,
    # tensorrt_llm/llmapi/llm_args.py): a prompt that does not fit the step's remaining budget waits.
    chunked_prefill: bool = True
    # KV blocks per running request: `on_demand` holds the prompt and grows block by block, preempting the
    # latest request (recomputed later) when the pool is full (vLLM, whose limits are the defaults here;
    # TensorRT-LLM's MAX_UTILIZATION); `reserve` holds its whole prompt and reply from admission
    # (TensorRT-LLM's default capacity policy, GUARANTEED_NO_EVICT). Policies: nvidia.github.io/TensorRT-LLM
    # performance/performance-tuning-guide/useful-runtime-flags.
    kv_allocation: Literal["reserve", "on_demand"] = "on_demand"
    # Share of HBM the engine may use (vLLM `gpu_memory_utilization`, default 0.9).
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    # TensorRT-LLM's rule instead, when above 0: the KV pool is this share of the memory still free once the
    # weights, activations, buffers and reserve are in (its kv_cache_free_gpu_mem_fraction; TensorRT-LLM's
    # own default is 0.9). gpu_memory_utilization then plays no part.
    kv_cache_free_fraction: float = Field(0.0, ge=0, le=1)
    # Paged-KV block size in tokens (vLLM default 16); prefix caching reuses whole blocks only.
    block_tokens: int = Field(16, ge=1, le=65_536)
    # Return each token to its client as it is sampled (an online server, and every benchmark that times
    # tokens: NVIDIA's MLPerf Server harness, its generation_config 'streaming' true except for Offline;
    # genai-perf; the ML.ENERGY client's 'stream': True); false returns whole replies (MLPerf Offline,
    # trtllm-bench throughput). A streamed token costs the engine's step host time
    # (calibration.STREAM_TOKEN_HOST_S) where its loop builds the responses (engines.toml stream_on_step).
    streaming: bool = True
    # Requests come through the engine's OpenAI-compatible API server, each paying its request_host_us
    # (sim/data/engines.toml) before its first token: every HTTP client, the podcast's included; false for
    # in-process harnesses that hand token ids to the engine (trtllm-bench, MLPerf LoadGen).
    api_server: bool = True
    # Board power cap per GPU (nvidia-smi -pl), W; 0 runs at TDP.
    power_cap_w: float = Field(0.0, ge=0, le=5000)

    @model_validator(mode="before")
    @classmethod
    def _from_cluster(cls, data, info: ValidationInfo):
        """`cluster = NAME` fills gpu, node, nodes, fabric and rail_optimized from the named cluster."""
        if not isinstance(data, dict) or not data.get("cluster") or not isinstance(data["cluster"], str):
            return data   # no cluster named (a name of the wrong type is refused by the field's own check)
        given = [k for k in CLUSTER_KEYS if k in data]
        if given:
            raise ValueError(f"set either cluster = '{printable(data['cluster'], NAME_LIMIT)}' or {', '.join(given)}, "
                             f"not both")
        clusters = {**{n: vars(c) for n, c in hw.clusters().items()}, **((info.context or {}).get("clusters", {}))}
        found = clusters.get(data["cluster"])
        return {**data, **{k: found[k] for k in CLUSTER_KEYS if k in found}} if isinstance(found, dict) else data

    @model_validator(mode="after")
    def _one_memory_rule(self):
        if self.kv_cache_free_fraction and "gpu_memory_utilization" in self.model_fields_set:
            raise ValueError("set gpu_memory_utilization (vLLM's rule) or kv_cache_free_fraction (TensorRT-LLM's), "
                             "not both")
        return self

    @field_validator("cluster")
    @classmethod
    def _cluster(cls, v: str, info: ValidationInfo) -> str:
        if v:
            _one_of("cluster", v, [*hw.clusters(), *((info.context or {}).get("clusters", {}))])
        return v

    @field_validator("model")
    @classmethod
    def _model(cls, v: str, info: ValidationInfo) -> str:
        return _one_of("model", v, _models(info))

    @model_validator(mode="after")
    def _layout(self, info: ValidationInfo):
        self._architecture = _models(info)[self.model]
        moe = self.architecture.moe
        if (self.tp * self.dp) % self.ep:
            raise ValueError(f"ep {self.ep} does not divide the stage's tp x dp = {self.tp * self.dp} GPUs; valid: "
                             f"a divisor of {self.tp * self.dp}")
        if (self.ep > 1 or self.dp > 1 or self.redundant_experts) and not moe:
            raise ValueError(f"ep and dp share experts; {self.model} has none: valid: ep = 1, dp = 1 "
                             f"(use replicas for data parallelism)")
        if self.dp > 1 and self.ep == 1:
            raise ValueError(f"dp {self.dp} needs expert parallelism across the attention groups; valid: "
                             f"ep = tp x dp = {self.tp * self.dp}")
        if moe and (moe.n_experts + self.redundant_experts) % self.ep:
            raise ValueError(f"{moe.n_experts} experts of {self.model} + {self.redundant_experts} redundant do not "
                             f"split over ep {self.ep}; valid: redundant_experts that make the sum a multiple of "
                             f"{self.ep}")
        if self.cp > 1 and (self.dp > 1 or self.tp % self.ep):
            raise ValueError(f"cp {self.cp} copies the tp group, each copy holding the experts; valid with cp > 1: "
                             f"dp = 1 and an ep that divides tp {self.tp} (here dp {self.dp}, ep {self.ep})")
        if self.ep_dispatch != "normal" and (self.dp == 1 or self.ep != self.tp * self.dp):
            raise ValueError(f"ep_dispatch '{self.ep_dispatch}' sends tokens to whole experts across data-parallel "
                             f"attention groups (DeepEP's low-latency kernels need num_experts divisible by the "
                             f"ranks); valid: dp > 1 and ep = tp x dp (here tp {self.tp}, dp {self.dp}, ep {self.ep}), "
                             f"or ep_dispatch = 'normal'")
        if self.two_batch_overlap and self.dp == 1:
            raise ValueError("two_batch_overlap hides the expert all-to-alls of data-parallel attention; valid: "
                             "dp > 1 (with ep = tp x dp), or two_batch_overlap = false")
        if self.micro_batches > 1 and self.pp == 1:
            raise ValueError(f"micro_batches {self.micro_batches} keeps micro-batches in flight through pipeline "
                             f"stages, and pp is 1; valid: pp > 1, or micro_batches = 0 or 1")
        if self.dcp > 1:
            arch = self.architecture
            copies = self.tp if arch.mla else self.tp // arch.n_kv_heads if arch.n_kv_heads else 0
            if self.tp % self.dcp or self.dcp > copies:
                raise ValueError(f"dcp {self.dcp} must divide tp {self.tp} and stripe KV that tp copies: "
                                 f"{self.model} keeps {max(copies, 1)} cop{'y' if copies <= 1 else 'ies'} of each KV "
                                 f"head's cache in a tp group; valid: a divisor of tp up to {max(copies, 1)}")
        idle_w = hw.accelerators()[self.gpu].idle_w
        if self.power_cap_w and self.power_cap_w <= idle_w:
            raise ValueError(f"power_cap_w {self.power_cap_w:g} W is at or below {self.gpu}'s idle power "
                             f"({idle_w:g} W); valid: 0 (no cap) or a cap above it")
        return self

    @model_validator(mode="after")
    def _offload(self):
        if self.kv_offload == "none":
            if self.kv_load_layerwise:
                raise ValueError("kv_load_layerwise reads offloaded KV back, and kv_offload is 'none'; valid: "
                                 "kv_offload = 'dram' or 'dram_nvme', or kv_load_layerwise = false")
            return self
        if not self.prefix_caching:
            raise ValueError(f"kv_offload '{self.kv_offload}' moves cached prefixes, and prefix_caching is off; "
                             f"valid: prefix_caching = true, or kv_offload = 'none'")
        arch = self.architecture
        kinds = set(arch.kind_counts(range(arch.n_layers)))
        if kinds != {"attention"}:
            raise ValueError(f"kv_offload '{self.kv_offload}' moves prefixes block by block, and {self.model} keeps "
                             f"window or recurrent state ({', '.join(sorted(kinds - {'attention'}))}) only at a "
                             f"prefix's end; valid: kv_offload = 'none' for it")
        return self

    @model_validator(mode="after")
    def _prefill(self, info: ValidationInfo):
        """A prefill pool is the deployment with the pool's layout: checked by the same rules."""
        if self.prefill is None:
            return self
        if self.gpus:
            raise ValueError("gpus places the replicas one by one, and a prefill pool is placed on the cluster's "
                             "first GPUs; valid: no gpus list with a prefill table")
        if self.router == "prefix_aware" or self.queue_limit:
            raise ValueError("a prefill pool is routed to by session affinity, round robin or least outstanding "
                             "tokens, without a queue limit; valid: another router, queue_limit = 0")
        pool = {**self.model_dump(exclude={"cluster", "prefill", "background", "gpus"}),
                **self.prefill.model_dump(), "context": self.context}
        try:
            self._prefill_pool = DeploymentSpec.model_validate(pool, context=info.context)
        except ValidationError as e:
            raise ValueError(f"prefill: {pydantic_message(e.errors()[0])}") from None
        return self

    @property
    def prefill_pool(self) -> DeploymentSpec | None:
        """The prefill pool as a deployment of its own (its layout and replicas), or None."""
        return self._prefill_pool

    @model_validator(mode="after")
    def _mtp(self):
        if self.mtp_accept_length and not 1.0 <= self.mtp_accept_length <= self.mtp_draft_tokens + 1:
            raise ValueError(f"mtp_accept_length {self.mtp_accept_length:g} is outside 1 .. mtp_draft_tokens + 1 = "
                             f"{self.mtp_draft_tokens + 1}: a verify step emits its own token and at most every draft")
        return self

    @property
    def tokens_per_verify_step(self) -> float:
        """Mean tokens a decode step emits per sequence: 1 without MTP; mtp_accept_length, or the measured
        default for the draft count."""
        if not self.mtp_draft_tokens:
            return 1.0
        return self.mtp_accept_length or MTP_ACCEPT_LENGTH[min(self.mtp_draft_tokens, max(MTP_ACCEPT_LENGTH))]

    @property
    def architecture(self) -> Architecture:
        return self._architecture

    @property
    def max_context(self) -> int:
        return self.max_context_tokens or self.architecture.max_context


class CaseError(ValueError):
    """A validation case whose tables do not go together; names its table and key."""

    def __init__(self, table: str, key: str | None, message: str):
        self.table, self.key = table, key
        super().__init__(message)


class ModelTableError(ValueError):
    """A [models.NAME] table that does not build; names the table and key."""

    def __init__(self, name: str, key: str | None, message: str):
        self.name, self.key = name, key
        super().__init__(message)


def _models(info: ValidationInfo) -> dict[str, Architecture]:
    return {**model_catalog(), **((info.context or {}).get("models", {}))}


def build_models(tables) -> dict[str, Architecture]:
    """An experiment's own [models.NAME] tables: each a new architecture, or `base = NAME` and the sizes
    it changes (a scaled variant of a catalog model or of one defined before it)."""
    if not isinstance(tables, dict):
        raise ModelTableError("", None, "[models] must hold tables, one per model")
    built = dict(model_catalog())
    for name, entry in tables.items():
        if not isinstance(entry, dict):
            raise ModelTableError(name, None, "must be a table of model keys")
        try:
            built[name] = build_model(name, entry, built)
        except ModelKeyError as e:
            raise ModelTableError(name, e.key, str(e)) from None
    return {name: built[name] for name in tables}


class CaseSpec(_Strict):
    """[case]: the published row a validation case reproduces."""

    name: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1)
    trust: str = ""          # the source's trust tier (reference/published.md: T1 first-party ... T4)
    notes: str = ""          # the assumptions the case makes


# A measured figure whose prediction is further off than this (as a fraction) is flagged: the bound of
# the calibration issue, no case worse than 40%.
DEFAULT_TOLERANCE = 0.40


class Measurement(_Strict):
    """One [measured] key: a number, or { value = x, tolerance = 0.2 }."""

    value: float = Field(gt=0, le=1e15)
    tolerance: float = Field(DEFAULT_TOLERANCE, gt=0, le=100)

    @model_validator(mode="before")
    @classmethod
    def _number(cls, data):
        if isinstance(data, dict):
            return data
        if isinstance(data, (int, float)) and not isinstance(data, bool) and 0 < data <= 1e15:
            return {"value": data}
        raise ValueError(f"needs a positive number (at most 1e15) or {{ value = x, tolerance = 0.2 }} "
                         f"(got {data!r})")


# [measured]: every key optional, each a Measurement; at least one (checked in Experiment).
MeasuredSpec = create_model("MeasuredSpec", __base__=_Strict,
                            **{key: (Measurement | None, None) for key in MEASURED_KEYS})


# A sweep's parameter: its values, one per point it takes part in (any TOML value, a table included).
SweepValues = Annotated[list, Field(min_length=1, max_length=100_000)]
# Points one sweep may run: far beyond what a laptop or a small Ray cluster gets through in a day.
MAX_SWEEP_POINTS = 100_000


class RangeSpec(_Strict):
    """A random parameter's range: uniform over [min, max], integers when both bounds are, or log-uniform."""

    min: int | float
    max: int | float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self):
        if not self.min < self.max:
            raise ValueError(f"needs min < max (got {self.min} and {self.max})")
        if self.log and self.min <= 0:
            raise ValueError(f"a log range needs min > 0 (got {self.min})")
        return self


class RandomSpec(_Strict):
    """[sweep.random]: `samples` draws (seeded by `seed`) of every parameter in `params`, each a range or
    a list to pick from."""

    samples: int = Field(ge=1, le=MAX_SWEEP_POINTS)
    seed: int = Field(0, ge=0, lt=2**63)
    params: dict[str, RangeSpec | SweepValues]


class SweepSpec(_Strict):
    """[sweep]: parameters by dotted path into the experiment (`deployments.NAME.tp`, `workload.sessions`;
    `*` for every key of a table: `deployments.*.gpu`). The points are the product of the [sweep.grid]
    lists, the rows of the [sweep.zip] lists (taken together, all of one length) and the draws of
    [sweep.random] (sim.sweep.points)."""

    grid: dict[str, SweepValues] = {}
    zip: dict[str, SweepValues] = {}
    random: RandomSpec | None = None

    @model_validator(mode="after")
    def _points(self):
        paths = [*self.grid, *self.zip, *(self.random.params if self.random else ())]
        if not paths:
            raise ValueError("no parameters; valid: lists in [sweep.grid] or [sweep.zip], or [sweep.random] params")
        repeated = sorted({p for p in paths if paths.count(p) > 1})
        if repeated:
            raise ValueError(f"parameter '{repeated[0]}' appears in more than one of grid, zip and random")
        lengths = {len(v) for v in self.zip.values()}
        if len(lengths) > 1:
            raise ValueError(f"the [sweep.zip] lists have lengths {sorted(lengths)}; valid: lists of one length")
        if self.n_points > MAX_SWEEP_POINTS:
            raise ValueError(f"{self.n_points:,} points; valid: at most {MAX_SWEEP_POINTS:,}")
        return self

    @property
    def n_points(self) -> int:
        n = 1
        for values in self.grid.values():
            n *= len(values)
        return n * (len(next(iter(self.zip.values()))) if self.zip else 1) * (self.random.samples if self.random else 1)


class Experiment(_Strict):
    run: RunSpec = RunSpec()
    workload: WorkloadSpec = WorkloadSpec()
    report: ReportSpec = ReportSpec()
    energy: EnergySpec = EnergySpec()
    slo: SloSpec = SloSpec()
    clusters: dict[str, ClusterSpec] = {}
    models: dict[str, dict] = {}
    deployments: dict[str, DeploymentSpec]
    case: CaseSpec | None = None
    measured: MeasuredSpec | None = None
    sweep: SweepSpec | None = None
    faults: FaultSpec = FaultSpec()

    @field_validator("faults", mode="before")
    @classmethod
    def _faults_by_name(cls, v):
        """`faults = "llama3"` at the top level is short for [faults] rates = "llama3"."""
        return {"rates": v} if isinstance(v, str) else v

    @classmethod
    def from_dict(cls, data: dict) -> "Experiment":
        """Validate an experiment table; deployments may name the file's own [clusters.NAME] and
        [models.NAME]."""
        data = data if isinstance(data, dict) else {}
        clusters = data.get("clusters")
        return cls.model_validate(data, context={"clusters": clusters if isinstance(clusters, dict) else {},
                                                 "models": build_models(data.get("models", {}))})

    @field_validator("deployments")
    @classmethod
    def _some(cls, v):
        if not v:
            raise ValueError("at least one [deployments.NAME] table is needed")
        return v

    @model_validator(mode="after")
    def _a_whole_case(self):
        """A validation case has both tables, measured figures, one deployment and a benchmark workload."""
        if self.case is None and self.measured is None:
            return self
        if self.case is None:
            raise CaseError("case", None, "a case needs a [case] table with name and source beside [measured]")
        if not self.measured or not self.measured.model_fields_set:
            raise CaseError("measured", None, f"no measured keys; valid: {', '.join(MEASURED_KEYS)}")
        if self.workload.kind == "podcast":
            raise CaseError("workload", "kind", "a case has a benchmark workload; valid: offline, poisson, "
                            "concurrency")
        if len(self.deployments) != 1:
            raise CaseError("deployments", None, f"a case has one deployment (got {len(self.deployments)})")
        return self

    @model_validator(mode="after")
    def _one_run_a_point(self):
        """A sweep runs each point once: its replicates are a sweep over run.seed."""
        if self.sweep is not None and self.run.replicates > 1:
            raise CaseError("run", "replicates", "a sweep runs each point once; valid: replicates = 1, and "
                            "\"run.seed\" among the swept parameters for runs of other seeds")
        return self

    @model_validator(mode="after")
    def _chats_alone(self):
        """No podcast: the chats of every deployment's background are the whole load."""
        if self.workload.kind == "podcast" and self.workload.sessions == 0:
            for name, spec in self.deployments.items():
                if spec.background is None:
                    raise CaseError(f"deployments.{name}", "background", "workload sessions = 0 leaves the chats "
                                    "alone, and this deployment has none; valid: a background table (clients or "
                                    "rate_per_s), or sessions >= 1")
        return self

    @property
    def measurements(self) -> dict[str, tuple[float, float]]:
        """A case's measured figures: key -> (value, tolerance as a fraction)."""
        given = self.measured.model_fields_set if self.measured else set()
        measured = [(k, getattr(self.measured, k)) for k in MEASURED_KEYS if k in given]
        return {k: (m.value, m.tolerance) for k, m in measured}


def _where(loc: tuple, kind: str = "") -> tuple[str, str | None]:
    """pydantic's error location (and error type) -> (TOML table, key); a key inside an inline table is
    dotted (`ttft_p50_s.tolerance`), list positions are left out."""
    parts = [str(p) for p in loc if not isinstance(p, int)]
    if len(parts) == 1:
        # A rule over a whole [run] / [workload] / [report] table names the table; otherwise the key is
        # a top-level one (unknown, missing or of the wrong type).
        if parts[0] in ("run", "workload", "report", "energy", "slo", "sweep", "faults") and kind == "value_error":
            return parts[0], None
        return "top level", parts[0]
    depth = 2 if parts[0] in ("deployments", "clusters") or (parts[0] == "sweep" and len(parts) > 2) else 1
    if depth == 2 and len(parts) > 3 and parts[2] in ("context", "background", "prefill"):
        depth = 3
    return ".".join(parts[:depth]), ".".join(parts[depth:]) or None


def _valid_keys(table: str) -> str:
    model = {"run": RunSpec, "workload": WorkloadSpec, "report": ReportSpec, "clusters": ClusterSpec,
             "energy": EnergySpec, "slo": SloSpec, "case": CaseSpec, "measured": MeasuredSpec,
             "sweep": SweepSpec, "faults": FaultSpec}.get(table.split(".")[0], DeploymentSpec)
    if table == "sweep.random":
        model = RandomSpec
    if table.endswith(".background"):
        model = BackgroundSpec
    if table.endswith(".context"):
        model = ContextSpec
    if table.endswith(".prefill"):
        model = PrefillSpec
    if table == "top level":
        model = Experiment
    return ", ".join(model.model_fields)


# Tables whose keys name things the experiment defines: a path into them must name one that exists.
NAMED_TABLES = ("deployments", "clusters", "models")


def set_path(data: dict, path: str, value) -> None:
    """Set `value` at dotted `path` in `data` (tables made as needed, `*` every key of its table); a
    ValueError says why a path cannot be set."""
    parts = path.split(".")
    if not all(parts):
        raise ValueError("an empty part in the path; valid: names joined by dots, e.g. deployments.*.gpu")
    if parts[0] == "sweep":
        raise ValueError("a sweep cannot set its own [sweep] table")
    _set(data, parts, value, [])


def _set(table: dict, parts: list[str], value, done: list[str]) -> None:
    head, rest = parts[0], parts[1:]
    where = ".".join(done) or "the top level"
    if head == "*":
        if not table:
            raise ValueError(f"'*' matches nothing: [{where}] has no keys")
        names = list(table)
    elif done and done[-1] in NAMED_TABLES and len(done) == 1 and head not in table:
        raise ValueError(f"no [{done[0]}.{head}] in the experiment; valid: {', '.join(table) or 'none defined'}")
    else:
        names = [head]
    for name in names:
        if not rest:
            table[name] = copy.deepcopy(value)
            continue
        inner = table.setdefault(name, {})
        if not isinstance(inner, dict):
            raise ValueError(f"[{'.'.join([*done, name])}] is a value, not a table of keys")
        _set(inner, rest, value, [*done, name])


def read_toml(path: str | Path) -> dict:
    path = str(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(path, "top level", None, "no such file") from None
    except OSError as e:
        raise ConfigError(path, "top level", None, f"cannot read: {e.strerror or e}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(path, "top level", None, f"invalid TOML: {e}") from None


def load(path: str | Path, sets: tuple[str, ...] = ()) -> Experiment:
    """Any experiment file, a validation case included, validated whole; `sets` are `PATH=VALUE` changes made
    first (the command line's --set), each VALUE a TOML value (a bare word is a string)."""
    data = resolve_paths(path, read_toml(path))
    for change in sets:
        key, _, text = change.partition("=")
        try:
            set_path(data, key.strip(), _toml_value(text.strip()))
        except ValueError as e:
            hint = "" if "valid:" in str(e) else "; valid: PATH=VALUE, e.g. workload.sessions=100"
            raise ConfigError(str(path), "--set", change, f"{e}{hint}") from None
    return parse(str(path), data)


def _toml_value(text: str):
    """A command line's value as TOML reads it (100, 0.5, true, [1, 2], "x"), a bare word as a string."""
    if not text:
        raise ValueError("no value after '='")
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def resolve_paths(path: str | Path, data: dict) -> dict:
    """`data` with the files it names relative to the experiment file's folder (workload.trace_file) made
    absolute, so that the experiment means the same from any working folder."""
    workload = data.get("workload") if isinstance(data, dict) else None
    trace = workload.get("trace_file") if isinstance(workload, dict) else None
    if not isinstance(trace, str) or not trace or Path(trace).is_absolute():
        return data
    return {**data, "workload": {**workload, "trace_file": str((Path(path).parent / trace).resolve())}}


def parse(path: str, data: dict) -> Experiment:
    """An experiment from its TOML tables; every problem one ConfigError naming `path`, table and key."""
    try:
        return Experiment.from_dict(data)
    except ModelTableError as e:
        raise ConfigError(path, f"models.{e.name}" if e.name else "models", e.key, str(e)) from None
    except ValidationError as e:
        cause = e.errors()[0].get("ctx", {}).get("error")
        if isinstance(cause, CaseError):
            raise ConfigError(path, cause.table, cause.key, str(cause)) from None
        # A wrong value is reported before a missing key: a missing key often follows from it (an
        # unknown cluster name leaves its gpu and nodes unfilled).
        err = next((x for x in e.errors() if x["type"] != "missing"), e.errors()[0])
        table, key = _where(err["loc"], err["type"])
        msg = pydantic_message(err)
        if err["type"] == "extra_forbidden":
            msg += f"; valid keys: {_valid_keys(table)}"
        raise ConfigError(path, table, key, msg) from None
