"""Results JSON files -> a deterministic markdown leaderboard (and, optionally, figures).

Grouping: one section per (task, task version, dataset); versions and datasets are never mixed.
Inside a section: one row per setting, the run identity minus the seed (``leaderboard.table``):
runs that differ in anything but their seed are never pooled. A row is labelled with its loss
preset or name, plus the differing identity keys when rows share model and label
(``bce (epochs=1)``); it shows ``mean ± std`` over seeds (in %), ``n`` and the best value per
column in bold.

The "Δ vs baseline" column is the difference on the primary metric to the baseline loss with the
same model (the row labelled with the baseline name, else the row of that loss under a preset,
e.g. ``bce_docred`` for ``bce``; among several, the one trained most like the row), with a 95%
confidence interval (``leaderboard.stats``):

* a paired bootstrap over test examples (1,000 resamples, seed 0) when every run of both rows
  saved its test scores (``scores_file``) and the primary metric can be recomputed from scores
  and targets (``resamplable_metrics()``): each resample draws test examples with replacement,
  computes the metric for every run of both rows on the same draw, and takes the difference of
  the row means; the interval is the 2.5th-97.5th percentile;
* otherwise a paired interval over seeds: per-seed differences (seeds present in both rows),
  mean ± t(0.975, n-1) * s / sqrt(n).

A ``*`` marks an interval that excludes 0. The last two columns are the mean training wall time
per run (seconds) and training throughput (examples per second; an example is what the task's
dataset yields, e.g. a DocRED document). Rendering recomputes no metric; only the bootstrap
calls ``tasks/metrics.py``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from leaderboard.schema import Result, SchemaError, Threshold, iter_results
from leaderboard.stats import (
    paired_bootstrap,
    resamplable_metrics,
    resampled_means,
    seed_interval,
)
from leaderboard.table import Row, TableKey, fmt_mean_std, group_rows, sweep_table
from mllb_core.identity import differing_keys

__all__ = ["Row", "build", "group_runs", "paired_bootstrap", "render_group", "render_references",
           "resamplable_metrics", "seed_interval", "sweep_table"]

REFERENCES = Path(__file__).with_name("references.yaml")


def group_runs(runs: Iterable[tuple[Path, Result]]) -> dict[TableKey, list[Row]]:
    """Tables (task, version, dataset) -> rows, one per setting (see :mod:`leaderboard.table`)."""
    return group_rows(runs)


def _load_scores(path: Path, run: Result) -> tuple[np.ndarray, np.ndarray] | None:
    name = run.scores_file
    if not name or not (path.parent / name).is_file():
        return None
    with np.load(path.parent / name) as z:
        if "targets" not in z:
            return None
        return z["scores"].astype(np.float64), z["targets"].astype(bool)


def _saved_scores(row: Row, primary: str) -> tuple[list[np.ndarray], np.ndarray] | None:
    """Saved test scores of every run of ``row`` and their targets, or None.

    None unless every run saved its scores, all share the same targets and each run's scores
    reproduce its recorded metric (otherwise they are not its scores).
    """
    fn = resamplable_metrics().get(primary)
    loaded = [_load_scores(p, r) for p, r in row.runs]
    if fn is None or any(x is None for x in loaded):
        return None
    targets = loaded[0][1]
    if not all(np.array_equal(x[1], targets) for x in loaded) or not all(
            abs(fn(x[0], x[1]) - r.metrics[primary]) < 1e-6
            for x, (_, r) in zip(loaded, row.runs, strict=True)):
        return None
    return [x[0] for x in loaded], targets


def _delta_cell(row: Row, base: Row | None, primary: str,
                base_cache: dict[int, Any]) -> tuple[str, str]:
    """Markdown cell of the Δ column and the method used.

    ``base_cache`` keeps each baseline's saved scores and bootstrap means, computed once per
    group instead of once per compared row.
    """
    if base is None:
        return "n/a", ""
    if row is base:
        return "baseline", ""
    if id(base) not in base_cache:
        saved = _saved_scores(base, primary)
        base_cache[id(base)] = saved and (saved[1], resampled_means(
            resamplable_metrics()[primary], saved[0], saved[1]))
    cached, mine = base_cache[id(base)], _saved_scores(row, primary)
    if cached and mine and np.array_equal(cached[0], mine[1]):
        est, lo, hi = paired_bootstrap(resamplable_metrics()[primary], mine[0], [], mine[1],
                                       base_means=cached[1])
        method = "bootstrap"
    else:
        (est, lo, hi), method = seed_interval(row.by_seed(primary), base.by_seed(primary)), "seeds"
    if math.isnan(lo):
        return f"{100 * est:+.2f} (1 paired seed)", method
    mark = " *" if lo > 0 or hi < 0 else ""
    return f"{100 * est:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]{mark}", method


def _baselines(rows: list[Row], baseline: str) -> dict[int, Row]:
    """id(row) -> the row its Δ is measured against (absent: no comparable baseline: "n/a").

    Candidates are the rows of the same model whose loss is ``baseline`` or whose label (without
    suffix) is ``baseline`` (e.g. ``bce_docred`` for ``bce``) AND whose setting equals the row's
    outside what the loss decides (``loss.*`` and the head the loss declares): a Δ against a
    baseline trained otherwise (other epochs, lr, data) would mix two effects, so there is none.
    Among several such candidates, an exact label wins, then the row itself.
    """
    def loss_only(row: Row, c: Row) -> bool:
        return all(k.startswith("loss.") or k == "model.kwargs.head"
                   for k in differing_keys(row.setting, c.setting))

    out = {}
    for row in rows:
        candidates = [c for c in rows if c.model == row.model and loss_only(row, c)
                      and (c.first.loss.name == baseline or c.base_label == baseline)]
        if candidates:
            out[id(row)] = min(candidates, key=lambda c: (c.base_label != baseline, c is not row))
    return out


def _thresholds(rules: list[Threshold]) -> str:
    """Decision thresholds per policy: one value, or the range of tuned values over runs."""
    parts = []
    for policy in sorted({t.policy for t in rules}):
        values = [t.value for t in rules if t.policy == policy]
        per_class = any(t.per_class is not None for t in rules if t.policy == policy)
        if per_class or not all(isinstance(v, (int, float)) for v in values):
            parts.append(f"{policy} (per class or unset)")  # per-class lists, or None
            continue
        numbers = sorted(set(values))
        if len(numbers) == 1:
            parts.append(f"{policy} {numbers[0]:.4g}")
        else:
            parts.append(f"{policy} {numbers[0]:.4g}-{numbers[-1]:.4g} over runs")
    return ", ".join(parts)


def _protocol(rows: list[Row], primary: str) -> str:
    runs = [r for row in rows for _, r in row.runs]
    def vals(get: Callable[[Result], Any]) -> str:
        return ", ".join(sorted({str(get(r)) for r in runs}))
    return (f"Protocol: device {vals(lambda r: r.env.device)}, world size "
            f"{vals(lambda r: r.env.world_size)}, mixed precision "
            f"{vals(lambda r: r.env.mixed_precision)}; selection on "
            f"{vals(lambda r: r.selection.split)} by {primary}; threshold "
            f"{_thresholds([r.threshold for r in runs])}; "
            f"epochs (max) {vals(lambda r: r.config.get('epochs', '?'))}; "
            f"{len(rows)} rows, {len(runs)} runs.")


def render_group(key: TableKey, rows: list[Row], baseline: str,
                 figures: dict[str, str] | None = None) -> tuple[str, list[str]]:
    """Markdown of one table and the Δ methods used."""
    task, version, dataset = key
    first = rows[0].first
    hib = first.higher_is_better
    primary = first.selection.metric
    metrics = [primary, *sorted(k for k in first.metrics if k != primary)]
    sign = 1 if hib[primary] else -1
    base = _baselines(rows, baseline)
    is_base = {id(b) for b in base.values()}
    rows = sorted(rows, key=lambda r: (r.model, id(r) not in is_base,
                                       -sign * r.values(primary).mean(), r.label))
    best = {}
    for m in metrics:
        means = [row.values(m).mean() for row in rows if m in row.first.metrics]
        best[m] = (max if hib[m] else min)(means)
    head = ["model", "loss", "n", *[f"{m} {'↑' if hib[m] else '↓'}" for m in metrics],
            f"Δ {primary} vs {baseline} (95% CI)", "train s", "ex/s"]
    lines = [f"## {task} (v{version}, {dataset})", "",
             f"Test split, {first.task.num_examples} examples, {first.task.num_labels} "
             f"labels; metrics in %, mean ± std over seeds; train s: training seconds per run, "
             f"ex/s: training examples per second (an example is what num_examples counts: an "
             f"image, a document).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * (len(metrics) + 3)]
    methods, base_cache = [], {}
    for row in rows:
        cells = []
        for m in metrics:
            v = row.values(m)
            text = fmt_mean_std(v)
            cells.append(f"**{text}**" if np.isclose(v.mean(), best[m], rtol=0, atol=1e-12)
                         else text)
        delta, method = _delta_cell(row, base.get(id(row)), primary, base_cache)
        methods.append(method)
        lines.append(f"| {row.model} | {row.label} | {len(row.runs)} | " + " | ".join(cells)
                     + f" | {delta} | {row.timing('train_s'):.0f} | "
                     f"{row.timing('examples_per_s'):.1f} |")
    lines += ["", _protocol(rows, primary)]
    used = sorted({m for m in methods if m})
    if used:
        lines.append("Δ intervals: " + "; ".join(
            {"bootstrap": "paired bootstrap over test examples (1,000 resamples)",
             "seeds": "paired t-interval over seeds"}[m] for m in used)
            + "; * = the interval excludes 0.")
    for caption, rel in (figures or {}).items():
        lines += ["", f"![{caption}]({rel})"]
    return "\n".join(lines) + "\n", methods


def render_references(tasks: Iterable[str], path: Path = REFERENCES) -> str:
    """The papers' published numbers for ``tasks`` (percent as printed), never merged with ours."""
    if not path.is_file():
        return ""
    # BaseLoader keeps every scalar as its text, so 85.10 renders as printed, not as 85.1
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
    papers = data.get("papers", {})
    out = []
    for task in sorted(set(tasks)):
        entries = [e for e in data.get("entries", []) if e["task"] == task]
        if not entries:
            continue
        keys = sorted({k for e in entries for k in e["metrics"]})
        out += [f"### Published: {task} (from the papers, %; their code and protocols, not "
                f"measured by MLLB)", "",
                "| paper | table | split | model | loss | setting | " + " | ".join(keys) + " |",
                "|---|---|---|---|---|---|" + "---:|" * len(keys)]
        for e in entries:
            p = papers.get(e["paper"], {})
            cite = f"{e['paper'].upper()} ({p.get('venue', '?')})"
            vals = " | ".join(str(e["metrics"].get(k, "")) for k in keys)
            out.append(f"| {cite} | {e['table']} | {e['split']} | {e['model']} | {e['loss']} | "
                       f"{e.get('setting', '')} | {vals} |")
        out.append("")
    return "\n".join(out)


def build(root: Path, baseline: str = "bce", skip_invalid: bool = False,
          figures_dir: Path | None = None, output: Path | None = None) -> str:
    """The whole leaderboard markdown for every results file below ``root``.

    Raises:
        SchemaError: the first invalid file, unless ``skip_invalid`` (then listed in the output).
        DuplicateRunError: two files of one run (same run identity and seed), even with
            ``skip_invalid``: which of the two to show would be a guess.
    """
    valid, invalid = [], []
    for path, obj in iter_results(root):
        if isinstance(obj, SchemaError):
            if not skip_invalid:
                raise obj
            invalid.append((path, obj))
        else:
            valid.append((path, Result.from_dict(obj, str(path))))
    groups = group_runs(valid)
    parts = ["# MLLB leaderboard", "",
             f"Generated by `python -m leaderboard` from the results files under `{root.name}/`; "
             f"do not edit by hand.", ""]
    for key, rows in groups.items():
        figs = None
        if figures_dir is not None:
            from leaderboard.figures import draw_group

            written = draw_group(key, rows, figures_dir)
            base = output.parent if output is not None else Path.cwd()
            figs = {cap: _rel(Path(p), base) for cap, p in written.items()}
        text, _ = render_group(key, rows, baseline, figs)
        parts.append(text)
    refs = render_references(k[0] for k in groups)
    if refs:
        parts += [refs]
    if invalid:
        parts += ["## Skipped (invalid results files)", ""]
        parts += [f"- `{_rel(p, root)}`: " + "; ".join(getattr(e, "errors", [str(e)])[:3])
                  for p, e in invalid]
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()
