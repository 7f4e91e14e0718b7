"""Leaderboard figures (matplotlib, Agg; PNG with deterministic names and bytes).

* :func:`forest_figure`: every Δ of the cross-task summary with its 95% interval, one line per
  loss, grouped by table and model, a vertical line at 0;
* :func:`bar_figure`: per table, the test primary metric (mean, error bar = std over seeds) of
  every row, grouped by model, the axis from 0;
* :func:`curve_figure`: per table, the dev primary metric per epoch (mean over seeds); a row
  with a single evaluated epoch is a marker, not a line.

A loss has one colour in every figure (:func:`loss_colour`, keyed by the loss name, presets
included: ``asl_coco`` is ``asl``). Figures are built on :class:`matplotlib.figure.Figure`
directly (no pyplot state), returned for inspection and saved by the ``draw_*`` functions.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from leaderboard.summary import CrossTaskSummary
    from leaderboard.table import Row, TableKey

# PNG metadata without the matplotlib version or a timestamp, so reruns give identical bytes
_PNG_META = {"Software": None}
_DPI = 110
# the benchmark's losses in a fixed order with fixed colours (the baseline grey)
LOSS_COLOURS: dict[str, str] = {
    "bce": "#5f5f5f", "asl": "#1f77b4", "apl": "#d62728", "aam": "#2ca02c", "atl": "#ff7f0e",
}
# any other loss: a colour picked by a hash of its name, so it is the same in every figure and
# every run, whatever other losses a figure shows
_OTHER_COLOURS = ("#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#393b79", "#ad494a")
# hyper-parameter variants of one loss in one model: same colour, told apart by hatching
_HATCHES = ("", "//", "..", "xx", "\\\\", "--")
_LINESTYLES = ("-", "--", ":", "-.")  # dev curves: one style per model of a table


def loss_colour(loss: str) -> str:
    """The colour of loss ``loss`` (its registered name, e.g. ``asl``) in every figure."""
    if loss in LOSS_COLOURS:
        return LOSS_COLOURS[loss]
    return _OTHER_COLOURS[zlib.crc32(loss.encode("utf-8")) % len(_OTHER_COLOURS)]


def colour_map(losses: list[str]) -> dict[str, str]:
    """loss name -> colour for ``losses`` (:func:`loss_colour` of each)."""
    return {loss: loss_colour(loss) for loss in losses}


def _loss(row: Row) -> str:
    return row.first.loss.name


def _loss_order(loss: str) -> tuple[int, str]:
    order = list(LOSS_COLOURS)
    return (order.index(loss) if loss in order else len(order), loss)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def _new_figure(width: float, height: float) -> Figure:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, metadata=_PNG_META, bbox_inches="tight")
    return path


def _title(key: TableKey) -> str:
    task, version, dataset = key
    return f"{task} v{version} ({dataset})"


def bar_figure(key: TableKey, rows: list[Row]) -> Figure:
    """Test primary metric per row (mean, error bar = sample std over seeds), grouped by model.

    Bars start at 0. Each bar's colour is its loss's; variants of one loss within one model
    are hatched; the legend names every row label.
    """
    primary = rows[0].first.selection.metric
    by_model: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_model[row.model].append(row)
    for members in by_model.values():
        members.sort(key=lambda r: (_loss_order(_loss(r)), r.label))
    widest = max(len(m) for m in by_model.values())
    width = 0.8 / widest
    n_bars = sum(len(m) for m in by_model.values())
    fig = _new_figure(max(5.0, 1.2 + 0.45 * n_bars + 0.6 * len(by_model)), 3.8)
    ax = fig.add_subplot()
    handles: dict[str, object] = {}
    for i, (_, members) in enumerate(sorted(by_model.items())):
        seen: dict[str, int] = defaultdict(int)
        for j, row in enumerate(members):
            loss = _loss(row)
            hatch = _HATCHES[seen[loss] % len(_HATCHES)]
            seen[loss] += 1
            values = 100 * row.values(primary)
            std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            x = i + (j - (len(members) - 1) / 2) * width
            bar = ax.bar(x, values.mean(), width=width * 0.92, yerr=std, capsize=3,
                         color=loss_colour(loss), hatch=hatch, edgecolor="white",
                         label=row.label, error_kw={"elinewidth": 1})
            handles.setdefault(row.label, bar)
    ax.set_xticks(range(len(by_model)), sorted(by_model), fontsize=8)
    ax.set_xlim(-0.6, len(by_model) - 0.4)
    ax.set_ylim(bottom=0)
    ax.set_ylabel(f"test {primary} (%), axis from 0")
    ax.set_title(f"{_title(key)}: test {primary}, mean ± std over seeds", fontsize=9)
    ax.legend(list(handles.values()), list(handles), title="loss", fontsize=7, title_fontsize=7,
              loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def curve_figure(key: TableKey, rows: list[Row]) -> Figure:
    """Dev primary metric per epoch (mean over seeds): one line per row, colour by loss, line
    style by model; a row whose runs evaluated one epoch is drawn as a marker only.

    The y axis covers the data; when it does not start at 0 the axis label says where it starts.
    """
    primary = rows[0].first.selection.metric
    models = sorted({r.model for r in rows})
    fig = _new_figure(6.8, 3.8)
    ax = fig.add_subplot()
    low = math.inf
    for row in sorted(rows, key=lambda r: (r.model, _loss_order(_loss(r)), r.label)):
        curves = [[h.dev[primary] for h in run.history if primary in h.dev] for _, run in row.runs]
        length = min(len(c) for c in curves)
        if length == 0:
            continue
        mean = 100 * np.mean([c[:length] for c in curves], axis=0)
        low = min(low, float(mean.min()))
        style = _LINESTYLES[models.index(row.model) % len(_LINESTYLES)]
        ax.plot(range(1, length + 1), mean, label=f"{row.model} {row.label}",
                color=loss_colour(_loss(row)), linewidth=1.4, marker="o",
                markersize=5 if length == 1 else 2.5, linestyle="none" if length == 1 else style)
    bottom = 0.0
    if math.isfinite(low):
        top = ax.get_ylim()[1]
        # start at 0 unless the data sit in the top fifth of that range, then say where
        bottom = 0.0 if low < 0.8 * top or low <= 0 else math.floor(low - 0.05 * (top - low))
        ax.set_ylim(bottom, top)
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    start = f"; axis starts at {bottom:g}" if bottom > 0 else ", axis from 0"
    ax.set_ylabel(f"dev {primary} (%), mean over seeds{start}", fontsize=8)
    ax.set_title(f"{_title(key)}: dev {primary} per epoch (one epoch: a point)", fontsize=9)
    if ax.lines:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def forest_figure(summary: CrossTaskSummary) -> Figure | None:
    """Every Δ of ``summary`` with its 95% interval (percentage points), grouped by table and
    model under a bold header line; None without deltas. One line per label, so labels never
    overlap: the height grows with the number of lines."""
    if not summary.deltas:
        return None
    lines: list[tuple[str, object]] = []  # (label, delta or None for a group header)
    group = None
    for d in summary.deltas:
        g = (d.task_key, d.model, d.baseline_label)
        if g != group:
            group = g
            lines.append((f"{_title(d.task_key)} · {d.model} ({d.primary}, vs "
                          f"{d.baseline_label})", None))
        lines.append((d.row_label or d.loss_label, d))
    fig = _new_figure(7.5, 0.9 + 0.26 * len(lines))
    ax = fig.add_subplot()
    ys = list(range(len(lines)))[::-1]  # first line on top
    seeds_drawn = False
    for y, (_, d) in zip(ys, lines, strict=True):
        if d is None:
            continue
        colour = loss_colour(d.loss_label)
        if not math.isnan(d.lo):
            ax.plot([100 * d.lo, 100 * d.hi], [y, y], color=colour, linewidth=1.6)
        seeds = d.method == "seeds"
        seeds_drawn |= seeds
        ax.plot([100 * d.delta], [y], marker="s" if seeds else "o", markersize=5,
                color=colour, markerfacecolor="white" if seeds else colour, linestyle="none")
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(ys, [label for label, _ in lines], fontsize=7)
    for tick, (_, d) in zip(ax.get_yticklabels(), lines, strict=True):
        if d is None:
            tick.set_fontweight("bold")
    ax.set_ylim(-0.7, len(lines) - 0.3)
    ax.set_xlabel(f"Δ vs {summary.baseline} (percentage points of the task's primary metric), "
                  "95% CI", fontsize=8)
    note = "filled: bootstrap over test examples" + (
        "; open square: fallback over seeds" if seeds_drawn else "")
    ax.set_title(f"Δ vs {summary.baseline} per task ({note})", fontsize=8)
    ax.grid(axis="x", linewidth=0.3)
    return fig


def draw_forest(summary: CrossTaskSummary, out_dir: Path) -> Path | None:
    """Save :func:`forest_figure` as ``summary-forest.png`` in ``out_dir`` (None: no deltas)."""
    fig = forest_figure(summary)
    return None if fig is None else _save(fig, out_dir / "summary-forest.png")


def draw_group(key: TableKey, rows: list[Row], out_dir: Path) -> dict[str, Path]:
    """Save the bar chart and the dev curves of one table; caption -> path."""
    task, version, dataset = key
    primary = rows[0].first.selection.metric
    stem = _slug(f"{task}-v{version}-{dataset}")
    return {
        f"test {primary} per loss": _save(bar_figure(key, rows),
                                          out_dir / f"{stem}-{_slug(primary)}.png"),
        f"dev {primary} per epoch": _save(curve_figure(key, rows),
                                          out_dir / f"{stem}-dev-curves.png"),
    }
