"""Results JSON files -> a deterministic markdown leaderboard (and, optionally, figures).

Grouping: one section per (task, task version, dataset); versions and datasets are never mixed.
Inside a group: one row per (model, loss setting) — a loss setting is its preset name, or its
name plus a short hash of its resolved hyper-parameters when runs of one name differ — with
``mean ± std`` over seeds (in %), ``n`` and the best value per column in bold.

The "Δ vs baseline" column is the difference on the primary metric to the baseline loss with the
same model (the row labelled with the baseline name, else the row of that loss under a preset,
e.g. ``bce_docred`` for ``bce``), with a 95% confidence interval:

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

import functools
import hashlib
import json
import math
import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from leaderboard.schema import SchemaError, iter_results

N_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
# t(0.975, df) for df = 1..30; larger df use 1.96
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042]
REFERENCES = Path(__file__).with_name("references.yaml")


@functools.cache
def resamplable_metrics() -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    """Metric name -> f(scores, targets): the metrics the bootstrap can recompute."""
    from tasks import metrics as M

    out: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
        "map": lambda s, t: M.mean_average_precision(s, t).value,
        "macro_f1": lambda s, t: M.classification_scores(s, t)["macro_f1"],
    }
    for k in ("CP", "CR", "CF1", "OP", "OR", "OF1"):
        out[k] = lambda s, t, k=k: M.label_f1_scores(s, t)[k]
    for k in (1, 3, 5):
        out[f"P@{k}"] = lambda s, t, k=k: M.precision_at_k(s, t, k)
        out[f"nDCG@{k}"] = lambda s, t, k=k: M.ndcg_at_k(s, t, k)
    return out


@dataclass
class Row:
    """One (model, loss setting) row of a group: its runs and display label."""

    model: str
    label: str
    runs: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)

    def values(self, metric: str) -> np.ndarray:
        """The metric of every run (seed), as fractions."""
        return np.array([r["metrics"][metric] for _, r in self.runs], dtype=np.float64)

    def timing(self, key: str) -> float:
        """Mean of ``timing[key]`` over the runs (train_s, examples_per_s)."""
        return float(np.mean([r["timing"][key] for _, r in self.runs]))

    def by_seed(self, metric: str) -> dict[int, float]:
        """seed -> metric value."""
        return {r["seed"]: r["metrics"][metric] for _, r in self.runs}


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:6]


def group_runs(
    runs: Iterable[tuple[Path, dict[str, Any]]],
) -> dict[tuple[str, str, str], list[Row]]:
    """Group valid runs by (task, version, dataset), then into rows by (model, loss setting)."""
    cells: dict[tuple[str, str, str], dict[tuple, Row]] = defaultdict(dict)
    names: dict[tuple[str, str, str], dict[tuple[str, str], set[str]]] = defaultdict(
        lambda: defaultdict(set))
    runs = list(runs)
    for _, r in runs:
        g = (r["task"]["name"], r["task"]["version"], r["task"]["dataset"])
        label = r["loss"]["preset"] or r["loss"]["name"]
        names[g][(r["model"]["name"], label)].add(_digest([r["model"]["kwargs"],
                                                           r["loss"]["kwargs"]]))
    for path, r in runs:
        g = (r["task"]["name"], r["task"]["version"], r["task"]["dataset"])
        label = r["loss"]["preset"] or r["loss"]["name"]
        d = _digest([r["model"]["kwargs"], r["loss"]["kwargs"]])
        shown = label if len(names[g][(r["model"]["name"], label)]) == 1 else f"{label} #{d}"
        key = (r["model"]["name"], shown)
        row = cells[g].setdefault(key, Row(r["model"]["name"], shown))
        row.runs.append((path, r))
    return {g: [rows[k] for k in sorted(rows)] for g, rows in sorted(cells.items())}


def _load_scores(path: Path, run: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    name = run.get("scores_file")
    if not name or not (path.parent / name).is_file():
        return None
    with np.load(path.parent / name) as z:
        if "targets" not in z:
            return None
        return z["scores"].astype(np.float64), z["targets"].astype(bool)


def resampled_means(metric: Callable[[np.ndarray, np.ndarray], float], runs: list[np.ndarray],
                    targets: np.ndarray, n_resamples: int = N_RESAMPLES,
                    seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """Mean metric over ``runs`` on the full split, then on each bootstrap draw: [1 + R].

    The draws depend only on (seed, number of examples), so every row of a group sees the same
    examples: the differences between rows are paired.
    """
    rng = np.random.default_rng(seed)
    n = len(targets)
    draws = [np.arange(n)] + [rng.integers(0, n, n) for _ in range(n_resamples)]
    return np.array([np.mean([metric(s[i], targets[i]) for s in runs]) for i in draws])


def paired_bootstrap(metric: Callable[[np.ndarray, np.ndarray], float],
                     row: list[np.ndarray], base: list[np.ndarray], targets: np.ndarray,
                     n_resamples: int = N_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                     base_means: np.ndarray | None = None) -> tuple[float, float, float]:
    """(difference, lower, upper): mean metric of ``row`` runs minus ``base`` runs, 95% interval.

    ``base_means``: ``resampled_means`` of ``base`` if already computed (one baseline serves
    every row of a group).
    """
    if base_means is None:
        base_means = resampled_means(metric, base, targets, n_resamples, seed)
    d = resampled_means(metric, row, targets, n_resamples, seed) - base_means
    lo, hi = np.percentile(d[1:], [2.5, 97.5])
    return float(d[0]), float(lo), float(hi)


def seed_interval(row: dict[int, float], base: dict[int, float]) -> tuple[float, float, float]:
    """Paired t-interval over the seeds both rows have: (mean difference, lower, upper)."""
    d = np.array([row[s] - base[s] for s in sorted(set(row) & set(base))])
    if len(d) < 2:
        return (float(d.mean()) if len(d) else math.nan), math.nan, math.nan
    half = (_T975[len(d) - 2] if len(d) - 1 <= len(_T975) else 1.96) * d.std(ddof=1) / math.sqrt(
        len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


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
            abs(fn(x[0], x[1]) - r["metrics"][primary]) < 1e-6
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


def _fmt(values: np.ndarray) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.2f}"
    return f"{100 * values.mean():.2f} ± {100 * values.std(ddof=1):.2f}"


def _thresholds(runs: list[dict[str, Any]]) -> str:
    """Decision thresholds per policy: one value, or the range of tuned values over runs."""
    parts = []
    for policy in sorted({r["threshold"]["policy"] for r in runs}):
        values = [r["threshold"]["value"] for r in runs if r["threshold"]["policy"] == policy]
        if not all(isinstance(v, (int, float)) for v in values):  # per-class lists, or None
            parts.append(f"{policy} (per class or unset)")
            continue
        numbers = sorted(set(values))
        if len(numbers) == 1:
            parts.append(f"{policy} {numbers[0]:.4g}")
        else:
            parts.append(f"{policy} {numbers[0]:.4g}-{numbers[-1]:.4g} over runs")
    return ", ".join(parts)


def _protocol(rows: list[Row], primary: str) -> str:
    runs = [r for row in rows for _, r in row.runs]
    def vals(get: Callable[[dict[str, Any]], Any]) -> str:
        return ", ".join(sorted({str(get(r)) for r in runs}))
    return (f"Protocol: device {vals(lambda r: r['env']['device'])}, world size "
            f"{vals(lambda r: r['env']['world_size'])}, mixed precision "
            f"{vals(lambda r: r['env']['mixed_precision'])}; selection on "
            f"{vals(lambda r: r['selection']['split'])} by {primary}; threshold "
            f"{_thresholds(runs)}; "
            f"epochs (max) {vals(lambda r: r['config'].get('epochs', '?'))}; "
            f"{len(rows)} rows, {len(runs)} runs.")


def render_group(key: tuple[str, str, str], rows: list[Row], baseline: str,
                 figures: dict[str, str] | None = None) -> tuple[str, list[str]]:
    """Markdown of one group and the Δ methods used."""
    task, version, dataset = key
    first = rows[0].runs[0][1]
    hib = first["higher_is_better"]
    primary = first["selection"]["metric"]
    metrics = [primary, *sorted(k for k in first["metrics"] if k != primary)]
    sign = 1 if hib[primary] else -1
    base = {row.model: row for row in rows if row.runs[0][1]["loss"]["name"] == baseline}
    base.update({row.model: row for row in rows if row.label == baseline})  # exact label first
    rows = sorted(rows, key=lambda r: (r.model, base.get(r.model) is not r,
                                       -sign * r.values(primary).mean(), r.label))
    best = {}
    for m in metrics:
        means = [row.values(m).mean() for row in rows if m in row.runs[0][1]["metrics"]]
        best[m] = (max if hib[m] else min)(means)
    head = ["model", "loss", "n", *[f"{m} {'↑' if hib[m] else '↓'}" for m in metrics],
            f"Δ {primary} vs {baseline} (95% CI)", "train s", "ex/s"]
    lines = [f"## {task} (v{version}, {dataset})", "",
             f"Test split, {first['task']['num_examples']} examples, {first['task']['num_labels']} "
             f"labels; metrics in %, mean ± std over seeds; train s: training seconds per run, "
             f"ex/s: training examples per second (an example is what num_examples counts: an "
             f"image, a document).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * (len(metrics) + 3)]
    methods, base_cache = [], {}
    for row in rows:
        cells = []
        for m in metrics:
            v = row.values(m)
            text = _fmt(v)
            cells.append(f"**{text}**" if np.isclose(v.mean(), best[m], rtol=0, atol=1e-12)
                         else text)
        delta, method = _delta_cell(row, base.get(row.model), primary, base_cache)
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
    """
    valid, invalid = [], []
    for path, obj in iter_results(root):
        if isinstance(obj, SchemaError):
            if not skip_invalid:
                raise obj
            invalid.append((path, obj))
        else:
            valid.append((path, obj))
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
