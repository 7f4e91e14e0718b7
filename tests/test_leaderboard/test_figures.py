"""Leaderboard figures: files written, one colour per loss everywhere, one-epoch runs as points.

The checks read the matplotlib artists of the returned figures; no image comparison.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.colors import to_rgba
from test_leaderboard import _run, _write

from leaderboard.figures import (
    bar_figure,
    colour_map,
    curve_figure,
    draw_forest,
    draw_group,
    forest_figure,
    loss_colour,
)
from leaderboard.render import group_runs
from leaderboard.schema import Result, iter_results
from leaderboard.summary import summarize

PNG = b"\x89PNG\r\n\x1a\n"


def _groups(root: Path) -> dict:
    return group_runs((p, Result.from_dict(o, str(p))) for p, o in iter_results(root))


def _two_tables(tmp_path: Path, epochs: int = 2) -> dict:
    """Table "synthetic-12l-missing0-seed0": bce/asl/aam of tiny_mlp, two epochs; table
    "another-dataset": bce/asl of other_mlp, one epoch. Groups keyed by table key."""
    runs = {f"{loss}{s}.json": _run(loss, s, epochs=epochs, value=0.2 + 0.01 * s)
            for loss in ("bce", "asl", "aam") for s in (0, 1)}
    for loss in ("bce", "asl"):
        res = _run(loss, 0, epochs=1)
        res["model"]["name"] = "other_mlp"
        res["task"]["dataset"] = "another-dataset"
        runs[f"other_{loss}.json"] = res
    return _groups(_write(tmp_path / "r", runs))


def _by_dataset(groups: dict) -> list[tuple]:
    """(key, rows) of the two tables of :func:`_two_tables`: two-epoch table first."""
    tables = {key[2]: (key, rows) for key, rows in groups.items()}
    return [tables["synthetic-12l-missing0-seed0"], tables["another-dataset"]]


def _bar_colours(fig) -> dict[str, tuple]:
    ax = fig.axes[0]
    return {c.get_label(): c.patches[0].get_facecolor() for c in ax.containers
            if hasattr(c, "patches")}


def test_a_loss_has_the_same_colour_in_every_figure(tmp_path: Path) -> None:
    groups = _two_tables(tmp_path)
    (key1, rows1), (key2, rows2) = _by_dataset(groups)
    bars1, bars2 = _bar_colours(bar_figure(key1, rows1)), _bar_colours(bar_figure(key2, rows2))
    assert bars1["asl"] == bars2["asl"] == to_rgba(loss_colour("asl"))
    assert bars1["bce"] == bars2["bce"] == to_rgba(loss_colour("bce"))
    assert len({bars1["asl"], bars1["bce"], bars1["aam"]}) == 3
    curves = {line.get_label(): to_rgba(line.get_color())
              for line in curve_figure(key1, rows1).axes[0].lines}
    assert curves["tiny_mlp asl"] == bars1["asl"] and curves["tiny_mlp aam"] == bars1["aam"]
    forest = forest_figure(summarize(groups))
    points = [line for line in forest.axes[0].lines if line.get_marker() in ("o", "s")]
    assert to_rgba(loss_colour("asl")) in {to_rgba(p.get_color()) for p in points}
    # a preset is its loss; an unknown loss gets the same colour in every call
    assert colour_map(["asl", "my_new_loss"]) == {"asl": loss_colour("asl"),
                                                   "my_new_loss": loss_colour("my_new_loss")}


def test_one_epoch_runs_are_points_and_bars_start_at_zero(tmp_path: Path) -> None:
    (key, rows), (key1, rows1) = _by_dataset(_two_tables(tmp_path))[::-1]  # one epoch first
    lines = curve_figure(key, rows).axes[0].lines
    assert lines and all(line.get_linestyle() == "None" and line.get_marker() == "o"
                         for line in lines)
    # two epochs: lines
    assert all(line.get_linestyle() != "None" for line in curve_figure(key1, rows1).axes[0].lines)
    ax = bar_figure(key1, rows1).axes[0]
    assert ax.get_ylim()[0] == 0 and "axis from 0" in ax.get_ylabel()


def test_figures_are_written(tmp_path: Path) -> None:
    groups = _two_tables(tmp_path)
    out = tmp_path / "figs"
    written = [p for key, rows in groups.items() for p in draw_group(key, rows, out).values()]
    forest = draw_forest(summarize(groups), out)
    assert forest == out / "summary-forest.png"
    assert len(written) == 4 and len(set(written)) == 4
    for path in [*written, forest]:
        assert path.read_bytes().startswith(PNG), path
    # the forest plot: one tick label per line (2 group headers, 3 losses), its own y slot,
    # and a height that grows with the lines
    fig = forest_figure(summarize(groups))
    ticks = fig.axes[0].get_yticklabels()
    assert sorted(t.get_text() for t in ticks if t.get_fontweight() != "bold") == [
        "aam", "asl", "asl"]
    assert len(ticks) == 5 and len({t.get_position()[1] for t in ticks}) == 5
    assert fig.get_figheight() >= 0.26 * len(ticks)
