"""LSAN: label-specific attention network for multi-label text classification.

Xiao et al., "Label-Specific Document Representation for Multi-Label Text Classification",
EMNLP-IJCNLP 2019. Two variants share one class:

``variant="released"`` (``lsan``, ``small_lsan``, ``tiny_lsan``) is the network of the authors'
released code, EMNLP2019LSAN/LSAN ``attention/model.py`` (``StructuredSelfAttention``, lines
20-87; commit 1d130c5), which the APL paper's "LSAN*" rows re-ran:

* word embeddings, dropout 0.3 on them and nowhere else (model.py:36, 55-56);
* a BiLSTM, H = [H_fwd; H_bwd] [N, L, 2k] (model.py:27-28, 59);
* self-attention A_s = softmax_L(W2 tanh(W1 H^T)) [N, C, L], M_s = A_s H [N, C, 2k], W1 and W2
  with biases (model.py:29-30, 61-65);
* label attention with label embeddings E [C, k]: M_l = [(E H_fwd^T) H_fwd ; (E H_bwd^T) H_bwd]
  [N, C, 2k], no softmax (model.py:67-73). E is read through ``.data`` there (model.py:70), so it
  never receives a gradient: pretrained (``label_embed.npy``, [54, 300] = [C, k] for AAPD) and
  frozen. Here: ``label_embeddings=FILE`` (a ``.npy`` [C, k], rows in the task's label order)
  loads them frozen, as released; without a file they are random (xavier-uniform) and trainable,
  which the released code has no path for (it always loads the file);
  ``freeze_label_embeddings`` overrides either default;
* fusion beta = sigmoid(M_l w1 + b1), alpha = sigmoid(M_s w2 + b2), normalized to sum to 1,
  M = alpha M_s + beta M_l (model.py:32-33, 76-81);
* output: the mean of the C label-specific vectors [N, 2k] and one ``Linear(2k, C)``
  (model.py:35, 84-86).

``variant="paper_eq"`` (``lsan_paper_eq``, ``small_lsan_paper_eq``, ``tiny_lsan_paper_eq``) is the
paper's section 2 instead: W1/W2 without biases (eq. 3), output per label j = w4 relu(W3 M_j)
(eq. 11, a d_out = d_a hidden layer the code does not have), ``dropout`` (default 0.5) on the
embeddings and before W3. It is what ``lsan`` was in MLLB before issue 14.

Deviations from the released code that remain, in both variants, with their reason:

* logits, never through the sigmoid of model.py:86 (the official code trains with
  ``BCELoss`` on probabilities): MLLB's losses take logits and apply the sigmoid themselves
  (logit-based losses such as ASL/APL need them; the sigmoid is numerically folded into them);
* zero initial LSTM states and no fixed batch size, where model.py:51-52, 58 draws a random h0
  of the constructor's ``batch_size`` at every call (so even eval outputs are random there, and
  ``label.expand(self.batch_size, ...)`` at model.py:71-72 fails on a smaller last batch, which
  its loaders avoid with ``drop_last=True``);
* padding is masked and the LSTM packed: padded positions get -inf before the self-attention
  softmax and zero weight in the label attention, and the backward LSTM starts at each
  document's real end. The official code runs over fixed-length 500-token inputs padded with
  id 0, padding included; MLLB pads each batch to its longest document, so without the mask a
  document's scores would depend on its batch. For unpadded inputs the two are equal (tested);
* ``padding_idx=0`` in the word embedding (row 0 starts at zero and gets no gradient; it never
  enters a state here because of the mask);
* any embedding size (model.py:27 fixes the LSTM input at 300) and any number of labels;
* ``head="cosine"`` (for AAM): the final layer becomes a cosine head, normalize(x)
  normalize(W)^T as ``models.heads.CosineHead`` (same init), on the averaged vector (released)
  or on relu(W3 M_j) per label (paper_eq). Written here rather than imported, because
  ``models.heads`` imports timm and a text model should not.

The released training recipe (Adam betas (0.9, 0.99), lr 1e-3, batch 64, 10 epochs,
``BCELoss()/batch_size``) is ``tasks/text_classification/configs/lsan_paper.yaml``, with what the
engine cannot express listed there.

:func:`from_official_state_dict` maps a released ``StructuredSelfAttention`` state_dict (e.g. a
checkpoint saved by its ``save``) onto ``variant="released"``;
``tests/test_models/test_lsan_official.py`` checks equality with the official module.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from models.registry import MODELS

# bumped when a change of code or defaults changes the numbers (recorded in the run
# identity): 2: ``lsan`` became the released network (averaged label vectors, one output layer)
MODEL_VERSION = "2"

VARIANTS = ("released", "paper_eq")
# variant -> (dropout, biases in W1/W2): model.py:36 and 29-30; the paper's eq. 3 has none
_DEFAULTS = {"released": (0.3, True), "paper_eq": (0.5, False)}


def _load_label_embeddings(source: str | os.PathLike | np.ndarray | Tensor, num_labels: int,
                           hidden: int) -> Tensor:
    """Label embeddings [C, k] (float32) from a ``.npy`` file, an array or a tensor."""
    if isinstance(source, (str, os.PathLike)):
        try:
            source = np.load(source)
        except (OSError, ValueError) as exc:  # missing file, not a .npy
            raise ValueError(f"lsan: cannot read label_embeddings {str(source)!r}: {exc}") from exc
    table = torch.as_tensor(np.asarray(source), dtype=torch.float32)
    if tuple(table.shape) != (num_labels, hidden):
        raise ValueError(f"lsan: label_embeddings must be [num_labels, hidden] = "
                         f"[{num_labels}, {hidden}] (one row per label, the LSTM's size per "
                         f"direction), got {list(table.shape)}")
    return table


class LSAN(nn.Module):
    """LSAN returning logits [N, C] (or cosines with ``head="cosine"``); see the module docstring.

    ``dropout`` and ``attention_bias`` default to the variant's (released: 0.3, biases; paper_eq:
    0.5, none); ``d_out`` is the paper_eq hidden layer's size (default ``d_a``).
    """

    def __init__(self, num_labels: int, vocab_size: int, embed_dim: int = 300,
                 hidden: int = 300, d_a: int = 200, variant: str = "released",
                 dropout: float | None = None, attention_bias: bool | None = None,
                 label_embeddings: str | os.PathLike | np.ndarray | Tensor | None = None,
                 freeze_label_embeddings: bool | None = None, d_out: int | None = None,
                 head: str = "linear") -> None:
        super().__init__()
        if head not in ("linear", "cosine"):
            raise ValueError(f"lsan: head must be 'linear' or 'cosine', got {head!r}")
        if variant not in VARIANTS:
            raise ValueError(f"lsan: variant must be one of {VARIANTS}, got {variant!r}")
        if variant == "released" and d_out is not None:
            raise ValueError("lsan: d_out sizes the paper_eq output layer; the released network "
                             "has none (use lsan_paper_eq)")
        default_dropout, default_bias = _DEFAULTS[variant]
        self.variant, self.head, self.hidden = variant, head, hidden
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.dropout = nn.Dropout(default_dropout if dropout is None else dropout)
        self.lstm = nn.LSTM(embed_dim, hidden, batch_first=True, bidirectional=True)
        bias = default_bias if attention_bias is None else attention_bias
        self.w1 = nn.Linear(2 * hidden, d_a, bias=bias)  # self-attention (linear_first)
        self.w2 = nn.Linear(d_a, num_labels, bias=bias)  # (linear_second)
        if label_embeddings is None:
            table = nn.init.xavier_uniform_(torch.empty(num_labels, hidden))
        else:
            table = _load_label_embeddings(label_embeddings, num_labels, hidden)
        frozen = (label_embeddings is not None) if freeze_label_embeddings is None \
            else freeze_label_embeddings
        # a Parameter either way (one state_dict layout); frozen = no gradient, as model.py:70
        self.label_embedding = nn.Parameter(table, requires_grad=not frozen)
        self.fuse_s = nn.Linear(2 * hidden, 1)  # official weight2 (on the self-attention)
        self.fuse_l = nn.Linear(2 * hidden, 1)  # official weight1 (on the label attention)
        if variant == "released":
            width = 2 * hidden
            if head == "linear":
                self.output_layer = nn.Linear(width, num_labels)
        else:
            width = d_out or d_a
            self.w3 = nn.Linear(2 * hidden, width)
            if head == "linear":
                self.w4 = nn.Linear(width, 1)
        if head == "cosine":
            self.class_weight = nn.Parameter(torch.empty(num_labels, width))
            if variant == "released":  # as models.heads.CosineHead (and nn.Linear's weight)
                nn.init.kaiming_uniform_(self.class_weight, a=math.sqrt(5))
            else:  # as MLLB's lsan before issue 14
                nn.init.xavier_uniform_(self.class_weight)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """input_ids [N, L], attention_mask [N, L] (True = token) -> [N, C]."""
        mask = attention_mask.bool()
        lengths = mask.sum(1).clamp(min=1).cpu()
        emb = self.dropout(self.embedding(input_ids))  # [N, L, e]
        packed = pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
        h, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True,
                                   total_length=input_ids.shape[1])  # [N, L, 2k], 0 at padding
        scores = self.w2(torch.tanh(self.w1(h))).transpose(1, 2)  # [N, C, L]
        scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
        m_s = torch.softmax(scores, dim=-1) @ h  # [N, C, 2k]
        h_fwd, h_bwd = h[..., :self.hidden], h[..., self.hidden:]  # [N, L, k] each
        keep = mask[:, None, :].to(h.dtype)  # [N, 1, L]
        a_fwd = (self.label_embedding @ h_fwd.transpose(1, 2)) * keep  # [N, C, L]
        a_bwd = (self.label_embedding @ h_bwd.transpose(1, 2)) * keep
        m_l = torch.cat([a_fwd @ h_fwd, a_bwd @ h_bwd], dim=-1)  # [N, C, 2k]
        alpha = torch.sigmoid(self.fuse_s(m_s))  # [N, C, 1]
        beta = torch.sigmoid(self.fuse_l(m_l))
        alpha = alpha / (alpha + beta)
        m = alpha * m_s + (1 - alpha) * m_l  # [N, C, 2k]
        if self.variant == "released":
            doc = m.mean(dim=1)  # [N, 2k]: model.py:84 (sum over labels / C)
            if self.head == "linear":
                return self.output_layer(doc)  # [N, C]
            return F.linear(F.normalize(doc, dim=-1), F.normalize(self.class_weight, dim=-1))
        z = F.relu(self.w3(self.dropout(m)))  # [N, C, d_out]
        if self.head == "linear":
            return self.w4(z).squeeze(-1)
        return (F.normalize(z, dim=-1) * F.normalize(self.class_weight, dim=-1)).sum(-1)


# official StructuredSelfAttention names (model.py:25-35) -> LSAN(variant="released") names
_OFFICIAL_PREFIXES = {
    "embeddings.weight": "embedding.weight",
    "label_embed.weight": "label_embedding",
    "lstm.": "lstm.",
    "linear_first.": "w1.",
    "linear_second.": "w2.",
    "weight1.": "fuse_l.",  # model.py:76: weight1 scores the label attention
    "weight2.": "fuse_s.",  # model.py:77: weight2 scores the self-attention
    "output_layer.": "output_layer.",
}


def from_official_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A released ``StructuredSelfAttention`` state_dict as one of ``LSAN(variant="released")``.

    Load it with ``model.load_state_dict(from_official_state_dict(sd))`` into an LSAN of the
    same sizes (``embed_dim``, ``hidden`` = ``lstm_hid_dim``, ``d_a``, C) and ``head="linear"``.
    Label embeddings come from the state_dict; whether they train is the constructor's
    ``label_embeddings`` / ``freeze_label_embeddings`` (pass ``freeze_label_embeddings=True``
    to keep them fixed, as released). Raises ``KeyError`` on a key the released model lacks.
    """
    out = {}
    for key, value in state_dict.items():
        prefix = next((p for p in _OFFICIAL_PREFIXES if key == p or
                       (p.endswith(".") and key.startswith(p))), None)
        if prefix is None:
            raise KeyError(f"lsan: {key!r} is not a parameter of the released "
                           f"StructuredSelfAttention (attention/model.py)")
        out[_OFFICIAL_PREFIXES[prefix] + key[len(prefix):]] = value.detach().clone().float()
    return out


@MODELS.register("lsan")
def lsan(num_labels: int, vocab_size: int, **kwargs: Any) -> LSAN:
    """The released LSAN network at its sizes (config.yml): embeddings and BiLSTM 300, d_a 200."""
    return LSAN(num_labels, vocab_size, **kwargs)


@MODELS.register("small_lsan")
def small_lsan(num_labels: int, vocab_size: int, **kwargs: Any) -> LSAN:
    """A CPU-sized released LSAN (embeddings 100, BiLSTM 100, d_a 64) for real-data runs here."""
    return LSAN(num_labels, vocab_size, **{"embed_dim": 100, "hidden": 100, "d_a": 64, **kwargs})


@MODELS.register("tiny_lsan")
def tiny_lsan(num_labels: int, vocab_size: int, **kwargs: Any) -> LSAN:
    """The released LSAN for tests: embeddings 8, BiLSTM 8, d_a 4."""
    return LSAN(num_labels, vocab_size, **{"embed_dim": 8, "hidden": 8, "d_a": 4, **kwargs})


@MODELS.register("lsan_paper_eq")
def lsan_paper_eq(num_labels: int, vocab_size: int, **kwargs: Any) -> LSAN:
    """The paper's equations (per-label output MLP, no W1/W2 biases, dropout 0.5 twice) at the
    paper's sizes: embeddings 300, BiLSTM 300 per direction, d_a 200."""
    return LSAN(num_labels, vocab_size, **{"variant": "paper_eq", **kwargs})


@MODELS.register("small_lsan_paper_eq")
def small_lsan_paper_eq(num_labels: int, vocab_size: int, **kwargs: Any) -> LSAN:
    """``lsan_paper_eq`` CPU-sized (embeddings 100, BiLSTM 100, d_a 64)."""
    return LSAN(num_labels, vocab_size, **{"variant": "paper_eq", "embed_dim": 100,
                                           "hidden": 100, "d_a": 64, **kwargs})


@MODELS.register("tiny_lsan_paper_eq")
def tiny_lsan_paper_eq(num_labels: int, vocab_size: int, **kwargs: Any) -> LSAN:
    """``lsan_paper_eq`` for tests: embeddings 8, BiLSTM 8, d_a 4."""
    return LSAN(num_labels, vocab_size, **{"variant": "paper_eq", "embed_dim": 8, "hidden": 8,
                                           "d_a": 4, **kwargs})
