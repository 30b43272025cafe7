"""`simrun report SWEEP_DIR`: a sweep's summary as a table, and a chosen figure against a chosen parameter,
one line per value of a second parameter (and per deployment where a point has several); where other
parameters vary too, each line is the mean over them, as its title says."""
from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import pyarrow as pa  # noqa: E402

from sim.sweep.summary import FIGURES  # noqa: E402

# The figures shown by default, the first the plot's when none is chosen: those a point has.
SHOWN = ("reply_wh", "last_reply_wh", "time_to_speech_p50_s", "stall_s", "failed_turns", "total_kwh",
         "output_tokens_per_s", "ttft_p50_s", "tpot_p50_s", "energy_per_output_token_j")


class ReportError(ValueError):
    """A figure or parameter the sweep does not have."""


def shown_figures(rows: list[dict]) -> list[str]:
    return [f for f in SHOWN if any(r.get(f) is not None for r in rows)]


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render(summary: pa.Table, description: dict) -> str:
    """The summary, one line per point and deployment, in sweep order: parameters, status, figures."""
    params = description["parameters"]
    order = {p["key"]: i for i, p in enumerate(description["points"])}
    rows = sorted(summary.to_pylist(), key=lambda r: (order.get(r["point"], len(order)), r["deployment"] or ""))
    figures = shown_figures(rows)
    header = [*params, "deployment", "status", *figures]
    body = [[_cell(r[c]) for c in header] for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in body)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in body]
    errors = [f"{r['point']}: {r['error']}" for r in rows if r["status"] != "ok"]
    done = len({r["point"] for r in rows})
    lines.append(f"\n{done} of {len(order)} points have run ({len(errors)} failed)")
    return "\n".join(lines + errors)


def plot(summary: pa.Table, description: dict, figure: str | None, x: str | None, lines: str | None,
         out_dir: Path) -> Path:
    """`figure` against parameter `x`, one line per value of parameter `lines` (and per deployment), the
    mean over the other parameters; written to out_dir/<figure>_by_<x>.png."""
    params = description["parameters"]
    rows = [r for r in summary.to_pylist() if r["status"] == "ok"]
    figure = figure or next(iter(shown_figures(rows)), None)
    x = x or params[0]
    lines = lines if lines is not None else next((p for p in params if p != x), None)
    if figure not in FIGURES:
        raise ReportError(f"no figure '{figure}'; valid: {', '.join(shown_figures(rows) or FIGURES)}")
    for name, value in (("--x", x), ("--lines", lines)):
        if value is not None and value not in params:
            raise ReportError(f"{name}: no swept parameter '{value}'; valid: {', '.join(params)}")
    curves: dict[tuple, dict] = {}
    for r in rows:
        if r[figure] is None:
            continue
        label = tuple(v for v in ((f"{_short(lines, params)} = {_shown(r[lines])}" if lines else None),
                                  r["deployment"] if len({q["deployment"] for q in rows}) > 1 else None) if v)
        curves.setdefault(label, {}).setdefault(_sortable(r[x]), []).append(r[figure])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    numeric = all(isinstance(r[x], (int, float)) and not isinstance(r[x], bool) for r in rows)
    ticks = sorted({_sortable(r[x]) for r in rows})
    for label, points in sorted(curves.items()):
        xs = sorted(points)
        ys = [sum(points[v]) / len(points[v]) for v in xs]
        ax.plot(xs if numeric else [ticks.index(v) for v in xs], ys, marker="o", label=", ".join(label) or figure)
    if not numeric:
        ax.set_xticks(range(len(ticks)), [_shown(t) for t in ticks], rotation=20, ha="right")
    elif ticks and min(ticks) > 0 and max(ticks) >= 8 * min(ticks):
        ax.set_xscale("log")
        if len(ticks) <= 12:
            ax.set_xticks(ticks, [f"{t:,}" if float(t).is_integer() else f"{t:.3g}" for t in ticks])
            ax.minorticks_off()
    # Parameters that vary beside x and lines (not those zipped to x, one value per x): averaged over.
    others = [p for p in params if p not in (x, lines)
              and any(len({json.dumps(r[p]) for r in rows if _sortable(r[x]) == v}) > 1 for v in ticks)]
    ax.set_xlabel(x)
    ax.set_ylabel(figure)
    title = f"{figure} by {_short(x, params)}" + (f" (mean over {', '.join(_short(p, params) for p in others)})"
                                                   if others else "")
    ax.set_title("\n".join(textwrap.wrap(title, 90)), fontsize=9)
    if curves and any(curves):
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{figure}_by_{_file_part(x)}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _short(param: str, params: list[str]) -> str:
    """A parameter's last part (`policy` for deployments.kimi.context.policy) where no other ends alike."""
    last = param.rsplit(".", 1)[-1]
    return last if sum(p.rsplit(".", 1)[-1] == last for p in params) == 1 else param


def _shown(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _sortable(value):
    """Values of one parameter in an order: numbers by size, anything else by its text."""
    return value if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)) \
        else _shown(value)


def _file_part(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text).strip("_") or "parameter"
