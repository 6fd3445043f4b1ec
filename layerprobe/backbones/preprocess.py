"""Preprocessing that follows the model: resize, centre crop, normalise.

Where it comes from: a timm model's own data config, a torchvision model's weights transforms
(metadata only, nothing downloaded), a layerprobe checkpoint's stored copy, or, for a
``python:`` model that has none, the ImageNet defaults at ``--image-size``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import torch

from layerprobe.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SIZE = 224
DEFAULT_CROP_PCT = 0.875
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")
# How an image becomes a square (the paper's protocols squash: VTAB resizes the whole image to
# 224 x 224; big_vision's few-shot evaluator squashes to 256 x 256 and centre-crops 224):
RESIZE_MODES = {
    "crop": "keep the aspect ratio: short side to resize_size, centre crop input_size",
    "squash": "the whole image to input_size x input_size (VTAB)",
    "squash-crop": "the whole image to resize_size x resize_size, centre crop input_size "
    "(big_vision few-shot; timm crop_mode='squash')",
    "border": "long side to resize_size, pad to a square, centre crop (timm crop_mode='border')",
}
TIMM_CROP_MODES = {"center": "crop", "squash": "squash-crop", "border": "border"}


def check_resize(mode: str | None) -> str | None:
    """``mode`` if it is a resize mode (or None), else :class:`ConfigError` listing them."""
    if mode is not None and mode not in RESIZE_MODES:
        raise ConfigError(
            f"unknown resize mode {mode!r}; use one of {', '.join(RESIZE_MODES)} "
            "(squash keeps the whole image, as VTAB does)"
        )
    return mode


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes a model input.

    Make it square as ``resize`` says (:data:`RESIZE_MODES`; ``crop``: short side to
    ``resize_size``, centre crop ``input_size``), scale to [0, 1], subtract ``mean`` and divide
    by ``std`` (per RGB channel). ``crop_pct = input_size / resize_size`` is kept so that a
    new size keeps the same ratio.
    """

    input_size: int
    resize_size: int
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_pct: float = DEFAULT_CROP_PCT
    resize: str = "crop"

    def __post_init__(self) -> None:
        check_resize(self.resize)
        if int(self.input_size) < 1 or int(self.resize_size) < int(self.input_size):
            raise ConfigError(
                f"bad preprocessing sizes: input {self.input_size}, resize {self.resize_size}; "
                "the resize must be at least the input size"
            )
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"unknown interpolation {self.interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}"
            )
        object.__setattr__(self, "input_size", int(self.input_size))
        object.__setattr__(self, "resize_size", int(self.resize_size))
        object.__setattr__(self, "mean", _triple(self.mean, "mean"))
        object.__setattr__(self, "std", _triple(self.std, "std"))
        if min(self.std) <= 0:
            raise ConfigError(f"std must be positive, got {self.std}")

    def transform(self) -> Callable:
        """A callable ``PIL.Image -> float32 tensor (3, input_size, input_size)``."""
        from torchvision import transforms as T

        mode = T.InterpolationMode(self.interpolation)
        size, big = self.input_size, self.resize_size
        if self.resize == "squash":
            square = [T.Resize((size, size), interpolation=mode)]
        elif self.resize == "squash-crop":
            square = [T.Resize((big, big), interpolation=mode), T.CenterCrop(size)]
        elif self.resize == "border":
            from timm.data.transforms import CenterCropOrPad, ResizeKeepRatio

            fill = [round(255 * v) for v in self.mean]
            square = [
                ResizeKeepRatio(big, interpolation=self.interpolation, longest=1.0),
                CenterCropOrPad(size, fill=fill),
            ]
        else:
            square = [T.Resize(big, interpolation=mode), T.CenterCrop(size)]
        return T.Compose([_ToRGB(), *square, T.ToTensor(), T.Normalize(self.mean, self.std)])

    def to_dict(self) -> dict:
        """A JSON-able dict (mean and std as lists)."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        keys = {"input_size", "resize_size", "interpolation", "mean", "std", "crop_pct", "resize"}
        return cls(**{k: v for k, v in d.items() if k in keys})

    def with_overrides(
        self,
        image_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        resize: str | None = None,
    ) -> Preprocess:
        """A copy with a new input size (resize = round(size / crop_pct)), mean/std and/or
        resize mode."""
        out = self
        if check_resize(resize) is not None:
            out = replace(out, resize=resize)
        if image_size is not None:
            size = positive_int(image_size, "image size")
            out = replace(out, input_size=size, resize_size=max(size, round(size / out.crop_pct)))
        if mean is not None:
            out = replace(out, mean=mean)
        if std is not None:
            out = replace(out, std=std)
        return out


class _ToRGB:
    """PIL image to RGB (a class, not a lambda, so DataLoader workers can pickle it)."""

    def __call__(self, image):
        return image if image.mode == "RGB" else image.convert("RGB")


def default_preprocess(image_size: int | None = None) -> Preprocess:
    """ImageNet mean/std, resize + centre crop at ``image_size`` (224 when not given)."""
    size = positive_int(image_size or DEFAULT_SIZE, "image size")
    return Preprocess(
        input_size=size,
        resize_size=round(size / DEFAULT_CROP_PCT),
        interpolation="bilinear",
        crop_pct=DEFAULT_CROP_PCT,
    )


def timm_preprocess(model: torch.nn.Module) -> Preprocess:
    """From timm's resolved data config of ``model`` (as timm's own eval transform does it)."""
    from timm.data import resolve_model_data_config

    cfg = resolve_model_data_config(model)
    size = int(cfg["input_size"][-1])
    crop_pct = float(cfg.get("crop_pct") or DEFAULT_CROP_PCT)
    interpolation = cfg.get("interpolation") or "bicubic"
    if interpolation not in INTERPOLATIONS:  # 'random' is a training-time option
        interpolation = "bicubic"
    return Preprocess(
        input_size=size,
        resize_size=math.floor(size / crop_pct),  # timm: scale_size = floor(img_size / crop_pct)
        interpolation=interpolation,
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        crop_pct=crop_pct,
        resize=TIMM_CROP_MODES.get(cfg.get("crop_mode") or "center", "crop"),
    )


def torchvision_preprocess(name: str) -> Preprocess:
    """From the torchvision weights enum's transforms (metadata; nothing is downloaded)."""
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError, AttributeError):
        return default_preprocess()
    tr = weights.transforms()
    crop, resize = int(tr.crop_size[0]), int(tr.resize_size[0])
    return Preprocess(
        input_size=crop,
        resize_size=resize,
        interpolation=tr.interpolation.value,
        mean=tuple(tr.mean),
        std=tuple(tr.std),
        crop_pct=crop / resize,
    )


def _triple(values: Sequence[float], what: str) -> tuple[float, float, float]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{what} must be three numbers (R, G, B), got {values!r}") from err
    if len(out) != 3:
        raise ConfigError(f"{what} must be three numbers (R, G, B), got {len(out)}")
    return out


def positive_int(value, what: str) -> int:
    """``value`` as an int >= 1, else :class:`ConfigError` naming ``what``."""
    try:
        out = int(value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}") from err
    if out < 1 or out != value:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")
    return out
