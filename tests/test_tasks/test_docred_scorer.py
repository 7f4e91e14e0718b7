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
import random
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


@pytest.mark.parametrize(("preds", "message"), [
    # the column-wise fast path rejects these; the record-by-record pass names them
    ([{"title": "A", "h_idx": True, "t_idx": 1, "r": "P17"}],
     r"record 0: field 'h_idx': expected int, got True"),
    ([{"title": "A", "h_idx": 1.0, "t_idx": 1, "r": "P17"}],
     r"record 0: field 'h_idx': expected int, got 1.0"),
    ([{"title": "A", "h_idx": 0, "t_idx": 1, "r": "P17"},
      {"title": "A", "h_idx": 0, "t_idx": 10 ** 30, "r": "P17"}],
     r"record 1: field 't_idx': 1000000000000000000000000000000 is outside the vertexSet"),
    ([{"title": "B", "h_idx": -1, "t_idx": 1, "r": "P17"}],
     r"record 0: field 'h_idx': -1 is outside the vertexSet of 'B' \(0..1\)"),
    ([{"title": "A", "h_idx": 0, "t_idx": 1, "r": "P17", "evidence": [0, 1.5]}],
     r"record 0: field 'evidence': expected a list of sentence ids, got \[0, 1.5\]"),
    ([{"title": "A", "h_idx": 0, "t_idx": 1, "r": "P17"}, {"title": 5, "h_idx": 0, "t_idx": 1,
                                                           "r": "P17"}],
     r"record 1: field 'title': expected str, got 5"),
])
@pytest.mark.parametrize("allow_unknown_titles", [False, True])
def test_malformed_predictions_found_by_the_column_checks(preds, message: str,
                                                          allow_unknown_titles: bool) -> None:
    with pytest.raises(DocREDFormatError, match=message):
        score(preds, _load("gold.json"), allow_unknown_titles=allow_unknown_titles)


def test_empty_submission_scores_zero() -> None:
    got = score([], _load("gold.json"), [_load("train.json")])
    assert got["num_predictions"] == got["correct"] == 0 and got["num_gold"] == 4
    assert got["f1"] == got["ign_f1"] == got["evidence_f1"] == got["intra_f1"] == 0.0


def test_duplicate_gold_label_counts_once() -> None:
    gold = _load("gold.json")
    gold[0]["labels"].append(dict(gold[0]["labels"][1]))  # (2, 1, P17) inter, listed twice
    got = score(_load("pred.json"), gold, [_load("train.json")])
    assert got["num_gold"] == 4  # as officially: distinct facts
    for key in ("precision", "recall", "f1", "ign_f1", "intra_f1", "inter_f1"):
        assert got[key] == pytest.approx(EXPECTED[key], abs=1e-12), key


def test_title_twice_in_gold_uses_its_last_document() -> None:
    # as officially, predictions of a title repeated in the gold file are read against its last
    # vertexSet; each gold label is classified intra/inter within its own document
    def entities(*sents: int) -> list:
        return [[{"name": f"e{i}", "sent_id": s}] for i, s in enumerate(sents)]

    first = {"title": "A", "vertexSet": entities(0, 1, 2),
             "labels": [{"h": 2, "t": 1, "r": "P17", "evidence": [1]}]}  # inter
    last = {"title": "A", "vertexSet": entities(0, 0),
            "labels": [{"h": 0, "t": 1, "r": "P5", "evidence": [0]}]}  # intra
    got = score([{"title": "A", "h_idx": 0, "t_idx": 1, "r": "P5", "evidence": [0]}],
                [first, last])
    assert got["num_gold"] == 2 and got["recall"] == 0.5
    assert got["intra_f1"] == 1.0 and got["inter_f1"] == 0.0
    with pytest.raises(DocREDFormatError, match=r"record 0: field 'h_idx': 2 is outside"):
        score([{"title": "A", "h_idx": 2, "t_idx": 1, "r": "P17"}], [first, last])


def _shift_sentences(docs: list, preds: list, to: dict[int, int]) -> None:
    for doc in docs:
        for entity in doc["vertexSet"]:
            for mention in entity:
                mention["sent_id"] = to[mention["sent_id"]]
        for lab in doc["labels"]:
            lab["evidence"] = [to[s] for s in lab["evidence"]]
    for rec in preds:
        rec["evidence"] = [to[s] for s in rec.get("evidence", [])]


@pytest.mark.parametrize("to", [{0: 100, 1: 200, 2: 300}, {0: -7, 1: -3, 2: 0},
                                {0: 2 ** 70, 1: 5, 2: -(2 ** 65)}])
def test_any_int_sentence_ids_give_the_same_scores(to: dict[int, int]) -> None:
    # the intra/inter split keeps a bitmask of sentences per entity: ids outside 0..62 (large,
    # negative, beyond int64) are ranked first
    gold, preds = _load("gold.json"), _load("pred.json")
    _shift_sentences(gold, preds, to)
    got = score(preds, gold, [_load("train.json")])
    for key, value in EXPECTED.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_intra_inter_split_with_more_than_63_sentences() -> None:
    # entity i (0..69) is mentioned in sentence i alone; entity 70 in sentences 0 and 69
    vertex_set = [[{"name": f"e{i}", "sent_id": i}] for i in range(70)]
    vertex_set.append([{"name": "x", "sent_id": 0}, {"name": "x", "sent_id": 69}])
    labels = [{"h": 70, "t": 0, "r": "P1", "evidence": [0]},  # intra
              {"h": 70, "t": 69, "r": "P1", "evidence": [69]},  # intra
              {"h": 1, "t": 2, "r": "P1", "evidence": [1, 2]}]  # inter
    gold = [{"title": "L", "vertexSet": vertex_set, "labels": labels}]
    preds = [{"title": "L", "h_idx": 70, "t_idx": 0, "r": "P1", "evidence": [0]},
             {"title": "L", "h_idx": 1, "t_idx": 2, "r": "P1", "evidence": [2]},
             {"title": "L", "h_idx": 3, "t_idx": 4, "r": "P1"}]
    got = score(preds, gold)
    # intra: gold 2, predicted 1, correct 1; inter: gold 1, predicted 2, correct 1
    assert got["intra_f1"] == pytest.approx(2 / 3) and got["inter_f1"] == pytest.approx(2 / 3)
    assert got["evidence_precision"] == 1.0 and got["evidence_recall"] == pytest.approx(2 / 4)


def _reference_split(preds: list, gold: list) -> dict[str, float]:
    """Intra/inter F1 the plain way: sets of sentences, one record at a time."""
    sents = {d["title"]: [{m["sent_id"] for m in e} for e in d["vertexSet"]] for d in gold}
    facts = {(d["title"], x["h"], x["t"], x["r"]) for d in gold for x in d["labels"]}
    distinct = {(x["title"], x["h_idx"], x["t_idx"], x["r"]) for x in preds}

    def intra(key: tuple) -> bool:
        ents = sents[key[0]]
        return not ents[key[1]].isdisjoint(ents[key[2]])

    out = {}
    for name, want in (("intra_f1", True), ("inter_f1", False)):
        g = {k for k in facts if intra(k) == want}
        p = {k for k in distinct if k[0] in sents and intra(k) == want}
        c = len(g & p)
        out[name] = 2 * c / (len(g) + len(p)) if g or p else 0.0
    return out


@pytest.mark.skipif(not (REDOCRED / "dev_revised.json").exists(), reason="shared data absent")
def test_intra_inter_split_equals_the_plain_definition_on_re_docred() -> None:
    gold = json.loads((REDOCRED / "dev_revised.json").read_text())[:150]
    rng = random.Random(1)
    preds = []
    for doc in gold:
        n = len(doc["vertexSet"])
        preds += [{"title": doc["title"], "h_idx": x["h"], "t_idx": x["t"], "r": x["r"]}
                  for x in doc["labels"] if rng.random() < 0.6]
        preds += [{"title": doc["title"], "h_idx": rng.randrange(n), "t_idx": rng.randrange(n),
                   "r": "P17"} for _ in range(10)]
    preds += [*preds[:20], {"title": "not in gold", "h_idx": 0, "t_idx": 1, "r": "P17"}]
    got = score(preds, gold, allow_unknown_titles=True)
    for key, value in _reference_split(preds, gold).items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


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
