"""The default report: per deployment, the phrase at each minute mark, beside a human brain."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from sim.metrics import KEYS, table_metrics

J_PER_WH = 3600.0


def minute_of(row: dict) -> float:
    """The conversation minute of a turns row (the table keeps seconds)."""
    return row["conversation_s"] / 60.0


def replies(rows: list[dict], deployment: str) -> list[dict]:
    """The first conversation's replies on a deployment, in order."""
    return [r for r in rows if r["deployment"] == deployment and r["session"] == 0 and r["kind"] == "reply"]


def minute_marks(rows: list[dict], deployment: str, minutes: list[float]) -> list[tuple[float, dict | None]]:
    """For each mark, the first reply of session 0 whose phrase arrives at or after it (None: the
    conversation ended before the mark)."""
    mine = replies(rows, deployment)
    return [(mark, next((r for r in mine if minute_of(r) >= mark), None)) for mark in minutes]


def _found(marks: list[tuple[float, dict | None]]) -> list[dict]:
    return [r for _, r in marks if r is not None]


@dataclass(frozen=True)
class Growth:
    """How a per-phrase figure grows with the conversation: y ~ tokens^exponent, least squares in log-log
    over the session-0 replies that succeeded, x = tokens said before the phrase + the phrase. `ratio`
    is the fit's growth between the first and last minute marks, (x_last / x_first)^exponent: single
    phrases swing with their reply's length, the fit does not."""

    exponent: float
    ratio: float | None
    replies: int
    span_minutes: tuple[float, float] | None = None   # the first and last minute marks the ratio spans


def growth(rows: list[dict], deployment: str, minutes: list[float], column: str) -> Growth | None:
    ok = [r for r in replies(rows, deployment) if r["status"] == "ok" and r[column]]
    if len(ok) < 3:
        return None
    x = np.log([r["conversation_tokens"] + r["new_tokens"] for r in ok])
    exponent = float(np.polyfit(x, np.log([r[column] for r in ok]), 1)[0])
    marks = _found(minute_marks(rows, deployment, minutes))
    tokens = [r["conversation_tokens"] + r["new_tokens"] for r in marks]
    if len(marks) < 2:
        return Growth(exponent, None, len(ok))
    return Growth(exponent, (tokens[-1] / tokens[0]) ** exponent, len(ok), (minute_of(marks[0]), minute_of(marks[-1])))


def _growth_line(rows, name, minutes) -> str:
    parts = []
    for label, column in (("energy per phrase", "energy_j"), ("reply latency", "e2e_s")):
        g = growth(rows, name, minutes, column)
        if g:
            ratio = (f" (x{g.ratio:.2f} from minute {g.span_minutes[0]:.0f} to {g.span_minutes[1]:.0f})"
                     if g.ratio else "")
            parts.append(f"{label} ~ tokens^{g.exponent:.2f}{ratio}")
    return "growth with the conversation: " + "; ".join(parts) if parts else ""


def _fmt_s(value) -> str:
    return "-" if value is None else (f"{value * 1e3:.0f} ms" if value < 1 else f"{value:.2f} s")


def render(turns: pa.Table, deployments: dict[str, str], minutes: list[float], brain_w: float) -> str:
    """Text table; `deployments` maps name -> one-line description, in the experiment's order."""
    lines, rows = [], turns.to_pylist()
    header = (f"{'minute':>6} {'context':>8} {'to speech':>9} {'stall':>8} {'reply':>9} {'energy Wh':>11} "
              f"{'active':>7} {'idle':>7} {'brain Wh':>9}  status")
    failed_any = False
    for name, description in deployments.items():
        lines += ["", f"{name}: {description}", header]
        marks = minute_marks(rows, name, minutes)
        for r in _found(marks):
            energy_wh = r["energy_j"] / J_PER_WH
            active = (r["energy_prefill_j"] + r["energy_decode_j"]) / r["energy_j"] if r["energy_j"] else 0.0
            brain_wh = brain_w * r["reply_speech_s"] / J_PER_WH
            failed = r["status"] != "ok"
            failed_any |= failed
            status = f"{r['status']}: {r['reason']}" if failed else r["status"]
            energy = f"{energy_wh:.3f}" + ("*" if failed else " ")
            lines.append(f"{minute_of(r):>6.1f} {r['context_tokens']:>8d} {_fmt_s(r.get('time_to_speech_s')):>9} "
                         f"{_fmt_s(r.get('stall_s')):>8} {_fmt_s(r['e2e_s']):>9} {energy:>11} {active:>7.0%} "
                         f"{1 - active:>7.0%} {brain_wh:>9.4f}  {status}")
        missed = [mark for mark, r in marks if r is None]
        if missed:
            mine = replies(rows, name)
            last = f"its last phrase came at minute {minute_of(mine[-1]):.1f}" if mine else "it had no phrase"
            lines.append(f"minute {', '.join(f'{m:g}' for m in missed)}: past the end of the conversation ({last})")
        lines.append(_growth_line(rows, name, minutes))
    lines.append("")
    lines.append("to speech: from the end of the human's phrase to the model's first word (its first token when "
                 "speech streams); stall: how long the voice waited for tokens; reply: to the last token.")
    lines.append(f"energy: GPU energy charged to the phrase (its share of steps + idle time of the GPUs holding "
                 f"the conversation); brain: {brain_w:g} W x the reply's speaking time.")
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
    lines += ["", f"benchmark metrics over the requests measured (the first {warmup_requests} and the last "
                  f"{cooldown_requests} sent left out); seconds, tokens, joules (sim/metrics.py)."]
    return "\n".join(lines)
