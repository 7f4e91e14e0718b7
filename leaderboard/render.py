"""Results JSON files -> a deterministic markdown leaderboard, its appendix and figures.

The leaderboard opens with the cross-task summary (:mod:`leaderboard.summary`): per loss, its
wins, ties and losses against the baseline loss of the same model and its mean rank with a 95%
bootstrap interval; then a matrix of every Δ (task x loss) and, with ``--figures``, a forest
plot of those Δ.

Grouping: one section per (task, task version, dataset); versions and datasets are never mixed.
Inside a section: one row per setting, the run identity minus the seed (``leaderboard.table``):
runs that differ in anything but their seed are never pooled. A row is labelled with its loss
preset or name, plus the differing identity keys when rows share model and label
(``bce (epochs=1)``); it shows ``mean ± std`` over seeds (in %), ``n`` and the best value per
column in bold. A section shows the primary metric and the task's headline metrics (at most six
metric columns, :func:`headline_metrics`); every metric is in the appendix file written beside
the leaderboard (``LEADERBOARD_APPENDIX.md`` for ``LEADERBOARD.md``), linked from each section.
Rows that a :data:`leaderboard.table.MIN_PRIMARY` rule leaves out are listed under their table.

The "Δ vs baseline" column is the difference on the primary metric to the baseline loss with the
same model (the row labelled with the baseline name, else the row of that loss under a preset,
e.g. ``bce_docred`` for ``bce``; among several, the one trained most like the row), with a 95%
confidence interval (``leaderboard.stats``):

* a paired bootstrap over test examples (1,000 resamples, seed 0) when every run of both rows
  saved test outputs (``scores_file``) that reproduce its recorded metric: score rows from which
  the primary metric is recomputed (``resamplable_metrics()``), or per-example counts of a
  counted metric (``tasks.metrics.COUNTED_METRICS``) summed over the drawn examples; each
  resample draws test examples with replacement, computes the metric for every run of both rows
  on the same draw, and takes the difference of the row means; the interval is the 2.5th-97.5th
  percentile;
* otherwise (fallback, marked ``seeds``) a paired interval over seeds: per-seed differences
  (seeds present in both rows), mean ± t(0.975, n-1) * s / sqrt(n).

A ``*`` marks an interval that excludes 0. The last two columns are the mean training wall time
per run (seconds) and training throughput (examples per second; an example is what the task's
dataset yields, e.g. a DocRED document). Rendering recomputes no metric; only the bootstrap
calls ``tasks/metrics.py``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from leaderboard.schema import Result, Threshold
from leaderboard.stats import (
    N_RESAMPLES,
    paired_bootstrap,
    resamplable_metrics,
    seed_interval,
)
from leaderboard.summary import (
    CrossTaskSummary,
    Excluded,
    TableComparison,
    TaskDelta,
    compare_table,
    excluded_rows,
    summarize_tables,
)
from leaderboard.table import (
    MIN_PRIMARY,
    Row,
    TableKey,
    baselines,
    fmt_mean_std,
    group_rows,
    load_runs,
    rule_for,
    sweep_table,
)
from mllb_core.io import write_text_atomic

__all__ = ["HEADLINE_METRICS", "Row", "appendix_path", "build", "group_runs", "headline_metrics",
           "paired_bootstrap", "render", "render_appendix", "render_group", "render_references",
           "render_summary", "resamplable_metrics", "seed_interval", "sweep_table"]

REFERENCES = Path(__file__).with_name("references.yaml")

# task name -> the metrics its section shows after the primary metric (the appendix has all);
# a task not listed here may declare ``headline_metrics`` on its class, else the first five
# other metrics by name are shown. At most MAX_METRIC_COLUMNS columns, the primary included.
_IMAGE = ("map", "CF1", "OF1", "CF1_top3", "OF1_top3")
_TEXT = ("P@1", "P@3", "P@5", "nDCG@3", "micro_f1")
_NER = ("entity_micro_f1", "entity_macro_f1", "entity_precision", "entity_recall")
HEADLINE_METRICS: dict[str, tuple[str, ...]] = {
    "coco": _IMAGE, "voc": _IMAGE, "nus_wide": _IMAGE, "image_multilabel": _IMAGE,
    "docred": ("ign_f1", "f1", "ign_precision", "intra_f1", "inter_f1"),
    "text_multilabel": _TEXT, "aapd": _TEXT,
    "docred_ner": _NER, "token_ner": _NER,
    "synthetic": ("map", "CF1", "OF1", "macro_f1"),
}
MAX_METRIC_COLUMNS = 6
_WIN, _LOSS = "▲", "▼"  # summary markers: better / worse than the baseline, interval excludes 0


def group_runs(runs: Iterable[tuple[Path, Result]]) -> dict[TableKey, list[Row]]:
    """Tables (task, version, dataset) -> rows, one per setting (see :mod:`leaderboard.table`)."""
    return group_rows(runs)


def _declared_headline(task: str) -> Sequence[str] | None:
    """``headline_metrics`` declared on the task's class (tasks outside HEADLINE_METRICS only:
    built-ins are listed there, so rendering never imports a task's heavy dependencies)."""
    if task in HEADLINE_METRICS:
        return HEADLINE_METRICS[task]
    try:
        from tasks import TASKS

        return getattr(TASKS.get(task), "headline_metrics", None)
    except Exception:  # an unknown or broken task plugin: its results still render
        return None


def headline_metrics(task: str, primary: str, available: Iterable[str]) -> list[str]:
    """The metric columns of a task's section: the primary metric, then its headline metrics
    that the runs have (or the first others by name), at most :data:`MAX_METRIC_COLUMNS`."""
    available = set(available)
    declared = _declared_headline(task)
    others = ([m for m in declared if m in available] if declared is not None
              else sorted(available))
    return [primary, *dict.fromkeys(m for m in others if m != primary)][:MAX_METRIC_COLUMNS]


def _fmt_delta(d: TaskDelta, fallback: str = " (fallback: seeds)") -> str:
    """``+1.23 [+0.50, +2.00]`` in percentage points, then ``fallback`` for a seed interval;
    one paired seed has no interval."""
    if math.isnan(d.lo):
        return f"{100 * d.delta:+.2f} (seeds: 1 paired seed, no interval)"
    return (f"{100 * d.delta:+.2f} [{100 * d.lo:+.2f}, {100 * d.hi:+.2f}]"
            + (fallback if d.method == "seeds" else ""))


def _delta_cell(row: Row, comparison: TableComparison) -> str:
    """Markdown cell of the Δ column: the interval, ``*`` when it excludes 0, the fallback."""
    base = comparison.base.get(id(row))
    if base is None:
        return "n/a (no comparable baseline)"
    if base is row:
        return "baseline"
    d = comparison.deltas[id(row)]
    text = _fmt_delta(d, "")
    mark = " *" if d.lo > 0 or d.hi < 0 else ""
    return text + mark + (" (fallback: seeds)" if d.method == "seeds" and "[" in text else "")


def anchor(heading: str) -> str:
    """The anchor GitHub gives a markdown heading (lowercase, punctuation dropped, - for space)."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def table_heading(key: TableKey) -> str:
    """The section title of a (task, version, dataset) table, shared by markdown and the page."""
    task, version, dataset = key
    return f"{task} (v{version}, {dataset})"


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


def _kernels_of(result: Result) -> str:
    """A run's ``extra.kernels`` as one label: ``ap_cpp+cpu_fused`` (sorted), ``torch only``
    (recorded, none of MLLB's kernels ran) or ``not recorded`` (files written before
    run_task.py recorded them)."""
    extra = result.extra or {}
    if "kernels" not in extra:
        return "not recorded"
    return "+".join(sorted(extra["kernels"])) or "torch only"


def protocol_line(rows: list[Row], primary: str) -> str:
    """One line naming how the rows were made (device, world size, precision, MLLB's kernels,
    selection, threshold, epochs, counts), each value as the runs recorded it."""
    runs = [r for row in rows for _, r in row.runs]
    def vals(get: Callable[[Result], Any]) -> str:
        return ", ".join(sorted({str(get(r)) for r in runs}))
    # ATen's CPU level (schema 1.2) where CPU runs record it; files before 1.2 do not
    levels = {r.env.cpu_capability or "not recorded" for r in runs if r.env.device == "cpu"}
    level = (f" (ATen CPU capability {', '.join(sorted(levels))})"
             if levels - {"not recorded"} else "")
    # which of MLLB's own kernels computed the runs (extra.kernels, mllb_core/served.py), where
    # the files record it: like the CPU level, a loss kernel can move float32 results in their
    # last bits (ap_cpp does not)
    sets = {_kernels_of(r) for r in runs}
    kernels = (f"; MLLB kernels {', '.join(sorted(sets))}" if sets - {"not recorded"} else "")
    return (f"Protocol: device {vals(lambda r: r.env.device)}{level}, world size "
            f"{vals(lambda r: r.env.world_size)}, mixed precision "
            f"{vals(lambda r: r.env.mixed_precision)}{kernels}; selection on "
            f"{vals(lambda r: r.selection.split)} by {primary}; threshold "
            f"{_thresholds([r.threshold for r in runs])}; "
            f"epochs (max) {vals(lambda r: r.config.get('epochs', '?'))}; "
            f"{len(rows)} rows, {len(runs)} runs.")


def render_group(key: TableKey, rows: list[Row], baseline: str,
                 figures: dict[str, str] | None = None,
                 comparison: TableComparison | None = None,
                 excluded: Sequence[Excluded] = (),
                 appendix: str | None = None) -> tuple[str, list[str]]:
    """Markdown of one table (headline metrics, Δ, timing) and the Δ method of each row.

    ``comparison``: :func:`leaderboard.summary.compare_table` of these rows, if already
    computed; ``excluded``: the rows left out of this table, listed under it; ``appendix``: the
    appendix file name to link for every metric.
    """
    first = rows[0].first
    hib = first.higher_is_better
    primary = first.selection.metric
    comparison = comparison or compare_table(key, rows, baseline)
    common = set.intersection(*(set(r.metrics) for row in rows for _, r in row.runs))
    metrics = headline_metrics(key[0], primary, common | {primary})
    rows = sorted_rows(rows, comparison.base, primary)
    head = ["model", "loss", "n", *[f"{m} {'↑' if hib[m] else '↓'}" for m in metrics],
            f"Δ {primary} vs {baseline} (95% CI)", "train s", "ex/s"]
    more = f" [All metrics]({appendix}#{anchor(table_heading(key))})." if appendix else ""
    lines = [f"## {table_heading(key)}", "",
             f"Test split, {first.task.num_examples} examples, {first.task.num_labels} "
             f"labels; metrics in %, mean ± std over seeds; train s: training seconds per run, "
             f"ex/s: training examples per second (an example is what num_examples counts: an "
             f"image, a document).{more}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * (len(metrics) + 3)]
    methods = []
    for row in rows:
        d = comparison.deltas.get(id(row))
        methods.append(d.method if d else "")
        lines.append(f"| {row.model} | {row.label} | {len(row.runs)} | "
                     + " | ".join(_metric_cells(rows, row, metrics)) + f" | "
                     f"{_delta_cell(row, comparison)} | {row.timing('train_s'):.0f} | "
                     f"{row.timing('examples_per_s'):.1f} |")
    lines += ["", protocol_line(rows, primary)]
    used = sorted({m for m in methods if m})
    if used:
        lines.append("Δ intervals: " + "; ".join(
            {"bootstrap": f"paired bootstrap over test examples ({N_RESAMPLES:,} resamples)",
             "seeds": "fallback: paired t-interval over seeds (no saved test outputs that "
                      "reproduce the metric)"}[m] for m in used)
            + "; * = the interval excludes 0.")
    if any(id(row) not in comparison.base for row in rows):
        lines.append(f"n/a: no `{baseline}` row of the same model trained the same way "
                     "(other settings than the loss differ), so no Δ.")
    if excluded:
        lines += ["", *_left_out(key, excluded)]
    for caption, rel in (figures or {}).items():
        lines += ["", f"![{caption}]({rel})"]
    return "\n".join(lines) + "\n", methods


def _inclusion_rules(groups: Mapping[TableKey, list[Row]]) -> str:
    """One paragraph per MIN_PRIMARY rule, always shown: which rows a table may contain, and
    whether any results file of that model is shown at all."""
    lines = []
    for rule in MIN_PRIMARY:
        shown = sum(1 for key, rows in groups.items() if key[0] == rule.task
                    for row in rows if row.model == rule.model)
        lines.append(f"Inclusion rule: `{rule.model}` on `{rule.task}` is shown only where its "
                     f"best dev {rule.metric} reaches {100 * rule.minimum:g} ({rule.why}); "
                     f"{shown or 'no'} row{'s' if shown != 1 else ''} of it "
                     f"{'is' if shown == 1 else 'are'} shown here.")
    return "\n".join(lines) + "\n" if lines else ""


def _left_out(key: TableKey, excluded: Sequence[Excluded]) -> list[str]:
    """Markdown lines naming the rows a MIN_PRIMARY rule left out: the rule once per model,
    then each row with its value."""
    lines = []
    for model in sorted({e.model for e in excluded}):
        rule = rule_for(key[0], model)
        rows = [e for e in excluded if e.model == model]
        if rule is None:  # left out by a caller's own rules: their sentence as it is
            lines += [f"- {model} {e.row_label} left out: {e.reason}." for e in rows]
            continue
        lines += [f"Left out of this table, the summary and the figures: the {model} rows whose "
                  f"best dev {rule.metric} (best epoch of each run, mean over seeds) is below "
                  f"{100 * rule.minimum:.2f}, because {rule.why}:", ""]
        lines += [f"- {model} {e.row_label}: " + ("no dev value recorded" if math.isnan(e.value)
                                                   else f"{100 * e.value:.2f}") for e in rows]
    return lines


def sorted_rows(rows: list[Row], base: dict[int, Row], primary: str) -> list[Row]:
    """Per model: baselines first, then best primary metric first."""
    sign = 1 if rows[0].first.higher_is_better[primary] else -1
    is_base = {id(b) for b in base.values()}
    return sorted(rows, key=lambda r: (r.model, id(r) not in is_base,
                                       -sign * r.values(primary).mean(), r.label))


def _metric_cells(rows: list[Row], row: Row, metrics: list[str]) -> list[str]:
    """``mean ± std`` per metric, bold where the row has the table's best mean."""
    hib = rows[0].first.higher_is_better
    cells = []
    for m in metrics:
        if m not in row.first.metrics:
            cells.append("")
            continue
        means = [r.values(m).mean() for r in rows if m in r.first.metrics]
        best = (max if hib[m] else min)(means)
        v = row.values(m)
        text = fmt_mean_std(v)
        cells.append(f"**{text}**" if np.isclose(v.mean(), best, rtol=0, atol=1e-12) else text)
    return cells


def render_appendix_group(key: TableKey, rows: list[Row], baseline: str) -> str:
    """Every metric of one table (the section's rows and order), for the appendix."""
    first = rows[0].first
    hib = first.higher_is_better
    primary = first.selection.metric
    metrics = [primary, *sorted({m for row in rows for _, r in row.runs for m in r.metrics}
                                - {primary})]
    rows = sorted_rows(rows, baselines(rows, baseline), primary)
    lines = [f"## {table_heading(key)}", "",
             f"Test split, {first.task.num_examples} examples, {first.task.num_labels} labels; "
             "every metric in %, mean ± std over seeds.", "",
             "| model | loss | n | " + " | ".join(f"{m} {'↑' if hib.get(m, True) else '↓'}"
                                               for m in metrics) + " |",
             "|---|---|---|" + "---:|" * len(metrics)]
    for row in rows:
        lines.append(f"| {row.model} | {row.label} | {len(row.runs)} | "
                     + " | ".join(_metric_cells(rows, row, metrics)) + " |")
    return "\n".join(lines) + "\n"


def _task_title(d: TaskDelta, several: bool) -> str:
    """A matrix row: the table (linked to its section) and model; the baseline's label too when
    one table and model have several baseline recipes."""
    task, version, dataset = d.task_key
    title = f"[{task} v{version} ({dataset})](#{anchor(table_heading(d.task_key))})"
    return f"{title} · {d.model}" + (f" vs {d.baseline_label}" if several else "")


def render_summary(summary: CrossTaskSummary, n_tables: int,
                   forest: str | None = None) -> str:
    """The cross-task summary section: method, per-loss totals, the Δ matrix (task x loss)."""
    base = summary.baseline
    n_groups = len({(d.task_key, d.model, d.baseline_label) for d in summary.deltas})
    seed_note = (f"{len(summary.seed_groups)} of {n_groups} groups lack saved test outputs "
                 "for some loss: there, seeds are resampled instead, the same seed draw for "
                 "every loss of the group" if summary.seed_groups else
                 "every group resampled test examples")
    lines = ["## Summary across tasks", "",
             f"Each loss is compared with `{base}` on the same model and training recipe, on the "
             f"task's primary metric: Δ = loss minus `{base}` in percentage points, with a 95% "
             f"paired bootstrap interval over test examples ({N_RESAMPLES:,} resamples) where "
             f"every run saved test outputs, else (fallback) a paired t-interval over seeds; "
             f"win {_WIN} / loss {_LOSS}: the interval excludes 0 in the metric's better / "
             f"worse direction, tie otherwise. Losses are named without their preset "
             f"(`asl_coco` counts as `asl`). Rank: the losses of each (task, model) group, "
             f"`{base}` included, ranked by mean primary metric (1 = best), averaged over "
             f"groups; its 95% interval recomputes every loss's metric on the same bootstrap "
             f"draws and ranks again ({seed_note}). {n_tables} tables, {n_groups} groups.", ""]
    if not summary.losses:
        return "\n".join([*lines, "No loss has a comparable baseline row.", ""])
    lines += ["| loss | wins | ties | losses | groups | mean rank [95% CI] |",
              "|---|---:|---:|---:|---:|---:|"]
    for s in summary.losses:
        rank = ("n/a" if math.isnan(s.mean_rank)
                else f"{s.mean_rank:.2f} [{s.rank_lo:.2f}, {s.rank_hi:.2f}]")
        # the baseline is not compared with itself
        compared = s.wins + s.ties + s.losses > 0  # 0: only ever the baseline of its groups
        wins = f"{s.wins} | {s.ties} | {s.losses}" if compared else "– | – | –"
        lines.append(f"| {s.loss_label} | {wins} | {s.n_tasks} | {rank} |")
    losses = [s.loss_label for s in summary.losses if s.loss_label != base]
    losses += sorted({d.loss_label for d in summary.deltas} - set(losses))
    cells: dict[tuple[Any, ...], dict[str, str]] = {}
    for d in summary.deltas:
        mark = {"win": f" {_WIN}", "loss": f" {_LOSS}", "tie": ""}[d.outcome]
        cells.setdefault((d.task_key, d.model, d.baseline_label), {})[d.loss_label] = (
            _fmt_delta(d, " (seeds)") + mark)
    per_model: dict[tuple[TableKey, str], int] = {}
    for key, model, _ in cells:
        per_model[(key, model)] = per_model.get((key, model), 0) + 1
    lines += ["", f"Δ vs `{base}` on each task's primary metric (percentage points, 95% CI; "
              f"{_WIN} win, {_LOSS} loss, (seeds): fallback interval over seeds):", "",
              "| task · model | primary | " + " | ".join(losses) + " |",
              "|---|---|" + "---:|" * len(losses)]
    for (key, model, base_label), by_loss in cells.items():
        d = next(x for x in summary.deltas
                 if (x.task_key, x.model, x.baseline_label) == (key, model, base_label))
        lines.append(f"| {_task_title(d, per_model[(key, model)] > 1)} | {d.primary} | "
                     + " | ".join(by_loss.get(loss, "") for loss in losses) + " |")
    if summary.excluded:
        lines += ["", "Left out (below a stated minimum, see their tables): " + "; ".join(
            f"{e.task_key[0]} {e.model} {e.row_label}" for e in summary.excluded) + "."]
    if forest:
        lines += ["", f"![Δ vs {base} per task, 95% CI]({forest})"]
    return "\n".join(lines) + "\n"


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


def appendix_path(output: Path) -> Path:
    """Where the appendix of ``output`` goes: ``LEADERBOARD_APPENDIX.md`` for ``LEADERBOARD.md``."""
    return output.with_name(f"{output.stem}_APPENDIX{output.suffix or '.md'}")


def render(root: Path, baseline: str = "bce", skip_invalid: bool = False,
           figures_dir: Path | None = None, output: Path | None = None) -> tuple[str, str]:
    """(leaderboard markdown, appendix markdown) for every results file below ``root``.

    Figures (``figures_dir``) are written here, linked relative to ``output``'s directory.

    Raises:
        SchemaError: the first invalid file, unless ``skip_invalid`` (then listed in the output).
        DuplicateRunError: two files of one run (same run identity and seed), even with
            ``skip_invalid``: which of the two to show would be a guess.
    """
    valid, invalid = load_runs(root, skip_invalid)
    groups = group_runs(valid)
    kept, left_out = excluded_rows(groups)
    excluded: dict[TableKey, list[Excluded]] = {}
    for e in left_out:
        excluded.setdefault(e.task_key, []).append(e)
    comparisons = {key: compare_table(key, rows, baseline) for key, rows in kept.items()}
    summary = summarize_tables(list(comparisons.values()), baseline, left_out)
    appendix_name = appendix_path(output or Path("LEADERBOARD.md")).name
    link_base = output.parent if output is not None else Path.cwd()
    forest = None
    if figures_dir is not None:
        from leaderboard.figures import draw_forest

        written = draw_forest(summary, figures_dir)
        forest = _rel(written, link_base) if written else None
    intro = (f"Generated by `python -m leaderboard` from the results files under "
             f"`{root.name}/`; do not edit by hand.")
    parts = ["# MLLB leaderboard", "", intro, "", render_summary(summary, len(kept), forest),
             _inclusion_rules(kept)]
    appendix = ["# MLLB leaderboard: all metrics", "",
                f"Every test metric of every row of [the leaderboard]"
                f"({(output or Path('LEADERBOARD.md')).name}); {intro[0].lower()}{intro[1:]}",
                ""]
    for key in groups:
        if key not in kept:
            parts += [f"## {table_heading(key)}", "", *_left_out(key, excluded[key]), ""]
            continue
        figs = None
        if figures_dir is not None:
            from leaderboard.figures import draw_group

            written_group = draw_group(key, kept[key], figures_dir)
            figs = {cap: _rel(Path(p), link_base) for cap, p in written_group.items()}
        text, _ = render_group(key, kept[key], baseline, figs, comparisons[key],
                               excluded.get(key, ()), appendix_name)
        parts.append(text)
        appendix.append(render_appendix_group(key, kept[key], baseline))
    refs = render_references(k[0] for k in groups)
    if refs:
        parts += [refs]
    if invalid:
        parts += ["## Skipped (invalid results files)", ""]
        parts += [f"- `{_rel(p, root)}`: " + "; ".join(getattr(e, "errors", [str(e)])[:3])
                  for p, e in invalid]
        parts.append("")
    return "\n".join(parts).rstrip() + "\n", "\n".join(appendix).rstrip() + "\n"


def build(root: Path, baseline: str = "bce", skip_invalid: bool = False,
          figures_dir: Path | None = None, output: Path | None = None) -> str:
    """The leaderboard markdown (:func:`render`); with ``output``, the appendix is written
    beside it (:func:`appendix_path`) and the caller writes the returned text to ``output``.

    Raises:
        SchemaError: the first invalid file, unless ``skip_invalid`` (then listed in the output).
        DuplicateRunError: two files of one run (same run identity and seed), even with
            ``skip_invalid``: which of the two to show would be a guess.
    """
    text, appendix = render(root, baseline, skip_invalid, figures_dir, output)
    if output is not None:
        write_text_atomic(appendix_path(output), appendix)
    return text


def render_appendix(root: Path, baseline: str = "bce", skip_invalid: bool = False) -> str:
    """The appendix markdown alone (every metric of every table), as :func:`build` writes it."""
    return render(root, baseline, skip_invalid)[1]


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()
