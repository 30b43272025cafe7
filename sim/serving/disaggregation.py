"""Prefill/decode disaggregation (DESIGN.md, 'Serving behaviour to model': disaggregated prefill/decode pools
with KV transfer).

A deployment with a [deployments.NAME.prefill] table runs two pools: prefill replicas (their own layout and
count) prefill each turn's prompt and sample its first token; the deployment's own replicas (the decode pool)
then decode the reply (DistServe, arXiv 2401.09670; Mooncake, arXiv 2407.00079; SGLang's and vLLM's
disaggregated modes). A turn is routed to one replica of each pool when it arrives, as SGLang's router picks a
prefill and a decode server together. The decode replica holds the session's history from its last turn (prefix
cache, then its tiers below HBM); the KV of the rest of the prompt is sent from the prefill replica, each GPU's
shard over its own path on the cluster graph (NVLink inside a scale-up domain, the NICs and switches between
nodes):

  sent_s = (tokens x KV bytes per token + window KV and recurrent state) / path bytes_per_s + latency_s,

the bytes those of the fuller GPU's shard, on a prefill GPU or on a decode GPU (window KV and state are sent
whole each turn).

Layer by layer, as the prefill computes each layer's KV it is sent while the next layers compute (Mooncake's
layer-wise transfer, DistServe s4.3): the decode pool reserved the blocks when the prefill began, so only what
the prefill's own time did not hide shows, and at least the last layer's share:

  transfer_s = max(sent_s / layers, sent_s - prefill_s)

counted from the prefill's end; a turn the decode replica admits later (its batch was full) has had its KV
sent meanwhile and waits for what is left of that, if anything (`transfer_s` is that wait). What the decode
replica's own tiers below HBM held of the session is dropped: the prefill replica sends what its HBM lacks.
Its first token (sampled by the prefill) reaches the client with its KV, so its time to first token counts the
prefill, the transfer and any wait for a decode slot. The prefill replica keeps the prompt it
computed as cached prefix; the reply tokens it never saw are prefilled again at the session's next turn
(recomputed_tokens), as the decode replica does not send KV back.
"""
from __future__ import annotations

from dataclasses import dataclass

from hardware.cluster import Cluster
from hardware.collectives import point_to_point


@dataclass(frozen=True)
class KVTransfer:
    """The KV of a prompt from one prefill replica to one decode replica."""

    seconds_per_byte: float     # on the path between a prefill GPU and a decode GPU
    latency_s: float
    bytes_per_token: float      # the larger shard of one token: on a prefill GPU or on a decode GPU
    fixed_bytes: float          # ... of a sequence's window KV and recurrent state
    layers: int

    @classmethod
    def between(cls, cluster: Cluster, prefill, decode, layers: int) -> KVTransfer:
        """Priced on the graph between the first GPUs of two built replicas (a packed replica's GPUs each have a
        like path to their peer)."""
        (algorithm,) = point_to_point(cluster, prefill.placement.gpus[0], decode.placement.gpus[0]).algorithms
        sides = (prefill.footprint, decode.footprint)
        return cls(algorithm.seconds_per_byte, algorithm.latency_s, max(f.kv_bytes_per_token for f in sides),
                   max(f.fixed_cap_bytes for f in sides), layers)

    def sent_s(self, tokens: int) -> float:
        """Seconds for every GPU to send its shard of `tokens` tokens and of the sequence's window KV and state
        (0 for no tokens)."""
        if not tokens:
            return 0.0
        return (tokens * self.bytes_per_token + self.fixed_bytes) * self.seconds_per_byte + self.latency_s

    def exposed_s(self, tokens: int, prefill_s: float) -> float:
        """What the turn waits for the KV once its prefill is done, the send overlapped with `prefill_s` of it."""
        sent = self.sent_s(tokens)
        return max(sent / self.layers, sent - prefill_s)
