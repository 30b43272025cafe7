"""The output contract: every column of every table a run writes, its Arrow type and what it holds.

One list per table; sim.output builds each Parquet schema from it (the meaning goes into the field's
metadata under `description`), and docs/outputs.md shows it (`python -m sim.contract` prints the
tables there; a test keeps the two the same). Rules every column follows:
- units in the name: `_s` seconds of simulated time, `_j` joules, `_w` watts, `_bytes`, `_tokens`;
- null where what the column measures did not happen (no first token: `first_token_s` and `ttft_s`
  null); a count or an energy is never null, 0 where nothing was counted;
- what the GPUs did is named for whose it is: a step's FLOPs, bytes, power and energy summed over the
  replica's GPUs are `replica_...`, the mean GPU's `mean_gpu_...`; the gpus table has one row per GPU.
  A step's token and sequence counts are the replica's batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    meaning: str


I64, F64, STR = pa.int64(), pa.float64(), pa.string()

REPLICATE = Column("replicate", I64, "which run of the experiment ([run] replicates), from 0; replicate 0 has the "
                   "experiment's seed")

TURNS = (
    Column("run", STR, "the experiment's [run] name"),
    REPLICATE,
    Column("deployment", STR, "the [deployments.NAME] that served the request"),
    Column("session", I64, "conversation index from 0 (a benchmark request: its index in sending order)"),
    Column("turn", I64, "the phrase's index in its conversation, from 0 (a summary: the turn it follows)"),
    Column("kind", STR, "`reply` answers a phrase; `summary` compacts the history (context policy summarize); "
           "`chat` is a background request sharing the deployment (deployments.NAME.background)"),
    Column("conversation_s", F64, "the conversation's clock when the request arrived: seconds since its "
           "session started (a benchmark request: since the run started)"),
    Column("conversation_tokens", I64, "tokens said in the conversation before this phrase"),
    Column("context_tokens", I64, "history tokens in the prompt (what the context policy keeps; a trace's "
           "request: the prompt it shares with the earlier one it continues)"),
    Column("retrieved_tokens", I64, "retrieved chunks' tokens in the prompt (context policy retrieve)"),
    Column("new_tokens", I64, "the phrase's own tokens (a benchmark request: its input)"),
    Column("output_tokens", I64, "reply tokens delivered; 0 unless the turn is ok"),
    Column("cached_tokens", I64, "prompt tokens found in the prefix cache when admitted; 0 if never admitted"),
    Column("recomputed_tokens", I64, "prompt tokens computed before for this conversation and prefilled again "
           "(history evicted, no prefix caching, or a preemption)"),
    Column("reloaded_tokens", I64, "history tokens read back from the KV tiers below HBM (deployments.NAME."
           "kv_offload); context_tokens = cached + reloaded + recomputed"),
    Column("reload_s", F64, "seconds the turn waited for that read before it could prefill: the whole read, or "
           "with kv_load_layerwise what its first chunk did not hide (0 with nothing read)"),
    Column("history_tier", STR, "where its reused history came from: `hbm`, or the slowest tier read (`dram`, "
           "`nvme`); null if none was reused"),
    Column("transferred_tokens", I64, "prompt tokens whose KV its prefill replica sent its decode replica "
           "(deployments.NAME.prefill; the rest the decode replica held from the session's last turn); 0 when "
           "not disaggregated"),
    Column("transfer_s", F64, "seconds the turn waited for that KV once its decode replica admitted it (what the "
           "prefill and any wait for admission did not hide, sim.serving.disaggregation); 0 when none was left"),
    Column("arrival_s", F64, "when the request reached the deployment"),
    Column("first_token_s", F64, "when its first token was sampled; null if none was"),
    Column("finish_s", F64, "when its last token was sampled; null unless ok"),
    Column("end_s", F64, "when the turn ended, whatever its status; never null"),
    Column("ttft_s", F64, "time to first token, first_token_s - arrival_s; null if no token was sampled"),
    Column("tpot_s", F64, "time per output token after the first, (finish_s - first_token_s) / (output_tokens "
           "- 1); null unless ok with 2 tokens or more"),
    Column("e2e_s", F64, "reply latency, finish_s - arrival_s; null unless ok"),
    Column("reply_speech_s", F64, "seconds the reply takes to speak at the workload's speech rate (0: a summary "
           "or a benchmark request)"),
    Column("time_to_speech_s", F64, "from arrival to the model's first word: ttft_s when speech streams, e2e_s "
           "when it waits for the whole reply (workload speech); null unless an ok podcast reply"),
    Column("stall_s", F64, "seconds the model's voice waited for tokens decoded slower than it speaks (0 when "
           "speech waits for the whole reply); null unless an ok podcast reply"),
    Column("energy_j", F64, "its attributed energy at the facility boundary, gpu_j + node_j + facility_j = "
           "energy_prefill_j + energy_decode_j + energy_baseline_j: what its own FLOPs and bytes added and its share "
           "of the baseline; over all turns (with run.json's unallocated_j), the deployment's energy. A failed "
           "turn's is the cost of the failure"),
    Column("gpu_j", F64, "the GPU-board layer of energy_j: its dynamic GPU energy + its share of the idle GPUs"),
    Column("node_j", F64, "the node layer of energy_j: host (CPUs, DRAM, NICs, fans, NVSwitch trays, power-supply "
           "losses) and network switch ports"),
    Column("facility_j", F64, "the facility layer of energy_j: (PUE - 1) x (gpu_j + node_j)"),
    Column("co2e_g", F64, "grams of CO2e of energy_j at the experiment's grid intensity"),
    Column("marginal_j", F64, "the marginal view: what its own FLOPs and bytes added above the idle floor, at the "
           "facility boundary (energy_prefill_j + energy_decode_j); what one more phrase costs a busy server"),
    Column("dedicated_j", F64, "the dedicated view: the whole deployment's energy at the facility boundary over "
           "its interval, from its arrival to its session's next phrase (the last: to the session's end; a "
           "summary: its own span); what it costs when the deployment serves nothing else"),
    Column("energy_prefill_j", F64, "the marginal energy of the steps that prefilled its prompt (its share)"),
    Column("energy_decode_j", F64, "the marginal energy of the steps that decoded its reply (its share)"),
    Column("energy_kv_j", F64, "of energy_prefill_j + energy_decode_j, reading and writing its KV cache"),
    Column("energy_baseline_j", F64, "its share of the baseline (idle GPUs, host idle, switch ports, facility) "
           "over its interval: by the KV bytes its session held x seconds, and equally over the sessions held"),
    Column("kv_read_s", F64, "its share of its steps' KV time (the KV bytes it read and wrote at HBM bandwidth)"),
    Column("energy_retrieval_j", F64, "the retrieval's own energy, outside the GPU cluster (context policy "
           "retrieve); not in energy_j"),
    Column("replica", I64, "the replica it was sent to (steps.replica), its decode replica when disaggregated (a "
           "one-token reply ends on its prefill replica); null if it was rejected"),
    Column("prefill_replica", I64, "the replica of the prefill pool that prefilled it (steps.replica); null when "
           "not disaggregated or rejected"),
    Column("first_step", I64, "the first step of its replica it took part in (steps.step); null if none"),
    Column("last_step", I64, "the last step of its replica it took part in; null if none. Of the steps "
           "between, it sat out those where its prompt waited for the step's token budget or it was preempted"),
    Column("retries", I64, "times it was sent again after its replica died under it ([faults] retries)"),
    Column("fault", I64, "the faults table's `fault` that hit it: its replica died under it, a fault took its "
           "session's KV (the turn prefilled it again), or every replica was down; null if none"),
    Column("lost_tokens", I64, "KV tokens it held on replicas that died under it: work lost, done again"),
    Column("fault_lost_s", F64, "seconds of conversation faults cost it: the time its failed attempts took, and if "
           "it failed for good (status `hardware`) the rest of its wait and the reply never spoken"),
    Column("status", STR, "`ok`, `context_overflow`, `kv_oom`, `timeout`, `rejected` (every replica's queue "
           "full: deployments.NAME.queue_limit) or `hardware` (its replica died and its retries ran out, or every "
           "replica was down)"),
    Column("reason", STR, "what went wrong, in words; null when ok"),
)

STEPS = (
    REPLICATE,
    Column("deployment", STR, "the deployment whose replica ran the step"),
    Column("replica", I64, "the replica that ran it"),
    Column("step", I64, "its index in the replica's steps, from 0: (deployment, replica, step) is the key"),
    Column("start_s", F64, "when the step started"),
    Column("duration_s", F64, "how long it ran (with multi-token prediction: a verify step and its drafts over "
                              "the mean tokens it emits, one row per emitted token)"),
    Column("prefill_tokens", I64, "prompt tokens it prefilled, over the replica"),
    Column("decode_seqs", I64, "sequences it decoded a token for, over the replica"),
    Column("kv_tokens", I64, "KV tokens held in the replica's pools once it ran"),
    Column("replica_flops", F64, "floating-point operations of every GPU of the replica"),
    Column("replica_hbm_bytes", F64, "bytes every GPU of the replica moved to and from HBM"),
    Column("replica_comm_bytes", F64, "bytes the replica's collectives and sends moved"),
    Column("bound", STR, "what bounds it: `compute`, `memory` or `network`"),
    Column("replica_power_w", F64, "mean power of all the replica's GPUs together over the step"),
    Column("mean_gpu_power_w", F64, "replica_power_w over the replica's GPU count"),
    Column("replica_energy_j", F64, "energy of all the replica's GPUs over the step, replica_power_w x duration_s"),
    Column("replica_dynamic_j", F64, "of replica_energy_j, what the GPUs drew above idle (sim.cost.power)"),
    Column("bubble_s", F64, "of duration_s, the seconds the mean pipeline stage waited on the others: 0 with one "
                            "stage, (pp - 1) / pp of the stages' work for one batch crossing them in turn, less "
                            "with micro-batches in flight (sim.cost.step.pipeline_bubble_s)"),
)

GPUS = (
    REPLICATE,
    Column("deployment", STR, "the deployment the GPU serves"),
    Column("gpu", STR, "its name on the cluster graph, node/gpu (e.g. n1/gpu3)"),
    Column("replica", I64, "the replica it belongs to"),
    Column("pool", STR, "what its replica serves: `both` prefill and decode, or with a prefill pool "
           "(disaggregated serving) `prefill` or `decode`; `spare` for a hot spare standing by ([faults] hot_spares)"),
    Column("stage", I64, "its pipeline stage, from 0"),
    Column("accelerator", STR, "its type (hardware/data/accelerators.toml)"),
    Column("energy_j", F64, "its energy over the run: its share of every step and its idle power in between"),
    Column("busy_s", F64, "seconds it computed or communicated"),
    Column("peak_hbm_bytes", F64, "the most HBM it held: weights, activations and the peak KV in its pool"),
    Column("kv_pool_bytes", F64, "the KV pool its memory plan set aside"),
)

FAULTS = (
    REPLICATE,
    Column("deployment", STR, "the deployment it hit"),
    Column("fault", I64, "its index in the deployment's faults, from 0: a fault of a host's scope hits every "
           "replica on the host, a row each"),
    Column("time_s", F64, "when it arrived"),
    Column("cause", STR, "its root cause (hardware/data/faults.toml causes: Llama 3's Table 5 rows), or the "
           "component with a custom rate"),
    Column("component", STR, "what failed: gpu, hbm, nvlink, nic, software, host or network"),
    Column("scope", STR, "what it takes down: `gpu`, the replica holding the GPU; `host`, every replica on its host "
           "(a server, or a GB200 NVL72 compute tray)"),
    Column("gpu", STR, "the GPU it arrived on (node/gpu)"),
    Column("replica", I64, "the replica it took down (steps.replica)"),
    Column("pool", STR, "what that replica serves, as gpus.pool"),
    Column("down_s", F64, "seconds until the replica serves again: detect + restart + weight reload + warm-up "
           "(sim.faults.recovery), detect alone when a hot spare takes its place; for a replica already down, what "
           "the fault adds"),
    Column("spare", pa.bool_(), "a hot spare took the replica's place"),
    Column("turns_affected", I64, "turns in flight or queued on the replica when it died"),
    Column("kv_lost_tokens", I64, "KV tokens of live sessions it lost: HBM, DRAM offload, and NVMe when its host "
           "went down"),
    Column("tokens_recomputed", I64, "of those, what the sessions' next turns prefilled again"),
    Column("recovery_j", F64, "the replica's baseline energy (idle GPUs, host, switch ports, facility) over down_s; "
           "what of it falls within the run is in the deployment's energy"),
)

TABLES = {"turns": TURNS, "steps": STEPS, "gpus": GPUS, "faults": FAULTS}


def schema(columns: tuple[Column, ...]) -> pa.Schema:
    """The Arrow schema of a table, each field's meaning in its metadata."""
    return pa.schema([pa.field(c.name, c.type, metadata={"description": c.meaning}) for c in columns])


def markdown() -> str:
    """The tables of docs/outputs.md."""
    parts = []
    for name, columns in TABLES.items():
        rows = [f"| `{c.name}` | {c.type} | {c.meaning} |" for c in columns]
        parts.append("\n".join([f"### `{name}.parquet`", "", "| column | type | meaning |", "|---|---|---|", *rows]))
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
