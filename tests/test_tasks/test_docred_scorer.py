"""The DocRED scorer on a hand-made fixture (numbers worked out by hand) and on Re-DocRED dev.

Fixture (tests/fixtures/docred_mini): gold doc A has facts (0,1,P17) ev {0} intra, (2,1,P17)
ev {1,2} inter, (0,2,P206) ev {1} inter; doc B has (0,1,P17) ev {0} intra: 4 facts, 5 evidence
sentences. The train file holds (Berlin, Germany, P17). The six predictions deduplicate to five:
A(0,1,P17) ev {0} correct, intra; A(2,1,P17) ev {2,0} correct, inter, 1 of its 2 evidence right;
A(1,0,P17) wrong, intra; B(0,1,P17) ev {0} correct, intra, in train; A(0,2,P131) wrong, inter.

  P = 3/5, R = 3/4, F1 = 2/3;   Ign P = (3-1)/(5-1) = 1/2, Ign F1 = 2(1/2)(3/4)/(5/4) = 3/5
  evidence: predicted 1+2+0+1+0 = 4, correct 1+1+1 = 3, gold 5: P 3/4, R 3/5, F1 2/3
  intra: gold 2, predicted 3, correct 2: F1 = 2(2/3)(1)/(5/3) = 4/5
  inter: gold 2, predicted 2, correct 1: F1 = 1/2
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.base import SHARED_DATA
from tasks.docred.scorer import DocREDFormatError, score

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "docred_mini"
REDOCRED = SHARED_DATA / "docred" / "redocred"


def _load(name: str):
    return json.loads((FIX / name).read_text())


EXPECTED = {
    "precision": 3 / 5, "recall": 3 / 4, "f1": 2 / 3, "ign_precision": 1 / 2, "ign_f1": 3 / 5,
    "evidence_precision": 3 / 4, "evidence_recall": 3 / 5, "evidence_f1": 2 / 3,
    "intra_f1": 4 / 5, "inter_f1": 1 / 2, "num_predictions": 5, "num_gold": 4, "correct": 3,
    "correct_in_train": 1,
}


def test_hand_computed_fixture() -> None:
    got = score(_load("pred.json"), _load("gold.json"), [_load("train.json")])
    for key, value in EXPECTED.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_without_train_file_ign_equals_plain() -> None:
    got = score(_load("pred.json"), _load("gold.json"))
    assert got["ign_f1"] == got["f1"] == pytest.approx(2 / 3)


def test_unknown_titles_error_or_count_as_wrong() -> None:
    preds = [*_load("pred.json"), {"title": "Z", "h_idx": 0, "t_idx": 1, "r": "P17",
                                   "evidence": [0]}]
    with pytest.raises(DocREDFormatError, match=r"record 6: field 'title': 'Z' is not a title"):
        score(preds, _load("gold.json"))
    got = score(preds, _load("gold.json"), allow_unknown_titles=True)
    assert got["precision"] == pytest.approx(3 / 6)  # in the denominator, as officially
    assert got["evidence_precision"] == pytest.approx(3 / 4)  # its evidence is not counted


@pytest.mark.parametrize(("preds", "message"), [
    ({"title": "A"}, "expected a JSON list of records, got dict"),
    ([{"title": "A", "h_idx": 0, "r": "P17"}], r"record 0: field 't_idx': missing"),
    ([{"title": "A", "h_idx": 0, "t_idx": 3, "r": "P17"}],
     r"record 0: field 't_idx': 3 is outside the vertexSet of 'A' \(0..2\)"),
    ([{"title": "A", "h_idx": "0", "t_idx": 1, "r": "P17"}],
     r"record 0: field 'h_idx': expected int, got '0'"),
    ([{"title": "A", "h_idx": 0, "t_idx": 1, "r": "P17", "evidence": "0"}],
     r"record 0: field 'evidence'"),
    (["A"], r"record 0: field 'title': record is a str"),
])
def test_malformed_predictions(preds, message: str) -> None:
    with pytest.raises(DocREDFormatError, match=message):
        score(preds, _load("gold.json"))


def test_malformed_gold_names_record_and_field() -> None:
    gold = _load("gold.json")
    gold[1]["labels"][0]["h"] = 7
    with pytest.raises(DocREDFormatError, match=r"gold: record 1: field 'labels\[0\].h': 7 is not"):
        score([], gold)


def test_cli_prints_one_json_object(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "tasks.docred.scorer", "--pred", str(FIX / "pred.json"),
           "--gold", str(FIX / "gold.json"), "--train", str(FIX / "train.json")]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    got = json.loads(out.stdout)
    keys = {"precision", "recall", "f1", "ign_f1", "evidence_f1", "intra_f1", "inter_f1"}
    assert keys <= set(got)
    assert got["ign_f1"] == pytest.approx(3 / 5)
    bad = tmp_path / "bad.json"
    bad.write_text('[{"title": "A", "h_idx": 0}]')
    cmd[4] = str(bad)
    out = subprocess.run(cmd, capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 2 and "record 0: field 't_idx': missing" in out.stderr
    assert out.stdout == ""


@pytest.mark.skipif(not (REDOCRED / "dev_revised.json").exists(), reason="shared data absent")
def test_redocred_dev_gold_as_predictions_scores_one() -> None:
    gold = json.loads((REDOCRED / "dev_revised.json").read_text())
    preds = [{"title": d["title"], "h_idx": lab["h"], "t_idx": lab["t"], "r": lab["r"],
              "evidence": lab["evidence"]} for d in gold for lab in d["labels"]]
    got = score(preds, gold, [json.loads((REDOCRED / "test_revised.json").read_text())])
    assert got["num_gold"] == len({(d["title"], lab["r"], lab["h"], lab["t"])
                                   for d in gold for lab in d["labels"]})
    assert got["f1"] == got["evidence_f1"] == got["intra_f1"] == got["inter_f1"] == 1.0
    # dev and test are different documents that share mention-name facts; with every
    # prediction correct, Ign precision (correct - in_train) / (predicted - in_train) stays 1
    assert got["correct_in_train"] > 0 and got["ign_f1"] == 1.0
    assert score(preds, gold)["ign_f1"] == 1.0
