"""MRN (models/mrn.py): shapes and gradients, padding and order invariance, the scorers, the
pair-map reading and the embedding schedule (equality with the official code:
test_mrn_official.py)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import models.mrn  # noqa: F401  (registers mrn and tiny_mrn)
from models.mrn import MRN, MentionConvAttention, distance_ids, tiny_mrn
from models.registry import create_model

VOCAB, TYPES, LABELS = 30, 7, 5

# Two hand-made documents. A: 12 tokens, two sentences (0-5, 6-11); entity 0 has three mentions
# (one per sentence plus a pronoun-like one), entity 1 two, entity 2 one (cross-sentence pairs).
# B: 20 tokens, 4 entities, 8 mentions, one two-token mention: longer than A in every dimension.
DOC_A = {
    "ids": [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14],
    "ner": [1, 0, 2, 2, 0, 0, 1, 0, 3, 0, 1, 0],
    # (start, end_exclusive, local entity)
    "mentions": [(0, 1, 0), (2, 4, 1), (6, 7, 0), (8, 9, 2), (10, 11, 0), (3, 4, 1)],
    "entities": 3,
}
DOC_B = {
    "ids": [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24],
    "ner": [4, 4, 0, 1, 0, 0, 2, 0, 0, 0, 1, 0, 0, 5, 0, 0, 2, 0, 6, 0],
    "mentions": [(0, 2, 0), (3, 4, 1), (6, 7, 2), (10, 11, 1), (13, 14, 3), (16, 17, 2),
                 (18, 19, 3), (8, 9, 0)],
    "entities": 4,
}


def _batch(*docs: dict) -> dict[str, Tensor]:
    """Pad ``docs`` into the task's tensors, all ordered pairs of each document included."""
    length = max(len(d["ids"]) for d in docs)
    ids = torch.zeros(len(docs), length, dtype=torch.long)
    ner = torch.zeros(len(docs), length, dtype=torch.long)
    mask = torch.zeros(len(docs), length, dtype=torch.long)
    mentions, entity_doc, pairs, offset = [], [], [], 0
    for b, d in enumerate(docs):
        n = len(d["ids"])
        ids[b, :n], ner[b, :n], mask[b, :n] = torch.tensor(d["ids"]), torch.tensor(d["ner"]), 1
        mentions += [(b, s, e, offset + k) for s, e, k in d["mentions"]]
        entity_doc += [b] * d["entities"]
        pairs += [(offset + h, offset + t) for h in range(d["entities"])
                  for t in range(d["entities"]) if h != t]
        offset += d["entities"]
    return {"input_ids": ids, "attention_mask": mask, "mentions": torch.tensor(mentions),
            "entity_doc": torch.tensor(entity_doc), "pairs": torch.tensor(pairs),
            "ner_ids": ner}


def _model(head: str = "linear", **kwargs) -> MRN:
    torch.manual_seed(0)
    return tiny_mrn(LABELS, vocab_size=VOCAB, num_entity_types=TYPES, head=head, **kwargs)


@pytest.mark.parametrize("head", ["linear", "cosine"])
def test_forward_backward_two_documents(head: str) -> None:
    model = _model(head).train()
    batch = _batch(DOC_A, DOC_B)
    out = model(**batch)
    assert out.shape == (6 + 12, LABELS)
    assert torch.isfinite(out).all()
    if head == "cosine":
        assert out.abs().max() <= 1 + 1e-6
    out.square().sum().backward()
    assert model.embedding.weight.grad is None  # frozen by default
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) < 5000


def test_ner_ids_default_and_unfrozen_embedding() -> None:
    model = _model(freeze_embeddings=False).eval()
    batch = _batch(DOC_A)
    batch.pop("ner_ids")
    model(**batch).sum().backward()
    assert model.embedding.weight.grad is not None


@pytest.mark.parametrize("a_first", [True, False])
def test_padding_invariance(a_first: bool) -> None:
    model = _model().eval()
    with torch.no_grad():
        alone = model(**_batch(DOC_A))
        both = model(**_batch(*((DOC_A, DOC_B) if a_first else (DOC_B, DOC_A))))
    rows = slice(0, 6) if a_first else slice(12, 18)
    torch.testing.assert_close(both[rows], alone, atol=1e-5, rtol=0)


def test_pair_order_and_mention_order() -> None:
    model = _model().eval()
    batch = _batch(DOC_A, DOC_B)
    with torch.no_grad():
        ref = model(**batch)
        perm = torch.randperm(batch["pairs"].shape[0], generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(model(**{**batch, "pairs": batch["pairs"][perm]}), ref[perm])
        # mentions are sorted inside the model, so the caller's mention order does not matter
        mperm = torch.randperm(batch["mentions"].shape[0],
                               generator=torch.Generator().manual_seed(2))
        torch.testing.assert_close(model(**{**batch, "mentions": batch["mentions"][mperm]}), ref)


@pytest.mark.parametrize("block", [None, 2])
def test_linear_head_is_biaffine_plus_linear(block: int | None) -> None:
    """head(phi) == h^T W_c t + u_c·h + v_c·t + w_c·g + b_c, W_c block-diagonal for block < d."""
    model = _model(scorer="phi", bilinear_block=block).eval()
    batch = _batch(DOC_A, DOC_B)
    with torch.no_grad():
        out = model(**batch)
        h, t, g = model.pair_vectors(**batch)
    d, bs = model.biaffine_dim, model.bilinear_block
    k = d // bs
    weight, bias = model.head.fc.weight, model.head.fc.bias  # [C, phi_dim], [C]
    bil = weight[:, :k * bs * bs].reshape(-1, k, bs, bs)  # [C, K, bs, bs]
    u, v, w = weight[:, k * bs * bs:].split([d, d, model.channels], dim=1)
    expected = (torch.einsum("pki,ckij,pkj->pc", h.view(-1, k, bs), bil, t.view(-1, k, bs))
                + torch.einsum("pi,ci->pc", h, u) + torch.einsum("pi,ci->pc", t, v)
                + torch.einsum("pi,ci->pc", g, w) + bias)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    if block is None:  # the full biaffine: one d x d matrix per class
        full = torch.einsum("pi,cij,pj->pc", h, weight[:, :d * d].reshape(-1, d, d), t)
        torch.testing.assert_close(full, torch.einsum("pki,ckij,pkj->pc", h.view(-1, 1, d),
                                                      bil, t.view(-1, 1, d)))


@pytest.mark.parametrize("head", ["linear", "cosine"])
@pytest.mark.parametrize("block", [None, 2])
def test_forward_equals_head_of_explicit_phi(head: str, block: int | None) -> None:
    """forward's phi-free scorer == create_head's module applied to phi built explicitly."""
    model = _model(head, scorer="phi", bilinear_block=block).eval()
    batch = _batch(DOC_A, DOC_B)
    with torch.no_grad():
        phi = model.pair_features(*model.pair_vectors(**batch))
        assert phi.shape == (18, model.phi_dim)
        torch.testing.assert_close(model(**batch), model.head(phi), atol=1e-5, rtol=1e-5)


def test_split_conv1x1_equals_official_concatenated_conv() -> None:
    """W_x x_i + W_y y_j + W_p prev_ij + b is the official 1x1 conv over cat([x_i, y_j, prev])."""
    torch.manual_seed(0)
    layer = MentionConvAttention(dim=6, pre_channels=3, channels=4).eval()
    x, y, pre = torch.randn(2, 5, 6), torch.randn(2, 5, 6), torch.randn(2, 3, 5, 5)
    conv = torch.nn.Conv2d(6 + 6 + 3, 4, kernel_size=1)
    with torch.no_grad():
        conv.weight.copy_(torch.cat([layer.map_x.weight, layer.map_y.weight,
                                     layer.map_pre.weight[:, :, 0, 0]], 1)[:, :, None, None])
        conv.bias.copy_(layer.map_pre.bias)
        cat = torch.cat([x.transpose(1, 2)[:, :, :, None].expand(-1, -1, -1, 5),
                         y.transpose(1, 2)[:, :, None, :].expand(-1, -1, 5, -1), pre], 1)
        split = (layer.map_x(x).transpose(1, 2)[:, :, :, None]
                 + layer.map_y(y).transpose(1, 2)[:, :, None, :] + layer.map_pre(pre))
    torch.testing.assert_close(split, conv(cat))


def test_distance_ids_match_the_official_table() -> None:
    delta = torch.tensor([0, 1, 2, 3, 4, 7, 8, 255, 256, 900, -1, -3, -300])
    assert distance_ids(delta).tolist() == [19, 1, 2, 2, 3, 3, 4, 8, 9, 9, 10, 11, 18]


def test_registry_and_bad_arguments() -> None:
    model = create_model("tiny_mrn", 5, vocab_size=30, num_entity_types=7)
    assert isinstance(model, MRN)
    assert model(**_batch(DOC_A)).shape == (6, 5)
    with pytest.raises(ValueError, match="head must be"):
        _model("softmax")
    with pytest.raises(ValueError, match="does not divide"):
        _model(bilinear_block=3)
    with pytest.raises(ValueError, match="scorer must be"):
        _model(scorer="mlp")
    with pytest.raises(ValueError, match="no cosine form"):
        _model("cosine", scorer="biaffine")
    with pytest.raises(ValueError, match="pair_map must be"):
        _model(pair_map="rows")
    with pytest.raises(ValueError, match="unfreeze_embeddings_after"):
        _model(unfreeze_embeddings_after=-1)
    # the official scorer by default; the phi form where the official one has no equivalent
    assert _model().scorer == "biaffine" and _model().pair_map == "tail_rows"
    assert _model("cosine").scorer == "phi" and _model(bilinear_block=2).scorer == "phi"


def test_biaffine_scorer_is_the_official_formula() -> None:
    """logits = [h; 1]^T W_c [t; 1] + Linear(g) (model.py:111-121, 225-229)."""
    model = _model().eval()
    batch = _batch(DOC_A, DOC_B)
    with torch.no_grad():
        out = model(**batch)
        h, t, g = model.pair_vectors(**batch)
        ones = h.new_ones(h.shape[0], 1)
        expected = (torch.einsum("pi,cij,pj->pc", torch.cat([h, ones], 1), model.biaffine,
                                 torch.cat([t, ones], 1)) + model.pair_linear(g))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert not hasattr(model, "head")  # no unused parameters (DDP)


def test_pair_map_readings_are_transposes() -> None:
    """tail_rows reads the entity map at (t, h), head_rows at (h, t): g(h, t) of one is g(t, h)
    of the other; h and t themselves do not depend on the reading."""
    batch = _batch(DOC_A, DOC_B)
    with torch.no_grad():
        h1, t1, g_tail = _model(pair_map="tail_rows").eval().pair_vectors(**batch)
        swapped = {**batch, "pairs": batch["pairs"].flip(1)}
        g_head = _model(pair_map="head_rows").eval().pair_vectors(**swapped)[2]
        h2, t2, g_same = _model(pair_map="head_rows").eval().pair_vectors(**batch)
    torch.testing.assert_close(g_tail, g_head)
    torch.testing.assert_close((h1, t1), (h2, t2))
    assert not torch.allclose(g_tail, g_same)


def test_embedding_freeze_schedule() -> None:
    """Frozen for the whole run (requires_grad False), or for epochs 1..N (a trainable parameter
    the loop drops the gradient of: main.py:302-306 with freeze_epochs N), or never."""
    always = _model()
    assert not always.embedding.weight.requires_grad and always.frozen_parameters(1) == []
    scheduled = _model(unfreeze_embeddings_after=2)
    assert scheduled.embedding.weight.requires_grad
    assert [len(scheduled.frozen_parameters(e)) for e in (1, 2, 3, 80)] == [1, 1, 0, 0]
    assert scheduled.frozen_parameters(1)[0] is scheduled.embedding.weight
    never = _model(freeze_embeddings=False, unfreeze_embeddings_after=2)
    assert never.embedding.weight.requires_grad and never.frozen_parameters(1) == []


def test_without_vectors_the_task_trains_a_scheduled_embedding_from_the_start() -> None:
    """MRN's trainer freezes only pretrained embeddings (main.py:302): the docred task without
    --task.vectors turns the schedule off, as it unfreezes a frozen embedding."""
    from pathlib import Path

    from tasks import create_task

    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "docred_task"
    task = create_task("docred", data_dir=str(fixture))
    model = create_model("tiny_mrn", task.num_labels, unfreeze_embeddings_after=50,
                         **task.model_kwargs())
    assert model.frozen_parameters(1) == [model.embedding.weight]
    task.prepare_model(model)
    assert model.embedding.weight.requires_grad and model.frozen_parameters(1) == []
    assert "random init" in task.info()["word_embedding"]
