"""The DocRED task: reader, errors, pairs and targets, threshold tuning, encodings, end to end."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState

import run_task
from leaderboard.schema import read_results
from tasks import create_task
from tasks.base import DecisionRule
from tasks.docred import data as D
from tasks.docred.scorer import DocREDFormatError
from tasks.docred.task import SHARED, tune_threshold, tune_threshold_ign

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / "tests" / "fixtures" / "docred_task"
META = FIX / "meta"


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def _schema() -> D.Schema:
    return D.read_schema(META / "rel2id.json", META / "ner2id.json", META / "rel_info.json")


def _raw(name: str = "train_revised.json") -> list[dict]:
    return json.loads((FIX / name).read_text())


def test_reader_gives_document_level_spans_and_relation_ids() -> None:
    docs = D.read_documents(FIX / "train_revised.json", _schema())
    ada = docs[0]
    assert ada.title == "Ada Lovelace" and len(ada.entities) == 5
    # "Lovelace" is word 0 of sentence 1; sentence 0 has 9 words
    assert [(m.start, m.end, m.sent_id) for m in ada.entities[0]] == [(0, 2, 0), (9, 10, 1)]
    assert ada.tokens[9] == "Lovelace"
    # facts as (h, t, rel2id[r]); P27 of Babbage (sentence 1) to England (sentence 2) crosses
    assert (3, 4, 3) in ada.facts and (0, 2, 4) in ada.facts and len(ada.facts) == 4


def test_pairs_and_targets_against_the_labels() -> None:
    schema = _schema()
    for doc in D.read_documents(FIX / "train_revised.json", schema):
        e = len(doc.entities)
        pairs = doc.pairs()
        assert len(pairs) == e * (e - 1) and (pairs[:, 0] != pairs[:, 1]).all()
        assert {tuple(p) for p in pairs.tolist()} == {
            (h, t) for h, t in itertools.permutations(range(e), 2)}
        for row, (h, t) in enumerate(pairs.tolist()):
            assert doc.pair_row(h, t) == row
        y = D.targets_of(doc, schema)
        expected = np.zeros_like(y)
        for lab in doc.raw["labels"]:  # the raw records, not the parsed facts
            row = [tuple(p) for p in pairs.tolist()].index((lab["h"], lab["t"]))
            expected[row, schema.rel2id[lab["r"]]] = 1
        expected[expected.sum(1) == 0, schema.rel2id["Na"]] = 1
        np.testing.assert_array_equal(y, expected)


def _mutate(tmp_path: Path, edit) -> Path:
    docs = _raw()
    edit(docs)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(docs))
    return path


@pytest.mark.parametrize(("edit", "field", "problem"), [
    (lambda d: d[0]["vertexSet"][1][0].update(pos=[5, 12]), "vertexSet[1][0].pos",
     "not a span"),
    (lambda d: d[0]["vertexSet"][1][0].update(sent_id=7), "vertexSet[1][0].sent_id",
     "not a sentence index"),
    (lambda d: d[1]["labels"][0].update(t=9), "labels[0].t", "not an entity index"),
    (lambda d: d[1]["labels"][2].update(r="P999"), "labels[2].r", "unknown relation 'P999'"),
    (lambda d: d[1]["labels"][2].update(r="Na"), "labels[2].r", "no-relation class"),
    (lambda d: d[1]["labels"][0].update(t=0), "labels[0]", "same entity"),
    (lambda d: d[0].update(vertexSet=[]), "vertexSet", "document without entities"),
    (lambda d: d[0]["vertexSet"][2][0].update(type="ANIMAL"), "vertexSet[2][0].type",
     "unknown entity type 'ANIMAL'"),
    (lambda d: d[1].pop("labels"), "labels", "missing"),
])
def test_malformed_documents_name_file_title_and_field(tmp_path: Path, edit, field: str,
                                                       problem: str) -> None:
    path = _mutate(tmp_path, edit)
    with pytest.raises(DocREDFormatError) as err:
        D.read_documents(path, _schema())
    msg = str(err.value)
    assert str(path) in msg and f"field {field!r}" in msg and problem in msg
    assert "'Ada Lovelace'" in msg or "'Turing Institute'" in msg


def test_duplicate_titles_and_bad_id_files(tmp_path: Path) -> None:
    path = _mutate(tmp_path, lambda d: d[1].update(title="Ada Lovelace"))
    with pytest.raises(DocREDFormatError, match="records 0 and 1 share the title"):
        D.read_documents(path, _schema())
    rel = tmp_path / "rel2id.json"
    rel.write_text(json.dumps({"P17": 0, "P131": 1}))
    with pytest.raises(DocREDFormatError, match="rel2id has no 'Na' entry"):
        D.read_schema(rel, META / "ner2id.json", None)
    rel.write_text(json.dumps({"Na": 0, "P17": 2}))
    with pytest.raises(DocREDFormatError, match=r"ids must be distinct and run 0\.\.1"):
        D.read_schema(rel, META / "ner2id.json", None)


def test_held_out_split_is_fixed_by_title_not_file_order() -> None:
    docs = D.read_documents(FIX / "train_revised.json", _schema())
    many = [D.Document(f"doc {i}", d.sents, d.entities, d.facts, d.raw)
            for i, d in enumerate(docs * 15)]
    held = D.held_out_titles(many, 0.1)
    assert len(held) == 3 and held == D.held_out_titles(many[::-1], 0.1)


def test_threshold_tuning_matches_a_brute_force_search() -> None:
    rng = np.random.default_rng(0)
    for trial in range(20):
        # rounded scores create ties, which must be predicted together
        s = np.round(rng.random((30, 4)), 1 if trial % 2 else 3)
        y = (rng.random((30, 4)) < 0.2).astype(np.float32)
        theta, f1 = tune_threshold(s, y)
        best = 0.0
        for cut in np.unique(s):
            pred = s >= cut
            tp = (pred & (y > 0)).sum()
            best = max(best, 2 * tp / (pred.sum() + y.sum()))
        pred = s > theta
        got = 2 * (pred & (y > 0)).sum() / (pred.sum() + y.sum())
        assert f1 == pytest.approx(best) and got == pytest.approx(best)


def test_ign_f1_threshold_tuning_matches_a_brute_force_search() -> None:
    """MRN's objective (main.py:160-167): Ign precision = (tp - tp in train) / (#pred - tp in
    train), recall = tp / gold; the tuned threshold reaches the best Ign F1 of any cut."""
    def ign_f1(pred: np.ndarray, y: np.ndarray, seen: np.ndarray) -> float:
        tp, tp_seen = (pred & (y > 0)).sum(), (pred & seen).sum()
        p = (tp - tp_seen) / (pred.sum() - tp_seen) if pred.sum() > tp_seen else 0.0
        r = tp / y.sum()
        return 2 * p * r / (p + r) if p + r > 0 else 0.0

    rng = np.random.default_rng(1)
    for trial in range(20):
        s = np.round(rng.random((30, 4)), 1 if trial % 2 else 3)
        y = (rng.random((30, 4)) < 0.2).astype(np.float32)
        seen = (rng.random((30, 4)) < 0.4) & (y > 0)
        theta, best = tune_threshold_ign(s, y, seen)
        assert best == pytest.approx(max(ign_f1(s >= cut, y, seen) for cut in np.unique(s)))
        assert ign_f1(s > theta, y, seen) == pytest.approx(best)


def test_threshold_objective_option() -> None:
    task = create_task("docred", data_dir=str(FIX))
    assert task.kwargs["threshold_objective"] == "ign_f1"  # MRN's, the default
    seen = task.in_train("dev")
    y = task.targets("dev")
    assert seen.sum() == 2 and (y[seen] == 1).all()  # the fixture's dev facts are train facts
    # nothing new to find: Ign F1 is 0 at every cut, so nothing is predicted (the top score)
    scores = torch.from_numpy(0.2 + 0.6 * y.astype(np.float32))
    assert task.calibrate(torch.arange(len(y)), scores).value == pytest.approx(0.8)
    with pytest.raises(ValueError, match="threshold_objective must be"):
        create_task("docred", data_dir=str(FIX), threshold_objective="auc")


def test_subword_encoding_puts_markers_around_mentions(tmp_path: Path) -> None:
    from transformers import BertTokenizerFast

    words = sorted({w.lower() for d in _raw() for s in d["sents"] for w in s})
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "*", *words]) + "\n")
    tok = BertTokenizerFast(vocab=str(vocab))
    doc = D.read_documents(FIX / "train_revised.json", _schema())[0]
    enc = D.encode_subwords(doc, tok)
    pieces = tok.convert_ids_to_tokens(enc["input_ids"])
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]"
    spans = {(s, e) for s, e, _ in enc["mentions"]}
    assert len(spans) == sum(len(ent) for ent in doc.entities)
    for (start, end, _), m in zip(enc["mentions"], [m for ent in doc.entities for m in ent],
                                  strict=True):
        assert pieces[start] == "*" and pieces[end - 1] == "*"
        assert pieces[start + 1:end - 1] == [w.lower() for w in doc.tokens[m.start:m.end]]


def test_collate_numbers_entities_and_rows_over_the_batch() -> None:
    task = create_task("docred", data_dir=str(FIX))
    ds = task.dataset("train")
    batch = task.collate([ds[1], ds[0]])
    e0, e1 = ds[1]["num_entities"], ds[0]["num_entities"]
    assert batch["entity_doc"].tolist() == [0] * e0 + [1] * e1
    assert batch["pairs"][len(ds[1]["pairs"]):].min() == e0  # second doc's entities follow
    assert batch["row_index"].tolist() == list(range(20, 32)) + list(range(20))
    m = batch["mentions"]
    assert (m[:, 2] <= batch["attention_mask"].sum(1)[m[:, 0]]).all()
    assert set(m[:, 3].tolist()) == set(range(e0 + e1))


def test_evaluate_uses_the_scorer_and_the_dev_tuned_threshold() -> None:
    # tuned for F1: both dev facts of the fixture are train facts, so Ign F1 is 0 at every cut
    task = create_task("docred", data_dir=str(FIX), threshold_objective="f1")
    y = torch.cat([it["targets"] for it in task.items["dev"]]).float()
    perm = torch.randperm(len(y))
    rule = task.calibrate(perm, (0.2 + 0.6 * y)[perm])  # any order of rows
    assert rule.policy == "dev_tuned" and 0.2 < rule.value < 0.8
    assert rule.to_json() == {"policy": "dev_tuned", "value": rule.value}
    dev = task.evaluate("dev", perm, (0.2 + 0.6 * y)[perm], rule)
    assert dev["f1"] == 1.0
    scores = torch.full((24, 5), 0.1)
    scores[0, 1] = 0.9  # "Babbage Engine (test copy)": pair (0, 1) predicted P17
    metrics = task.evaluate("test", torch.arange(24), scores, rule)
    assert metrics["precision"] == 0.0 and metrics["f1"] == 0.0
    # uncalibrated: the fixed 0.5, nothing tuned behind the caller's back
    assert task.evaluate("test", torch.arange(24), scores) == task.evaluate(
        "test", torch.arange(24), scores, DecisionRule("fixed", 0.5))
    assert task.calibrate(perm, (0.2 + 0.6 * y)[perm]) == rule
    with pytest.raises(ValueError, match="exactly once"):
        task.evaluate("test", torch.zeros(24, dtype=torch.long), scores, rule)


def test_predictions_file_follows_the_rule(tmp_path: Path) -> None:
    task = create_task("docred", data_dir=str(FIX))
    scores = torch.full((24, 5), 0.5)
    low = json.loads((tmp_path / task.write_predictions(
        "test", torch.arange(24), scores, tmp_path / "a", DecisionRule("dev_tuned", 0.4)))
        .read_text())
    high = task.write_predictions("test", torch.arange(24), scores, tmp_path / "b",
                                  DecisionRule("dev_tuned", 0.6))
    assert json.loads((tmp_path / high).read_text()) == []
    # every pair of both test documents, with every relation but Na
    n_pairs = sum(len(d["vertexSet"]) * (len(d["vertexSet"]) - 1)
                  for d in _raw("test_revised.json"))
    assert len(low) == n_pairs * 4 and {r["r"] for r in low} == {"P17", "P131", "P27", "P569"}


def _scorer_cli(pred: Path, gold: Path, train: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "tasks.docred.scorer", "--pred", str(pred),
                           "--gold", str(gold), "--train", str(train)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=True)
    assert proc.stderr == ""  # e.g. no runpy warning about the module being imported twice
    return json.loads(proc.stdout)


@pytest.mark.parametrize("loss", ["bce", "aam"])
def test_tiny_mrn_end_to_end_matches_the_scorer_cli(tmp_path: Path, loss: str) -> None:
    (res,) = run_task.main(["--task", "docred", "--data_dir", str(FIX), "--model", "tiny_mrn",
                            "--loss", loss, "--epochs", "2", "--batch_size", "2",
                            "--lr", "0.01", "--output_dir", str(tmp_path)])
    (path,) = (tmp_path / "docred").glob(f"tiny_mrn__*__{loss}__seed0.json")
    assert read_results(path) == res  # schema-valid on disk
    assert res["task"]["num_examples"] == 2 and res["task"]["num_labels"] == 5
    assert res["threshold"]["policy"] == "dev_tuned"
    assert res["model"]["kwargs"]["head"] == ("cosine" if loss == "aam" else "linear")
    pred = tmp_path / "docred" / res["extra"]["predictions_file"]
    cli = _scorer_cli(pred, FIX / "test_revised.json", FIX / "train_revised.json")
    for key in ("f1", "ign_f1", "precision", "recall", "intra_f1", "inter_f1"):
        assert res["metrics"][key] == pytest.approx(cli[key], abs=1e-12), key


def test_tiny_bert_re_end_to_end_with_a_tokenizer(tmp_path: Path) -> None:
    from transformers import BertTokenizerFast

    words = sorted({w.lower() for f in ("train_revised.json", "dev_revised.json",
                                        "test_revised.json") for d in _raw(f)
                    for s in d["sents"] for w in s})
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "*", *words]) + "\n")
    BertTokenizerFast(vocab=str(vocab)).save_pretrained(tmp_path / "tok")
    (res,) = run_task.main(["--task", "docred", "--data_dir", str(FIX), "--model",
                            "tiny_bert_re", "--task.tokenizer", str(tmp_path / "tok"),
                            "--loss", "apl", "--epochs", "1", "--batch_size", "2",
                            "--output_dir", str(tmp_path / "out")])
    pred = tmp_path / "out" / "docred" / res["extra"]["predictions_file"]
    cli = _scorer_cli(pred, FIX / "test_revised.json", FIX / "train_revised.json")
    assert res["metrics"]["ign_f1"] == pytest.approx(cli["ign_f1"], abs=1e-12)
    assert res["model"]["kwargs"]["vocab_size"] == len(words) + 6  # and [MASK], added


def test_two_process_ddp_scores_every_pair_once(tmp_path: Path,
                                                launch_two_cpu_processes) -> None:
    # batches of 4 documents over 2 ranks: the 1-document dev split and the 2-document test
    # split are padded with duplicate documents, whose pair rows must be dropped by id
    args = ["--task", "docred", "--data_dir", str(FIX), "--model", "tiny_mrn", "--loss", "bce",
            "--epochs", "1", "--batch_size", "2", "--eval_batch_size", "4",
            "--model.dropout", "0", "--model.dropout_emb", "0"]
    (single,) = run_task.main([*args, "--output_dir", str(tmp_path / "one")])
    launch_two_cpu_processes(*args, "--output_dir", str(tmp_path / "two"))
    (path,) = (tmp_path / "two" / "docred").glob("*__seed0.json")
    double = read_results(path)
    assert double["env"]["world_size"] == 2
    assert double["task"]["num_examples"] == single["task"]["num_examples"] == 2  # documents
    assert double["threshold"]["value"] == pytest.approx(single["threshold"]["value"], abs=1e-5)
    for key, value in single["metrics"].items():
        assert double["metrics"][key] == pytest.approx(value, abs=1e-6), key


@pytest.mark.skipif(not (SHARED / "redocred" / "test_revised.json").is_file(),
                    reason="shared Re-DocRED files absent")
def test_re_docred_devtrain_split_on_the_shared_files() -> None:
    task = create_task("docred")
    assert task.dataset_name == "re-docred-devtrain" and task.num_labels == 97
    assert task.info()["documents"] == {"train": 450, "dev": 50, "test": 500}
    train = {d.title for d in task.docs["train"]}
    assert not train & {d.title for d in task.docs["dev"]}
    assert not train & {d.title for d in task.docs["test"]}
    raw = json.loads((SHARED / "redocred" / "test_revised.json").read_text())
    assert task.rows["test"] == sum(len(d["vertexSet"]) * (len(d["vertexSet"]) - 1) for d in raw)
    # the gold facts of the test split are exactly the file's labels
    facts = sum(len({(x["h"], x["t"], x["r"]) for x in d["labels"]}) for d in raw)
    y = torch.cat([it["targets"] for it in task.items["test"]])
    assert int(y[:, 1:].sum()) == facts



def test_word_vectors_fill_the_embedding_or_it_is_trained(tmp_path: Path) -> None:
    from models import create_model

    task = create_task("docred", data_dir=str(FIX))
    model = create_model("tiny_mrn", task.num_labels, **task.model_kwargs())
    assert not model.embedding.weight.requires_grad  # MRN freezes its (GloVe) embedding
    task.prepare_model(model)
    assert model.embedding.weight.requires_grad and "random init" in task.info()["word_embedding"]
    vec = tmp_path / "vec.txt"
    vec.write_text("london 1 2 3 4 5 6 7 8\nengland 0 0 0 0 0 0 0 1\n")
    task = create_task("docred", data_dir=str(FIX), vectors=str(vec))
    assert task.model_kwargs()["embed_dim"] == 8
    model = create_model("tiny_mrn", task.num_labels, **task.model_kwargs())
    task.prepare_model(model)
    row = model.embedding.weight[task.word2id["london"]]
    assert row.tolist() == [1, 2, 3, 4, 5, 6, 7, 8] and not model.embedding.weight.requires_grad
    assert "2 words found" in task.info()["word_embedding"]


def test_a_fixed_threshold_is_not_tuned() -> None:
    task = create_task("docred", data_dir=str(FIX), threshold=0.5)
    y = torch.cat([it["targets"] for it in task.items["dev"]]).float()
    assert task.evaluate("dev", torch.arange(len(y)), 0.4 + 0.2 * y)["f1"] == 1.0
    assert task.evaluate("dev", torch.arange(len(y)), 0.6 * y)["f1"] == 1.0
    assert task.evaluate("dev", torch.arange(len(y)), 0.45 + 0.0 * y)["recall"] == 0.0
    assert task.calibrate(torch.arange(len(y)), 0.45 + 0.0 * y) == DecisionRule("fixed", 0.5)
    with pytest.raises(ValueError, match="threshold must be 'dev_tuned' or a number"):
        create_task("docred", data_dir=str(FIX), threshold="best")


def test_official_docred_layout_with_hidden_test_labels(tmp_path: Path) -> None:
    # DocRED's own file names; its test file has no labels, so dev becomes the evaluation split
    # and part of train is held out for selection
    shutil.copytree(META, tmp_path / "meta")
    docs = _raw() + _raw("dev_revised.json")
    (tmp_path / "train_annotated.json").write_text(json.dumps(docs))
    (tmp_path / "dev.json").write_text((FIX / "test_revised.json").read_text())
    (tmp_path / "test.json").write_text(json.dumps(
        [{k: v for k, v in d.items() if k != "labels"} for d in _raw("test_revised.json")]))
    task = create_task("docred", data_dir=str(tmp_path))
    assert task.dataset_name == "docred-dev"
    assert task.info()["documents"] == {"train": 2, "dev": 1, "test": 2}
    assert task.files["test"].endswith("dev.json") and "held out" in task.selection
    shutil.copy(tmp_path / "dev.json", tmp_path / "test.json")  # a labelled test file
    assert create_task("docred", data_dir=str(tmp_path)).dataset_name == "docred"


@pytest.mark.parametrize("seed", range(5))
def test_example_counts_sum_to_the_scorers_ign_f1(seed: int) -> None:
    # the per-document counts the leaderboard's bootstrap resamples: summed, they must give the
    # official scorer's Ign F1 and F1 (tasks/docred/scorer.py, checked against the official
    # evaluation elsewhere), for random scores and a threshold between them
    from tasks.metrics import COUNTED_METRICS, f1_from_counts

    task = create_task("docred", data_dir=str(FIX))
    rng = np.random.default_rng(seed)
    n = task.num_rows("test")
    y = task.targets("test")
    scores = torch.from_numpy(np.clip(0.5 * y + rng.random(y.shape) * 0.7, 0, 1))
    perm = torch.from_numpy(rng.permutation(n))
    rule = DecisionRule("fixed", 0.5)
    counts = task.example_counts("test", perm, scores[perm], rule)
    assert counts.shape == (len(task.items["test"]), 4)
    names, from_counts = COUNTED_METRICS["ign_f1"]
    metrics = task.evaluate("test", perm, scores[perm], rule)
    assert from_counts(counts.sum(0)) == pytest.approx(metrics["ign_f1"], abs=1e-12)
    total = counts.sum(0)
    assert f1_from_counts(total[[0, 2, 3]]) == pytest.approx(metrics["f1"], abs=1e-12)
    assert names == ("correct", "correct_in_train", "predicted", "gold")
    from tasks.docred.scorer import score

    official = score(task.predictions("test", scores.numpy().astype(np.float64), rule),
                     [d.raw for d in task.docs["test"]], [[d.raw for d in task.docs["train"]]])
    assert total.tolist() == [official["correct"], official["correct_in_train"],
                              official["num_predictions"], official["num_gold"]]
