"""Models: a registry, heads and one file per family, each with a ``tiny_*`` variant."""

from models import bert_re, image, lsan, mlp, mrn, text_encoder  # noqa: F401  (register them)
from models.heads import (
    HEAD_FOR_INPUT_KIND,
    AssociationHead,
    GAPHead,
    MLDecoderHead,
    create_head,
    create_spatial_head,
)
from models.image import ImageClassifier, load_efficientnet_lite0_package, load_pretrained
from models.registry import MODELS, auxiliary_loss, create_model

__all__ = [
    "HEAD_FOR_INPUT_KIND",
    "MODELS",
    "AssociationHead",
    "GAPHead",
    "ImageClassifier",
    "MLDecoderHead",
    "auxiliary_loss",
    "create_head",
    "create_model",
    "create_spatial_head",
    "load_efficientnet_lite0_package",
    "load_pretrained",
]
