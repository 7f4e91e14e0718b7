"""The web leaderboard (``python -m leaderboard RESULTS --html PAGE``): one self-contained page.

Two levels: the page's structure, read with Python's HTML parser (ids, nothing fetched from
outside, deterministic bytes, the CLI), and the page opened in a real headless Chromium through
selenium (a column sorted by a click, a loss filtered in the search box, plotly plots drawn,
no network request). The browser test skips only where Chromium or chromedriver is missing
(Debian: ``apt-get install chromium chromium-driver``; ``.ci/run`` installs them).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from test_leaderboard import FIX, _run, _write

from leaderboard.__main__ import main
from leaderboard.render import REFERENCES
from leaderboard.site import (
    browser_paths,
    build_site,
    open_browser,
    screenshot,
    slug,
    wait_until_drawn,
)

# map per (loss, seed): bce in the middle, asl best, aam worst; the baseline row comes first
MAPS = {("bce", 0): 0.40, ("bce", 1): 0.42, ("asl", 0): 0.50, ("asl", 1): 0.53,
        ("aam", 0): 0.30, ("aam", 1): 0.31}
SYNTHETIC = ("synthetic", "1", "synthetic-12l-missing0-seed0")
AAPD = ("aapd", "1", "aapd-fixture")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tables: synthetic (3 losses x 2 seeds, map above) and the aapd fixture, whose task
    has published numbers in references.yaml."""
    root = tmp_path_factory.mktemp("site") / "results"
    _write(root / "synthetic", {f"{loss}{seed}.json": _run(loss, seed, value=value)
                                for (loss, seed), value in MAPS.items()})
    shutil.copytree(FIX / "aapd", root / "aapd")
    return root


@pytest.fixture(scope="module")
def page(results: Path) -> str:
    return build_site(results)


class _Elements(HTMLParser):
    """Every element's tag and attributes (script and style contents are text, not parsed)."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))


def _elements(text: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Elements()
    parser.feed(text)
    return parser.elements


def _published(task: str) -> list[dict]:
    refs = yaml.load(REFERENCES.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
    return [e for e in refs["entries"] if e["task"] == task]


def test_page_structure_ids_and_nothing_external(page: str) -> None:
    elements = _elements(page)
    ids = {a["id"] for _, a in elements if a.get("id")}
    for key in (SYNTHETIC, AAPD):
        s = slug(key)
        assert {f"group-{s}", f"table-{s}", f"plot-{s}-metric", f"plot-{s}-delta"} <= ids, s
    # published numbers: a table where references.yaml has the task, a note where not
    assert f"published-{slug(AAPD)}" in ids and f"published-{slug(SYNTHETIC)}" not in ids
    assert page.count("No published numbers recorded for this task.") == 1
    assert {"summary", "table-summary", "plot-summary-rank", "plot-summary-delta"} <= ids
    assert slug(SYNTHETIC) == "synthetic-v1-synthetic-12l-missing0-seed0"
    # self-contained: every script and style inline, no attribute points off the page
    assert not [t for t, a in elements if t == "script" and a.get("src")]
    assert not [t for t, a in elements if t == "link"]
    external = [(t, k, v) for t, a in elements for k, v in a.items()
                if k in ("src", "href", "action", "data") and v and re.match(r"\s*(https?:)?//",
                                                                             v)]
    assert external == []
    assert not re.search(r"""import[^;'"]*['"]https?://""", page)  # no ES module from the web
    assert "plotly.js v" in page and "Plotly.newPlot" in page
    # the published numbers of the aapd papers, as printed (a string, trailing zeros kept)
    printed = [v for e in _published("aapd") for v in e["metrics"].values()]
    published = page.split("id=\"published-aapd-v1-aapd-fixture\"")[1].split("</aside>")[0]
    assert printed and all(json.dumps(v) in published.replace('\\"', '"') for v in printed)
    assert "Protocol: device cpu" in page
    assert page.count("<section id='group-") == 2


def test_page_is_deterministic(page: str, results: Path) -> None:
    assert build_site(results) == page
    assert not re.search(r"20\d\d-\d\d-\d\dT", page.split("</head>")[1])  # no timestamp


def test_cli_writes_the_page_and_needs_an_output(results: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "site" / "index.html"
    md = tmp_path / "LB.md"
    assert main([str(results), "--html", str(out), "-o", str(md)]) == 0
    assert out.read_text(encoding="utf-8") == build_site(results)
    assert md.read_text(encoding="utf-8").startswith("# MLLB leaderboard")
    capsys.readouterr()
    assert main([str(results)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "-o" in err and "--html" in err
    bad = tmp_path / "bad"
    shutil.copytree(FIX / "invalid", bad)
    assert main([str(bad), "--html", str(tmp_path / "bad.html")]) == 2
    assert "selection.split" in capsys.readouterr().err
    assert not (tmp_path / "bad.html").exists()


# ----------------------------------------------------------------------------- in a browser


@pytest.fixture(scope="module")
def browser(page: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """The page open in headless Chromium (no host reachable), every table and plot drawn."""
    if browser_paths() is None:
        pytest.skip("the browser test needs Chromium and chromedriver on PATH "
                    "(Debian: apt-get install chromium chromium-driver)")
    path = tmp_path_factory.mktemp("page") / "index.html"
    path.write_text(page, encoding="utf-8")
    driver = open_browser()
    try:
        driver.get(path.as_uri())
        wait_until_drawn(driver, page)
        yield driver
    finally:
        driver.quit()


def _column(driver, table_id: str, header: str) -> list[str]:
    """The texts of one column, in the order the table shows its rows."""
    heads = [h.text.strip() for h in driver.find_elements(
        "css selector", f"#{table_id} thead th")]
    i = heads.index(header)
    return [row.find_elements("css selector", "td")[i].text.strip()
            for row in driver.find_elements("css selector", f"#{table_id} tbody tr")]


def _wait(driver, condition) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 10).until(lambda d: condition())


def test_browser_sorts_filters_and_draws(browser) -> None:
    driver = browser
    table = f"table-{slug(SYNTHETIC)}"
    # the markdown's order: the baseline first, then the best map first
    assert _column(driver, table, "loss") == ["bce", "asl", "aam"]
    assert _column(driver, table, "map ↑") == ["41.00", "51.50", "30.50"]
    header = next(h for h in driver.find_elements("css selector", f"#{table} thead th")
                  if h.text.strip() == "map ↑")
    header.click()  # ascending
    _wait(driver, lambda: _column(driver, table, "loss") == ["aam", "bce", "asl"])
    header.click()  # descending
    _wait(driver, lambda: _column(driver, table, "loss") == ["asl", "bce", "aam"])
    assert _column(driver, table, "map ↑") == ["51.50", "41.00", "30.50"]
    # Δ of asl vs bce over paired seeds: (0.50 - 0.40, 0.53 - 0.42) -> mean +10.50 pp
    assert _column(driver, table, "Δ map vs bce")[0] == "+10.50"

    search = driver.execute_script(
        "return document.getElementById(arguments[0]).closest('.dt-container')"
        ".querySelector('.dt-search input')", table)
    search.send_keys("asl")
    _wait(driver, lambda: _column(driver, table, "loss") == ["asl"])
    search.clear()
    search.send_keys("zzz-no-such-loss")
    _wait(driver, lambda: len(driver.find_elements(
        "css selector", f"#{table} tbody tr td.dt-empty")) == 1)

    # plotly drew both plots of the group: one marker per row (means) and one per seed
    for plot in (f"plot-{slug(SYNTHETIC)}-metric", f"plot-{slug(SYNTHETIC)}-delta",
                 "plot-summary-rank", "plot-summary-delta"):
        assert driver.execute_script(
            "const d = document.getElementById(arguments[0]);"
            "return d.classList.contains('js-plotly-plot') && !!d.querySelector('svg.main-svg')",
            plot), plot
    points = driver.execute_script(
        "return document.querySelectorAll('#' + arguments[0] + ' .scatterlayer .point').length",
        f"plot-{slug(SYNTHETIC)}-metric")
    assert points == 3 + 6
    # the published numbers beside: a table of their own, one row per paper entry
    published = driver.find_elements("css selector", f"#published-{slug(AAPD)} tbody tr")
    assert len(published) == len(_published("aapd")) and "APL" in published[0].text

    # nothing was requested from the network, and the console has no error
    fetched = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    assert [u for u in fetched if re.match(r"https?:", u)] == []
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []


def test_screenshot_is_a_png_of_the_top_of_the_page(page: str, tmp_path: Path) -> None:
    if browser_paths() is None:
        pytest.skip("the screenshot needs Chromium and chromedriver on PATH "
                    "(Debian: apt-get install chromium chromium-driver)")
    from PIL import Image

    (tmp_path / "index.html").write_text(page, encoding="utf-8")
    out = screenshot(tmp_path / "index.html", tmp_path / "shot.png", width=800, height=500)
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (800, 500)
        assert len(image.getcolors(256) or []) > 8  # drawn, not a blank page
