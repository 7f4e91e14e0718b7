"""tasks/ner/data.py: DocRED-format, CoNLL-style and ``datasets`` readers on fixtures written
here, every malformed case, and the shared Re-DocRED files when present."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from seqeval.metrics.sequence_labeling import get_entities
from seqeval.scheme import IOB2, IOBES, Entities

from mllb_core.errors import UserError
from tasks.base import SHARED_DATA
from tasks.ner.data import (
    NERDataError,
    detect_scheme,
    read_conll,
    read_docred,
    read_hf_split,
    tags_to_spans,
)
from tasks.ner.decoding import TYPES

REDOCRED = SHARED_DATA / "docred" / "redocred"


def _doc(title: str = "Doc A", **over) -> dict:
    """A DocRED-format document: 'The University of Paris hired Marie Curie in 1906 .' and
    'Curie won 2 prizes .'; ORG [1, 4) with LOC [3, 4) nested in it, a duplicate mention."""
    doc = {"title": title,
           "sents": [["The", "University", "of", "Paris", "hired", "Marie", "Curie", "in",
                      "1906", "."], ["Curie", "won", "2", "prizes", "."]],
           "vertexSet": [
               [{"sent_id": 0, "pos": [1, 4], "type": "ORG", "name": "University of Paris"}],
               [{"sent_id": 0, "pos": [3, 4], "type": "LOC", "name": "Paris"}],
               [{"sent_id": 0, "pos": [5, 7], "type": "PER"}, {"sent_id": 1, "pos": [0, 1],
                                                               "type": "PER"}],
               [{"sent_id": 0, "pos": [8, 9], "type": "TIME"}],
               [{"sent_id": 1, "pos": [2, 3], "type": "NUM"}],
               [{"sent_id": 1, "pos": [0, 1], "type": "PER"}],  # the same mention again
           ],
           "labels": []}
    doc.update(over)
    return doc


def _write(tmp: Path, records: object, name: str = "dev_revised.json") -> Path:
    path = tmp / name
    path.write_text(json.dumps(records))
    return path


def test_read_docred_spans_nested_and_deduplicated(tmp_path: Path) -> None:
    docs, counts = read_docred(_write(tmp_path, [_doc(), _doc("Doc B")]))
    assert [d.title for d in docs] == ["Doc A", "Doc B"]
    s0, s1 = docs[0].sentences
    assert s0.tokens[:4] == ["The", "University", "of", "Paris"]
    assert s0.spans == [(1, 4, "ORG"), (3, 4, "LOC"), (5, 7, "PER"), (8, 9, "TIME")]
    assert s1.spans == [(0, 1, "PER"), (2, 3, "NUM")]
    assert counts.duplicate_mentions == 2  # one per document
    assert counts.same_type_overlaps == 0


@pytest.mark.parametrize(("change", "field", "problem"), [
    (lambda d: d["vertexSet"][0][0].update(pos=[8, 12]), "vertexSet[0][0].pos",
     "outside the sentence"),
    (lambda d: d["vertexSet"][0][0].update(pos=[3, 3]), "vertexSet[0][0].pos",
     "outside the sentence"),
    (lambda d: d["vertexSet"][1][0].update(sent_id=2), "vertexSet[1][0].sent_id",
     "not a sentence index"),
    (lambda d: d["vertexSet"][3][0].update(type="DATE"), "vertexSet[3][0].type",
     "unknown type 'DATE'"),
    (lambda d: d.update(sents=[]), "sents", "non-empty list"),
    (lambda d: d.update(vertexSet={}), "vertexSet", "expected a list"),
])
def test_read_docred_malformed(tmp_path: Path, change, field: str, problem: str) -> None:
    doc = _doc()
    change(doc)
    path = _write(tmp_path, [doc])
    with pytest.raises(NERDataError) as err:
        read_docred(path)
    msg = str(err.value)
    assert str(path) in msg and "'Doc A'" in msg and field in msg and problem in msg
    assert isinstance(err.value, UserError)
    if field.endswith(".pos") or field.endswith(".type"):
        assert "sentence 0" in msg and "expected" in msg


def test_read_docred_file_problems(tmp_path: Path) -> None:
    with pytest.raises(NERDataError, match="twice"):
        read_docred(_write(tmp_path, [_doc(), _doc()]))
    with pytest.raises(NERDataError, match="not valid JSON"):
        (tmp_path / "bad.json").write_text("[{")
        read_docred(tmp_path / "bad.json")
    with pytest.raises(NERDataError, match="not found"):
        read_docred(tmp_path / "missing.json")


@pytest.mark.skipif(not (REDOCRED / "dev_revised.json").is_file(),
                    reason="the shared Re-DocRED files are not here")
@pytest.mark.parametrize("name", ["dev_revised.json", "test_revised.json"])
def test_read_shared_redocred(name: str) -> None:
    docs, counts = read_docred(REDOCRED / name)
    raw = json.loads((REDOCRED / name).read_text())
    assert len(docs) == len(raw) == 500
    # independently: the distinct (title, sentence, start, end, type) mentions of the file
    want = {(d["title"], m["sent_id"], *m["pos"], m["type"])
            for d in raw for e in d["vertexSet"] for m in e}
    got = {(d.title, s, a, b, t) for d in docs for s, x in enumerate(d.sentences)
           for a, b, t in x.spans}
    assert got == want
    total = sum(len(e) for d in raw for e in d["vertexSet"])
    assert counts.duplicate_mentions == total - len(want)
    assert {t for *_, t in want} == set(TYPES)
    assert all(x.tokens == s for d, r in zip(docs, raw, strict=True)
               for x, s in zip(d.sentences, r["sents"], strict=True))


# -- tag schemes --------------------------------------------------------------------------------

def test_tags_to_spans_hand_written() -> None:
    assert tags_to_spans(["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"], "iob2") == [
        (0, 2, "PER"), (3, 4, "LOC"), (4, 6, "LOC")]
    # IOB1: I- starts an entity; B- only between two adjacent entities of one type
    assert tags_to_spans(["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG"], "iob1") == [
        (0, 2, "PER"), (2, 3, "PER"), (4, 5, "LOC"), (5, 6, "ORG")]
    assert tags_to_spans(["B-PER", "I-PER", "E-PER", "S-LOC", "O", "S-LOC"], "bioes") == [
        (0, 3, "PER"), (3, 4, "LOC"), (5, 6, "LOC")]
    assert detect_scheme([["B-PER", "I-PER"], ["O", "B-LOC"]]) == "iob2"
    assert detect_scheme([["I-PER", "I-PER"], ["O", "B-LOC"]]) == "iob1"
    assert detect_scheme([["B-PER", "I-PER"], ["S-LOC"]]) == "bioes"


@pytest.mark.parametrize(("tags", "scheme", "problem"), [
    (["O", "I-PER"], "iob2", "token 1: 'I-PER' follows 'O'"),
    (["I-PER"], "iob2", "token 0"),
    (["B-PER", "I-LOC"], "iob2", "token 1"),
    (["B-PER", "O"], "bioes", "unfinished PER"),
    (["B-PER", "I-PER"], "bioes", "not closed"),
    (["E-PER"], "bioes", "ends no open PER"),
    (["O", "PER"], "iob2", "not O or"),
])
def test_tags_to_spans_rejects(tags: list[str], scheme: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        tags_to_spans(tags, scheme)


def _random_spans(rng: np.random.Generator, n: int) -> list[tuple[int, int, str]]:
    spans, t = [], 0
    while t < n:
        if rng.random() < 0.4:
            end = int(rng.integers(t + 1, min(n, t + 4) + 1))
            spans.append((t, end, str(rng.choice(["PER", "LOC", "ORG"]))))
            t = end
        else:
            t += 1
    return spans


@pytest.mark.parametrize("seed", range(3))
def test_tags_to_spans_equal_seqeval_entities(seed: int) -> None:
    """Valid IOB2 / BIOES sequences written from random spans: the spans come back, as
    seqeval's strict ``Entities`` reads them."""
    rng = np.random.default_rng(seed)
    for _ in range(50):
        n = int(rng.integers(1, 12))
        spans = _random_spans(rng, n)
        iob2, bioes = ["O"] * n, ["O"] * n
        for a, b, t in spans:
            iob2[a:b] = [f"B-{t}"] + [f"I-{t}"] * (b - a - 1)
            bioes[a:b] = [f"S-{t}"] if b - a == 1 else \
                [f"B-{t}"] + [f"I-{t}"] * (b - a - 2) + [f"E-{t}"]
        for tags, scheme, ref in ((iob2, "iob2", IOB2), (bioes, "bioes", IOBES)):
            want = sorted((e.start, e.end, e.tag) for e in Entities([tags], ref).entities[0])
            assert sorted(tags_to_spans(tags, scheme)) == want == sorted(spans)
        assert sorted((a, b + 1, t) for t, a, b in get_entities(iob2)) == sorted(spans)


# -- CoNLL files --------------------------------------------------------------------------------

CONLL_IOB2 = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP B-LOC
"""


def test_read_conll_iob2_with_docstart_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "train.txt"
    path.write_text(CONLL_IOB2)
    sents, counts = read_conll(path)
    assert [s.tokens for s in sents] == [["EU", "rejects", "German", "call", "."],
                                         ["Peter", "Blackburn"], ["BRUSSELS"]]
    assert [s.spans for s in sents] == [[(0, 1, "ORG"), (2, 3, "MISC")], [(0, 2, "PER")],
                                        [(0, 1, "LOC")]]
    assert counts.schemes == {str(path): "iob2"}


def test_read_conll_iob1_and_bioes_auto_detected(tmp_path: Path) -> None:
    iob1 = tmp_path / "iob1.txt"
    iob1.write_text("Peter I-PER\nBlackburn I-PER\nMary B-PER\nin O\nBonn I-LOC\n")
    sents, counts = read_conll(iob1)
    assert sents[0].spans == [(0, 2, "PER"), (2, 3, "PER"), (4, 5, "LOC")]
    assert counts.schemes[str(iob1)] == "iob1"
    bioes = tmp_path / "bioes.txt"
    bioes.write_text("New B-LOC\nYork E-LOC\nis O\nbig O\n\nBonn S-LOC\n")
    sents, counts = read_conll(bioes)
    assert [s.spans for s in sents] == [[(0, 2, "LOC")], [(0, 1, "LOC")]]
    assert counts.schemes[str(bioes)] == "bioes"


@pytest.mark.parametrize(("text", "kwargs", "where", "problem"), [
    ("A B-PER\nB I-PER\n\nC O\nD I-LOC\n", dict(scheme="iob2"), "sentence 1, line 5",
     "'I-LOC' follows 'O'"),
    ("A B-PER\nB\n", {}, "sentence 0, line 2", "missing"),
    ("A B-PER\n\nB B-GPE\n", dict(types=("PER", "LOC")), "sentence 1, line 3",
     "unknown type 'GPE'"),
    ("A X-PER\n", {}, "sentence 0, line 1", "not O or"),
])
def test_read_conll_malformed(tmp_path: Path, text: str, kwargs: dict, where: str,
                              problem: str) -> None:
    path = tmp_path / "dev.txt"
    path.write_text(text)
    with pytest.raises(NERDataError) as err:
        read_conll(path, **kwargs)
    msg = str(err.value)
    assert str(path) in msg and where in msg and "field 'tag'" in msg and problem in msg


# -- datasets layout ----------------------------------------------------------------------------

NAMES = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def test_read_hf_split_rows() -> None:
    rows = [{"tokens": ["Ann", "Lee", "in", "Rome"], "ner_tags": [1, 2, 0, 3]},
            {"tokens": [], "ner_tags": []},  # an empty row is skipped
            {"tokens": ["Rome"], "ner_tags": [3]}]
    sents, counts = read_hf_split(rows, NAMES, "wikiann[train]")
    assert [s.spans for s in sents] == [[(0, 2, "PER"), (3, 4, "LOC")], [(0, 1, "LOC")]]
    assert counts.schemes == {"wikiann[train]": "iob2"}


@pytest.mark.parametrize(("row", "kwargs", "problem"), [
    ({"tokens": ["a", "b"], "ner_tags": [0]}, {}, "1 tags for 2 tokens"),
    ({"tokens": ["a"], "ner_tags": [9]}, {}, "ids into the 5 ClassLabel names"),
    ({"tokens": ["a", "b"], "ner_tags": [0, 2]}, dict(scheme="iob2"), "'I-PER' follows 'O'"),
    ({"tokens": ["a"], "ner_tags": [3]}, dict(types=("PER",)), "unknown type 'LOC'"),
])
def test_read_hf_split_malformed(row: dict, kwargs: dict, problem: str) -> None:
    with pytest.raises(NERDataError) as err:
        read_hf_split([row], NAMES, "wikiann[validation]", **kwargs)
    msg = str(err.value)
    assert "wikiann[validation]: row 0" in msg and "field 'ner_tags'" in msg and problem in msg


def test_token_ner_reads_a_saved_dataset_dict(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    from tasks import create_task

    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(
                                      names=NAMES))})
    rows = {"tokens": [["Ann", "Lee", "in", "Rome"], ["Rome", "is", "old"]],
            "ner_tags": [[1, 2, 0, 3], [3, 0, 0]]}
    dd = datasets.DatasetDict({s: datasets.Dataset.from_dict(rows, features=features)
                               for s in ("train", "validation", "test")})
    dd.save_to_disk(str(tmp_path / "wikiann_mini"))
    task = create_task("token_ner", format="hf", hf_dataset=str(tmp_path / "wikiann_mini"))
    assert task.types == ("LOC", "PER") and task.num_labels == 4
    assert task.metrics[-2:] == ("f1_LOC", "f1_PER")
    assert task.info()["sentences"] == {"train": 2, "dev": 2, "test": 2}
    assert task.targets("test").shape == (7, 4)
