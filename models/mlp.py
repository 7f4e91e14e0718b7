"""Multi-layer perceptron on feature vectors (the synthetic task's model)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from models.heads import create_head
from models.registry import MODELS


class MLP(nn.Module):
    """Linear-GELU-Dropout blocks, then a linear or cosine head. Returns logits (or cosines)."""

    def __init__(self, num_labels: int, in_features: int, hidden: Sequence[int] = (256, 256),
                 dropout: float = 0.1, head: str = "linear") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.GELU(), nn.Dropout(dropout)]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = create_head(head, width, num_labels)

    def forward(self, features: Tensor) -> Tensor:
        """features [N, D] -> [N, C]."""
        return self.head(self.body(features))


@MODELS.register("mlp")
def mlp(num_labels: int, in_features: int, **kwargs: Any) -> MLP:
    """Two hidden layers of 256."""
    return MLP(num_labels, in_features, **{"hidden": (256, 256), **kwargs})


@MODELS.register("tiny_mlp")
def tiny_mlp(num_labels: int, in_features: int, **kwargs: Any) -> MLP:
    """One hidden layer of 16: for tests."""
    return MLP(num_labels, in_features, **{"hidden": (16,), **kwargs})
