"""Models: a registry, heads and one file per family, each with a ``tiny_*`` variant.

``import models`` imports only the registry (torch): each built-in model is declared by name and
its module imported on first use (``create_model("tiny_lsan", ...)`` imports ``models.lsan``, not
transformers or the image models). The names of the heavy modules below
(``HEAD_FOR_INPUT_KIND``, ``ImageClassifier``, ...) stay importable from ``models`` and load their
module when first asked for. Add a built-in model here, one line, next to its
``@MODELS.register(name)``; ``tests/test_core/test_registry.py`` checks that the two agree.
"""

from __future__ import annotations

import importlib
from typing import Any

from models.registry import (
    MODELS,
    aux_loss_modules,
    auxiliary_loss,
    create_model,
    frozen_parameters,
    model_version,
)

# name -> "module:attr" of every built-in model; the module's decorator replaces the placeholder
BUILTIN_MODELS = {
    "mlp": "models.mlp:mlp",
    "tiny_mlp": "models.mlp:tiny_mlp",
    "lsan": "models.lsan:lsan",
    "small_lsan": "models.lsan:small_lsan",
    "tiny_lsan": "models.lsan:tiny_lsan",
    "lsan_paper_eq": "models.lsan:lsan_paper_eq",
    "small_lsan_paper_eq": "models.lsan:small_lsan_paper_eq",
    "tiny_lsan_paper_eq": "models.lsan:tiny_lsan_paper_eq",
    "text_encoder_cls": "models.text_encoder:text_encoder_cls",
    "tiny_text_encoder_cls": "models.text_encoder:tiny_text_encoder_cls",
    "mrn": "models.mrn:mrn",
    "tiny_mrn": "models.mrn:tiny_mrn",
    "bert_re": "models.bert_re:bert_re",
    "tiny_bert_re": "models.bert_re:tiny_bert_re",
    "bilstm_tagger": "models.tagger:bilstm_tagger",
    "tiny_bilstm_tagger": "models.tagger:tiny_bilstm_tagger",
    "token_encoder": "models.tagger:token_encoder",
    "tiny_token_encoder": "models.tagger:tiny_token_encoder",
    "timm_image": "models.image:timm_image",
    "effnet_lite0": "models.image:effnet_lite0",
    "effnet_lite0_mldecoder": "models.image:effnet_lite0_mldecoder",
    "effnet_lite0_assoc": "models.image:effnet_lite0_assoc",
    "tresnet_l_mldecoder": "models.image:tresnet_l_mldecoder",
    "effnetv2_s_mldecoder": "models.image:effnetv2_s_mldecoder",
    "tiny_image": "models.image:tiny_image",
    "tiny_image_mldecoder": "models.image:tiny_image_mldecoder",
    "tiny_image_assoc": "models.image:tiny_image_assoc",
}
for _name, _target in BUILTIN_MODELS.items():
    MODELS.add_lazy(_name, _target)
del _name, _target

# names re-exported from modules that import timm: loaded on first access (PEP 562)
_LAZY_ATTRS = {
    "HEAD_FOR_INPUT_KIND": "models.heads",
    "AssociationHead": "models.heads",
    "GAPHead": "models.heads",
    "MLDecoderHead": "models.heads",
    "create_head": "models.heads",
    "create_spatial_head": "models.heads",
    "ImageClassifier": "models.image",
    "load_efficientnet_lite0_package": "models.image",
    "load_pretrained": "models.image",
}


def __getattr__(name: str) -> Any:
    """Load a name of ``_LAZY_ATTRS`` from its module on first access."""
    module = _LAZY_ATTRS.get(name)
    if module is None:
        # AttributeError (not KeyError) lets ``from models import mrn`` import the submodule
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    """Module attributes, the lazily loaded names included (for completion and ``dir()``)."""
    return sorted(set(globals()) | set(_LAZY_ATTRS))


__all__ = [
    "BUILTIN_MODELS",
    "HEAD_FOR_INPUT_KIND",
    "MODELS",
    "AssociationHead",
    "GAPHead",
    "ImageClassifier",
    "MLDecoderHead",
    "aux_loss_modules",
    "auxiliary_loss",
    "create_head",
    "create_model",
    "create_spatial_head",
    "frozen_parameters",
    "load_efficientnet_lite0_package",
    "load_pretrained",
    "model_version",
]
