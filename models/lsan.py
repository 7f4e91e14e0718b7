"""LSAN: label-specific attention network for multi-label text classification.

Xiao et al., "Label-Specific Document Representation for Multi-Label Text Classification",
EMNLP-IJCNLP 2019, section 2:

* a BiLSTM over word embeddings, H = [H_fwd; H_bwd] [N, L, 2k] (packed, so padding never
  enters a state and the backward direction starts at each document's real end);
* self-attention (eq. 3-4): A_s = softmax_L(W2 tanh(W1 H^T)) [N, C, L], M_s = A_s H [N, C, 2k];
* label-attention (eq. 5-7): trainable label embeddings E [C, k]; A_fwd = E H_fwd^T,
  A_bwd = E H_bwd^T [N, C, L]; M_l = [A_fwd H_fwd ; A_bwd H_bwd] [N, C, 2k];
* adaptive fusion (eq. 8-10): alpha = sigmoid(M_s w1), beta = sigmoid(M_l w2), normalized so that
  alpha + beta = 1; M = alpha M_s + beta M_l;
* output (eq. 11): per label, W4 relu(W3 M_j) — returned as logits, never through a sigmoid (the
  official code's sigmoid-plus-BCELoss makes logit-based losses impossible).

Padding is masked: padded positions get -inf before the self-attention softmax and zero weight
in the label attention, so adding padding to a batch does not change any output. Differences from
the official code: no fixed batch size and no random ``h0`` (zero initial states), any number of
labels, ``head="cosine"`` (per-label weights, L2-normalized, for AAM) besides the linear output.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from models.registry import MODELS


class LSAN(nn.Module):
    """LSAN returning logits [N, C] (or cosines with ``head="cosine"``)."""

    def __init__(self, num_labels: int, vocab_size: int, embed_dim: int = 300,
                 hidden: int = 300, d_a: int = 200, d_out: int | None = None,
                 dropout: float = 0.5, head: str = "linear") -> None:
        super().__init__()
        if head not in ("linear", "cosine"):
            raise ValueError(f"lsan: head must be 'linear' or 'cosine', got {head!r}")
        d_out = d_out or d_a
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(embed_dim, hidden, batch_first=True, bidirectional=True)
        self.hidden = hidden
        self.w1 = nn.Linear(2 * hidden, d_a, bias=False)  # self-attention
        self.w2 = nn.Linear(d_a, num_labels, bias=False)
        self.label_embedding = nn.Parameter(torch.empty(num_labels, hidden))
        nn.init.xavier_uniform_(self.label_embedding)
        self.fuse_s = nn.Linear(2 * hidden, 1)
        self.fuse_l = nn.Linear(2 * hidden, 1)
        self.w3 = nn.Linear(2 * hidden, d_out)
        self.head = head
        if head == "linear":
            self.w4 = nn.Linear(d_out, 1)
        else:
            self.class_weight = nn.Parameter(torch.empty(num_labels, d_out))
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
        z = F.relu(self.w3(self.dropout(m)))  # [N, C, d_out]
        if self.head == "linear":
            return self.w4(z).squeeze(-1)
        return (F.normalize(z, dim=-1) * F.normalize(self.class_weight, dim=-1)).sum(-1)


@MODELS.register("lsan")
def lsan(num_labels: int, vocab_size: int, **kwargs: Any) -> LSAN:
    """The LSAN paper's sizes: embeddings 300, BiLSTM 300 per direction, d_a 200."""
    return LSAN(num_labels, vocab_size, **kwargs)


@MODELS.register("small_lsan")
def small_lsan(num_labels: int, vocab_size: int, **kwargs: Any) -> LSAN:
    """A CPU-sized LSAN (embeddings 100, BiLSTM 100, d_a 64) for the real-data runs here."""
    return LSAN(num_labels, vocab_size, **{"embed_dim": 100, "hidden": 100, "d_a": 64, **kwargs})


@MODELS.register("tiny_lsan")
def tiny_lsan(num_labels: int, vocab_size: int, **kwargs: Any) -> LSAN:
    """For tests: embeddings 8, BiLSTM 8, d_a 4."""
    return LSAN(num_labels, vocab_size, **{"embed_dim": 8, "hidden": 8, "d_a": 4, **kwargs})
