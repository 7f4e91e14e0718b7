"""Classification heads on pooled features: linear (logits) and cosine (for AAM)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LinearHead(nn.Module):
    """logits = x W^T + b."""

    def __init__(self, in_features: int, num_labels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, num_labels)

    def forward(self, x: Tensor) -> Tensor:
        """x [N, D] -> logits [N, C]."""
        return self.fc(x)


class CosineHead(nn.Module):
    """cos_theta = normalize(x) normalize(W)^T: the input AAM-style losses scale and shift."""

    def __init__(self, in_features: int, num_labels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_labels, in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x: Tensor) -> Tensor:
        """x [N, D] -> cosines [N, C] in [-1, 1]."""
        return F.linear(F.normalize(x, dim=-1), F.normalize(self.weight, dim=-1))


HEADS = {"linear": LinearHead, "cosine": CosineHead}
# what each loss input kind (``MultiLabelLoss.input_kind``) needs from the model
HEAD_FOR_INPUT_KIND = {"logits": "linear", "cosine": "cosine"}


def create_head(kind: str, in_features: int, num_labels: int) -> nn.Module:
    """Build the head ``kind`` ("linear" or "cosine")."""
    if kind not in HEADS:
        raise ValueError(f"unknown head {kind!r}; expected one of {sorted(HEADS)}")
    return HEADS[kind](in_features, num_labels)
