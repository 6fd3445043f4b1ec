"""``load(spec)``: a model spec (plus optional weights) to a ready :class:`Backbone`."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import torch

from layerprobe.backbones import builders
from layerprobe.backbones.backbone import Backbone
from layerprobe.backbones.checkpoint import read_checkpoint
from layerprobe.backbones.preprocess import (
    Preprocess,
    default_preprocess,
    positive_int,
    timm_preprocess,
    torchvision_preprocess,
)
from layerprobe.backbones.spec import Spec, parse_spec
from layerprobe.backbones.weights import load_weights, read_state_dict
from layerprobe.errors import ConfigError
from layerprobe.runtime.warn import LayerprobeWarning


def load(
    spec: str,
    checkpoint: str | Path | None = None,
    *,
    model_args: Mapping[str, object] | None = None,
    pretrained: bool = False,
    image_size: int | None = None,
    mean=None,
    std=None,
) -> Backbone:
    """Build a backbone from a spec.

    Parameters
    ----------
    spec : ``[timm:]NAME``, ``torchvision:NAME``, ``python:package.module:factory``, a
        layerprobe checkpoint (``layerprobe:PATH`` or a path), which rebuilds itself,
        ``hf:ORG/NAME`` / ``hf:FOLDER`` (a ``transformers`` vision model with its weights and
        image processor) or ``open_clip:ARCH`` (an open_clip image tower).
    checkpoint : weights to load (``.pt``/``.pth`` state dict, plain or nested under
        ``state_dict``/``model``, or ``.safetensors``); must fit exactly.
    pretrained : download the hub's pretrained weights (timm / torchvision). An ``hf:`` model's
        weights come with its folder or hub id, so it takes no ``pretrained``; an
        ``open_clip:`` tower takes its tag as ``model_args={"pretrained": TAG}``.
    image_size : input size in pixels; overrides the model's own (timm models are built
        with ``img_size`` where they take it). Resize = round(size / crop_pct).
    mean, std : per-channel normalisation overriding the model's own.
    model_args : keyword arguments of the model constructor / factory, as one mapping, so
        that any name works (a factory may take ``pretrained`` or ``device`` of its own); for
        ``hf:`` overrides of its config, for ``open_clip:`` arguments of ``create_model``.

    Without pretrained weights or a checkpoint the weights are a seeded random init, so the
    same arguments give the same weights (and model key) every time; a timm, torchvision,
    hf or open_clip model built that way says so once (:class:`RandomWeightsWarning`).
    """
    parsed = parse_spec(spec)
    model_kwargs = _check_model_args(model_args)
    if image_size is not None:  # before building: 0 would read as "not given" further down
        image_size = positive_int(image_size, "image size")
    if pretrained and checkpoint is not None:
        raise ConfigError("both --pretrained and --checkpoint given; pick one source of weights")
    pretrain_info: dict = {}
    readable = parsed.readable
    random_weights = False  # python: factories may load weights of their own: unknown
    if parsed.namespace == "layerprobe":
        if pretrained:
            raise ConfigError("--pretrained does not apply to a layerprobe checkpoint; drop it")
        contents = read_checkpoint(parsed.name)
        arch = parse_spec(contents.spec)
        kwargs = {**contents.model_kwargs, **model_kwargs}
        model = _build(arch, pretrained=False, image_size=image_size, kwargs=kwargs)
        load_weights(model, contents.state_dict, source=parsed.name, target=str(arch))
        base = contents.preprocess or _own_preprocess(arch, model, image_size)
        pretrain_info = contents.pretrain_info
    elif parsed.namespace in HUB_NAMESPACES:
        arch, kwargs = parsed, dict(model_kwargs)
        hub = _build_hub(parsed, pretrained=pretrained, image_size=image_size, kwargs=kwargs)
        model, base = hub.module, hub.preprocess
        random_weights = not hub.has_weights
        if hub.tag and not Path(hub.tag).expanduser().is_file():
            readable = f"{readable}.{hub.tag}"  # like timm's NAME.TAG
    else:
        arch, kwargs = parsed, dict(model_kwargs)
        model = _build(arch, pretrained=pretrained, image_size=image_size, kwargs=kwargs)
        base = _own_preprocess(arch, model, image_size)
        random_weights = not pretrained and arch.namespace in ("timm", "torchvision")
    name = readable
    if checkpoint is not None:
        load_weights(model, read_state_dict(checkpoint), source=str(checkpoint), target=str(arch))
        name = f"{name}-{Path(checkpoint).stem}"
    elif random_weights:
        note_random_weights(str(parsed))
    size = image_size if image_size is not None else _size_from_kwargs(kwargs)
    if size == base.input_size:  # keep the source's own resize (timm floors, a checkpoint stores)
        size = None
    preprocess = base.with_overrides(image_size=size, mean=mean, std=std)
    return Backbone(
        str(parsed),
        model,
        preprocess,
        name=name,
        arch_spec=str(arch),
        model_kwargs=kwargs,
        pretrain_info=pretrain_info,
    )


HUB_NAMESPACES = ("hf", "open_clip")


class RandomWeightsWarning(LayerprobeWarning):
    """A model built with random weights: its layers say nothing about a trained model."""


_NOTED_RANDOM: set[str] = set()


def note_random_weights(spec: str) -> None:
    """Say once per process, on stderr (a warning), that ``spec`` has random weights."""
    if spec in _NOTED_RANDOM:
        return
    _NOTED_RANDOM.add(spec)
    namespace = spec.partition(":")[0]
    how = {
        "open_clip": "add --model-arg pretrained=TAG or --checkpoint PATH",
        "hf": "save the weights in the folder (save_pretrained) or give --checkpoint PATH",
    }.get(namespace, "add --pretrained or --checkpoint PATH")
    warnings.warn(
        f"{spec} has random weights (no pretrained weights, no checkpoint): its layers describe "
        f"an untrained network; {how}",
        RandomWeightsWarning,
        stacklevel=3,
    )


def _build_hub(spec: Spec, *, pretrained: bool, image_size: int | None, kwargs: dict):
    if spec.namespace == "hf":
        if pretrained:
            raise ConfigError(
                "--pretrained does not apply to hf: models (their weights come with the folder "
                "or hub id); drop it"
            )
        return builders.build_hf(spec.name, kwargs=kwargs)
    return builders.build_open_clip(
        spec.name, kwargs=kwargs, image_size=image_size, pretrained_flag=pretrained
    )


def _check_model_args(model_args) -> dict:
    if model_args is None:
        return {}
    if not isinstance(model_args, Mapping) or not all(isinstance(k, str) for k in model_args):
        raise ConfigError(
            f"model arguments must be a mapping of names to values, got {type(model_args).__name__}"
        )
    return dict(model_args)


def _build(
    arch: Spec, *, pretrained: bool, image_size: int | None, kwargs: dict
) -> torch.nn.Module:
    if arch.namespace == "timm":
        return builders.build_timm(
            arch.name, pretrained=pretrained, image_size=image_size, kwargs=kwargs
        )
    if arch.namespace == "torchvision":
        return builders.build_torchvision(
            arch.name, pretrained=pretrained, image_size=image_size, kwargs=kwargs
        )
    if arch.namespace == "python":
        if pretrained:
            raise ConfigError(
                "--pretrained needs a timm or torchvision model; for python: models use --checkpoint"
            )
        return builders.build_python(arch.name, kwargs=kwargs)
    raise ConfigError(
        f"a checkpoint's architecture must be timm, torchvision or python, got {arch}"
    )


def _own_preprocess(arch: Spec, model: torch.nn.Module, image_size: int | None) -> Preprocess:
    if arch.namespace == "timm":
        return timm_preprocess(model)
    if arch.namespace == "torchvision":
        return torchvision_preprocess(arch.name)
    return default_preprocess(image_size or _native_size(model))


def _size_from_kwargs(kwargs: dict) -> int | None:
    """A model built with ``img_size`` / ``image_size`` takes inputs of that size."""
    for key in ("img_size", "image_size"):
        value = kwargs.get(key)
        if isinstance(value, (tuple, list)) and value:
            value = value[0]
        if isinstance(value, int):
            return value
    return None


def _native_size(model: torch.nn.Module) -> int | None:
    """The input size a model fixes itself (a timm patch embedding's, a torchvision ViT's)."""
    size = getattr(model, "image_size", None)  # torchvision VisionTransformer
    for module in model.modules():  # timm PatchEmbed (ViT patch_embed, Mixer stem)
        if size is None and hasattr(module, "patch_size") and hasattr(module, "img_size"):
            size = module.img_size
    if isinstance(size, (tuple, list)) and size:
        size = size[0]
    return size if isinstance(size, int) else None
