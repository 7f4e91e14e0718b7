"""Tests for ``leaderboard/references.yaml``, the papers' published numbers.

Every number in that file must carry a citation (paper + table) and stay in percent as printed.
The spot checks below were copied independently from the paper texts, so a garbled edit of the
YAML is caught; when ``../shared/papers/`` is present, every metric value must also appear
verbatim (as its printed string, trailing zeros included) in the cited paper's text.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
REFERENCES = ROOT / "leaderboard" / "references.yaml"
PAPERS_DIR = ROOT.parent / "shared" / "papers"

TASKS = {"aapd", "docred", "coco", "nus_wide", "voc", "vg500", "open_images"}
METRICS = {"map", "CP", "CR", "CF1", "OP", "OR", "OF1", "P@1", "P@3", "P@5",
           "nDCG@1", "nDCG@3", "nDCG@5", "f1", "ign_f1"}
PAPER_FIELDS = ("title", "authors", "venue", "file")
ENTRY_FIELDS = ("task", "paper", "table", "split", "model", "loss", "setting", "metrics")
TEXT_FIELDS = ("task", "paper", "table", "split", "model", "loss", "setting")
YAML_NUMBER_TAGS = {"tag:yaml.org,2002:float", "tag:yaml.org,2002:int"}


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    loaded = yaml.safe_load(REFERENCES.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict), "references.yaml must be a mapping"
    return loaded


@pytest.fixture(scope="module")
def raw_metrics() -> list[dict[str, yaml.ScalarNode]]:
    """Per entry (in file order): metric name -> its YAML scalar node (the printed string)."""
    root = yaml.compose(REFERENCES.read_text(encoding="utf-8"))
    top = {k.value: v for k, v in root.value}
    out = []
    for entry in top["entries"].value:
        fields = {k.value: v for k, v in entry.value}
        out.append({k.value: v for k, v in fields["metrics"].value})
    return out


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def test_file_parses_with_papers_and_entries(data):
    assert set(data) == {"papers", "entries"}
    assert isinstance(data["papers"], dict) and data["papers"]
    assert isinstance(data["entries"], list) and data["entries"]


def test_papers_have_citation_fields(data):
    for key, paper in data["papers"].items():
        assert isinstance(paper, dict), key
        for field in PAPER_FIELDS:
            assert isinstance(paper.get(field), str) and paper[field].strip(), (key, field)


@pytest.mark.skipif(not PAPERS_DIR.is_dir(), reason="../shared/papers/ is not present")
def test_paper_files_exist(data):
    for key, paper in data["papers"].items():
        assert (PAPERS_DIR / paper["file"]).is_file(), (key, paper["file"])


def test_entries_are_complete_and_cited(data):
    papers = set(data["papers"])
    for i, e in enumerate(data["entries"]):
        where = f"entries[{i}]"
        assert isinstance(e, dict), where
        assert set(e) == set(ENTRY_FIELDS), (where, sorted(set(e) ^ set(ENTRY_FIELDS)))
        for field in TEXT_FIELDS:
            assert isinstance(e[field], str), (where, field)
            if field != "setting":
                assert e[field].strip(), (where, field)
            # rendered into markdown table cells
            assert "|" not in e[field] and "\n" not in e[field], (where, field)
        assert e["task"] in TASKS, (where, e["task"])
        assert e["paper"] in papers, (where, e["paper"])
        assert isinstance(e["metrics"], dict) and e["metrics"], where
        for name, value in e["metrics"].items():
            assert name in METRICS, (where, name)
            assert _is_number(value), (where, name, value)
            assert 0 < value <= 100, (where, name, value)


def test_metric_values_are_plain_yaml_numbers(raw_metrics):
    for i, metrics in enumerate(raw_metrics):
        for name, node in metrics.items():
            assert node.tag in YAML_NUMBER_TAGS and node.style is None, (i, name, node.value)
            assert re.fullmatch(r"\d+(\.\d+)?", node.value), (i, name, node.value)


def test_entries_are_unique(data):
    seen = set()
    for i, e in enumerate(data["entries"]):
        key = tuple(e[f] for f in TEXT_FIELDS)
        assert key not in seen, (i, key)
        seen.add(key)


def test_docred_has_separate_dev_and_test(data):
    for e in data["entries"]:
        if e["task"] == "docred":
            assert e["split"] in {"dev", "test"}
            assert set(e["metrics"]) <= {"ign_f1", "f1"}


# ---------------------------------------------------------------------------------------------
# Spot checks, copied from the paper texts independently of the YAML.


def _one(data, paper: str, table: str, task: str, split: str, **contains: str) -> dict[str, Any]:
    hits = [e for e in data["entries"]
            if e["paper"] == paper and e["table"] == table and e["task"] == task
            and e["split"] == split
            and all(s in e[field] for field, s in contains.items())]
    assert len(hits) == 1, (paper, table, task, split, contains, len(hits))
    return hits[0]["metrics"]


SPOT_CHECKS = [
    # APL Table 1 (AAPD test)
    (("apl", "Table 1", "aapd", "test"), {"model": "LSAN", "loss": "APL"},
     {"P@1": 86.56, "P@3": 61.35, "nDCG@3": 81.34, "nDCG@5": 84.86}),
    (("apl", "Table 1", "aapd", "test"), {"setting": "LSAN paper"},
     {"P@1": 85.28, "P@3": 61.12, "nDCG@3": 80.84, "nDCG@5": 84.78}),
    (("apl", "Table 1", "aapd", "test"), {"model": "LSAN*"},
     {"P@1": 85.10, "P@3": 60.80, "nDCG@3": 80.55, "nDCG@5": 84.52}),
    (("apl", "Table 1", "aapd", "test"), {"loss": "ASL"},
     {"P@1": 86.15, "P@3": 61.01, "nDCG@3": 80.90, "nDCG@5": 84.50}),
    (("apl", "Section 3.1 (text)", "aapd", "test"), {"loss": "beta1=1.4"},
     {"P@1": 85.94, "P@3": 61.81, "nDCG@3": 81.62, "nDCG@5": 85.03}),
    # APL Table 2 (DocRED, MRN)
    (("apl", "Table 2", "docred", "test"), {"loss": "APL"}, {"ign_f1": 56.43, "f1": 58.60}),
    (("apl", "Table 2", "docred", "dev"), {"loss": "APL"}, {"ign_f1": 56.96, "f1": 58.89}),
    (("apl", "Table 2", "docred", "test"), {"loss": "ASL"}, {"ign_f1": 56.19, "f1": 58.46}),
    (("apl", "Table 2", "docred", "dev"), {"loss": "ASL"}, {"ign_f1": 56.62, "f1": 58.69}),
    (("apl", "Section 3.2 (text)", "docred", "test"), {"loss": "APL"},
     {"ign_f1": 59.78, "f1": 61.86}),
    (("apl", "Section 3.2 (text)", "docred", "test"), {"loss": "MRN"},
     {"ign_f1": 59.52, "f1": 61.74}),
    # APL Table 3 (mAP)
    (("apl", "Table 3", "coco", "test"), {"loss": "APL"}, {"map": 90.08}),
    (("apl", "Table 3", "nus_wide", "test"), {"loss": "APL"}, {"map": 31.27}),
    (("apl", "Table 3", "coco", "test"), {"model": "ML_Decoder*"}, {"map": 89.81}),
    (("apl", "Section 3.3 (text)", "coco", "test"), {"loss": "alpha1=2.0"}, {"map": 90.00}),
    # ASL Table 4 (MS-COCO, 448)
    (("asl", "Table 4", "coco", "val"), {"model": "TResNet-L"},
     {"map": 86.6, "CF1": 81.4, "OF1": 81.8}),
    (("asl", "Table 4", "coco", "val"), {"model": "ResNet101"},
     {"map": 85.0, "CF1": 80.3, "OF1": 82.3}),
    (("asl", "Table 4", "coco", "val"), {"model": "KSSNet"},
     {"map": 83.7, "CF1": 77.2, "OF1": 81.5}),
    # ASL Tables 2, 5, 6
    (("asl", "Table 2", "coco", "val"), {"loss": "gamma+=0, gamma-=4, m=0.05"}, {"map": 86.6}),
    (("asl", "Table 5", "coco", "val"), {"setting": "input 640"}, {"map": 89.8}),
    (("asl", "Table 6", "voc", "test"), {"model": "TResNet-L", "setting": "extra"},
     {"map": 95.8}),
    # AAM Tables 2-4, 6, 7
    (("aam", "Table 2", "coco", "val"),
     {"model": "ML-Decoder (TResNet-L)", "loss": "AAM", "setting": "640x640"}, {"map": 91.30}),
    (("aam", "Table 2", "coco", "val"), {"model": "EfficientNet-V2-s", "loss": "ASL"},
     {"map": 87.05}),
    (("aam", "Table 3", "voc", "val"), {"model": "ML-Decoder (TResNet-L)", "loss": "AAM"},
     {"map": 96.70}),
    (("aam", "Table 4", "nus_wide", "val"), {"model": "ML-Decoder (TResNet-L)", "loss": "AAM"},
     {"map": 68.30}),
    (("aam", "Table 6", "coco", "val"), {"setting": "threshold 0.5"},
     {"OF1": 82.86, "CF1": 85.03}),
    (("aam", "Table 6", "coco", "val"), {"setting": "adaptive"}, {"OF1": 84.39, "CF1": 86.06}),
    (("aam", "Table 7", "vg500", "val"), {"loss": "AAM"}, {"map": 42.00}),
]


@pytest.mark.parametrize(("where", "contains", "expected"), SPOT_CHECKS)
def test_spot_checks(data, where, contains, expected):
    assert _one(data, *where, **contains) == expected


def test_spot_check_printed_strings(data, raw_metrics):
    """Trailing zeros are kept as printed (85.10, not 85.1)."""
    entries = data["entries"]
    lsan_star = next(i for i, e in enumerate(entries)
                     if e["paper"] == "apl" and e["table"] == "Table 1" and e["model"] == "LSAN*")
    assert raw_metrics[lsan_star]["P@1"].value == "85.10"
    assert raw_metrics[lsan_star]["P@3"].value == "60.80"


# ---------------------------------------------------------------------------------------------
# Guard against invented numbers: each value's printed string occurs in the cited paper text.


# (paper, printed value) that occur only inside a garbled run of the text extraction, glued to
# the preceding cell ("448x44865.79" in AAM Table 4), so only a plain substring match is possible.
GLUED_IN_EXTRACTION = {("aam", "65.79")}


@pytest.mark.skipif(not PAPERS_DIR.is_dir(), reason="../shared/papers/ is not present")
def test_every_number_appears_in_cited_paper(data, raw_metrics):
    texts = {key: (PAPERS_DIR / p["file"]).read_text(encoding="utf-8")
             for key, p in data["papers"].items()}
    missing = []
    for i, (e, metrics) in enumerate(zip(data["entries"], raw_metrics, strict=True)):
        for name, node in metrics.items():
            pattern = r"(?<![\d.])" + re.escape(node.value) + r"(?![\d])"
            text = texts[e["paper"]]
            if (e["paper"], node.value) in GLUED_IN_EXTRACTION:
                found = node.value in text
            else:
                found = re.search(pattern, text) is not None
            if not found:
                missing.append((i, e["paper"], e["table"], name, node.value))
    assert not missing, missing
