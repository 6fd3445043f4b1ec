"""``ModelConfig``: everything that says which model to build, in one typed place.

The Python API, the CLI (``--model``, ``--checkpoint``, ``--model-arg k=v`` …) and job files
build one of these; the model's own constructor arguments live in ``model_args``, a mapping of
their own, so a factory argument may have any name (``pretrained``, ``device``, ``layers``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from layerprobe.errors import ConfigError


@dataclass
class ModelConfig:
    """Which model, with which weights and input preprocessing.

    Attributes
    ----------
    spec : ``[timm:]NAME``, ``torchvision:NAME``, ``python:pkg.mod:factory`` or a layerprobe
        checkpoint path.
    checkpoint : weights to load into it (.pt/.pth/.safetensors).
    model_args : keyword arguments of the model constructor or factory.
    pretrained : the hub's pretrained weights (timm, torchvision).
    image_size : input size in pixels (overrides the model's).
    mean, std : per-channel normalisation (overrides the model's).
    """

    spec: str
    checkpoint: str | None = None
    model_args: Mapping[str, object] = field(default_factory=dict)
    pretrained: bool = False
    image_size: int | None = None
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.spec, str | Path) or not str(self.spec).strip():
            raise ConfigError("a model spec is required, e.g. vit_small_patch16_224")
        self.spec = str(self.spec)
        if self.checkpoint is not None:
            self.checkpoint = str(self.checkpoint)
        if not isinstance(self.model_args, Mapping):
            raise ConfigError(
                f"model_args must be a mapping of names to values, got {self.model_args!r}"
            )
        self.model_args = dict(self.model_args)

    def load(self):
        """The :class:`~layerprobe.backbones.Backbone` this config describes."""
        from layerprobe.backbones.factory import load

        return load(
            self.spec,
            self.checkpoint,
            model_args=self.model_args,
            pretrained=self.pretrained,
            image_size=self.image_size,
            mean=self.mean,
            std=self.std,
        )


def as_model_config(model) -> ModelConfig:
    """A spec string or path as a :class:`ModelConfig`; a ModelConfig as it is.

    Parameters
    ----------
    model : a :class:`ModelConfig`, a model spec (``"timm:NAME"``, ``"python:pkg.mod:fn"`` …)
        or a layerprobe checkpoint path.

    Returns
    -------
    ModelConfig
        ``model`` itself, or a config with that spec and no other settings.
    """
    return model if isinstance(model, ModelConfig) else ModelConfig(str(model))
