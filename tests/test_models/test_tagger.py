"""models/tagger.py: rows in token_index order, padding-independence, heads, GloVe loading."""

from __future__ import annotations

import pytest
import torch

from models import create_model


def _batch() -> dict[str, torch.Tensor]:
    ids = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12]])
    mask = (ids > 0).long()
    index = torch.tensor([[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2], [1, 3], [1, 4]])
    return {"input_ids": ids, "attention_mask": mask, "token_index": index}


@pytest.mark.parametrize("name", ["tiny_bilstm_tagger", "tiny_token_encoder"])
def test_rows_follow_token_index_and_ignore_the_other_sequences(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, 6, vocab_size=20).eval()
    b = _batch()
    with torch.no_grad():
        out = model(**b)  # [8, 6]
        flipped = model(**{**b, "token_index": b["token_index"].flip(0)})
        alone = model(input_ids=b["input_ids"][:1, :3], attention_mask=b["attention_mask"][:1, :3],
                      token_index=b["token_index"][:3])
    assert out.shape == (8, 6)
    torch.testing.assert_close(flipped, out.flip(0))
    torch.testing.assert_close(alone, out[:3], rtol=1e-4, atol=1e-5)  # padding changes nothing


def test_bilstm_tagger_uses_the_casing_ids_and_the_cosine_head() -> None:
    torch.manual_seed(0)
    model = create_model("tiny_bilstm_tagger", 4, vocab_size=20, head="cosine").eval()
    b = _batch()
    with torch.no_grad():
        plain = model(**b)
        cased = model(**b, case_ids=torch.full_like(b["input_ids"], 2) * b["attention_mask"])
    assert plain.abs().max() <= 1 + 1e-6 and not torch.allclose(plain, cased)
    with pytest.raises(ValueError, match="head must be 'linear' or 'cosine', got 'gap'"):
        create_model("tiny_bilstm_tagger", 4, vocab_size=20, head="gap")


def test_prepare_model_copies_the_word_vectors(tmp_path) -> None:
    from pathlib import Path

    from tasks import create_task

    fix = Path(__file__).resolve().parents[1] / "fixtures" / "docred_task"
    words = sorted({"the", "university", "of", "paris", "in"})
    glove = tmp_path / "glove.txt"
    glove.write_text("".join(f"{w} {' '.join(str(i + j / 10) for j in range(4))}\n"
                             for i, w in enumerate(words)))
    task = create_task("docred_ner", data_dir=str(fix), vectors=str(glove))
    model = create_model("bilstm_tagger", task.num_labels, **task.model_kwargs())
    task.prepare_model(model)
    assert model.embedding.weight.shape == (len(task.vocab), 4)
    for i, w in enumerate(words):
        if w in task.vocab.stoi:
            row = model.embedding.weight[task.vocab.stoi[w]]
            torch.testing.assert_close(row, torch.tensor([i + j / 10 for j in range(4)]))
    assert "words found" in task.info()["word_embedding"]
