"""Model ladders of the paper's three families (ViT, MLP-Mixer, ResNet), built through timm.

Each family climbs from CPU-tiny rungs for the 32 px built-in suite (``*-tiny32``,
``*-small32``: "32" is the image size) to the usual 224 px sizes (ViT-Ti/S/B/L in 16 px
patches, Mixer-S/B/L, ResNet-26/50/101). A rung is a timm architecture plus the keyword
arguments that shrink it, so its checkpoint rebuilds with plain ``timm.create_model``; the
small Mixers go through :func:`mlp_mixer` because timm's registered Mixers fix the patch size.

``resolve_model(name)`` also takes any timm spec (``timm:NAME`` or a bare timm name).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from layerprobe.backbones import builders
from layerprobe.backbones.spec import parse_spec
from layerprobe.errors import ConfigError, UnknownNameError, did_you_mean
from layerprobe.registry import Registry

MIXER_FACTORY = "python:layerprobe.pretrain.ladder:mlp_mixer"


@dataclass(frozen=True)
class Rung:
    """One model of a ladder.

    Attributes
    ----------
    name : the ladder name (``vit-tiny32``).
    family : ``vit``, ``mixer`` or ``resnet``.
    spec : the architecture spec (``timm:NAME`` or :data:`MIXER_FACTORY`).
    kwargs : constructor arguments that shape it (without ``num_classes``).
    image_size : the input size it is meant for (px).
    """

    name: str
    family: str
    spec: str
    kwargs: dict = field(default_factory=dict)
    image_size: int = 224


def _vit(name, size, patch, depth, width, heads) -> Rung:
    kwargs = dict(patch_size=patch, depth=depth, embed_dim=width, num_heads=heads)
    return Rung(name, "vit", "timm:vit_tiny_patch16_224", kwargs, size)


def _mixer(name, size, patch, blocks, width) -> Rung:
    kwargs = dict(patch_size=patch, num_blocks=blocks, embed_dim=width)
    return Rung(name, "mixer", MIXER_FACTORY, kwargs, size)


def _resnet(name, size, arch, layers=None, channels=None) -> Rung:
    kwargs = {}
    if layers is not None:
        kwargs = dict(layers=list(layers), channels=list(channels))
    return Rung(name, "resnet", f"timm:{arch}", kwargs, size)


# Every rung by name, in ladder order (`layerprobe pretrain --list-models` lists them).
LADDER: Registry[Rung] = Registry(
    "ladder model", hint="Run `layerprobe pretrain --list-models` to list them."
)
# fmt: off
for _rung in [
    # ViT: 32 px rungs in 8 / 4 px patches (16 / 64 tokens), then the paper's Ti/S/B/L at 224 px.
    _vit("vit-tiny32", 32, 8, 4, 96, 3),
    _vit("vit-small32", 32, 4, 6, 192, 3),
    _vit("vit-base32", 32, 4, 12, 384, 6),
    Rung("vit-ti16", "vit", "timm:vit_tiny_patch16_224"),
    Rung("vit-s16", "vit", "timm:vit_small_patch16_224"),
    Rung("vit-b16", "vit", "timm:vit_base_patch16_224"),
    Rung("vit-l16", "vit", "timm:vit_large_patch16_224"),
    # MLP-Mixer
    _mixer("mixer-tiny32", 32, 8, 4, 128),
    _mixer("mixer-small32", 32, 4, 6, 256),
    _mixer("mixer-base32", 32, 4, 12, 512),
    Rung("mixer-s16", "mixer", "timm:mixer_s16_224"),
    Rung("mixer-b16", "mixer", "timm:mixer_b16_224"),
    Rung("mixer-l16", "mixer", "timm:mixer_l16_224"),
    # ResNet (timm's ImageNet stem; one BasicBlock per stage at the bottom)
    _resnet("resnet-tiny32", 32, "resnet18", (1, 1, 1, 1), (32, 64, 128, 256)),
    _resnet("resnet-small32", 32, "resnet18", (2, 2, 2, 2), (64, 128, 256, 512)),
    _resnet("resnet-26", 224, "resnet26"),
    _resnet("resnet-50", 224, "resnet50"),
    _resnet("resnet-101", 224, "resnet101"),
]:
    LADDER.register(_rung.name, _rung)
# fmt: on


def mlp_mixer(
    *,
    num_classes: int = 1000,
    img_size: int = 224,
    patch_size: int = 16,
    num_blocks: int = 8,
    embed_dim: int = 512,
    **kwargs,
) -> torch.nn.Module:
    """timm's ``MlpMixer`` of any patch size (the registered ``mixer_*`` names fix it)."""
    from timm.models.mlp_mixer import MlpMixer

    return MlpMixer(
        num_classes=num_classes,
        img_size=img_size,
        patch_size=patch_size,
        num_blocks=num_blocks,
        embed_dim=embed_dim,
        **kwargs,
    )


@dataclass(frozen=True)
class Arch:
    """What to build: an architecture spec, its keyword arguments, the input size."""

    spec: str
    kwargs: dict
    image_size: int


def resolve_model(
    model: str,
    num_classes: int,
    *,
    image_size: int | None = None,
    model_args: dict | None = None,
) -> Arch:
    """A ladder name or timm spec as an :class:`Arch` with ``num_classes`` outputs.

    ``image_size`` overrides the rung's (or the timm model's default) input size; models with
    a patch embedding are built for it (``img_size``), ResNets take any size as they are.
    ``model_args`` are extra constructor arguments, over the rung's own.
    """
    extra = dict(model_args or {})
    if model in LADDER:
        rung = LADDER.get(model)
        size = image_size or rung.image_size
        kwargs = {**rung.kwargs, **extra, "num_classes": num_classes}
        if rung.family != "resnet":
            kwargs["img_size"] = size
        return Arch(rung.spec, kwargs, size)
    parsed = _timm_spec(model)
    size = image_size or _default_size(parsed.name)
    kwargs = {**extra, "num_classes": num_classes}
    return Arch(str(parsed), kwargs, size)


def build(arch: Arch, seed: int = 0) -> tuple[torch.nn.Module, Arch]:
    """The model of ``arch``, its initialisation seeded by ``seed``.

    Returns the model and the :class:`Arch` to record: for a timm spec, ``img_size`` is kept in
    the keyword arguments only where the model took it (so a checkpoint rebuilds exactly).
    """
    namespace, _, name = arch.spec.partition(":")
    if namespace == "python":
        model = builders.build_python(name, kwargs=dict(arch.kwargs), seed=seed)
        return model, arch
    sized = "img_size" in arch.kwargs
    model = builders.build_timm(
        name,
        pretrained=False,
        image_size=None if sized else arch.image_size,
        kwargs=dict(arch.kwargs),
        seed=seed,
    )
    kwargs = dict(arch.kwargs)
    if not sized and _built_for(model, arch.image_size):
        kwargs["img_size"] = arch.image_size
    return model, Arch(arch.spec, kwargs, arch.image_size)


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def list_models(num_classes: int = 120) -> list[dict]:
    """Every rung with its parameter count for a ``num_classes`` head (built on the meta
    device: nothing is allocated), in ladder order."""
    out = []
    for rung in LADDER.values():
        arch = resolve_model(rung.name, num_classes)
        with torch.device("meta"):
            model, _ = build(arch)
        out.append(
            {
                "name": rung.name,
                "family": rung.family,
                "params": count_params(model),
                "image_size": arch.image_size,
                "spec": rung.spec,
                "kwargs": rung.kwargs,
            }
        )
    return out


def _timm_spec(model: str):
    try:
        parsed = parse_spec(model)
    except UnknownNameError:
        parsed = None
    if parsed is None or parsed.namespace != "timm":
        raise UnknownNameError(
            f"unknown model {model!r} for pre-training; give a ladder name (see `layerprobe "
            f"pretrain --list-models`) or a timm name.{did_you_mean(model, LADDER)}"
        )
    import timm

    if not timm.is_model(parsed.name):
        names = list(LADDER) + timm.list_models()
        raise UnknownNameError(
            f"unknown model {model!r}; give a ladder name (see `layerprobe pretrain "
            f"--list-models`) or a timm name.{did_you_mean(parsed.name, names)}"
        )
    if "." in parsed.name:
        raise ConfigError(
            f"{model!r} names pretrained weights; pre-training starts from a random "
            "initialisation, so give the architecture without the '.tag'"
        )
    return parsed


def _default_size(name: str) -> int:
    import timm

    cfg = timm.models.get_pretrained_cfg(name) or None
    size = getattr(cfg, "input_size", None) if cfg is not None else None
    return int(size[-1]) if size else 224


def _built_for(model: torch.nn.Module, size: int) -> bool:
    """Whether a patch embedding of ``model`` was built for ``size`` px inputs."""
    for module in model.modules():
        img_size = getattr(module, "img_size", None)
        if hasattr(module, "patch_size") and img_size is not None:
            img_size = img_size[0] if isinstance(img_size, (tuple, list)) else img_size
            return img_size == size
    return False
