"""Text classification plugin: readers (and their errors), vocabulary, LSAN, a tiny run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState

import run_task
from models import create_model
from tasks import create_task
from tasks.text_classification.data import (
    TextDataError,
    TextExample,
    Vocab,
    load_word_vectors,
    read_aapd,
    read_json_records,
    resplit,
    tokenize,
)
from tasks.text_classification.task import NAMED

AAPD = Path(__file__).resolve().parents[1] / "fixtures" / "aapd_mini"


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def _copy_aapd(tmp_path: Path) -> Path:
    dst = tmp_path / "aapd"
    shutil.copytree(AAPD, dst)
    return dst


def test_read_aapd_layout() -> None:
    splits = read_aapd(AAPD)
    assert {k: len(v) for k, v in splits.items()} == {"train": 24, "dev": 8, "test": 8}
    first_text = (AAPD / "text_train").read_text().splitlines()[0]
    first_labels = (AAPD / "label_train").read_text().splitlines()[0].split()
    assert splits["train"][0] == TextExample(first_text, tuple(first_labels), "train:1")


def test_aapd_line_count_mismatch(tmp_path: Path) -> None:
    d = _copy_aapd(tmp_path)
    lines = (d / "label_val").read_text().splitlines()
    (d / "label_val").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(TextDataError, match=r"text_val has 8 lines but .*label_val has 7"):
        read_aapd(d)


def test_aapd_empty_document_names_file_and_line(tmp_path: Path) -> None:
    d = _copy_aapd(tmp_path)
    lines = (d / "text_test").read_text().splitlines()
    lines[2] = "   "
    (d / "text_test").write_text("\n".join(lines) + "\n")
    with pytest.raises(TextDataError, match=r"text_test: line 3: empty document"):
        read_aapd(d)


def test_aapd_missing_file(tmp_path: Path) -> None:
    d = _copy_aapd(tmp_path)
    (d / "label_train").unlink()
    with pytest.raises(TextDataError, match=r"label_train: file not found"):
        read_aapd(d)


def test_label_unseen_in_train_is_an_error_or_counted(tmp_path: Path) -> None:
    d = _copy_aapd(tmp_path)
    lines = (d / "label_test").read_text().splitlines()
    lines[0] = "q-bio.nc"
    (d / "label_test").write_text("\n".join(lines) + "\n")
    with pytest.raises(TextDataError, match=r"test example 'test:1' has label 'q-bio.nc', which "
                                            r"the train split never shows"):
        create_task("aapd", data_dir=str(d))
    task = create_task("aapd", data_dir=str(d), unseen_labels="drop")
    assert task.info()["dropped_unseen_labels"] == {"train": 0, "dev": 0, "test": 1}
    assert len(task.dataset("test")) == 8  # the example stays, only its unseen label goes


@pytest.mark.parametrize(("content", "message"), [
    ('{"text": "a"}', "expected a JSON list of records, got dict"),
    ('[{"text": "a", "labels": []}]', r"record 0: field 'labels': expected a non-empty list"),
    ('[{"text": "", "labels": ["x"]}]', r"record 0: field 'text': expected a non-empty string"),
    ('[{"text": "a", "labels": ["x"]}, 3]', r"record 1: expected an object"),
    ('[{"text": "a",', "invalid JSON at line 1"),
])
def test_json_records_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "d.json"
    path.write_text(content)
    with pytest.raises(TextDataError, match=message):
        read_json_records(path)


def test_resplit_is_deterministic_and_order_free() -> None:
    exs = [TextExample(f"doc {i}", ("a",), f"id{i}") for i in range(500)]
    a = resplit(exs)
    b = resplit(list(reversed(exs)))
    assert {k: sorted(e.id for e in v) for k, v in a.items()} == {
        k: sorted(e.id for e in v) for k, v in b.items()}
    sizes = {k: len(v) for k, v in a.items()}
    assert sum(sizes.values()) == 500 and 300 < sizes["train"] < 400 and sizes["dev"] < 80
    with pytest.raises(TextDataError, match="duplicate example id 'x'"):
        resplit([TextExample("a", ("l",), "x"), TextExample("b", ("l",), "x")])


def test_tokenizer_and_vocab_from_train_only() -> None:
    assert tokenize("The U.S. isn't 5% up; GDP-growth") == ["the", "u", "s", "isn't", "5", "up",
                                                          "gdp", "growth"]
    vocab = Vocab.build([["b", "a", "b"], ["c", "b", "a"]])
    assert vocab.itos == ["<pad>", "<unk>", "b", "a", "c"]
    assert vocab.encode(["a", "zzz", "c"], max_len=2) == [3, 1]
    assert vocab.encode([], max_len=5) == [1]
    task = create_task("aapd", data_dir=str(AAPD), max_len=7)
    train_words = {w for ex in read_aapd(AAPD)["train"] for w in tokenize(ex.text)}
    assert set(task.vocab.itos[2:]) == train_words
    assert max(len(task.dataset("train")[i]["input_ids"]) for i in range(24)) == 7


def test_word_vectors_from_a_glove_text_file(tmp_path: Path) -> None:
    vocab = Vocab(["<pad>", "<unk>", "gradient", "pixel"])
    path = tmp_path / "vec.txt"
    path.write_text("gradient 0.5 -1.0 2.0\nother 1 1 1\n")
    matrix, found = load_word_vectors(str(path), vocab)
    assert found == 1 and matrix.shape == (4, 3)
    np.testing.assert_array_equal(matrix[2], [0.5, -1.0, 2.0])
    np.testing.assert_array_equal(matrix[0], 0.0)


@pytest.mark.parametrize("head", ["linear", "cosine"])
def test_lsan_shapes_and_padding_invariance(head: str) -> None:
    torch.manual_seed(0)
    model = create_model("tiny_lsan", 5, vocab_size=50, head=head).eval()
    ids = torch.randint(2, 50, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 6:] = False
    mask[2, 2:] = False
    ids[~mask] = 0
    with torch.no_grad():
        out = model(ids, mask)
        padded = torch.cat([ids, torch.zeros(3, 4, dtype=torch.long)], dim=1)
        out_padded = model(padded, torch.cat([mask, torch.zeros(3, 4, dtype=torch.bool)], 1))
        alone = model(ids[2:, :2], mask[2:, :2])
    assert out.shape == (3, 5)
    torch.testing.assert_close(out, out_padded, rtol=0, atol=1e-6)
    torch.testing.assert_close(out[2:], alone, rtol=0, atol=1e-6)  # batch-size independent
    if head == "cosine":
        assert out.abs().max() <= 1 + 1e-6


def test_tiny_end_to_end_on_the_aapd_layout(tmp_path: Path) -> None:
    (res,) = run_task.main(["--task", "aapd", "--data_dir", str(AAPD), "--model", "tiny_lsan",
                            "--loss", "asl@asl_aapd", "--epochs", "2", "--batch_size", "8",
                            "--output_dir", str(tmp_path)])
    assert res["task"]["name"] == "aapd" and res["task"]["num_examples"] == 8
    assert res["selection"]["metric"] == "P@1"
    assert set(res["metrics"]) == {"P@1", "P@3", "P@5", "nDCG@1", "nDCG@3", "nDCG@5",
                                   "micro_f1", "macro_f1", "hamming_loss"}
    assert res["higher_is_better"]["hamming_loss"] is False
    assert res["extra"]["task_info"]["num_examples"] == {"train": 24, "dev": 8, "test": 8}
    assert json.loads(json.dumps(res)) == res


@pytest.mark.skipif(not NAMED["reuters21578-test-resplit"].is_file(), reason="shared data absent")
def test_shared_reuters_variant() -> None:
    task = create_task("text_multilabel", dataset="reuters21578-test-resplit",
                       unseen_labels="drop")
    counts = task.info()["num_examples"]
    assert sum(counts.values()) == 3019 and task.num_labels <= 90
    assert task.dataset_name == "reuters21578-test-resplit"


def test_transformers_encoder_with_its_tokenizer(tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = sorted({w for ex in read_aapd(AAPD)["train"] for w in tokenize(ex.text)})
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    model_dir = tmp_path / "tiny_bert"
    BertTokenizerFast(vocab=str(vocab)).save_pretrained(model_dir)
    config = BertConfig(vocab_size=len(words) + 5, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32)
    BertModel(config).save_pretrained(model_dir)
    (res,) = run_task.main(["--task", "aapd", "--data_dir", str(AAPD), "--task.tokenizer",
                            str(model_dir), "--model", "text_encoder_cls", "--model.model_path",
                            str(model_dir), "--loss", "aam", "--epochs", "1", "--batch_size", "8",
                            "--output_dir", str(tmp_path / "out")])
    assert res["model"]["kwargs"]["head"] == "cosine"
    assert res["model"]["num_parameters"] > 1000
    assert 0 <= res["metrics"]["P@1"] <= 1


def test_encoded_corpus_is_cached_with_datasets(tmp_path: Path) -> None:
    import tasks.text_classification.task as text_task

    first = create_task("aapd", data_dir=str(AAPD), max_len=9)
    entries = list(text_task.CACHE.iterdir())
    again = create_task("aapd", data_dir=str(AAPD), max_len=9)
    assert list(text_task.CACHE.iterdir()) == entries  # reused, not rebuilt
    assert (entries[0] / "dataset_dict.json").is_file()  # a datasets.DatasetDict on disk
    assert again.data_fingerprint() == first.data_fingerprint()
    assert again.vocab.itos == first.vocab.itos and again.label_names == first.label_names
    other = create_task("aapd", data_dir=str(AAPD), max_len=5)  # other options: other entry
    assert other.data_fingerprint() != first.data_fingerprint()
