"""Leaderboard figures (matplotlib PNG, deterministic names and bytes), one pair per group."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from leaderboard.table import Row

# PNG metadata without the matplotlib version or a timestamp, so reruns give identical bytes
_PNG_META = {"Software": None}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def draw_group(key: tuple[str, str, str], rows: list[Row], out_dir: Path) -> dict[str, Path]:
    """Bar chart of the primary metric per row (mean ± std) and dev curves; caption -> path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    task, version, dataset = key
    out_dir.mkdir(parents=True, exist_ok=True)
    primary = rows[0].first.selection.metric
    stem = _slug(f"{task}-v{version}-{dataset}")
    labels = [f"{r.model}\n{r.label}" for r in rows]
    written: dict[str, Path] = {}

    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(rows)), 3.6))
    means = [100 * r.values(primary).mean() for r in rows]
    stds = [100 * r.values(primary).std(ddof=1) if len(r.runs) > 1 else 0.0 for r in rows]
    ax.bar(range(len(rows)), means, yerr=stds, capsize=4, color="#4C72B0")
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylabel(f"test {primary} (%)")
    lo = min(m - s for m, s in zip(means, stds, strict=True))
    ax.set_ylim(max(0.0, lo - 5), None)
    ax.set_title(f"{task} v{version} ({dataset}): test {primary}, mean ± std over seeds",
                 fontsize=9)
    fig.tight_layout()
    path = out_dir / f"{stem}-{_slug(primary)}.png"
    fig.savefig(path, dpi=110, metadata=_PNG_META)
    plt.close(fig)
    written[f"test {primary} per loss"] = path

    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    for r in rows:
        curves = [[h.dev[primary] for h in run.history] for _, run in r.runs]
        length = min(len(c) for c in curves)
        if length == 0:
            continue
        mean = 100 * np.mean([c[:length] for c in curves], axis=0)
        ax.plot(range(1, length + 1), mean, label=f"{r.model} {r.label}", linewidth=1.4)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"dev {primary} (%), mean over seeds")
    ax.set_title(f"{task} v{version} ({dataset}): dev {primary} per epoch", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / f"{stem}-dev-curves.png"
    fig.savefig(path, dpi=110, metadata=_PNG_META)
    plt.close(fig)
    written[f"dev {primary} per epoch"] = path
    return written
