"""``bert_re`` against ATLOP's ``DocREModel`` (wzhouad/ATLOP model.py, long_seq.py, losses.py).

The official files are imported at test time from ``$MLLB_REFERENCE_CODE`` (the repository has
no license, so it is not in ../shared/reference: fetch it into ``<folder>/wzhouad__ATLOP/`` and
add the folder); those tests skip without it. Both models share one tiny random BERT
architecture (no download); the official weights are converted with
``models.bert_re.from_official_state_dict``.

Scaffolding, not patches of the official computation: model.py imports ``losses`` (a name MLLB's
loss package also has) and ``opt_einsum`` (``contract`` = ``torch.einsum`` when it is not
installed); the official encoder is switched to eager attention (transformers 5 returns no
attention probabilities otherwise) and returns its outputs as transformers 3 did (attentions
last); and ``get_label`` is replaced on the official instance by the identity so that its
forward returns the logits that ATLoss.get_label would decode.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest
import torch
from official import import_official

from losses import create_loss
from models.bert_re import BertRE, from_official_state_dict

REPO = "wzhouad__ATLOP"
CLS, SEP, PAD, MARK = 1, 2, 0, 3
VOCAB, LABELS, EMB, BLOCK = 60, 6, 32, 8


def _config():
    from transformers import BertConfig

    # 512 positions: ATLOP's long_seq.py hard-codes BERT's 512-token window
    return BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=4, intermediate_size=64, max_position_embeddings=512,
                      num_labels=LABELS, attn_implementation="eager")


@pytest.fixture
def atlop(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """ATLOP's model.py, its sibling imports resolved to the official files."""
    official_losses = import_official(REPO, "losses.py")
    long_seq = import_official(REPO, "long_seq.py")
    monkeypatch.setitem(sys.modules, "losses", official_losses)
    monkeypatch.setitem(sys.modules, "long_seq", long_seq)
    try:
        import opt_einsum  # noqa: F401
    except ImportError:
        monkeypatch.setitem(sys.modules, "opt_einsum",
                            types.SimpleNamespace(contract=torch.einsum))
    return import_official(REPO, "model.py")


def _docs() -> list[dict]:
    """Three documents as ATLOP's features: word-piece ids, entity_pos (start, end) without the
    [CLS] offset, hts; the second is longer than 512 tokens (two windows)."""
    gen = torch.Generator().manual_seed(0)
    specs = [(70, [[3, 20, 40], [8], [27, 43], [55]]),
             (700, [[5, 300, 590], [40], [250, 520, 660], [450], [505]]),
             (33, [[2], [10, 20]])]
    docs = []
    for length, entities in specs:
        body = torch.randint(4, VOCAB, (length,), generator=gen)
        for starts in entities:
            for s in starts:
                body[s], body[s + 2] = MARK, MARK  # "*" w "*"
        n = len(entities)
        docs.append({"input_ids": [CLS, *body.tolist(), SEP],
                     "entity_pos": [[(s, s + 3) for s in starts] for starts in entities],
                     "hts": [[h, t] for h in range(n) for t in range(n) if h != t]})
    return docs


def _official_batch(docs: list[dict]) -> dict:
    width = max(len(d["input_ids"]) for d in docs)
    ids = torch.tensor([d["input_ids"] + [PAD] * (width - len(d["input_ids"])) for d in docs])
    mask = torch.tensor([[1.0] * len(d["input_ids"]) + [0.0] * (width - len(d["input_ids"]))
                         for d in docs])
    return {"input_ids": ids, "attention_mask": mask,
            "entity_pos": [d["entity_pos"] for d in docs], "hts": [d["hts"] for d in docs]}


def _mllb_batch(docs: list[dict]) -> dict:
    """The DocRED task's tensors for the same documents (mention starts shifted by [CLS])."""
    batch = _official_batch(docs)
    mentions, entity_doc, pairs, first = [], [], [], 0
    for b, d in enumerate(docs):
        for e, ment in enumerate(d["entity_pos"]):
            entity_doc.append(b)
            mentions += [[b, s + 1, t + 1, first + e] for s, t in ment]
        pairs += [[first + h, first + t] for h, t in d["hts"]]
        first += len(d["entity_pos"])
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"].bool(),
            "mentions": torch.tensor(mentions), "entity_doc": torch.tensor(entity_doc),
            "pairs": torch.tensor(pairs)}


def _transformers3_outputs() -> type:
    from transformers import BertModel

    class Transformers3Outputs(BertModel):
        """BertModel whose output ends with the attentions, as in the transformers ATLOP was
        written for (long_seq.py reads ``output[-1][-1]``; transformers 5 appends an empty
        ``cross_attentions`` tuple). Same parameters and the same computation."""

        def forward(self, *args: Any, **kwargs: Any) -> tuple:
            out = super().forward(*args, **kwargs)
            return out.last_hidden_state, out.pooler_output, out.attentions

    return Transformers3Outputs


def _models(atlop: types.ModuleType) -> tuple[torch.nn.Module, BertRE]:
    from transformers import BertModel

    official_encoder = _transformers3_outputs()

    torch.manual_seed(0)
    config = _config()
    config.transformer_type, config.cls_token_id, config.sep_token_id = "bert", CLS, SEP
    encoder = official_encoder(config)
    # attention probabilities need eager attention in transformers 5 (ATLOP's transformers 3
    # had nothing else)
    encoder.set_attn_implementation("eager")
    ref = atlop.DocREModel(config, encoder, emb_size=EMB, block_size=BLOCK, num_labels=4).eval()
    # forward returns get_label(logits); the identity makes it return the logits themselves
    ref.loss_fnt.get_label = lambda logits, num_labels=-1: logits
    with torch.no_grad():  # a non-zero bias, so that its conversion is tested too
        ref.bilinear.bias.normal_()
    mine = BertRE(LABELS, BertModel(_config()), cls_token_id=CLS, sep_token_id=SEP,
                  emb_size=EMB, block_size=BLOCK).eval()
    mine.load_state_dict(from_official_state_dict(ref.state_dict()))
    return ref, mine


def test_logits_equal_official_docre_model(atlop: types.ModuleType) -> None:
    ref, mine = _models(atlop)
    docs = _docs()
    with torch.no_grad():
        (expected,) = ref(**_official_batch(docs))
        got = mine(**_mllb_batch(docs))
    assert got.shape == expected.shape == (12 + 20 + 2, LABELS)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # each document alone too (one window for the short ones, no padding)
    for d in docs:
        with torch.no_grad():
            (alone,) = ref(**_official_batch([d]))
        torch.testing.assert_close(mine(**_mllb_batch([d])).detach(), alone,
                                   rtol=1e-5, atol=1e-5)


def test_atl_loss_of_the_model_equals_official(atlop: types.ModuleType) -> None:
    """ATLOP's forward with labels (its ATLoss on its logits) == ``atl`` on bert_re's logits."""
    ref, mine = _models(atlop)
    docs = _docs()[::2]  # the two short documents
    gen = torch.Generator().manual_seed(1)
    labels = []
    for d in docs:
        y = (torch.rand(len(d["hts"]), LABELS, generator=gen) < 0.3).float()
        y[:, 0] = (y[:, 1:].sum(1) == 0).float()
        labels.append(y)
    with torch.no_grad():
        loss_ref, _ = ref(**_official_batch(docs), labels=[y.tolist() for y in labels])
        got = create_loss("atl")(mine(**_mllb_batch(docs)), torch.cat(labels))
    torch.testing.assert_close(got, loss_ref, rtol=1e-5, atol=1e-5)


def test_converter_refuses_foreign_keys() -> None:
    with pytest.raises(KeyError, match="DocREModel"):
        from_official_state_dict({"classifier.weight": torch.zeros(2, 2)})
