"""The model contract, checked for every registered ``tiny_*`` model (timm test_models.py style).

A model maps one batch to ``[N, C]`` real scores (one row per example, or per entity pair for
DocRED): finite, never squashed into probabilities (the loss applies the sigmoid), cosines in
[-1, 1] with ``head="cosine"`` (or a ValueError naming the head at construction when the family
has no cosine output), usable in eval mode and with a batch of one, with finite gradients.

Inputs come from one factory per input signature (the required arguments of ``forward``), so a
plugin model shaped like a built-in family is covered as it is; a model with a new signature
FAILS until a factory is added to ``INPUTS`` below. The check functions are reused by
``tests/test_readme_examples.py`` for the README's "Add your own model" example.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from models import MODELS, auxiliary_loss, create_model

NUM_LABELS = 5
BATCH = 6
# sizes a factory receives when its signature names them (the task's ``model_kwargs()``)
SIZES: dict[str, Any] = {"in_features": 7, "vocab_size": 40}
# the token ids the tiny BERTs use for [CLS] / [SEP]; 0 is padding, 3 the mention marker
CLS, SEP, PAD, MARK = 1, 2, 0, 3


def _generator(i: int) -> torch.Generator:
    """Example ``i`` is drawn from its own stream: a batch's first rows do not depend on N."""
    return torch.Generator().manual_seed(1000 + i)


def features_batch(n: int) -> dict[str, Tensor]:
    """``forward(features)``: dense features [N, in_features] (the synthetic task)."""
    rows = [torch.randn(SIZES["in_features"], generator=_generator(i)) for i in range(n)]
    return {"features": torch.stack(rows)}


def images_batch(n: int) -> dict[str, Tensor]:
    """``forward(images)``: normalized images [N, 3, 64, 64] (the tiny image size)."""
    return {"images": torch.stack([torch.randn(3, 64, 64, generator=_generator(i))
                                   for i in range(n)])}


def tokens_batch(n: int) -> dict[str, Tensor]:
    """``forward(input_ids, attention_mask)``: [CLS] w... [SEP], lengths 5-11, right padding."""
    seqs = []
    for i in range(n):
        length = 5 + (3 * i) % 7
        ids = torch.randint(4, SIZES["vocab_size"], (length,), generator=_generator(i))
        ids[0], ids[-1] = CLS, SEP
        seqs.append(ids)
    width = max(s.numel() for s in seqs)
    input_ids = torch.full((n, width), PAD)
    mask = torch.zeros(n, width, dtype=torch.long)
    for i, ids in enumerate(seqs):
        input_ids[i, :ids.numel()], mask[i, :ids.numel()] = ids, 1
    return {"input_ids": input_ids, "attention_mask": mask}


def docred_batch(n: int) -> dict[str, Tensor]:
    """``forward(input_ids, attention_mask, mentions, entity_doc, pairs)``: n entity pairs.

    Document d (of ceil(n / 2)) has 2 + d % 2 entities, each with one or two ``* w *``
    mentions; its first two ordered pairs are scored, so that row r is the same pair for every n.
    """
    docs = (n + 1) // 2
    seqs, mentions, entity_doc, pairs = [], [], [], []
    for d in range(docs):
        entities = 2 + d % 2
        length = 8 + 6 * entities
        ids = torch.randint(4, SIZES["vocab_size"], (length,), generator=_generator(d))
        ids[0], ids[-1] = CLS, SEP
        types = torch.zeros(length, dtype=torch.long)
        first = len(entity_doc)
        for e in range(entities):
            starts = [2 + 4 * e] + ([length - 5] if e == 0 else [])
            for s in starts:
                ids[s], ids[s + 2] = MARK, MARK
                types[s:s + 3] = 1 + e % 6
                mentions.append([d, s, s + 3, first + e])
            entity_doc.append(d)
        pairs += [[first, first + 1], [first + 1, first]]
        seqs.append((ids, types))
    pairs = pairs[:n]
    width = max(ids.numel() for ids, _ in seqs)
    input_ids = torch.full((docs, width), PAD)
    mask = torch.zeros(docs, width, dtype=torch.long)
    ner_ids = torch.zeros(docs, width, dtype=torch.long)
    for d, (ids, types) in enumerate(seqs):
        input_ids[d, :ids.numel()], mask[d, :ids.numel()], ner_ids[d, :ids.numel()] = \
            ids, 1, types
    return {"input_ids": input_ids, "attention_mask": mask, "mentions": torch.tensor(mentions),
            "entity_doc": torch.tensor(entity_doc), "pairs": torch.tensor(pairs),
            "ner_ids": ner_ids}


def tagger_batch(n: int) -> dict[str, Tensor]:
    """``forward(input_ids, attention_mask, token_index)``: n token rows (the NER taggers).

    Sentence s is [CLS] w... [SEP] with 3 + s % 4 words; ``token_index`` [n, 2] lists
    (sentence, position) of the words, sentence after sentence, the first n of them, so that
    row r is the same word of the same whole sentence for every n.
    """
    seqs: list[Tensor] = []
    index: list[list[int]] = []
    while len(index) < n:
        s, words = len(seqs), 3 + len(seqs) % 4
        ids = torch.randint(4, SIZES["vocab_size"], (words + 2,), generator=_generator(s))
        ids[0], ids[-1] = CLS, SEP
        seqs.append(ids)
        index += [[s, 1 + w] for w in range(words)]
    width = max(ids.numel() for ids in seqs)
    input_ids = torch.full((len(seqs), width), PAD)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, ids in enumerate(seqs):
        input_ids[i, :ids.numel()], mask[i, :ids.numel()] = ids, 1
    return {"input_ids": input_ids, "attention_mask": mask, "token_index": torch.tensor(index[:n])}


# the required arguments of ``forward`` -> the batch factory for that input signature
INPUTS: dict[tuple[str, ...], Callable[[int], dict[str, Tensor]]] = {
    ("features",): features_batch,
    ("images",): images_batch,
    ("input_ids", "attention_mask"): tokens_batch,
    ("input_ids", "attention_mask", "mentions", "entity_doc", "pairs"): docred_batch,
    ("input_ids", "attention_mask", "token_index"): tagger_batch,
}


def input_signature(model: nn.Module) -> tuple[str, ...]:
    """Names of ``model.forward``'s arguments without a default."""
    params = inspect.signature(model.forward).parameters.values()
    return tuple(p.name for p in params if p.default is inspect.Parameter.empty
                 and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def batch_for(model: nn.Module, n: int) -> dict[str, Tensor]:
    """A batch of ``n`` output rows for ``model``; fails for an input signature with no factory."""
    signature = input_signature(model)
    if signature not in INPUTS:
        pytest.fail(f"{type(model).__name__}.forward{signature}: no input factory for this "
                    f"signature; add one to INPUTS in tests/test_models/test_model_contract.py")
    batch = INPUTS[signature](n)
    # optional inputs (DocRED's ner_ids) go only to a forward that takes them
    params = inspect.signature(model.forward).parameters
    return {k: v for k, v in batch.items() if k in params}


def build(factory: Callable[..., nn.Module], **kwargs: Any) -> nn.Module:
    """Call a registered factory with ``NUM_LABELS`` and the sizes its signature names."""
    params = inspect.signature(factory).parameters
    sizes = {k: v for k, v in SIZES.items() if k in params}
    torch.manual_seed(0)
    return factory(num_labels=NUM_LABELS, **sizes, **kwargs)


def build_or_refuse_head(factory: Callable[..., nn.Module], head: str) -> nn.Module | None:
    """``build(head=head)``; None when a non-linear head is refused with a clear ValueError."""
    if head == "linear":
        return build(factory, head=head)
    try:
        return build(factory, head=head)
    except ValueError as exc:
        assert head in str(exc), f"refusing head={head!r} must name it: {exc}"
        return None


# ---------------------------------------------------------------------------------------------
# the checks (plain functions: tests/test_readme_examples.py runs them on the README's model)


def check_outputs(model: nn.Module, head: str) -> None:
    """Training-mode forward: [N, C] floats, finite; logits not squashed, cosines in [-1, 1]."""
    model.train()
    out = model(**batch_for(model, BATCH))
    auxiliary_loss(model)  # AssocFormer-style aux losses must not leak into the next check
    assert out.shape == (BATCH, NUM_LABELS), out.shape
    assert out.is_floating_point() and torch.isfinite(out).all()
    if head == "cosine":
        assert out.abs().max() <= 1 + 1e-5, f"cosines outside [-1, 1]: {out.abs().max()}"
    else:
        # 30 random-init scores all in [0, 1] mean a sigmoid (or ReLU-like clamp) inside
        assert not ((out >= 0) & (out <= 1)).all(), "outputs look like probabilities"


def check_backward(model: nn.Module, head: str) -> None:
    """Gradients of a loss-like objective are finite and reach the parameters."""
    model.train()
    model.zero_grad(set_to_none=True)
    out = model(**batch_for(model, BATCH))
    weights = torch.randn(out.shape, generator=_generator(7))
    objective = (out * weights).sum()
    aux = auxiliary_loss(model)
    if aux is not None:
        assert torch.isfinite(aux), "auxiliary loss is not finite"
        objective = objective + aux
    objective.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads, "no parameter received a gradient"
    bad = [n for n, g in grads.items() if not torch.isfinite(g).all()]
    assert not bad, f"non-finite gradients: {bad}"
    assert any(g.abs().sum() > 0 for g in grads.values()), "every gradient is zero"


def check_eval_mode(model: nn.Module, head: str) -> None:
    """Eval mode is deterministic (no dropout) and needs no gradient."""
    model.eval()
    batch = batch_for(model, BATCH)
    with torch.no_grad():
        first, second = model(**batch), model(**batch)
    assert first.shape == (BATCH, NUM_LABELS)
    assert torch.isfinite(first).all() and not first.requires_grad
    assert torch.equal(first, second), "eval-mode outputs differ between two calls"


def check_batch_of_one(model: nn.Module, head: str) -> None:
    """A batch of one row works in both modes; its eval output equals its row in a bigger batch
    (no leakage between examples, padding does not change a row)."""
    model.train()
    out = model(**batch_for(model, 1))
    auxiliary_loss(model)
    assert out.shape == (1, NUM_LABELS) and torch.isfinite(out).all()
    model.eval()
    with torch.no_grad():
        alone = model(**batch_for(model, 1))
        together = model(**batch_for(model, BATCH))
    torch.testing.assert_close(alone[0], together[0], rtol=1e-4, atol=1e-5)


CHECKS = (check_outputs, check_backward, check_eval_mode, check_batch_of_one)


def run_all_checks(factory: Callable[..., nn.Module]) -> list[str]:
    """Run every check on ``factory`` with both heads; return the heads it supports."""
    supported = []
    for head in ("linear", "cosine"):
        if build_or_refuse_head(factory, head) is None:
            continue
        supported.append(head)
        for check in CHECKS:
            check(build(factory, head=head), head)
    return supported


# ---------------------------------------------------------------------------------------------
# the suite over every registered tiny model

TINY = MODELS.names("tiny_*")


def test_every_model_family_has_a_tiny_variant() -> None:
    assert {"tiny_mlp", "tiny_lsan", "tiny_text_encoder_cls", "tiny_mrn", "tiny_bert_re",
            "tiny_image", "tiny_image_mldecoder", "tiny_image_assoc"} <= set(TINY)


@pytest.mark.parametrize("head", ["linear", "cosine"])
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name", TINY)
def test_model_contract(name: str, check: Callable[[nn.Module, str], None], head: str) -> None:
    model = build_or_refuse_head(MODELS.get(name), head)
    if model is None:
        pytest.skip(f"{name} refuses head={head!r} (with a ValueError naming it)")
    check(model, head)


@pytest.mark.parametrize("name", TINY)
def test_create_model_builds_the_same_model(name: str) -> None:
    factory = MODELS.get(name)
    params = inspect.signature(factory).parameters
    sizes = {k: v for k, v in SIZES.items() if k in params}
    torch.manual_seed(0)
    via_registry = create_model(name, NUM_LABELS, **sizes)
    direct = build(factory)
    assert type(via_registry) is type(direct)
    a, b = via_registry.state_dict(), direct.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_model_with_an_unknown_input_signature_fails() -> None:
    class Odd(nn.Module):
        def forward(self, graph: Tensor) -> Tensor:
            return graph

    with pytest.raises(pytest.fail.Exception, match=r"\('graph',\): no input factory"):
        batch_for(Odd(), 2)


def test_the_squash_check_catches_a_sigmoid_inside() -> None:
    class Squashed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(SIZES["in_features"], NUM_LABELS)

        def forward(self, features: Tensor) -> Tensor:
            return torch.sigmoid(self.fc(features))

    with pytest.raises(AssertionError, match="probabilities"):
        check_outputs(Squashed(), "linear")
