"""``lsan`` against the released LSAN network (EMNLP2019LSAN/LSAN attention/model.py).

The official file is imported at test time from ``$MLLB_REFERENCE_CODE`` (its repository has no
license, so it is not in ../shared/reference: fetch it into
``<folder>/EMNLP2019LSAN__LSAN/attention/model.py`` and add the folder); those tests skip
without it. The label-embedding and converter tests below need no official code.

The official ``init_hidden`` (model.py:51-52) draws a random h0 and moves it to CUDA at every
call; the tests replace it, on the official instance, by zero states on the CPU (MLLB's h0,
a documented deviation), which is the only patch. Inputs are unpadded: the official network has
no padding mask (documented deviation), so padded inputs differ by design.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from official import import_official
from torch import Tensor, nn

from models import create_model
from models.lsan import LSAN, from_official_state_dict

REPO, PATH = "EMNLP2019LSAN__LSAN", "attention/model.py"
# small sizes; the official LSTM input is fixed at 300 (model.py:27), so the embeddings are 300
BATCH, VOCAB, EMBED, HIDDEN, D_A, LABELS, LENGTH = 3, 50, 300, 8, 4, 5, 11


def _official(seed: int = 0) -> nn.Module:
    """The released StructuredSelfAttention with random weights, zero h0 on the CPU, eval mode."""
    module = import_official(REPO, PATH)
    torch.manual_seed(seed)
    ref = module.StructuredSelfAttention(
        batch_size=BATCH, lstm_hid_dim=HIDDEN, d_a=D_A, n_classes=LABELS,
        label_embed=torch.randn(LABELS, HIDDEN), embeddings=torch.randn(VOCAB, EMBED) * 0.3)
    with torch.no_grad():  # logits of order 1 (default init gives ~0.1), so 1e-5 means something
        ref.output_layer.weight.mul_(20.0)
    zeros = torch.zeros(2, BATCH, HIDDEN)
    ref.init_hidden = lambda: (zeros, zeros)  # replaces torch.randn(...).cuda() (model.py:52)
    return ref.eval()


def _official_logits(ref: nn.Module, ids: Tensor) -> tuple[Tensor, Tensor]:
    """(the official output layer's value before its sigmoid, the official output)."""
    seen = []
    handle = ref.output_layer.register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        probs = ref(ids)
    finally:
        handle.remove()
    return seen[0], probs


def test_official_network_equals_lsan() -> None:
    ref = _official()
    model = LSAN(LABELS, VOCAB, embed_dim=EMBED, hidden=HIDDEN, d_a=D_A).eval()
    model.load_state_dict(from_official_state_dict(ref.state_dict()))
    ids = torch.randint(1, VOCAB, (BATCH, LENGTH), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, probs = _official_logits(ref, ids)
        ours = model(ids, torch.ones_like(ids, dtype=torch.bool))
    assert ours.shape == (BATCH, LABELS) and logits.abs().max() > 1  # not a trivial zero
    torch.testing.assert_close(ours, logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.sigmoid(ours), probs, rtol=0, atol=1e-5)


def test_official_label_embeddings_get_no_gradient_and_ours_frozen_neither(
        tmp_path: Path) -> None:
    """model.py:70 reads the label embeddings through ``.data``: frozen. So is ours from a file."""
    ref = _official().train()
    ids = torch.randint(1, VOCAB, (BATCH, LENGTH), generator=torch.Generator().manual_seed(2))
    ref(ids).sum().backward()
    assert ref.label_embed.weight.grad is None and ref.linear_first.weight.grad is not None
    file = tmp_path / "label_embed.npy"
    np.save(file, ref.label_embed.weight.detach().double().numpy())  # float64, as released
    model = LSAN(LABELS, VOCAB, embed_dim=EMBED, hidden=HIDDEN, d_a=D_A,
                 label_embeddings=str(file))
    torch.testing.assert_close(model.label_embedding.detach(), ref.label_embed.weight.detach())
    model(ids, torch.ones_like(ids, dtype=torch.bool)).sum().backward()
    assert model.label_embedding.grad is None and model.w1.weight.grad is not None


# -- no official code needed below ------------------------------------------------------------


def test_label_embeddings_from_a_file_are_frozen_random_ones_train(tmp_path: Path) -> None:
    table = np.random.default_rng(0).normal(size=(LABELS, 8))
    file = tmp_path / "label_embed.npy"
    np.save(file, table)
    given = create_model("tiny_lsan", LABELS, vocab_size=VOCAB, label_embeddings=str(file))
    np.testing.assert_allclose(given.label_embedding.detach().numpy(), table, rtol=1e-6)
    assert not given.label_embedding.requires_grad
    assert create_model("tiny_lsan", LABELS, vocab_size=VOCAB).label_embedding.requires_grad
    trained = create_model("tiny_lsan", LABELS, vocab_size=VOCAB, label_embeddings=str(file),
                           freeze_label_embeddings=False)
    assert trained.label_embedding.requires_grad
    with pytest.raises(ValueError, match=r"\[5, 8\].*got \[5, 3\]"):
        np.save(file, table[:, :3])
        create_model("tiny_lsan", LABELS, vocab_size=VOCAB, label_embeddings=str(file))
    with pytest.raises(ValueError, match="cannot read label_embeddings"):
        create_model("tiny_lsan", LABELS, vocab_size=VOCAB,
                     label_embeddings=str(tmp_path / "missing.npy"))


def test_released_and_paper_eq_layouts() -> None:
    released = create_model("tiny_lsan", LABELS, vocab_size=VOCAB)
    paper = create_model("tiny_lsan_paper_eq", LABELS, vocab_size=VOCAB)
    assert released.w1.bias is not None and released.dropout.p == 0.3
    assert released.output_layer.weight.shape == (LABELS, 16)
    assert not hasattr(released, "w3")
    assert paper.w1.bias is None and paper.dropout.p == 0.5 and paper.w3.out_features == 4
    cosine = create_model("tiny_lsan", LABELS, vocab_size=VOCAB, head="cosine")
    assert cosine.class_weight.shape == (LABELS, 16) and not hasattr(cosine, "output_layer")
    with pytest.raises(ValueError, match="d_out"):
        create_model("tiny_lsan", LABELS, vocab_size=VOCAB, d_out=7)


def test_converter_rejects_unknown_keys() -> None:
    with pytest.raises(KeyError, match=r"w3\.weight"):
        from_official_state_dict({"w3.weight": torch.zeros(1)})
