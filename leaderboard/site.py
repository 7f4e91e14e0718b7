"""Results JSON files -> one self-contained HTML leaderboard page (``--html``).

The page reads the same results, rows and intervals as the markdown leaderboard
(:mod:`leaderboard.render`): rows are settings (:mod:`leaderboard.table`), the same rows are left
out (``MIN_PRIMARY``), Δ and its 95% interval come from :func:`leaderboard.summary.compare_table`
(the markdown's bootstrap or seed interval) and no metric is recomputed. Sections:

* the cross-task summary (:func:`leaderboard.summary.summarize_tables`): wins, ties and losses of
  every loss against the baseline, its mean rank with an interval, a forest plot of every Δ;
* one section per (task, task version, dataset): a sortable, searchable table of every metric
  (mean and sample std over seeds, in %), n, Δ vs the baseline with its interval, training cost;
  an interactive dot plot of the primary metric per row (95% t-interval over seeds, each seed
  shown) and a forest plot of Δ; the papers' published numbers beside it (``references.yaml``,
  never merged with ours) and the protocol line.

Tables are DataTables through ``itables`` (its offline bundle), plots are plotly; both libraries
are embedded inline, so the page needs no server and no network. The output is deterministic
(fixed element ids, no timestamps), so it can be committed.

Element ids (stable, for tests and links): ``summary``, ``table-summary``, ``plot-summary-delta``,
``plot-summary-rank``; per group with slug ``S`` (``task-vVERSION-dataset``, lowercased):
``group-S``, ``table-S``, ``plot-S-metric``, ``plot-S-delta``, and ``published-S`` where
``references.yaml`` has the task.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from leaderboard.render import REFERENCES, protocol_line, sorted_rows, table_heading
from leaderboard.schema import SchemaError
from leaderboard.stats import seed_interval
from leaderboard.summary import (
    CrossTaskSummary,
    Excluded,
    TableComparison,
    TaskDelta,
    compare_table,
    excluded_rows,
    summarize_tables,
)
from leaderboard.table import Row, TableKey, group_rows, load_runs

__all__ = ["browser_paths", "build_site", "open_browser", "screenshot", "slug",
           "wait_until_drawn"]

# Page style: plain, readable, no web fonts (nothing may be fetched).
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1f2328; background: #fff; }
header { padding: 16px 28px 8px; border-bottom: 1px solid #d0d7de; background: #f6f8fa; }
header h1 { margin: 0 0 4px; font-size: 1.6em; }
header p { margin: 4px 0; color: #57606a; }
nav a { margin-right: 14px; white-space: nowrap; }
main { padding: 0 28px 40px; }
section { margin-top: 28px; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
.group-body { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.ours { flex: 3 1 640px; min-width: 0; overflow-x: auto; }
.published { flex: 1 1 320px; min-width: 0; font-size: 0.9em; background: #f6f8fa;
             border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 12px; }
.published h3 { margin: 4px 0 8px; font-size: 1em; }
/* a grid, not a flexbox: each plot's width is fixed before plotly draws it */
.plots { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 12px; }
@media (max-width: 1100px) { .plots { grid-template-columns: minmax(0, 1fr); } }
.note, .protocol { color: #57606a; font-size: 0.9em; }
table.dataTable td, table.dataTable th { white-space: nowrap; }
"""

# plotly: no logo link (the page links nowhere); resize with the window
_PLOT_CONFIG = {"displaylogo": False, "responsive": True}
# one line above the plot, right-aligned (the title is on the left)
_LEGEND = {"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0}
_OUTCOME_COLORS = {"win": "#1a7f37", "tie": "#8c959f", "loss": "#cf222e"}


def slug(key: TableKey) -> str:
    """``task-vVERSION-dataset`` lowercased, every other character run replaced by ``-``."""
    task, version, dataset = key
    return re.sub(r"[^a-z0-9]+", "-", f"{task}-v{version}-{dataset}".lower()).strip("-")


# ----------------------------------------------------------------------------- embedding


def _datatable(df: Any, table_id: str, caption: str | None = None,
               height: str | None = None) -> str:
    """An itables DataTable (offline mode: the bundle is loaded once by ``_itables_init``).

    Every row on one page (a leaderboard table is short), the search box on top, sorting by a
    click on a header. Cells are texts: a column of numeric texts sorts as numbers. ``height``
    (CSS, e.g. ``"360px"``): scroll the rows inside a box of that height.
    """
    import itables

    scroll = {"scrollY": height, "scrollCollapse": True} if height else {}
    return _offline(itables.to_html_datatable(
        df, caption=caption, table_id=table_id, connected=False, showIndex=False,
        paging=False, maxBytes=0, display_logo_when_loading=False,
        text_in_header_can_be_selected=False, classes="display compact cell-border",
        layout={"topStart": "info", "topEnd": "search", "bottomStart": None,
                "bottomEnd": None}, **scroll))


def _offline(fragment: str) -> str:
    """``fragment`` without its links to web pages (itables' "help" and preview notes): the
    page is read offline, so it links nowhere; the link text stays."""
    return re.sub(r"<a href=[\"']?https?://[^>]*>(.*?)</a>", r"\1", fragment, flags=re.S)


def _itables_init() -> str:
    """The DataTables bundle (JS and CSS, base64 inside the page) that every table waits for."""
    from itables import options
    from itables.javascript import generate_init_offline_itables_html

    init = generate_init_offline_itables_html(options.dt_bundle)
    # its <noscript> note speaks of a notebook ("is your notebook trusted?"): not this page's
    return _offline(re.sub(r"<noscript>.*?</noscript>", "", init, flags=re.S))


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    # "</script>" inside the library text would end the element early; it has none, but be sure
    return get_plotlyjs().replace("</script>", "<\\/script>")


def _figure_html(fig: Any, div_id: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                       config=_PLOT_CONFIG)


# ----------------------------------------------------------------------------- numbers


def _pct(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(100 * x, 4)


def _fixed(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}"


def _delta_text(d: TaskDelta | None, is_base: bool) -> str:
    if is_base:
        return "baseline"
    if d is None:
        return "n/a"
    if not (math.isfinite(d.lo) and math.isfinite(d.hi)):
        return "(1 paired seed)"
    mark = " *" if d.lo > 0 or d.hi < 0 else ""
    # as in the markdown: the seed interval is the fallback, say so
    fallback = " (fallback: seeds)" if d.method == "seeds" else ""
    return f"[{100 * d.lo:+.2f}, {100 * d.hi:+.2f}]{mark}{fallback}"


def _seed_ci(row: Row, metric: str) -> tuple[float, float, float]:
    """Mean and 95% t-interval over seeds of one row (the markdown's seed interval vs 0)."""
    values = row.by_seed(metric)
    return seed_interval(values, dict.fromkeys(values, 0.0))


def _name(row: Row, models: int) -> str:
    return row.label if models == 1 else f"{row.model} / {row.label}"


# ----------------------------------------------------------------------------- sections


def _group_table(key: TableKey, rows: list[Row], comparison: TableComparison,
                 baseline: str) -> str:
    import pandas as pd

    first = rows[0].first
    primary = first.selection.metric
    hib = first.higher_is_better
    metrics = [primary, *sorted(k for k in first.metrics if k != primary)]
    # One column per number: a "mean ± sd" text would sort as text. Numbers are written as
    # text with fixed decimals ("" when absent); DataTables detects a column of numeric texts
    # and sorts it as numbers, and the page shows exactly the digits of the markdown.
    columns = ["model", "loss", "n"]
    for m in metrics:
        columns += [f"{m} {'↑' if hib[m] else '↓'}", f"{m} sd"]
    columns += [f"Δ {primary} vs {baseline}", "95% CI", "outcome", "train s", "ex/s"]
    data = []
    for row in rows:
        cells: list[Any] = [row.model, row.label, str(len(row.runs))]
        for m in metrics:
            v = row.values(m) if m in row.first.metrics else np.array([])
            cells += [_fixed(100 * v.mean()) if len(v) else "",
                      _fixed(100 * v.std(ddof=1)) if len(v) > 1 else ""]
        d = comparison.deltas.get(id(row))
        base = comparison.base.get(id(row)) is row
        cells += ["" if base or d is None else f"{100 * d.delta:+.2f}", _delta_text(d, base),
                  "" if base or d is None else d.outcome, _fixed(row.timing("train_s"), 0),
                  _fixed(row.timing("examples_per_s"), 1)]
        data.append(cells)
    df = pd.DataFrame(data, columns=columns)
    return _datatable(df, f"table-{slug(key)}")


def _metric_plot(key: TableKey, rows: list[Row], models: int) -> str:
    import plotly.graph_objects as go

    first = rows[0].first
    primary = first.selection.metric
    names = [_name(r, models) for r in rows]
    cis = [_seed_ci(r, primary) for r in rows]
    means = [_pct(c[0]) for c in cis]
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=means, y=names, mode="markers", name="mean (95% CI over seeds)",
        marker={"size": 11, "color": "#0969da"},
        error_x={"type": "data", "symmetric": False,
                 "array": [None if _pct(hi) is None else _pct(hi) - m
                           for (_, _, hi), m in zip(cis, means, strict=True)],
                 "arrayminus": [None if _pct(lo) is None else m - _pct(lo)
                                for (_, lo, _), m in zip(cis, means, strict=True)]},
        hovertemplate="%{y}: %{x:.2f}<extra>mean</extra>"))
    seeds_x, seeds_y, seeds_text = [], [], []
    for row, name in zip(rows, names, strict=True):
        for seed, value in sorted(row.by_seed(primary).items()):
            seeds_x.append(_pct(value))
            seeds_y.append(name)
            seeds_text.append(f"seed {seed}")
    fig.add_trace(go.Scatter(
        x=seeds_x, y=seeds_y, mode="markers", name="one seed", text=seeds_text,
        marker={"size": 6, "color": "rgba(87,96,106,0.55)", "symbol": "circle-open"},
        hovertemplate="%{y}, %{text}: %{x:.2f}<extra></extra>"))
    fig.update_layout(
        title=f"{primary} (%): mean, 95% interval over seeds",
        template="plotly_white", height=max(280, 90 + 34 * len(rows)),
        # the legend under the axis: a metric name makes the title long
        margin={"l": 10, "r": 10, "t": 50, "b": 50},
        legend={"orientation": "h", "yanchor": "top", "y": -0.12, "xanchor": "left", "x": 0},
        yaxis={"autorange": "reversed", "automargin": True})
    return _figure_html(fig, f"plot-{slug(key)}-metric")


def _delta_plot(div_id: str, names: Sequence[str], ds: Sequence[TaskDelta], title: str,
                height: int | None = None) -> str:
    """A forest plot: Δ (pp) with its 95% interval per name, coloured by outcome."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for outcome in ("win", "tie", "loss"):
        idx = [i for i, d in enumerate(ds) if d.outcome == outcome]
        if not idx:
            continue
        x = [_pct(ds[i].delta) for i in idx]
        hi = [_pct(ds[i].hi) for i in idx]
        lo = [_pct(ds[i].lo) for i in idx]
        fig.add_trace(go.Scatter(
            x=x, y=[names[i] for i in idx], mode="markers", name=outcome,
            marker={"size": 10, "color": _OUTCOME_COLORS[outcome]},
            customdata=[[ds[i].method] for i in idx],
            error_x={"type": "data", "symmetric": False,
                     "array": [None if h is None else h - v for h, v in zip(hi, x, strict=True)],
                     "arrayminus": [None if lw is None else v - lw
                                    for lw, v in zip(lo, x, strict=True)]},
            hovertemplate="%{y}: %{x:+.2f} pp<extra>%{customdata[0]}</extra>"))
    fig.add_vline(x=0, line={"color": "#57606a", "dash": "dash"})
    fig.update_layout(
        title=title, template="plotly_white", height=height or max(240, 80 + 34 * len(names)),
        margin={"l": 10, "r": 10, "t": 60, "b": 40}, legend=_LEGEND,
        yaxis={"autorange": "reversed", "automargin": True, "categoryorder": "array",
               "categoryarray": list(dict.fromkeys(names))},
        xaxis={"title": "Δ (percentage points)", "zeroline": False})
    return _figure_html(fig, div_id)


def _references(task: str, path: Path = REFERENCES) -> tuple[list[dict], dict]:
    """The published entries of ``task`` and the papers (every scalar kept as printed)."""
    if not path.is_file():
        return [], {}
    # BaseLoader keeps every scalar as its text, so 85.10 shows as printed, not as 85.1
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
    return [e for e in data.get("entries", []) if e["task"] == task], data.get("papers", {})


def _published(key: TableKey) -> str:
    import pandas as pd

    task = key[0]
    entries, papers = _references(task)
    head = (f"<h3>Published: {html.escape(task)}</h3><p class='note'>From the papers, in %, "
            "with their own code, models and protocols: context, not measured by MLLB.</p>")
    if not entries:
        return head + "<p class='note'>No published numbers recorded for this task.</p>"
    keys = sorted({k for e in entries for k in e["metrics"]})
    data = []
    for e in entries:
        p = papers.get(e["paper"], {})
        data.append([f"{e['paper'].upper()} ({p.get('venue', '?')})", e["table"], e["split"],
                     e["model"], e["loss"], e.get("setting", ""),
                     *[e["metrics"].get(k, "") for k in keys]])
    df = pd.DataFrame(data, columns=["paper", "table", "split", "model", "loss", "setting",
                                     *keys])
    return head + _datatable(df, f"published-{slug(key)}", height="420px")


def _group_section(comparison: TableComparison, excluded: Sequence[Excluded],
                   baseline: str) -> str:
    key = comparison.key
    s = slug(key)
    first = comparison.rows[0].first
    primary = first.selection.metric
    rows = sorted_rows(comparison.rows, comparison.base, primary)  # the markdown's order
    models = len({r.model for r in rows})
    parts = [f"<section id='group-{s}' class='group'>",
             f"<h2>{html.escape(table_heading(key))}</h2>",
             f"<p class='note'>{html.escape(first.task.split.capitalize())} split, "
             f"{first.task.num_examples} examples, {first.task.num_labels} labels; metrics in "
             f"%, mean and sample std (sd) over seeds; Δ: difference to {html.escape(baseline)} "
             f"on {html.escape(primary)} in percentage points with its 95% interval "
             f"(* = excludes 0); train s: training seconds per run; ex/s: training examples "
             "per second. Click a header to sort; type in Search to filter.</p>",
             "<div class='group-body'><div class='ours'>",
             _group_table(key, rows, comparison, baseline), "</div>",
             "<aside class='published'>", _published(key), "</aside></div>",
             "<div class='plots'><div class='plot'>", _metric_plot(key, rows, models),
             "</div><div class='plot'>"]
    compared = [r for r in rows if id(r) in comparison.deltas]
    if compared:
        parts.append(_delta_plot(
            f"plot-{s}-delta", [_name(r, models) for r in compared],
            [comparison.deltas[id(r)] for r in compared],
            f"Δ {primary} vs {baseline} (pp), 95% interval"))
    else:
        parts.append(f"<p id='plot-{s}-delta' class='note'>No row has a comparable "
                     f"{html.escape(baseline)} baseline.</p>")
    parts += ["</div></div>", _left_out(excluded),
              f"<p class='protocol'>{html.escape(protocol_line(rows, primary))}</p>", "</section>"]
    return "\n".join(parts)


def _left_out(excluded: Sequence[Excluded]) -> str:
    """The rows a stated minimum (``MIN_PRIMARY``) left out of the table, each with why."""
    if not excluded:
        return ""
    return ("<p class='note'>Left out of this table, the summary and the plots:</p><ul class="
            "'note'>" + "".join(f"<li>{html.escape(f'{e.model} {e.row_label}: {e.reason}')}"
                                "</li>" for e in excluded) + "</ul>")


def _summary_section(groups: dict[TableKey, list[Row]], summary: CrossTaskSummary) -> str:
    import pandas as pd

    base = html.escape(summary.baseline)
    parts = ["<section id='summary'>", "<h2>Cross-task summary</h2>",
             f"<p class='note'>Each loss against {base} with the same model and training "
             "setting, on each task's primary metric: a win or a loss when the 95% interval "
             "of Δ excludes 0, a tie otherwise. Mean rank: over the tasks the loss ran on "
             "(1 = best), with its interval.</p>"]
    if not summary.losses:
        parts += ["<p class='note'>No loss has a comparable baseline yet.</p>", "</section>"]
        return "\n".join(parts)
    df = pd.DataFrame(
        [[s.loss_label, str(s.wins), str(s.ties), str(s.losses), str(s.n_tasks),
          _fixed(s.mean_rank) if math.isfinite(s.mean_rank) else "",
          f"[{s.rank_lo:.2f}, {s.rank_hi:.2f}]" if math.isfinite(s.rank_lo) else ""]
         for s in summary.losses],
        columns=["loss", "wins", "ties", "losses", "tasks", "mean rank", "rank interval"])
    parts.append("<div class='plots'><div class='plot'>")
    parts.append(_datatable(df, "table-summary"))
    parts.append("</div><div class='plot'>")
    parts.append(_rank_plot(summary))
    parts.append("</div></div>")
    if summary.deltas:
        parts.append(_summary_delta_plot(groups, summary))
    parts.append("</section>")
    return "\n".join(parts)


def _rank_plot(summary: CrossTaskSummary) -> str:
    import plotly.graph_objects as go

    # a loss never ranked (no group of two losses) has no rank to plot
    losses = [s for s in summary.losses if math.isfinite(s.mean_rank)]
    fig = go.Figure(go.Scatter(
        x=[s.mean_rank for s in losses], y=[s.loss_label for s in losses], mode="markers",
        marker={"size": 11, "color": "#0969da"}, name="mean rank",
        error_x={"type": "data", "symmetric": False,
                 "array": [s.rank_hi - s.mean_rank for s in losses],
                 "arrayminus": [s.mean_rank - s.rank_lo for s in losses]},
        hovertemplate="%{y}: mean rank %{x:.2f}<extra></extra>"))
    fig.update_layout(title="Mean rank (1 = best), with interval",
                      template="plotly_white", height=max(240, 80 + 34 * len(losses)),
                      margin={"l": 10, "r": 10, "t": 50, "b": 40},
                      yaxis={"autorange": "reversed", "automargin": True},
                      xaxis={"title": "rank"})
    return _figure_html(fig, "plot-summary-rank")


def _summary_delta_plot(groups: dict[TableKey, list[Row]], summary: CrossTaskSummary) -> str:
    """Forest plot of every (task, model, loss) Δ: one line per comparison, grouped by task."""
    models = {key: len({r.model for r in rows}) for key, rows in groups.items()}
    ds = sorted(summary.deltas, key=lambda d: (tuple(d.task_key), d.model, d.loss_label))
    names = []
    for d in ds:
        task, version, dataset = d.task_key
        where = f"{task} v{version} {dataset}" + (f" {d.model}"
                                                  if models.get(tuple(d.task_key), 1) > 1 else "")
        names.append(f"{d.loss_label} · {where}")
    return _delta_plot("plot-summary-delta", names, ds,
                       f"Δ vs {summary.baseline} on each task's primary metric, 95% interval")


def _skipped(invalid: Iterable[tuple[Path, SchemaError]], root: Path) -> str:
    items = []
    for path, error in invalid:
        rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        why = "; ".join(getattr(error, "errors", [str(error)])[:3])
        items.append(f"<li><code>{html.escape(rel)}</code>: {html.escape(why)}</li>")
    if not items:
        return ""
    return ("<section id='skipped'><h2>Skipped (invalid results files)</h2><ul>"
            + "".join(items) + "</ul></section>")


# ----------------------------------------------------------------------------- the page


def build_site(root: Path, baseline: str = "bce", skip_invalid: bool = False) -> str:
    """The whole leaderboard as one self-contained HTML page (every script and style inline).

    Reads every results file below ``root`` like :func:`leaderboard.render.build` and compares
    rows like it (:func:`leaderboard.summary.compare_table`, once per table, shared by the
    table, the plots and the summary).

    Raises:
        SchemaError: the first invalid file, unless ``skip_invalid`` (then listed on the page).
        DuplicateRunError: two files of one run (same run identity and seed).
    """
    valid, invalid = load_runs(root, skip_invalid)
    groups = group_rows(valid)
    kept, left_out = excluded_rows(groups)
    comparisons = {key: compare_table(key, rows, baseline) for key, rows in kept.items()}
    summary = summarize_tables(list(comparisons.values()), baseline, left_out)
    nav = "".join(f"<a href='#group-{slug(k)}'>{html.escape(f'{k[0]} ({k[2]})')}</a>"
                  for k in groups)
    body = [_summary_section(kept, summary)]
    for key in groups:
        excluded = [e for e in left_out if e.task_key == key]
        if key in comparisons:
            body.append(_group_section(comparisons[key], excluded, baseline))
        else:  # every row left out: the section only says which and why
            body.append(f"<section id='group-{slug(key)}' class='group'><h2>"
                        f"{html.escape(table_heading(key))}</h2>{_left_out(excluded)}</section>")
    body.append(_skipped(invalid, root))
    runs = sum(len(row.runs) for rows in kept.values() for row in rows)
    return "\n".join([
        "<!DOCTYPE html>", "<html lang='en'>", "<head>", "<meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<title>MLLB leaderboard</title>", f"<style>{_CSS}</style>",
        f"<script>{_plotly_js()}</script>", "</head>", "<body>",
        "<header><h1>MLLB leaderboard</h1>",
        f"<p>Generated by <code>python -m leaderboard --html</code> from the results files "
        f"under <code>{html.escape(root.name)}/</code>: {len(groups)} tables, {runs} runs, "
        f"Δ vs {html.escape(baseline)}. Do not edit by hand.</p>",
        f"<nav><a href='#summary'>Summary</a>{nav}</nav></header>",
        "<main>", _itables_init(), *body, "</main>", "</body>", "</html>", ""])


# ----------------------------------------------------------------------------- in a browser


def browser_paths() -> tuple[str, str] | None:
    """(Chromium binary, chromedriver) found on PATH, or None (Debian: ``apt-get install
    chromium chromium-driver``)."""
    import shutil

    binary = next((p for p in map(shutil.which, ("chromium", "chromium-browser",
                                                  "google-chrome")) if p), None)
    driver = shutil.which("chromedriver")
    return (binary, driver) if binary and driver else None


def open_browser(width: int = 1400, height: int = 1000) -> Any:
    """A headless Chromium (selenium ``WebDriver``) showing pages at ``width`` x ``height``
    CSS pixels, that cannot reach any host.

    Every host name fails to resolve, so a page that still draws everything needs no network;
    ``--no-sandbox`` because CI runs as root. The browser console is logged (``get_log``).

    Raises:
        FileNotFoundError: Chromium or chromedriver is not on PATH.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = browser_paths()
    if paths is None:
        raise FileNotFoundError("Chromium and chromedriver are needed on PATH "
                                "(Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--hide-scrollbars", f"--window-size={width},{height}",
                "--host-resolver-rules=MAP * ~NOTFOUND"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(paths[1]), options=options)
    # the window size counts the (invisible) window frame: set the page's own size exactly
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    return driver


def wait_until_drawn(driver: Any, page: str, timeout: float = 60) -> None:
    """Wait until every DataTable and plotly plot of ``page`` (its HTML) is drawn."""
    from selenium.webdriver.support.ui import WebDriverWait

    tables, plots = page.count("new ITable("), page.count("Plotly.newPlot(")
    WebDriverWait(driver, timeout).until(lambda d: d.execute_script(
        "return document.querySelectorAll('table.dataTable').length >= arguments[0]"
        " && document.querySelectorAll('.js-plotly-plot .main-svg').length >= arguments[1]",
        tables, plots))


def screenshot(page: Path, out: Path, width: int = 1400, height: int = 1000) -> Path:
    """A PNG of the top ``width`` x ``height`` pixels of ``page`` (an HTML file), drawn.

    The image is reduced to 256 colours (flat page colours: no visible loss, a few times
    smaller), for the README.
    """
    import io

    from PIL import Image

    driver = open_browser(width, height)
    try:
        driver.get(Path(page).resolve().as_uri())
        wait_until_drawn(driver, Path(page).read_text(encoding="utf-8"))
        png = driver.get_screenshot_as_png()
    finally:
        driver.quit()
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(256)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, optimize=True)
    return out
