"""MRN (models/mrn.py) equals the official model (ljynlp/MRN model.py) on the same weights.

The official ``MRN`` is imported from ``$MLLB_REFERENCE_CODE`` (tests/official.py; skipped when
absent), built with small sizes and random weights, converted with
``models.mrn.from_official_state_dict`` and fed the same two documents as MLLB, in eval mode.
The official inputs are built as its ``utils.process`` / ``collate_fn`` build them (those
functions use ``np.int``, gone from numpy 2, so the tensors are assembled here from the same
rules: mentions in start order, d = start_i - start_j in the ``utils.dis2idx`` buckets, + 9 when
negative, 19 for zero). Both documents have the same number of mentions: with fewer mentions
than the batch maximum the official code lets its padding mentions into the 3x3 convolution
(a documented deviation of MLLB, which zeroes them).
"""

from __future__ import annotations

import pytest
import torch
from official import import_official
from torch import Tensor

from models.mrn import MRN, from_official_state_dict, official_sizes

REPO = "ljynlp__MRN"
LABELS = 97  # hard-coded in the official Biaffine / Linear (model.py:165, 167)

# (word ids, entity-type id per token, mentions (start, end_exclusive, entity), #entities);
# mentions listed in (start, end, entity) order, the order both models use
DOC_A = ([3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14],
         [1, 0, 2, 2, 0, 0, 1, 0, 3, 0, 1, 0],
         [(0, 1, 0), (2, 4, 1), (3, 4, 1), (6, 7, 0), (8, 9, 2), (10, 11, 0)], 3)
DOC_B = ([5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 1, 21, 22, 23, 24],
         [4, 4, 0, 1, 0, 0, 2, 0, 0, 0, 1, 0, 0, 5, 0, 0, 2, 0, 6, 0],
         [(0, 2, 0), (3, 4, 1), (6, 7, 2), (10, 11, 1), (13, 14, 3), (16, 17, 2)], 4)
SIZES = dict(vocab_size=30, tok_emb_size=6, ner_emb_size=4, dis_emb_size=5, hid_size=8,
             channels=6, layers=2, chunk=1, dropout1=0.5, dropout2=0.33)


@pytest.fixture(scope="module")
def official() -> tuple:
    """The official model.py and utils.py modules (imported once: model.py imports
    transformers)."""
    return import_official(REPO, "model.py"), import_official(REPO, "utils.py")


def _official_model(module, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = module.MRN(**SIZES).eval()
    with torch.no_grad():  # every parameter random and away from its init (biases included)
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def _official_inputs(docs: tuple, dis2idx) -> tuple[Tensor, ...]:
    """The official forward's arguments (utils.py:90-124, 195-268 rules), padded."""
    n = len(docs)
    length = max(len(d[0]) for d in docs)
    m_max = max(len(d[2]) for d in docs)
    e_max = max(d[3] for d in docs)
    doc = torch.zeros(n, length, dtype=torch.long)
    ner = torch.zeros(n, length, dtype=torch.long)
    dis = torch.zeros(n, m_max, m_max, dtype=torch.long)
    d2e = torch.zeros(n, e_max, length, dtype=torch.bool)
    d2m = torch.zeros(n, m_max, length, dtype=torch.bool)
    m2e = torch.zeros(n, e_max, m_max, dtype=torch.bool)
    e2e = torch.zeros(n, e_max, e_max, dtype=torch.bool)
    m2m = torch.zeros(n, m_max, m_max, dtype=torch.bool)
    for b, (ids, types, mentions, ents) in enumerate(docs):
        doc[b, :len(ids)], ner[b, :len(ids)] = torch.tensor(ids), torch.tensor(types)
        for i, (s, e, ent) in enumerate(mentions):
            d2e[b, ent, s:e] = d2m[b, i, s:e] = m2e[b, ent, i] = True
            for j, (s2, _, _) in enumerate(mentions):
                delta = s - s2
                dis[b, i, j] = (int(dis2idx[-delta]) + 9 if delta < 0
                                else int(dis2idx[delta]) or 19)
        e2e[b, :ents, :ents] = True
        m2m[b, :len(mentions), :len(mentions)] = True
    ref = torch.zeros_like(dis)  # unused by the official forward (model.py:191-192)
    return doc, ner, dis, ref, d2e, d2m, m2e, e2e, m2m


def _mllb_batch(docs: tuple) -> dict[str, Tensor]:
    length = max(len(d[0]) for d in docs)
    ids = torch.zeros(len(docs), length, dtype=torch.long)
    ner = torch.zeros(len(docs), length, dtype=torch.long)
    mask = torch.zeros(len(docs), length, dtype=torch.long)
    mentions, entity_doc, pairs, offset = [], [], [], 0
    for b, (tok, types, men, ents) in enumerate(docs):
        ids[b, :len(tok)], ner[b, :len(tok)], mask[b, :len(tok)] = (
            torch.tensor(tok), torch.tensor(types), 1)
        mentions += [(b, s, e, offset + k) for s, e, k in men]
        entity_doc += [b] * ents
        pairs += [(offset + h, offset + t) for h in range(ents) for t in range(ents) if h != t]
        offset += ents
    return {"input_ids": ids, "attention_mask": mask, "mentions": torch.tensor(mentions),
            "entity_doc": torch.tensor(entity_doc), "pairs": torch.tensor(pairs),
            "ner_ids": ner}


def _official_rows(out: Tensor, docs: tuple) -> Tensor:
    """official [B, E, E, C] -> [P, C] in the MLLB pair order (head-major, diagonal skipped)."""
    rows = [out[b, h, t] for b, d in enumerate(docs) for h in range(d[3]) for t in range(d[3])
            if h != t]
    return torch.stack(rows)


def _converted(official: torch.nn.Module, **kwargs) -> MRN:
    sd = official.state_dict()
    model = MRN(**official_sizes(sd), **kwargs).eval()
    model.load_state_dict(from_official_state_dict(sd))
    return model


@pytest.mark.parametrize("docs", [(DOC_A,), (DOC_B,), (DOC_A, DOC_B), (DOC_B, DOC_A)],
                         ids=["a", "b", "ab", "ba"])
def test_converted_mrn_equals_the_official_model(official: tuple, docs: tuple) -> None:
    module, utils = official
    official = _official_model(module)
    model = _converted(official)
    assert official_sizes(official.state_dict()) == dict(
        num_labels=LABELS, vocab_size=30, num_entity_types=7, embed_dim=6, type_dim=4,
        dist_dim=5, hidden=8, channels=6, num_layers=2, biaffine_dim=8)
    with torch.no_grad():
        expected = _official_rows(official(*_official_inputs(docs, utils.dis2idx)), docs)
        got = model(**_mllb_batch(docs))
    assert expected.abs().max() > 1  # not a degenerate comparison
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_the_former_options_differ_from_the_official_model(official: tuple) -> None:
    """``pair_map="head_rows"`` (rows of h x columns of t) is not what the official code reads:
    the map is asymmetric, so the logits change."""
    module, utils = official
    official = _official_model(module, 1)
    docs = (DOC_A, DOC_B)
    with torch.no_grad():
        expected = _official_rows(official(*_official_inputs(docs, utils.dis2idx)), docs)
        swapped = _converted(official, pair_map="head_rows")(**_mllb_batch(docs))
    assert (swapped - expected).abs().max() > 1e-3


def test_official_biaffine_initialization(official: tuple) -> None:
    """The default scorer is the official parameterization and init: a xavier-normal
    [C, d + 1, d + 1] biaffine (model.py:98-100) and a default nn.Linear(channels, C)
    (model.py:167), at the official sizes (d = hidden = 256, 64 channels)."""
    torch.manual_seed(0)
    theirs = official[0].Biaffine(n_in=256, n_out=LABELS, bias_x=True, bias_y=True).weight
    ours = MRN(LABELS, vocab_size=30, hidden=256, biaffine_dim=256)
    assert ours.biaffine.shape == theirs.shape == (LABELS, 257, 257)
    assert ours.biaffine.std().item() == pytest.approx(theirs.std().item(), rel=0.01)
    assert ours.biaffine.mean().abs().item() < 1e-4
    linear = torch.nn.Linear(64, LABELS)
    assert ours.pair_linear.weight.shape == linear.weight.shape
    bound = 64 ** -0.5  # nn.Linear's default: uniform(+-1/sqrt(fan_in)), weight and bias
    assert ours.pair_linear.weight.abs().max() <= bound
    assert ours.pair_linear.bias.abs().max() <= bound
    assert ours.pair_linear.weight.std().item() == pytest.approx(bound / 3 ** 0.5, rel=0.05)


@pytest.mark.parametrize("preset, gamma_neg", [("asl_mrn_code", 3), ("asl_docred", 4)])
def test_asl_presets_equal_the_asl_of_mrns_trainer(preset: str, gamma_neg: int) -> None:
    """MRN's main.py:17-68 AsymmetricLossOptimized (gamma_neg=3 at main.py:75) == the asl loss
    of preset asl_mrn_code in value and gradient; asl_docred (the APL paper's gamma- = 4)
    detaches the focusing weight, so only its value equals MRN's class at gamma_neg=4."""
    from losses import create_loss

    main = import_official(REPO, "main.py")
    torch.manual_seed(0)
    logits = (3 * torch.randn(40, LABELS)).requires_grad_(True)
    targets = (torch.rand(40, LABELS) < 0.1).float()
    theirs = main.AsymmetricLossOptimized(gamma_neg=gamma_neg)(logits, targets)
    (g_theirs,) = torch.autograd.grad(theirs, logits)
    ours = create_loss("asl", preset=preset)(logits, targets)
    (g_ours,) = torch.autograd.grad(ours, logits)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-6)
    if preset == "asl_mrn_code":
        torch.testing.assert_close(g_ours, g_theirs, atol=1e-5, rtol=1e-5)
    else:
        assert not torch.allclose(g_ours, g_theirs, atol=1e-5)
