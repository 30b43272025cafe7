"""The default report: per deployment, the phrase at each minute mark (latency, speech, its energy in three views)
beside a human brain, and how each component of a phrase's cost grows with its context (affine fits)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sim.metrics import KEYS, table_metrics

J_PER_WH = 3600.0


def minute_of(row: dict) -> float:
    """The conversation minute of a turns row (the table keeps seconds)."""
    return row["conversation_s"] / 60.0


def replies(rows: list[dict], deployment: str) -> list[dict]:
    """The first conversation's replies on a deployment, in order (of the first replicate)."""
    return [r for r in rows if r["deployment"] == deployment and r["session"] == 0 and r["kind"] == "reply"
            and r["replicate"] == 0]


def minute_marks(rows: list[dict], deployment: str, minutes: list[float]) -> list[tuple[float, dict | None]]:
    """For each mark, the first reply of session 0 whose phrase arrives at or after it (None: the
    conversation ended before the mark)."""
    mine = replies(rows, deployment)
    return [(mark, next((r for r in mine if minute_of(r) >= mark), None)) for mark in minutes]


def _found(marks: list[tuple[float, dict | None]]) -> list[dict]:
    return [r for _, r in marks if r is not None]


# The components of a phrase's cost that growth is fitted for: (label, column, unit). Seconds: its prefill
# (time to first token), its decode (first token to last) and its share of the KV reading; joules: its
# marginal prefill and decode energy, the KV part of them, and its share of the baseline.
COMPONENTS = (("prefill", "ttft_s", "s"), ("decode", "decode_s", "s"), ("KV read", "kv_read_s", "s"),
              ("prefill", "energy_prefill_j", "J"), ("decode", "energy_decode_j", "J"),
              ("KV read", "energy_kv_j", "J"), ("baseline", "energy_baseline_j", "J"))


@dataclass(frozen=True)
class Affine:
    """y = a + b x context tokens, least squares over a deployment's phrases."""

    a: float
    b: float                     # per token of context
    phrases: int

    @property
    def crossover_tokens(self) -> float | None:
        """The context at which the context-dependent part b x equals the fixed part a (None unless both
        are positive)."""
        return self.a / self.b if self.a > 0 and self.b > 0 else None


def phrases(rows: list[dict], deployment: str) -> list[dict]:
    """Every ok reply of a deployment's podcast conversations, each with the summary requests that
    compacted the history it followed folded in (their energy and time are the phrase's cost too), and
    its decode seconds (e2e - ttft)."""
    mine = [r for r in rows if r["deployment"] == deployment]
    summaries = {}
    for r in mine:
        if r["kind"] == "summary":
            summaries.setdefault((r["session"], r["turn"]), []).append(r)
    out = []
    for r in mine:
        if r["kind"] != "reply" or r["status"] != "ok":
            continue
        phrase = {**r, "decode_s": r["e2e_s"] - r["ttft_s"]}
        for extra in summaries.get((r["session"], r["turn"]), []):
            for column in ("energy_prefill_j", "energy_decode_j", "energy_kv_j", "energy_baseline_j", "kv_read_s"):
                phrase[column] += extra[column]
        out.append(phrase)
    return out


def affine(rows: list[dict], deployment: str, column: str) -> Affine | None:
    """The affine fit of `column` against context tokens over the deployment's phrases (None: fewer than
    three, or one context for all)."""
    found = phrases(rows, deployment)
    x = np.array([r["context_tokens"] for r in found], dtype=float)
    if len(found) < 3 or np.ptp(x) == 0:
        return None
    b, a = np.polyfit(x, np.array([r[column] for r in found], dtype=float), 1)
    return Affine(float(a), float(b), len(found))


def _amount(value: float, unit: str) -> str:
    if unit == "J":
        return f"{value / J_PER_WH:.3g} Wh"
    return f"{value * 1e3:.3g} ms" if abs(value) < 1 else f"{value:.3g} s"


def _growth_lines(rows, name) -> list[str]:
    """Per component: b per 1,000 tokens of context, the fixed part a, and where b x overtakes a."""
    parts = {"s": [], "J": []}
    for label, column, unit in COMPONENTS:
        fit = affine(rows, name, column)
        if fit is None:
            continue
        cross = fit.crossover_tokens
        where = f", passes it at {cross:,.0f} tokens" if cross else ""
        parts[unit].append(f"{label} {'+' if fit.b >= 0 else '-'}{_amount(abs(fit.b) * 1000, unit)} "
                           f"(fixed {_amount(fit.a, unit)}{where})")
    if not parts["s"]:
        return []
    n = affine(rows, name, "ttft_s").phrases
    return [f"growth per 1,000 tokens of context, a + b x context over {n} phrases:",
            "  time:   " + "; ".join(parts["s"]), "  energy: " + "; ".join(parts["J"])]


def _history_lines(rows: list[dict], name: str) -> list[str]:
    """Where the deployment's turns found the history in their prompts: in HBM's prefix cache, read back from the
    tiers below (kv_offload), or prefilled again (context_tokens = cached + reloaded + recomputed)."""
    mine = [r for r in rows if r["deployment"] == name and r["status"] == "ok"]
    context = sum(r["context_tokens"] for r in mine)
    if not context:
        return []
    shares = [sum(r[c] for r in mine) / context for c in ("cached_tokens", "reloaded_tokens", "recomputed_tokens")]
    return [f"history in the prompts of the {len(mine):,} turns served ({context:,} tokens): {shares[0]:.1%} found in HBM, "
            f"{shares[1]:.1%} read back from below, {shares[2]:.1%} prefilled again"]


def _fmt_s(value) -> str:
    return "-" if value is None else (f"{value * 1e3:.0f} ms" if value < 1 else f"{value:.2f} s")


def render(turns: pa.Table, deployments: dict[str, str], minutes: list[float], brain_w: float) -> str:
    """Text table; `deployments` maps name -> one-line description, in the experiment's order."""
    lines, rows = [], turns.to_pylist()
    header = (f"{'minute':>6} {'context':>8} {'to speech':>9} {'stall':>8} {'reply':>9} {'marginal':>9} "
              f"{'attributed':>10} {'dedicated':>10} {'brain':>8}  status")
    failed_any = False
    for name, description in deployments.items():
        lines += ["", f"{name}: {description}", header]
        marks = minute_marks(rows, name, minutes)
        for r in _found(marks):
            failed = r["status"] != "ok"
            failed_any |= failed
            status = f"{r['status']}: {r['reason']}" if failed else r["status"]
            if r["fault"] is not None:   # hit by a fault (sim.faults): retried, or its history prefilled again
                retried = f", sent {r['retries'] + 1} times" if r["retries"] else ""
                status += f" [fault {r['fault']}{retried}]"
            wh = [f"{r[c] / J_PER_WH:.3f}" + ("*" if failed else " ") for c in ("marginal_j", "energy_j", "dedicated_j")]
            lines.append(f"{minute_of(r):>6.1f} {r['context_tokens']:>8d} {_fmt_s(r.get('time_to_speech_s')):>9} "
                         f"{_fmt_s(r.get('stall_s')):>8} {_fmt_s(r['e2e_s']):>9} {wh[0]:>9} {wh[1]:>10} {wh[2]:>10} "
                         f"{brain_w * r['reply_speech_s'] / J_PER_WH:>8.4f}  {status}")
        missed = [mark for mark, r in marks if r is None]
        if missed:
            mine = replies(rows, name)
            last = f"its last phrase came at minute {minute_of(mine[-1]):.1f}" if mine else "it had no phrase"
            lines.append(f"minute {', '.join(f'{m:g}' for m in missed)}: past the end of the conversation ({last})")
        lines += _growth_lines(rows, name) + _history_lines(rows, name)
    lines.append("")
    lines.append("to speech: from the end of the human's phrase to the model's first word (its first token when "
                 "speech streams); stall: how long the voice waited for tokens; reply: to the last token.")
    lines.append("Wh of the phrase at the facility boundary (GPUs, hosts, switches, PUE), from its arrival to the "
                 "next: marginal, what its own FLOPs and bytes added; attributed, that plus its share of the "
                 "baseline (by KV held x seconds, and per session served); dedicated, the whole deployment over "
                 f"its interval. brain: {brain_w:g} W x the reply's speaking time.")
    if failed_any:
        lines.append("*: the phrase failed; its energy (the GPUs held for it, and any work done) is the cost of "
                     "the failure, not of a reply.")
    return "\n".join(lines)


def render_benchmark(turns: pa.Table, deployments: dict[str, str], warmup_requests: int,
                     cooldown_requests: int) -> str:
    """A benchmark workload's report: per deployment, every key of sim.metrics.KEYS over the requests
    measured, in the vocabulary of a validation case's [measured] table."""
    lines = []
    for name, description in deployments.items():
        lines += ["", f"{name}: {description}"]
        metrics = table_metrics(turns, name, warmup_requests, cooldown_requests)
        lines += ([f"  {key:<26} {metrics[key]:>12.4g}" if key in metrics else f"  {key:<26} {'-':>12}"
                   for key in KEYS] if metrics
                  else ["  no measured request succeeded"])
        statuses = Counter(pc.filter(turns["status"], pc.equal(turns["deployment"], name)).to_pylist())
        if set(statuses) - {"ok"}:   # every request, warm-up and cool-down included
            lines.append("  requests by status: " + ", ".join(f"{n:,} {s}" for s, n in sorted(statuses.items())))
    lines += ["", f"benchmark metrics over the requests measured (the first {warmup_requests} and the last "
                  f"{cooldown_requests} sent left out); seconds, tokens, joules (sim/metrics.py)."]
    return "\n".join(lines)
