"""Serving engine profiles (sim/data/engines.toml): the host work around a step and the implementation choices
that change its kernels. A deployment names one with `engine`."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources

import numpy as np


@dataclass(frozen=True)
class EngineProfile:
    name: str
    display_name: str
    host_seq_s: float                      # CPU time per running sequence per step
    overlap: bool                          # CPU work of the next step runs under this step's kernels
    cuda_graphs: bool                      # decode steps replay CUDA graphs by default
    graph_max_batch: int                   # decode-only batches up to this size replay a CUDA graph
    allreduce_floor_s: dict[int, float]    # custom NVLink all-reduce latency on a tiny message, by group size
    fp8_attention: bool                    # FP8 KV is attended with FP8 math
    moe_kernels_visit_experts: bool        # MoE kernels cost a little per local expert (calibration)
    fp8_block_gemm_share: float            # block-scaled FP8 GEMMs' rate over per-tensor FP8's
    stream_on_step: bool                   # each streamed token costs the step's host thread (STREAM_TOKEN_HOST_S)
    request_host_s: float                  # API server time per request before its first token reaches the client
    nvls_all_reduce: bool                  # an NVLS (multimem) all-reduce kernel where the NVSwitch reduces
    source: str

    def with_overrides(self, **overrides) -> EngineProfile:
        """This profile with a deployment's overrides (overlap, cuda_graphs, moe_kernels_visit_experts);
        None keeps the engine's default."""
        return replace(self, **{key: value for key, value in overrides.items() if value is not None})

    @property
    def decode_graph_max_batch(self) -> int:
        """The largest decode-only batch that replays a CUDA graph; 0 when the engine runs without them."""
        return self.graph_max_batch if self.cuda_graphs else 0

    def allreduce_floor(self, ranks: int) -> float:
        """The floor at `ranks`, interpolated in log2(ranks) between the measured group sizes (held flat
        beyond them): the one-shot kernel's synchronisation grows with the steps of a barrier tree."""
        sizes = sorted(self.allreduce_floor_s)
        return float(np.interp(np.log2(ranks), np.log2(sizes), [self.allreduce_floor_s[s] for s in sizes]))


@cache
def engines() -> dict[str, EngineProfile]:
    with resources.files("sim").joinpath("data/engines.toml").open("rb") as f:
        table = tomllib.load(f)["engines"]
    return {name: EngineProfile(name, e["display_name"], e["host_seq_us"] * 1e-6, e["overlap"], e["cuda_graphs"],
                                e["graph_max_batch"],
                                {int(k): v * 1e-6 for k, v in e["allreduce_floor_us"].items()}, e["fp8_attention"],
                                e["moe_kernels_visit_experts"], e["fp8_block_gemm_share"], e["stream_on_step"],
                                e["request_host_us"] * 1e-6,
                                e["nvls_all_reduce"], e["source"])
            for name, e in table.items()}
