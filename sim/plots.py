"""PNG plots of a run, drawn from the turns table and run.json alone (matplotlib, headless Agg backend).

- energy_per_phrase.png: the attributed energy of each phrase (Wh) vs conversation minute, log y, beside
  a human brain (report.brain_w) speaking the same reply.
- energy_views.png: per deployment, each phrase's attributed energy stacked by component (its prefill,
  its decode, its share of the baseline; their sum is the attributed view, prefill + decode the
  marginal), the KV reading within them, and the dedicated view, vs minute.
- latency.png: TTFT and reply latency (s) vs minute, log y.
- kv_memory.png: KV and recurrent state the conversation holds (context x KV bytes per token, capped
  sliding windows, fixed state) vs minute, with each deployment's KV capacity.
Failed turns are marked with x at the minute they happened.
A benchmark workload (offline, poisson, concurrency) has no conversation to plot against minutes:
- requests.png: each request's TTFT and E2E latency (s) vs the time it was sent, log y; failed
  requests marked with x at the time they ended.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import pyarrow as pa  # noqa: E402

from sim.report import J_PER_WH, minute_of  # noqa: E402


def _by_deployment(turns: pa.Table, keep=lambda row: True) -> dict[str, list[dict]]:
    """The rows of `turns` that `keep` accepts, grouped by deployment in table order."""
    rows: dict[str, list[dict]] = {}
    for r in turns.to_pylist():
        if keep(r):
            rows.setdefault(r["deployment"], []).append(r)
    return rows


def _first_conversation_reply(row: dict) -> bool:
    return row["session"] == 0 and row["kind"] == "reply" and row["replicate"] == 0


def _mark_failures(ax, rows, y_of, color) -> None:
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        ax.scatter([minute_of(r) for r in failed], [y_of(r) for r in failed], marker="x", color=color, s=12,
                   zorder=3)


def render(turns: pa.Table, info: dict, out_dir: Path) -> list[Path]:
    """Draw the PNGs from a run's turns table and run.json (`info`) into out_dir; returns their paths."""
    deployments, brain_w = info["deployments"], info["config"]["report"]["brain_w"]
    out_dir.mkdir(parents=True, exist_ok=True)
    if info["config"]["workload"]["kind"] != "podcast":
        return [_requests_plot(turns, out_dir / "requests.png")]
    rows = _by_deployment(turns, _first_conversation_reply)
    colors = dict(zip(rows, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4))
    written = []

    fig, ax = plt.subplots(figsize=(12, 5))
    for name, rs in rows.items():
        ax.plot([minute_of(r) for r in rs], [r["energy_j"] / J_PER_WH for r in rs], lw=0.8, label=name,
                color=colors[name])
        _mark_failures(ax, rs, lambda r: r["energy_j"] / J_PER_WH, colors[name])
    if rows:  # the same phrases spoken by a human brain (the first deployment's conversation)
        first = next(iter(rows.values()))
        ax.plot([minute_of(r) for r in first], [brain_w * r["reply_speech_s"] / J_PER_WH for r in first], lw=0.8,
                color="0.5", ls="--", label=f"{brain_w:g} W brain speaking the reply")
    ax.set(yscale="log", xlabel="conversation minute", ylabel="energy per phrase (Wh)",
           title="Energy charged to each phrase, attributed (x: failed turn)")
    _legend(ax)
    written.append(_save(fig, out_dir / "energy_per_phrase.png"))
    written.append(_views_plot(rows, out_dir / "energy_views.png"))

    fig, ax = plt.subplots(figsize=(12, 5))
    for name, rs in rows.items():
        _latencies(ax, f"{name} reply", f"{name} TTFT", rs, minute_of, colors[name], {"lw": 0.8},
                   {"lw": 0.8, "ls": ":"})
    ax.set(yscale="log", xlabel="conversation minute", ylabel="seconds", title="Latency of each reply")
    _legend(ax)
    written.append(_save(fig, out_dir / "latency.png"))

    fig, ax = plt.subplots(figsize=(12, 5))
    for name, rs in rows.items():
        d = deployments[name]
        gb = lambda r, d=d: memory_bytes(d, r["context_tokens"] + r["new_tokens"]) / 1e9  # noqa: E731
        ax.plot([minute_of(r) for r in rs], [gb(r) for r in rs], lw=0.8, color=colors[name], label=name)
        if d.get("kv_capacity_tokens"):
            ax.axhline(d["kv_capacity_tokens"] * d["kv_bytes_per_token"] / 1e9, color=colors[name], ls="--", lw=0.6)
        _mark_failures(ax, rs, gb, colors[name])
    ax.set(yscale="log", xlabel="conversation minute", ylabel="KV cache + recurrent state (GB)",
           title="KV or state memory per conversation (dashed: KV capacity; x: failed turn)")
    _legend(ax)
    written.append(_save(fig, out_dir / "kv_memory.png"))
    return written


def _views_plot(rows: dict[str, list[dict]], path: Path) -> Path:
    """Per deployment: each phrase's attributed energy stacked by component, its KV part and the dedicated
    view (Wh), vs minute."""
    fig, axes = plt.subplots(len(rows), 1, figsize=(12, 2.6 * max(len(rows), 1)), squeeze=False, sharex=True)
    for ax, (name, rs) in zip(axes[:, 0], rows.items()):
        x = [minute_of(r) for r in rs]
        wh = lambda column: [r[column] / J_PER_WH for r in rs]  # noqa: E731
        ax.stackplot(x, wh("energy_prefill_j"), wh("energy_decode_j"), wh("energy_baseline_j"),
                     labels=["prefill", "decode", "baseline share"], alpha=0.8)
        ax.plot(x, wh("energy_kv_j"), color="k", lw=0.7, label="KV read and write (in prefill + decode)")
        ax.plot(x, wh("dedicated_j"), color="0.4", lw=0.7, ls="--", label="dedicated: the whole deployment")
        ax.set(ylabel="Wh per phrase", title=name)
        _legend(ax)
    axes[-1, 0].set(xlabel="conversation minute")
    return _save(fig, path)


def _latencies(ax, reply_label: str, ttft_label: str, rows: list[dict], x_of, color, reply_style: dict,
               ttft_style: dict) -> None:
    """E2E (reply) latency and TTFT of the turns that succeeded, against `x_of(row)`."""
    ok = [r for r in rows if r["status"] == "ok"]
    x = [x_of(r) for r in ok]
    ax.plot(x, [r["e2e_s"] for r in ok], color=color, label=reply_label, **reply_style)
    ax.plot(x, [r["ttft_s"] for r in ok], color=color, label=ttft_label, **ttft_style)


def _requests_plot(turns: pa.Table, path: Path) -> Path:
    """A benchmark run: every request's TTFT and E2E latency against the time it was sent."""
    rows = _by_deployment(turns)
    colors = dict(zip(rows, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4))
    fig, ax = plt.subplots(figsize=(12, 5))
    for name, rs in rows.items():
        dots = {"ls": "none", "marker": ".", "ms": 3}
        _latencies(ax, f"{name} E2E", f"{name} TTFT", rs, lambda r: r["arrival_s"], colors[name], dots,
                   {**dots, "marker": "^", "ms": 2, "alpha": 0.4})
        failed = [r for r in rs if r["status"] != "ok" and r["end_s"] > r["arrival_s"]]   # log y: not 0 s
        if failed:
            ax.scatter([r["arrival_s"] for r in failed], [r["end_s"] - r["arrival_s"] for r in failed], marker="x",
                       s=12, color=colors[name], zorder=3)
    ax.set(yscale="log", xlabel="request sent at (s)", ylabel="seconds",
           title="Latency of each request (x: failed request)")
    _legend(ax)
    return _save(fig, path)


def memory_bytes(deployment: dict, tokens: int) -> float:
    """KV + recurrent state a conversation of `tokens` holds, whole model (run.json's per-token figures)."""
    window = deployment.get("window_kv_bytes_per_token", 0.0) * min(tokens, deployment.get("window_tokens", 0))
    return deployment["kv_bytes_per_token"] * tokens + window + deployment.get("state_bytes", 0.0)


def _legend(ax) -> None:
    """Beside the axes, so that no line hides behind it however many deployments there are."""
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
