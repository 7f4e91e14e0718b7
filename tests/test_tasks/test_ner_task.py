"""docred_ner / token_ner: decoding and scoring against seqeval called directly, the task, and
run_task end to end on a tiny fixture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

from mllb_core.errors import UserError
from tasks.metrics import mean_average_precision
from tasks.ner.decoding import TYPES, decode, encode, ner_scores

STRICT = dict(mode="strict", scheme=IOB2, zero_division=0)


# -- decoding ---------------------------------------------------------------------------------

def _reference_decode(scores: np.ndarray, lengths: list[int], types: tuple[str, ...],
                      threshold: float) -> list[list[list[str]]]:
    """The rule as the issue states it, written independently: per type and sentence, walk the
    tokens; B >= t opens an entity, I >= t continues an open one, anything else closes it."""
    out = []
    for k, typ in enumerate(types):
        per_sentence, off = [], 0
        for n in lengths:
            tags, open_ = [], False
            for t in range(off, off + n):
                if scores[t, 2 * k] >= threshold:
                    tags.append(f"B-{typ}")
                    open_ = True
                elif scores[t, 2 * k + 1] >= threshold and open_:
                    tags.append(f"I-{typ}")
                else:
                    tags.append("O")
                    open_ = False
            per_sentence.append(tags)
            off += n
        out.append(per_sentence)
    return out


def test_decode_hand_written_case() -> None:
    types = ("PER", "LOC")
    # sentence 0 (4 tokens): PER [0, 2), a stray LOC I at 1 (dropped), LOC [2, 4)
    # sentence 1 (3 tokens): an I at its first token (dropped even though sentence 0 ended in
    # an open LOC), then B B I: two PER entities [1, 2) and [2, 3)
    s = np.zeros((7, 4))
    s[0, 0] = s[1, 1] = 0.9          # PER B, I
    s[1, 3] = 0.8                    # LOC I without a B: dropped
    s[2, 2] = s[3, 3] = 0.7          # LOC B, I
    s[4, 1] = s[4, 3] = 0.9          # I's at a sentence's first token
    s[5, 0] = s[6, 0] = s[6, 1] = 0.6
    tags = decode(s, [4, 3], types)
    assert tags == [[["B-PER", "I-PER", "O", "O"], ["O", "B-PER", "B-PER"]],
                    [["O", "O", "B-LOC", "I-LOC"], ["O", "O", "O"]]]
    assert tags == _reference_decode(s, [4, 3], types, 0.5)
    # the threshold is inclusive and may be given per type or per column
    assert decode(s, [4, 3], types, 0.7)[1][0] == ["O", "O", "B-LOC", "I-LOC"]
    assert decode(s, [4, 3], types, [0.95, 0.5])[0][0] == ["O"] * 4
    assert decode(s, [4, 3], types, [0.5, 0.95, 0.5, 0.5])[0][0] == ["B-PER", "O", "O", "O"]


def test_decode_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"\[T, 2K\]"):
        decode(np.zeros((3, 3)), [3], ("PER", "LOC"))
    with pytest.raises(ValueError, match="sum to the 3"):
        decode(np.zeros((3, 4)), [2], ("PER", "LOC"))
    with pytest.raises(ValueError, match="one per type"):
        decode(np.zeros((3, 4)), [3], ("PER", "LOC"), [0.5, 0.5, 0.5])


@pytest.mark.parametrize("seed", range(5))
def test_decode_on_random_scores_is_strict_iob2_and_matches_the_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 9, size=12).tolist()
    scores = rng.random((sum(lengths), 2 * len(TYPES)))
    for threshold in (0.3, 0.5, 0.8):
        tags = decode(scores, lengths, TYPES, threshold)
        assert tags == _reference_decode(scores, lengths, TYPES, threshold)
        for k, typ in enumerate(TYPES):
            assert [len(x) for x in tags[k]] == lengths
            for seq in tags[k]:
                # strict IOB2: every I follows a B or an I of the same type
                for a, b in zip(["O", *seq], seq, strict=False):
                    assert b in ("O", f"B-{typ}", f"I-{typ}")
                    assert not (b.startswith("I-") and a == "O")


@pytest.mark.parametrize("seed", range(5))
def test_encode_then_decode_gives_the_spans_back(seed: int) -> None:
    """Spans of different types may nest and overlap; one type's spans do not overlap."""
    from seqeval.metrics.sequence_labeling import get_entities

    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 12, size=10).tolist()
    spans = []
    for n in lengths:
        sentence = []
        for typ in TYPES:
            t = 0
            while t < n:  # non-overlapping spans of this type, at random places
                if rng.random() < 0.3:
                    end = int(rng.integers(t + 1, n + 1))
                    sentence.append((t, end, typ))
                    t = end + int(rng.integers(0, 2))  # adjacent spans too
                else:
                    t += 1
        spans.append(sentence)
    y = encode(spans, lengths, TYPES)
    assert y.shape == (sum(lengths), 12) and set(np.unique(y)) <= {0.0, 1.0}
    tags = decode(y, lengths, TYPES)
    for s, sentence in enumerate(spans):
        found = {(typ, a, b + 1) for k in range(len(TYPES))
                 for typ, a, b in get_entities(tags[k][s])}
        assert found == {(typ, a, b) for a, b, typ in sentence}


def test_encode_rejects_spans_outside_and_unknown_types() -> None:
    with pytest.raises(ValueError, match="not inside"):
        encode([[(1, 4, "PER")]], [3], TYPES)
    with pytest.raises(ValueError, match="not one of"):
        encode([[(0, 1, "GPE")]], [3], TYPES)


def _seqeval(gold: list[list[list[str]]], pred: list[list[list[str]]]) -> dict[str, float]:
    """seqeval's public functions on the flattened (type, sentence) sequences."""
    y_true = [seq for per_type in gold for seq in per_type]
    y_pred = [seq for per_type in pred for seq in per_type]
    report = classification_report(y_true, y_pred, output_dict=True, **STRICT)
    out = {"entity_micro_f1": f1_score(y_true, y_pred, **STRICT),
           "entity_precision": precision_score(y_true, y_pred, **STRICT),
           "entity_recall": recall_score(y_true, y_pred, **STRICT),
           "entity_macro_f1": f1_score(y_true, y_pred, average="macro", **STRICT)}
    for typ in TYPES:
        out[f"f1_{typ}"] = report[typ]["f1-score"] if typ in report else 0.0
    return out


def test_ner_scores_hand_written_case() -> None:
    gold = [[["B-PER", "I-PER", "O"]], [["O", "B-LOC", "I-LOC"]]]
    pred = [[["B-PER", "I-PER", "O"]], [["O", "B-LOC", "O"]]]  # LOC cut short: wrong
    out = ner_scores(gold, pred, ("PER", "LOC"))
    assert out == {"entity_micro_f1": 0.5, "entity_precision": 0.5, "entity_recall": 0.5,
                   "entity_macro_f1": 0.5, "f1_PER": 1.0, "f1_LOC": 0.0}


@pytest.mark.parametrize("seed", range(4))
def test_ner_scores_equal_seqeval_on_random_sequences(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 10, size=30).tolist()
    gold_scores = (rng.random((sum(lengths), 12)) < 0.25).astype(float)
    gold_scores[:, 2 * TYPES.index("NUM"):2 * TYPES.index("NUM") + 2] = 0  # a type never gold
    gold = decode(gold_scores, lengths, TYPES)
    pred = decode(rng.random((sum(lengths), 12)), lengths, TYPES, 0.7)
    out = ner_scores(gold, pred, TYPES)
    ref = _seqeval(gold, pred)
    assert out.keys() == ref.keys()
    for key, value in ref.items():
        assert out[key] == pytest.approx(value, abs=1e-12), key
    assert ner_scores(gold, gold, TYPES)["entity_micro_f1"] == 1.0


@pytest.mark.parametrize("seed", range(4))
def test_entity_set_micro_f1_equals_seqeval(seed: int) -> None:
    """The dev-threshold search's fast micro F1 is seqeval's strict micro F1."""
    from tasks.ner.decoding import entity_set, micro_f1

    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 10, size=40).tolist()
    gold_scores = (rng.random((sum(lengths), 12)) < 0.3).astype(float)
    scores = rng.random((sum(lengths), 12))
    gold = decode(gold_scores, lengths, TYPES)
    for threshold in (0.2, 0.6, 0.9):
        pred = decode(scores, lengths, TYPES, threshold)
        fast = micro_f1(entity_set(gold_scores, lengths, TYPES),
                        entity_set(scores, lengths, TYPES, threshold))
        assert fast == pytest.approx(_seqeval(gold, pred)["entity_micro_f1"], abs=1e-12)


# -- the task ---------------------------------------------------------------------------------

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "docred_task"


def _nested_docs(tmp: Path) -> Path:
    """DocRED-format train/dev/test files: ORG 'University of Paris' with LOC 'Paris' nested."""
    def doc(title: str) -> dict:
        return {"title": title,
                "sents": [["The", "University", "of", "Paris", "hired", "Marie", "Curie", "."],
                          ["Curie", "won", "2", "prizes", "in", "1911", "."]],
                "vertexSet": [[{"sent_id": 0, "pos": [1, 4], "type": "ORG"}],
                              [{"sent_id": 0, "pos": [3, 4], "type": "LOC"}],
                              [{"sent_id": 0, "pos": [5, 7], "type": "PER"},
                               {"sent_id": 1, "pos": [0, 1], "type": "PER"}],
                              [{"sent_id": 1, "pos": [2, 3], "type": "NUM"}],
                              [{"sent_id": 1, "pos": [5, 6], "type": "TIME"}],
                              [{"sent_id": 1, "pos": [3, 4], "type": "MISC"}]],
                "labels": []}
    tmp.mkdir(parents=True, exist_ok=True)
    for name, titles in (("train_revised.json", ["a", "b", "c"]), ("dev_revised.json", ["d"]),
                         ("test_revised.json", ["e", "f"])):
        (tmp / name).write_text(json.dumps([doc(t) for t in titles]))
    return tmp


def _all(task, split: str) -> dict:
    ds = task.dataset(split)
    return task.collate([ds[i] for i in range(len(ds))])


def test_docred_ner_rows_targets_and_nested_scoring(tmp_path: Path) -> None:
    from tasks import create_task

    task = create_task("docred_ner", data_dir=str(_nested_docs(tmp_path / "d")))
    assert task.num_labels == 12 and task.dataset_name == "re-docred"
    assert task.num_rows("test") == 2 * 15
    y = task.targets("test")
    k = {t: i for i, t in enumerate(TYPES)}
    # token 3 ("Paris") is inside ORG (I) and begins LOC (B): both columns on
    assert y[3, 2 * k["ORG"] + 1] == 1 and y[3, 2 * k["LOC"]] == 1 and y[1, 2 * k["ORG"]] == 1
    batch = _all(task, "test")
    np.testing.assert_array_equal(batch["row_index"].numpy(), np.arange(30))
    assert batch["token_index"].shape == (30, 2)
    # perfect scores: every entity right; a model that finds ORG but misses the nested LOC
    # loses recall only for LOC (seqeval sees one sequence per (sentence, type))
    perfect = torch.from_numpy(y.astype(np.float32))
    out = task.evaluate("test", torch.arange(30), perfect, task.default_rule())
    assert out["entity_micro_f1"] == 1.0 and out["map"] == 1.0
    no_loc = perfect.clone()
    no_loc[:, 2 * k["LOC"]:2 * k["LOC"] + 2] = 0
    out = task.evaluate("test", torch.arange(30), no_loc, task.default_rule())
    assert out["f1_LOC"] == 0.0 and out["f1_ORG"] == 1.0
    assert out["entity_recall"] == pytest.approx(12 / 14) and out["entity_precision"] == 1.0


def test_map_is_tasks_metrics_over_the_token_rows(tmp_path: Path) -> None:
    from sklearn.metrics import average_precision_score

    from tasks import create_task

    task = create_task("docred_ner", data_dir=str(FIX))
    n = task.num_rows("test")
    scores = torch.rand(n, 12, generator=torch.Generator().manual_seed(0))
    out = task.evaluate("test", torch.arange(n), scores, task.default_rule())
    y = task.targets("test")
    assert out["map"] == pytest.approx(mean_average_precision(scores.numpy(), y).value)
    cols = [c for c in range(12) if y[:, c].any()]
    ref = np.mean([average_precision_score(y[:, c], scores[:, c].double().numpy())
                   for c in cols])
    assert out["map"] == pytest.approx(ref, abs=1e-10)


def test_calibrate_picks_the_grid_threshold_with_the_best_dev_f1(tmp_path: Path) -> None:
    from tasks import create_task
    from tasks.ner.task import GRID

    task = create_task("docred_ner", data_dir=str(FIX))
    n = task.num_rows("dev")
    y = task.targets("dev").astype(np.float64)
    rng = np.random.default_rng(3)
    scores = np.clip(0.6 * y + 0.5 * rng.random(y.shape), 0, 1)
    rule = task.calibrate(torch.arange(n), torch.from_numpy(scores))
    assert rule.policy == "dev_tuned" and rule.value in GRID
    gold = decode(y, task.lengths["dev"], TYPES)
    f1 = {t: f1_score([s for p in gold for s in p],
                      [s for p in decode(scores, task.lengths["dev"], TYPES, t) for s in p],
                      **STRICT) for t in GRID}
    assert f1[rule.value] == max(f1.values())
    assert rule.value == min(t for t in GRID if f1[t] == max(f1.values()))
    with pytest.raises(Exception, match="cannot apply the decision rule"):
        task.calibrate(torch.arange(n), torch.from_numpy(scores),
                       declared={"policy": "threshold_class", "threshold_index": 0, "top_k": 1})
    fixed = create_task("docred_ner", data_dir=str(FIX), threshold=0.3)
    assert fixed.calibrate(torch.arange(n), torch.from_numpy(scores)).value == 0.3


def test_docred_ner_holds_out_the_docred_tasks_documents(tmp_path: Path) -> None:
    from tasks import create_task

    d = tmp_path / "d"
    d.mkdir()
    docs = [{"title": f"T{i}", "sents": [["Ann", "met", "Bo", "."]],
             "vertexSet": [[{"sent_id": 0, "pos": [0, 1], "type": "PER"}]], "labels": []}
            for i in range(20)]
    (d / "train_revised.json").write_text(json.dumps(docs))
    (d / "dev_revised.json").write_text(json.dumps(docs[:3]))
    task = create_task("docred_ner", data_dir=str(d))
    from tasks.base import held_out

    held = held_out([f"T{i}" for i in range(20)], 0.1)
    assert task.dataset_name == "re-docred-dev" and task.info()["documents"] == {
        "train": 18, "dev": 2, "test": 3}
    assert [s.where.split("'")[1] for s in task.sents["dev"]] == \
        [t for t in (f"T{i}" for i in range(20)) if t in held]


def test_token_ner_conll_types_from_train_and_unknown_type(tmp_path: Path) -> None:
    from tasks import create_task

    d = tmp_path / "conll"
    d.mkdir()
    (d / "train.txt").write_text("Ann B-PER\nin O\nRome B-LOC\n\nBo B-PER\n")
    (d / "valid.txt").write_text("Ann B-PER\n")
    (d / "test.txt").write_text("Ann B-PER\nat O\nIBM B-ORG\n")
    with pytest.raises(UserError, match=r"test.txt: sentence 0, line 3: field 'tag': unknown "
                                        r"type 'ORG'"):
        create_task("token_ner", data_dir=str(d))
    (d / "test.txt").write_text("Ann I-PER\nat O\nRome I-LOC\n")  # IOB1: detected per file
    task = create_task("token_ner", data_dir=str(d))
    assert task.types == ("LOC", "PER") and task.metrics[-2:] == ("f1_LOC", "f1_PER")
    assert task.info()["tag_schemes"][str(d / "test.txt")] == "iob1"
    assert task.higher_is_better["f1_LOC"] is True
    n = task.num_rows("test")
    out = task.evaluate("test", torch.arange(n),
                        torch.from_numpy(task.targets("test").astype(np.float32)))
    assert out["entity_micro_f1"] == 1.0 and set(out) == set(task.metrics)


def test_subword_rows_are_the_first_piece_of_each_word(tmp_path: Path) -> None:
    from transformers import BertTokenizerFast

    from models import create_model
    from tasks import create_task

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "univ", "##ersity",
                                "of", "par", "##is", "."]) + "\n")
    BertTokenizerFast(vocab=str(vocab)).save_pretrained(tmp_path / "tok")
    task = create_task("docred_ner", data_dir=str(_nested_docs(tmp_path / "d")),
                       tokenizer=str(tmp_path / "tok"), max_pieces=8)
    item = task.dataset("test")[0]
    # "The University of Paris hired ..." -> [CLS] the univ ##ersity of par ##is [UNK] [SEP]:
    # cut at 8 pieces, so the sentence comes in pieces whose rows continue each other
    assert item["input_ids"].tolist()[:7] == [2, 4, 5, 6, 7, 8, 9]
    assert item["positions"].tolist()[:4] == [1, 2, 4, 5]
    batch = _all(task, "test")
    np.testing.assert_array_equal(np.sort(batch["row_index"].numpy()),
                                  np.arange(task.num_rows("test")))
    model = create_model("tiny_token_encoder", task.num_labels, **task.model_kwargs())
    logits, targets = task.logits_and_targets(model, batch)
    assert logits.shape == targets.shape == (task.num_rows("test"), 12)


def test_write_predictions_lists_the_decoded_spans(tmp_path: Path) -> None:
    from tasks import create_task

    task = create_task("docred_ner", data_dir=str(_nested_docs(tmp_path / "d")))
    n = task.num_rows("test")
    perfect = torch.from_numpy(task.targets("test").astype(np.float32))
    name = task.write_predictions("test", torch.arange(n), perfect, tmp_path / "run")
    lines = [json.loads(x) for x in (tmp_path / name).read_text().splitlines()]
    assert len(lines) == 4 and lines[0]["spans"] == [[1, 4, "ORG"], [3, 4, "LOC"],
                                                     [5, 7, "PER"]]


def test_run_task_end_to_end_tiny_bilstm_tagger(tmp_path: Path) -> None:
    from accelerate.state import AcceleratorState

    import run_task
    from leaderboard.schema import read_results

    try:
        (res,) = run_task.main(["--task", "docred_ner", "--data_dir", str(FIX), "--model",
                                "tiny_bilstm_tagger", "--epochs", "1", "--batch_size", "4",
                                "--loss", "bce", "--output_dir", str(tmp_path)])
        (aam,) = run_task.main(["--task", "docred_ner", "--data_dir", str(FIX), "--model",
                                "tiny_bilstm_tagger", "--epochs", "1", "--batch_size", "4",
                                "--loss", "aam@aam_ner", "--output_dir", str(tmp_path)])
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    (path,) = (tmp_path / "docred_ner").glob("tiny_bilstm_tagger__*__bce__seed0.json")
    assert read_results(path) == res
    assert res["task"]["num_labels"] == 12 and res["threshold"]["policy"] == "dev_tuned"
    assert set(res["metrics"]) == set(create_task_metrics())
    assert aam["model"]["kwargs"]["head"] == "cosine"


def create_task_metrics() -> tuple[str, ...]:
    from tasks.ner.task import DocREDNERTask

    return DocREDNERTask.metrics


@pytest.mark.parametrize("seed", range(5))
def test_example_counts_sum_to_seqevals_micro_f1(tmp_path: Path, seed: int) -> None:
    # the per-sentence (correct, predicted, gold) the leaderboard's bootstrap resamples: summed,
    # they give seqeval's entity micro F1 of evaluate (for random scores)
    from tasks import create_task
    from tasks.metrics import COUNTED_METRICS

    task = create_task("docred_ner", data_dir=str(_nested_docs(tmp_path / "d")))
    rng = np.random.default_rng(seed)
    y = task.targets("test")
    scores = torch.from_numpy(np.clip(0.6 * y + 0.6 * rng.random(y.shape), 0, 1))
    idx = torch.arange(len(y))
    rule = task.default_rule()
    counts = task.example_counts("test", idx, scores, rule)
    assert counts.shape == (len(task.lengths["test"]), 3)
    out = task.evaluate("test", idx, scores, rule)
    _, from_counts = COUNTED_METRICS["entity_micro_f1"]
    assert from_counts(counts.sum(0)) == pytest.approx(out["entity_micro_f1"], abs=1e-12)
    assert counts[:, 2].sum() == 14  # the gold entities of the two test documents
