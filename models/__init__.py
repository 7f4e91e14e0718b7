"""Models: a registry, heads and one file per family, each with a ``tiny_*`` variant."""

from models import bert_re, lsan, mlp, mrn, text_encoder  # noqa: F401  (register them)
from models.heads import HEAD_FOR_INPUT_KIND, create_head
from models.registry import MODELS, create_model

__all__ = ["HEAD_FOR_INPUT_KIND", "MODELS", "create_head", "create_model"]
