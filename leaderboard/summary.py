"""Cross-task summary: each loss against the baseline of its model, then wins/ties/losses and
mean rank across tasks (shared by the markdown leaderboard and the web page).

Per table (task, version, dataset) and model, every loss row is compared with its baseline row
(:func:`leaderboard.table.baselines`: the baseline loss trained the same way): the Δ of the
primary metric (row mean over seeds minus baseline mean) with a 95% interval:

* ``"bootstrap"``: paired bootstrap over test examples when every run of both rows saved test
  outputs that reproduce its recorded metric (score rows or per-example counts,
  :func:`leaderboard.stats.resample_row`), on the same draws;
* ``"seeds"`` (the fallback): paired t-interval over the seeds both rows have.

Outcome: ``"tie"`` when the interval contains 0 (or cannot be computed: one paired seed),
otherwise ``"win"`` when the loss is better than the baseline in the metric's direction
(``higher_is_better``) and ``"loss"`` when worse.

A *group* is one baseline row and the rows compared with it (one table, one model, one training
recipe). Inside a group each loss is represented by one row: the loss label is the loss name
(``loss.name``), so a loss's presets count as one loss (``asl_coco`` and ``asl_docred`` are
``asl``); when a group holds several rows of one loss (hyper-parameter variants), the row with
the most seeds (then the first label) stands for it, chosen without looking at any metric; the
others keep their Δ in the task's table but stay out of the summary. ``deltas`` lists exactly
the summarised rows; ``(task_key, model, baseline_label, loss_label)`` is unique in it.

Rank: in each group of two or more losses, the losses (baseline included) are ranked by the
mean primary metric over seeds (1 = best; ties share the average rank); a loss's mean rank is
the average of its ranks over the groups it is in. Its 95% interval (rank stability, as MTEB
reports it) comes from the same bootstrap: each resample recomputes every loss's metric of a
group on the same paired draw of test examples, ranks them and averages the ranks over groups.
A group where some row has no usable saved outputs resamples seeds instead (the same seeds,
drawn with replacement, for every loss of the group; a group with fewer than two common seeds
keeps its ranks fixed); such groups are listed in ``seed_groups``.

Rows that a :data:`leaderboard.table.MIN_PRIMARY` rule leaves out are not summarised; they are
in ``excluded``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from leaderboard.stats import (
    BOOTSTRAP_SEED,
    N_RESAMPLES,
    Resampled,
    interval,
    resample_row,
    seed_interval,
)
from leaderboard.table import (
    MIN_PRIMARY,
    MinPrimary,
    Row,
    TableKey,
    apply_min_primary,
    baselines,
    best_dev,
    rule_for,
)

__all__ = ["CrossTaskSummary", "Excluded", "LossSummary", "TableComparison", "TaskDelta",
           "compare_table", "excluded_rows", "loss_label", "summarize", "summarize_tables"]


@dataclass(frozen=True)
class TaskDelta:
    """One loss row against its baseline row on one table and model (values are fractions)."""

    task_key: TableKey  # (task, version, dataset)
    model: str
    loss_label: str  # the loss name (presets of one loss share it), see the module docstring
    primary: str  # the primary metric (selection.metric)
    delta: float  # row mean minus baseline mean
    lo: float  # 95% interval; nan when it cannot be computed (one paired seed)
    hi: float
    method: Literal["bootstrap", "seeds"]
    outcome: Literal["win", "tie", "loss"]
    row_label: str = ""  # the row's label in its table, e.g. "asl_coco" or "asl (epochs=1)"
    baseline_label: str = ""  # the baseline row's label, e.g. "bce" or "bce (epochs=10)"
    higher_is_better: bool = True  # direction of ``primary``


@dataclass(frozen=True)
class LossSummary:
    """One loss across tasks: outcomes against the baseline and mean rank with its interval."""

    loss_label: str
    wins: int
    ties: int
    losses: int
    n_tasks: int  # groups (table, model, recipe) the loss is ranked in
    mean_rank: float  # nan when the loss is in no group of two or more losses
    rank_lo: float
    rank_hi: float


@dataclass(frozen=True)
class Excluded:
    """A row left out by a :data:`~leaderboard.table.MIN_PRIMARY` rule, and why."""

    task_key: TableKey
    model: str
    row_label: str
    reason: str  # one sentence: the row's value, the minimum and the rule's reason
    value: float = math.nan  # the row's value of the rule's metric (nan: none recorded)


@dataclass(frozen=True)
class CrossTaskSummary:
    """Everything the summary shows: per-task deltas, per-loss totals and what was left out."""

    baseline: str
    deltas: list[TaskDelta]
    losses: list[LossSummary]  # sorted by mean rank, then label
    excluded: list[Excluded] = field(default_factory=list)
    # groups whose rank interval resampled seeds: (task_key, model, baseline_label)
    seed_groups: list[tuple[TableKey, str, str]] = field(default_factory=list)


@dataclass
class TableComparison:
    """One table's comparisons (:func:`compare_table`), reused by the markdown table."""

    key: TableKey
    rows: list[Row]
    base: dict[int, Row]  # id(row) -> its baseline row (absent: none comparable)
    deltas: dict[int, TaskDelta]  # id(row) -> Δ, for every row with a baseline other than itself
    groups: list[list[Row]]  # baseline row first, then one row per other loss
    resampled: dict[int, Resampled | None]  # id(row) -> bootstrap means (rows compared only)


def loss_label(row: Row) -> str:
    """The summary's name of a row's loss: the registered loss name, without preset."""
    return row.first.loss.name


def _outcome(lo: float, hi: float, higher_is_better: bool) -> Literal["win", "tie", "loss"]:
    if math.isnan(lo) or lo <= 0 <= hi:
        return "tie"
    return "win" if (lo > 0) == higher_is_better else "loss"


def compare_table(key: TableKey, rows: list[Row], baseline: str = "bce",
                  n_resamples: int = N_RESAMPLES,
                  seed: int = BOOTSTRAP_SEED) -> TableComparison:
    """Δ of every row against its baseline row, and the groups the summary ranks."""
    primary = rows[0].first.selection.metric
    hib = rows[0].first.higher_is_better.get(primary, True)
    base = baselines(rows, baseline)
    resampled: dict[int, Resampled | None] = {}

    def res(row: Row) -> Resampled | None:
        if id(row) not in resampled:
            resampled[id(row)] = resample_row(row, primary, n_resamples, seed)
        return resampled[id(row)]

    deltas = {}
    for row in rows:
        b = base.get(id(row))
        if b is None or b is row:
            continue
        mine, theirs = res(row), res(b)
        if mine is not None and theirs is not None and mine.pairs_with(theirs):
            (est, lo, hi), method = interval(mine.means, theirs.means), "bootstrap"
        else:
            (est, lo, hi), method = seed_interval(row.by_seed(primary),
                                                  b.by_seed(primary)), "seeds"
        deltas[id(row)] = TaskDelta(key, row.model, loss_label(row), primary, est, lo, hi,
                                    method, _outcome(lo, hi, hib), row.label, b.label, hib)
    groups = []
    for b in dict.fromkeys(id(b) for b in base.values()):
        head = next(r for r in rows if id(r) == b)
        members: dict[str, list[Row]] = defaultdict(list)
        for row in rows:
            if row is not head and id(row) in deltas and base[id(row)] is head:
                members[loss_label(row)].append(row)
        members.pop(loss_label(head), None)  # the baseline row stands for its own loss
        # the most seeds, then the first label: chosen without looking at any metric
        groups.append([head, *(min(m, key=lambda r: (-len(r.runs), r.label))
                               for _, m in sorted(members.items()))])
    return TableComparison(key, rows, base, deltas, groups, resampled)


def _ranks(values: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Average ranks (1 = best) down axis 0 of ``values`` [L, C]: ties share their mean rank."""
    v = values if higher_is_better else -values
    better = (v[None, :, :] > v[:, None, :]).sum(axis=1)
    equal = (v[None, :, :] == v[:, None, :]).sum(axis=1) - 1  # other rows tied with this one
    return 1.0 + better + 0.5 * equal


def _group_samples(group: list[Row], comparison: TableComparison, n_resamples: int,
                   seed: int) -> tuple[np.ndarray, bool]:
    """Each member's mean primary metric per resample [L, R], and whether seeds were resampled.

    Test-example bootstrap when every member has saved outputs paired with the baseline's;
    otherwise the same seeds (common to all members) drawn with replacement for every member.
    """
    res = [comparison.resampled.get(id(r)) for r in group]
    if all(x is not None and x.pairs_with(res[0]) for x in res):
        return np.stack([x.means[1:] for x in res]), False
    primary = group[0].first.selection.metric
    by_seed = [r.by_seed(primary) for r in group]
    common = sorted(set.intersection(*(set(s) for s in by_seed)))
    point = np.array([r.values(primary).mean() for r in group])
    if len(common) < 2:
        return np.repeat(point[:, None], n_resamples, axis=1), True
    table = np.array([[s[k] for k in common] for s in by_seed])  # [L, seeds]
    rng = np.random.default_rng(seed)
    draws = np.stack([rng.integers(0, len(common), len(common)) for _ in range(n_resamples)])
    return table[:, draws].mean(axis=2), True


def summarize_tables(comparisons: list[TableComparison], baseline: str = "bce",
                     excluded: list[Excluded] | None = None, n_resamples: int = N_RESAMPLES,
                     seed: int = BOOTSTRAP_SEED) -> CrossTaskSummary:
    """The cross-task summary from per-table comparisons (see :func:`summarize`)."""
    deltas: list[TaskDelta] = []
    point_ranks: dict[str, list[float]] = defaultdict(list)
    sampled_ranks: dict[str, list[np.ndarray]] = defaultdict(list)
    seed_groups = []
    for comparison in comparisons:
        for group in comparison.groups:
            deltas += [comparison.deltas[id(r)] for r in group[1:]]
            if len(group) < 2:
                continue
            primary = group[0].first.selection.metric
            hib = group[0].first.higher_is_better.get(primary, True)
            # point ranks from the recorded means, not the bootstrap's full-split recomputation
            point = _ranks(np.array([[r.values(primary).mean()] for r in group]), hib)[:, 0]
            samples, by_seeds = _group_samples(group, comparison, n_resamples, seed)
            if by_seeds:
                seed_groups.append((comparison.key, group[0].model, group[0].label))
            ranks = _ranks(samples, hib)
            for i, row in enumerate(group):
                point_ranks[loss_label(row)].append(float(point[i]))
                sampled_ranks[loss_label(row)].append(ranks[i])
    outcomes: dict[str, list[str]] = defaultdict(list)
    for d in deltas:
        outcomes[d.loss_label].append(d.outcome)
    losses = []
    for label in sorted(set(point_ranks) | set(outcomes)):
        if point_ranks[label]:
            mean = float(np.mean(point_ranks[label]))
            lo, hi = np.percentile(np.mean(sampled_ranks[label], axis=0), [2.5, 97.5])
        else:
            mean = lo = hi = math.nan
        o = outcomes[label]
        losses.append(LossSummary(label, o.count("win"), o.count("tie"), o.count("loss"),
                                  len(point_ranks[label]), mean, float(lo), float(hi)))
    losses.sort(key=lambda s: (math.isnan(s.mean_rank), s.mean_rank, s.loss_label))
    deltas.sort(key=lambda d: (d.task_key, d.model, d.baseline_label, d.loss_label))
    return CrossTaskSummary(baseline, deltas, losses, list(excluded or []), seed_groups)


def _excluded(key: TableKey, row: Row, why: str, rules: Sequence[MinPrimary]) -> Excluded:
    rule = rule_for(key[0], row.model, rules)
    return Excluded(key, row.model, row.label, why,
                    best_dev(row, rule.metric) if rule else math.nan)


def excluded_rows(groups: Mapping[TableKey, list[Row]],
                  rules: Sequence[MinPrimary] = MIN_PRIMARY,
                  ) -> tuple[dict[TableKey, list[Row]], list[Excluded]]:
    """(the tables without the rows ``rules`` leave out, those rows as :class:`Excluded`)."""
    kept, dropped = apply_min_primary(groups, rules)
    return kept, [_excluded(key, row, why, rules) for key, items in dropped.items()
                  for row, why in items]


def summarize(groups: Mapping[TableKey, list[Row]], baseline: str = "bce",
              rules: Sequence[MinPrimary] = MIN_PRIMARY) -> CrossTaskSummary:
    """The cross-task summary of ``groups`` (``leaderboard.render.group_runs`` output).

    Rows that a ``rules`` entry leaves out (:data:`leaderboard.table.MIN_PRIMARY`) are not
    compared and are listed in ``excluded``. See the module docstring for the method.
    """
    kept, excluded = excluded_rows(groups, rules)
    return summarize_tables([compare_table(k, rows, baseline) for k, rows in kept.items()],
                            baseline, excluded)
