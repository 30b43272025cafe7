"""The default report: per deployment, the phrase at each minute mark, beside a human brain."""
from __future__ import annotations

import pyarrow as pa

J_PER_WH = 3600.0


def minute_marks(rows: list[dict], deployment: str, minutes: list[float]) -> list[dict]:
    """For each mark, the first reply of session 0 whose phrase arrives at or after it."""
    mine = [r for r in rows if r["deployment"] == deployment and r["session"] == 0 and r.get("kind", "reply") == "reply"]
    picked = (next((r for r in mine if r["minute"] >= mark), None) for mark in minutes)
    return [r for r in picked if r is not None]


def _fmt_s(value) -> str:
    return "-" if value is None else (f"{value * 1e3:.0f} ms" if value < 1 else f"{value:.2f} s")


def render(turns: pa.Table, deployments: dict[str, str], minutes: list[float], brain_w: float) -> str:
    """Text table; `deployments` maps name -> one-line description."""
    lines, rows = [], turns.to_pylist()
    header = (f"{'minute':>6} {'context':>8} {'TTFT':>9} {'reply':>9} {'energy Wh':>10} {'active':>7} "
              f"{'idle':>7} {'brain Wh':>9}  status")
    for name, description in deployments.items():
        lines += ["", f"{name}: {description}", header]
        for r in minute_marks(rows, name, minutes):
            energy_wh = r["energy_j"] / J_PER_WH
            active = (r["energy_prefill_j"] + r["energy_decode_j"]) / r["energy_j"] if r["energy_j"] else 0.0
            brain_wh = brain_w * r["reply_speech_s"] / J_PER_WH
            status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r['reason']}"
            reply_s = r["e2e_s"] if r["first_token_s"] is not None else None  # refused turns never replied
            lines.append(f"{r['minute']:>6.1f} {r['context_tokens']:>8d} {_fmt_s(r['ttft_s']):>9} "
                         f"{_fmt_s(reply_s):>9} {energy_wh:>10.3f} {active:>7.0%} {1 - active:>7.0%} "
                         f"{brain_wh:>9.4f}  {status}")
    lines.append("")
    lines.append(f"energy: GPU energy charged to the phrase (its share of steps + idle time of the GPUs holding "
                 f"the conversation); brain: {brain_w:g} W x the reply's speaking time.")
    return "\n".join(lines)
