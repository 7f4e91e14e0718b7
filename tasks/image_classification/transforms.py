"""Image transforms: the model's timm data config plus the papers' training augmentations.

Geometry follows the ASL / ML-Decoder / AAM training code, not timm's ImageNet recipe: the image is
resized to a square ``input_size`` without cropping (multi-label objects sit anywhere, so a centre
crop would delete labels that the targets still claim), for training and evaluation alike.
Training adds, in the order the AAM paper lists them (section 3.5; ML-Decoder's code has no flip
and runs Cutout before RandAugment), a random horizontal flip, RandAugment
(timm's ``rand_augment_transform``; ``rand-m9-mstd0.5`` is timm's standard policy string) and
Cutout (ML-Decoder's ``CutoutPIL``: one square of side ``factor x size`` at a uniformly random
centre, clipped at the borders, filled with one random RGB colour; AssocFormer uses factor 0.5).
The transform ends in a ``uint8`` tensor; :func:`normalize` (the data config's mean/std) runs on
the batch in the training process, on the accelerator when there is one, as timm's prefetch loader
does: a quarter of the bytes through the loader queue and to the device, and the float conversion
(about 3.8 of 18 ms per 448 px image in a one-off single-thread profile on the 2-core machine)
leaves the loader workers.

Flip and Cutout draw from ``torch``'s generator, RandAugment from Python's ``random``; DataLoader
seeds both differently in every worker, so workers never repeat each other's augmentations.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from PIL import Image, ImageDraw
from timm.data.auto_augment import rand_augment_transform
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

_INTERPOLATION = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
                  "nearest": InterpolationMode.NEAREST, "lanczos": InterpolationMode.LANCZOS}
_PIL_INTERPOLATION = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
                      "nearest": Image.NEAREST, "lanczos": Image.LANCZOS}
AUGMENTATIONS = ("papers", "flip", "none")


class Cutout:
    """ML-Decoder's CutoutPIL on a PIL image: one random-colour square of side factor x size."""

    def __init__(self, factor: float = 0.5) -> None:
        if not 0.0 < factor <= 1.0:
            raise ValueError(f"cutout factor must be in (0, 1], got {factor}")
        self.factor = factor

    def __call__(self, img: Image.Image) -> Image.Image:
        """Return ``img`` with the square drawn in (a copy; the input is not modified)."""
        img = img.copy()
        w, h = img.size
        cut_w, cut_h = int(self.factor * w + 0.5), int(self.factor * h + 0.5)
        cx, cy = (int(v) for v in (torch.randint(w, ()), torch.randint(h, ())))
        x1, x2 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
        y1, y2 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
        fill = tuple(int(v) for v in torch.randint(256, (3,)))
        ImageDraw.Draw(img).rectangle([x1, y1, x2, y2], fill=fill)
        return img

    def __repr__(self) -> str:
        return f"Cutout(factor={self.factor})"


def resolve_config(model_config: dict[str, Any] | None, image_size: int = 0,
                   mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
                   interpolation: str = "") -> dict[str, Any]:
    """The data config used: the model's (timm ``resolve_data_config``) with explicit overrides.

    Without a model config (a model that is not a timm image model) the defaults are 224 px,
    ImageNet mean/std and bilinear interpolation.
    """
    cfg: dict[str, Any] = {"input_size": (3, 224, 224), "mean": (0.485, 0.456, 0.406),
                           "std": (0.229, 0.224, 0.225), "interpolation": "bilinear"}
    for key in cfg:
        if model_config and key in model_config:
            cfg[key] = model_config[key]
    if image_size:
        cfg["input_size"] = (3, image_size, image_size)
    if mean:
        cfg["mean"] = tuple(mean)
    if std:
        cfg["std"] = tuple(std)
    if interpolation:
        cfg["interpolation"] = interpolation
    if cfg["interpolation"] not in _INTERPOLATION:
        raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATION)}, "
                         f"got {cfg['interpolation']!r}")
    cfg["input_size"] = tuple(int(v) for v in cfg["input_size"])
    cfg["mean"], cfg["std"] = tuple(map(float, cfg["mean"])), tuple(map(float, cfg["std"]))
    return cfg


def build_transform(config: dict[str, Any], train: bool, augment: str = "papers",
                    randaugment: str = "rand-m9-mstd0.5", cutout: float = 0.5) -> T.Compose:
    """PIL RGB image -> uint8 tensor [3, H, W] for ``config`` (see the module doc).

    Args:
        config: from :func:`resolve_config`.
        train: add the training augmentations of ``augment``.
        augment: "papers" (flip + RandAugment + Cutout), "flip" (flip only) or "none".
        randaugment: timm RandAugment policy string; "" disables it.
        cutout: Cutout factor; 0 disables it.
    """
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
    size = config["input_size"][1:]
    steps: list[Any] = [T.Resize(size, interpolation=_INTERPOLATION[config["interpolation"]])]
    if train and augment != "none":
        steps.append(T.RandomHorizontalFlip())
    if train and augment == "papers":
        if randaugment:
            mean_rgb = tuple(round(255 * m) for m in config["mean"])
            steps.append(rand_augment_transform(randaugment, {
                "img_mean": mean_rgb,
                "interpolation": _PIL_INTERPOLATION[config["interpolation"]]}))
        if cutout:
            steps.append(Cutout(cutout))
    steps.append(T.PILToTensor())
    return T.Compose(steps)


@functools.lru_cache(maxsize=8)
def _stats(mean: tuple[float, ...], std: tuple[float, ...],
           device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """mean, std as [1, 3, 1, 1] tensors on ``device``, made once (not a copy to it per batch)."""
    return (torch.tensor(mean, device=device).view(1, -1, 1, 1),
            torch.tensor(std, device=device).view(1, -1, 1, 1))


def normalize(images: torch.Tensor, config: dict[str, Any]) -> torch.Tensor:
    """uint8 images [N, 3, H, W] -> float32 (x / 255 - mean) / std, on the images' device."""
    mean, std = _stats(tuple(config["mean"]), tuple(config["std"]), images.device)
    return (images.float() / 255.0 - mean) / std
