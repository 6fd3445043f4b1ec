"""Preprocessing that follows the model: resize, centre crop, normalise.

Where it comes from: a timm model's own data config, a torchvision model's weights transforms
(metadata only, nothing downloaded), a layerprobe checkpoint's stored copy, or, for a
``python:`` model that has none, the ImageNet defaults at ``--image-size``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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

    Attributes
    ----------
    input_size : the side of the square model input, in pixels.
    resize_size : the side the image is resized to before the crop, in pixels (>= input_size).
    interpolation : the resampling filter (``bicubic``, ``bilinear`` …).
    mean, std : per RGB channel, on the [0, 1] scale.
    crop_pct : ``input_size / resize_size``.
    resize : how the image is made square (``crop``, ``squash``, ``squash-crop``).
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
        *,
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


# PIL's resampling filters by number (what transformers' image processors store as `resample`).
PIL_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)
# Normalisation of model families whose config says nothing about it (no image processor saved).
HF_FAMILY_NORMS = {
    "clip": (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
    "clip_vision_model": (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
    "siglip": (HALF, HALF),
    "siglip_vision_model": (HALF, HALF),
    "siglip2": (HALF, HALF),
    "siglip2_vision_model": (HALF, HALF),
}


def hf_preprocess(processor, config) -> Preprocess:
    """From a ``transformers`` image processor (size, crop, resample, mean, std), or, where no
    processor was saved (``processor=None``), from the model config's ``image_size`` with the
    family's usual normalisation (ImageNet's unless the family is CLIP / SigLIP) and no crop.

    The processor's geometry maps onto the resize modes: ``{"height", "width"}`` without a centre
    crop is ``squash``; ``{"shortest_edge"}`` plus a centre crop is ``crop``; a square size plus a
    crop is ``squash-crop``; ConvNeXt's ``crop_pct`` (below 384 px) is ``crop`` at size/crop_pct.
    """
    if processor is None:
        size = _first_int(getattr(config, "image_size", None)) or DEFAULT_SIZE
        model_type = str(getattr(config, "model_type", ""))
        mean, std = HF_FAMILY_NORMS.get(model_type, (IMAGENET_MEAN, IMAGENET_STD))
        return Preprocess(
            input_size=size,
            resize_size=size,
            interpolation="bicubic",
            mean=mean,
            std=std,
            crop_pct=1.0,
            resize="squash",
        )
    size = _size_fields(getattr(processor, "size", None))
    crop = _size_fields(getattr(processor, "crop_size", None))
    do_crop = bool(getattr(processor, "do_center_crop", False)) and bool(crop)
    crop_side = _first_int(crop.get("height"), crop.get("width"), crop.get("shortest_edge"))
    short = _first_int(size.get("shortest_edge"))
    square = _first_int(size.get("height"), size.get("width"), size.get("longest_edge"))
    crop_pct = getattr(processor, "crop_pct", None)
    if short and crop_pct and not do_crop:  # ConvNeXt: shortest_edge/crop_pct, crop; >= 384: warp
        if short < 384:
            input_size, resize_size, mode = short, round(short / float(crop_pct)), "crop"
        else:
            input_size, resize_size, mode = short, short, "squash"
    elif short:
        input_size = crop_side if do_crop and crop_side else short
        resize_size, mode = max(short, input_size), "crop"
    elif square:
        input_size = crop_side if do_crop and crop_side else square
        resize_size = max(square, input_size)
        mode = "squash-crop" if resize_size > input_size else "squash"
    else:
        input_size = crop_side or _first_int(getattr(config, "image_size", None)) or DEFAULT_SIZE
        resize_size, mode = input_size, "squash"
    mean = getattr(processor, "image_mean", None) or IMAGENET_MEAN
    std = getattr(processor, "image_std", None) or IMAGENET_STD
    if not getattr(processor, "do_normalize", True):
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return Preprocess(
        input_size=input_size,
        resize_size=resize_size,
        interpolation=_interpolation(getattr(processor, "resample", None)),
        mean=_channels(mean),
        std=_channels(std),
        crop_pct=input_size / resize_size,
        resize=mode,
    )


OPEN_CLIP_RESIZE = {"shortest": "crop", "squash": "squash", "longest": "border"}


def open_clip_preprocess(cfg: dict) -> Preprocess:
    """From an open_clip image tower's ``preprocess_cfg`` (size, mean, std, interpolation,
    resize_mode), as open_clip's own eval transform applies it (no resize margin: crop_pct 1)."""
    size = _first_int(cfg.get("size")) or DEFAULT_SIZE
    interpolation = str(cfg.get("interpolation") or "bicubic")
    return Preprocess(
        input_size=size,
        resize_size=size,
        interpolation=interpolation if interpolation in INTERPOLATIONS else "bicubic",
        mean=_channels(cfg.get("mean") or OPENAI_CLIP_MEAN),
        std=_channels(cfg.get("std") or OPENAI_CLIP_STD),
        crop_pct=1.0,
        resize=OPEN_CLIP_RESIZE.get(str(cfg.get("resize_mode") or "shortest"), "crop"),
    )


def _size_fields(value) -> dict:
    """A processor's size (a dict, transformers' ``SizeDict``, or one int) as a plain dict."""
    if value is None:
        return {}
    if isinstance(value, int):
        return {"height": value, "width": value}
    if isinstance(value, dict):
        return value
    keys = ("height", "width", "shortest_edge", "longest_edge")
    return {k: getattr(value, k) for k in keys if getattr(value, k, None) is not None}


def _first_int(*values) -> int | None:
    """The first value that is (or starts) a positive integer: 224, (224, 224), [224]."""
    for value in values:
        if isinstance(value, (tuple, list)) and value:
            value = value[0]
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _channels(values) -> tuple[float, ...]:
    """A mean / std as three channels (a single value, as some processors store it, repeated)."""
    values = [float(v) for v in (values if isinstance(values, (tuple, list)) else [values])]
    return tuple(values * 3) if len(values) == 1 else tuple(values)


def _interpolation(resample) -> str:
    """A processor's ``resample`` (a PIL number or enum, or a torchvision mode) as a name."""
    value = getattr(resample, "value", resample)
    if isinstance(value, int):
        return PIL_RESAMPLE.get(value, "bicubic")
    name = str(value or "").lower()
    return name if name in INTERPOLATIONS else "bicubic"
