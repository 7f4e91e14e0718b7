"""Rows of the leaderboard: runs grouped by their run identity minus the seed, never pooled.

A table is one (task, task version, dataset). Inside it, a row is one *setting*: the run identity
(:mod:`mllb_core.identity`) without the seed, so a row's runs differ in their seed and nothing
else. A row's label is the loss preset (or loss name); when several rows of a table share model
and label, each gets a suffix naming the identity keys that differ between them, e.g.
``bce (epochs=1)`` and ``bce (epochs=10)``, or ``asl (loss.gamma_neg=3)``. Two results files of
the same run (same setting, same seed) are an error: which one to show would be a guess.

Also here, shared by the markdown, the cross-task summary and the web page: which row a row's Δ
is measured against (:func:`baselines`) and which rows are left out of the leaderboard because
they fall below a stated criterion (:data:`MIN_PRIMARY`, :func:`apply_min_primary`).

Shared by :mod:`leaderboard.render`, :mod:`leaderboard.summary`, :mod:`leaderboard.figures` and
the engine's end-of-sweep table (:func:`sweep_table`).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from leaderboard.schema import Result, SchemaError, iter_results
from mllb_core.identity import differing_keys

TableKey = tuple[str, str, str]  # (task name, task version, dataset)

# label suffixes name at most this many differing keys, each value at most this long
_MAX_SUFFIX_KEYS = 3
_MAX_VALUE_CHARS = 12
_ABSENT = object()


class DuplicateRunError(SchemaError):
    """Two results files of one run (same run identity, seed included)."""


@dataclass
class Row:
    """One setting (run identity minus seed) of a table: its runs (one per seed) and label."""

    model: str  # model name
    label: str  # loss preset or name, plus a suffix when other rows share model and name
    base_label: str  # the label without the suffix
    setting: dict[str, Any]  # the run identity minus the seed, shared by every run
    runs: list[tuple[Path, Result]] = field(default_factory=list)  # (source, result) per seed

    @property
    def first(self) -> Result:
        """The first run (every run shares task, model, loss and recipe)."""
        return self.runs[0][1]

    def values(self, metric: str) -> np.ndarray:
        """The metric of every run (seed), as fractions."""
        return np.array([r.metrics[metric] for _, r in self.runs], dtype=np.float64)

    def timing(self, key: str) -> float:
        """Mean of ``timing.<key>`` over the runs (train_s, eval_s, examples_per_s)."""
        return float(np.mean([getattr(r.timing, key) for _, r in self.runs]))

    def by_seed(self, metric: str) -> dict[int, float]:
        """seed -> metric value."""
        return {r.seed: r.metrics[metric] for _, r in self.runs}


def _flat(setting: Mapping[str, Any]) -> dict[str, Any]:
    """Nested kwargs expanded one level (``loss.kwargs.gamma_neg``), as in differing_keys."""
    out: dict[str, Any] = {}
    for key, value in setting.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def _short_key(key: str) -> str:
    if key.startswith("train."):
        return key[len("train."):]
    if key == "task.data_fingerprint":
        return "data"
    return key.replace(".kwargs.", ".")


def _short_value(key: str, value: Any) -> str:
    if value is _ABSENT:
        return "absent"
    if key == "task.data_fingerprint" and isinstance(value, str):
        return value.removeprefix("sha256:")[:8]
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= _MAX_VALUE_CHARS else text[:_MAX_VALUE_CHARS - 1] + "…"


def distinguishing_suffixes(settings: Sequence[Mapping[str, Any]]) -> list[str]:
    """For settings that share a label: `` (key=value, ...)`` naming the keys that differ
    (at most three, loss keys first since they sort first), one per setting; ``""`` for one."""
    if len(settings) < 2:
        return [""] * len(settings)
    flats = [_flat(s) for s in settings]
    keys = sorted({k for f in flats for k in f})
    differing = []
    for key in keys:
        values = [json.dumps(f.get(key, "<absent>"), sort_keys=True, default=str) for f in flats]
        if len(set(values)) > 1:
            differing.append(key)
    shown = differing[:_MAX_SUFFIX_KEYS]
    more = ", …" if len(differing) > len(shown) else ""
    return [" (" + ", ".join(f"{_short_key(k)}={_short_value(k, f.get(k, _ABSENT))}"
                             for k in shown) + more + ")" for f in flats]


def load_runs(root: str | Path, skip_invalid: bool = False
              ) -> tuple[list[tuple[Path, Result]], list[tuple[Path, SchemaError]]]:
    """Valid runs below ``root`` (typed) and the invalid files (path, error), sorted by path.

    Raises:
        SchemaError: the first invalid file, unless ``skip_invalid``.
    """
    valid, invalid = [], []
    for path, obj in iter_results(root):
        if isinstance(obj, SchemaError):
            if not skip_invalid:
                raise obj
            invalid.append((path, obj))
        else:
            valid.append((path, Result.from_dict(obj, str(path))))
    return valid, invalid


def group_rows(runs: Iterable[tuple[Path | str, Result]]) -> dict[TableKey, list[Row]]:
    """Tables (task, version, dataset) -> rows (one per setting), sorted by (model, label).

    Raises:
        DuplicateRunError: two runs with the same setting and seed (one run_id), naming both.
    """
    tables: dict[TableKey, dict[str, Row]] = defaultdict(dict)
    for source, r in runs:
        key = (r.task.name, r.task.version, r.task.dataset)
        sid = r.setting_id
        row = tables[key].get(sid)
        if row is None:
            label = r.loss.preset or r.loss.name
            row = tables[key][sid] = Row(r.model.name, label, label, r.setting)
        for other, o in row.runs:
            if o.seed == r.seed:
                raise DuplicateRunError(
                    f"{source}: the same run as {other} (run_id {r.full_run_id}: same "
                    f"setting, seed {r.seed}); keep one of the two files", source=str(source))
        row.runs.append((Path(source), r))
    out: dict[TableKey, list[Row]] = {}
    for key in sorted(tables):
        clusters: dict[tuple[str, str], list[Row]] = defaultdict(list)
        for row in tables[key].values():
            clusters[(row.model, row.base_label)].append(row)
        for rows in clusters.values():
            rows.sort(key=lambda row: json.dumps(row.setting, sort_keys=True, default=str))
            suffixes = distinguishing_suffixes([row.setting for row in rows])
            for row, suffix in zip(rows, suffixes, strict=True):
                row.label = row.base_label + suffix
            # A suffix cut at three keys can repeat; the setting id keeps labels apart.
            labels = [row.label for row in rows]
            for row in rows:
                if labels.count(row.label) > 1:
                    row.label += f" #{row.first.setting_id[:6]}"
        out[key] = sorted(tables[key].values(), key=lambda row: (row.model, row.label))
    return out


def baselines(rows: list[Row], baseline: str) -> dict[int, Row]:
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


@dataclass(frozen=True)
class MinPrimary:
    """Leave out the rows of ``model`` on ``task`` whose best dev ``metric`` is below ``minimum``.

    A row's value is the mean over its runs of each run's best dev value of ``metric`` over its
    history (the value model selection saw; the test split is never used to decide). ``why``
    is printed under the task's table with the rows left out.
    """

    task: str
    model: str
    metric: str
    minimum: float
    why: str


# Rows below these stay out of the tables, the summary and the figures, listed under their table.
MIN_PRIMARY: tuple[MinPrimary, ...] = (
    MinPrimary("docred", "bert_re", "ign_f1", 0.30,
               "a BERT-RE run below it has not learned the task (too few epochs or a collapsed "
               "run) and its Δ would say nothing about the loss"),
)


def best_dev(row: Row, metric: str) -> float:
    """Mean over ``row``'s runs of the best dev ``metric`` in each run's history (nan if none)."""
    best = []
    for _, run in row.runs:
        values = [h.dev[metric] for h in run.history if metric in h.dev]
        if not values:
            return math.nan
        best.append(max(values) if run.higher_is_better.get(metric, True) else min(values))
    return float(np.mean(best))


def rule_for(task: str, model: str,
             rules: Sequence[MinPrimary] = MIN_PRIMARY) -> MinPrimary | None:
    """The first rule of ``rules`` for ``model`` on ``task``, or None."""
    return next((r for r in rules if r.task == task and r.model == model), None)


def apply_min_primary(groups: Mapping[TableKey, list[Row]],
                      rules: Sequence[MinPrimary] = MIN_PRIMARY,
                      ) -> tuple[dict[TableKey, list[Row]], dict[TableKey, list[tuple[Row, str]]]]:
    """(tables without the rows a rule leaves out, table -> [(row, why), ...] left out).

    ``why`` is one sentence: the row's value, the minimum and the rule's reason. A row whose
    dev value is missing is left out too: the criterion cannot be checked. A table whose every
    row is left out disappears from the first mapping.
    """
    kept: dict[TableKey, list[Row]] = {}
    dropped: dict[TableKey, list[tuple[Row, str]]] = {}
    for key, rows in groups.items():
        keep = []
        for row in rows:
            rule = rule_for(key[0], row.model, rules)
            if rule is None or _meets(row, rule):
                keep.append(row)
                continue
            value = best_dev(row, rule.metric)
            got = "no dev value recorded" if math.isnan(value) else (
                f"best dev {rule.metric} {100 * value:.2f}")
            dropped.setdefault(key, []).append((row, (
                f"{got}, below the minimum {100 * rule.minimum:.2f} for {rule.model} on "
                f"{rule.task}: {rule.why}")))
        if keep:
            kept[key] = keep
    return kept, dropped


def _meets(row: Row, rule: MinPrimary) -> bool:
    value = best_dev(row, rule.metric)
    if math.isnan(value):
        return False
    return value >= rule.minimum if row.first.higher_is_better.get(rule.metric, True) else (
        value <= rule.minimum)


def fmt_mean_std(values: np.ndarray) -> str:
    """``mean ± std`` (sample std) in %, or the single value."""
    if len(values) == 1:
        return f"{100 * values[0]:.2f}"
    return f"{100 * values.mean():.2f} ± {100 * values.std(ddof=1):.2f}"


def sweep_table(results: Sequence[Mapping[str, Any] | Result], *, max_other_metrics: int = 4,
                sources: Sequence[str] | None = None) -> str:
    """The end-of-sweep markdown: per table, one row per setting (never pooled), mean ± std.

    ``results``: the sweep's results objects (dicts as written, or :class:`Result`), including
    cells read back from disk. Columns: model, loss, n (seeds), the task's primary metric
    (``selection.metric``) first, then up to ``max_other_metrics`` other metrics (sorted by
    name), and the mean training seconds. Rows: best primary metric first within a model.
    ``sources`` names each result in error messages (default ``<result i>``).

    Raises:
        SchemaError: a result does not follow the schema; DuplicateRunError: two results of
        one run.
    """
    names = list(sources) if sources is not None else [f"<result {i}>"
                                                         for i in range(len(results))]
    typed = [(Path(name), r if isinstance(r, Result) else Result.from_dict(dict(r), name))
             for name, r in zip(names, results, strict=True)]
    parts = []
    for (task, version, dataset), rows in group_rows(typed).items():
        first = rows[0].first
        primary, hib = first.selection.metric, first.higher_is_better
        common = set.intersection(*(set(r.metrics) for row in rows for _, r in row.runs))
        others = sorted(m for m in common if m != primary)[:max_other_metrics]
        metrics = [primary, *others]
        sign = 1 if hib.get(primary, True) else -1
        rows = sorted(rows, key=lambda row: (row.model, -sign * row.values(primary).mean(),
                                             row.label))
        arrows = [f"{m} {'↑' if hib.get(m, True) else '↓'}" for m in metrics]
        lines = [f"{task} (v{version}, {dataset}): {first.task.split} split, metrics in %, "
                 "mean ± std over seeds", "",
                 "| model | loss | n | " + " | ".join(arrows) + " | train s |",
                 "|---|---|---:|" + "---:|" * (len(metrics) + 1)]
        for row in rows:
            cells = " | ".join(fmt_mean_std(row.values(m)) for m in metrics)
            lines.append(f"| {row.model} | {row.label} | {len(row.runs)} | {cells} | "
                         f"{row.timing('train_s'):.1f} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + ("\n" if parts else "")
