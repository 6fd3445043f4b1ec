"""Model specs: ``[namespace:]name``.

``timm:NAME`` (the default namespace: ``vit_small_patch16_224`` alone works),
``torchvision:NAME``, ``python:package.module:factory`` and ``layerprobe:PATH`` (a checkpoint
written by ``save_checkpoint``; a bare path to such a file works too).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from layerprobe.errors import ConfigError, UnknownNameError, did_you_mean

NAMESPACES = ("timm", "torchvision", "python", "layerprobe")
DEFAULT_NAMESPACE = "timm"
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


@dataclass(frozen=True)
class Spec:
    """A parsed model spec."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}:{self.name}"

    @property
    def readable(self) -> str:
        """A short human name: the model name, the factory name, or the checkpoint file stem
        (a run folder's name for its ``checkpoint.pt``, so that runs are told apart)."""
        if self.namespace == "python":
            return self.name.rsplit(":", 1)[-1]
        if self.namespace == "layerprobe":
            path = Path(self.name)
            if path.stem == "checkpoint" and path.parent.name:
                return path.parent.name
            return path.stem
        return self.name


def parse_spec(text: str) -> Spec:
    """Parse and normalise a model spec (see module docstring)."""
    text = str(text).strip()
    if not text:
        raise ConfigError(
            "empty model name; give a timm name (e.g. vit_small_patch16_224) or NAMESPACE:NAME"
        )
    namespace, sep, rest = text.partition(":")
    if sep and namespace in NAMESPACES:
        if not rest:
            raise ConfigError(f"model spec {text!r} has no name after '{namespace}:'")
        if namespace == "layerprobe":
            return Spec("layerprobe", str(Path(rest).expanduser().resolve()))
        if namespace == "python":
            _check_python_target(rest)
        return Spec(namespace, rest)
    path = Path(text).expanduser()
    if path.is_file() or (not sep and (path.suffix.lower() in CHECKPOINT_SUFFIXES or "/" in text)):
        return Spec("layerprobe", str(path.resolve()))
    if sep:
        raise UnknownNameError(
            f"unknown model namespace {namespace!r} in {text!r}; namespaces are "
            f"{', '.join(NAMESPACES)} (or give a checkpoint path).{did_you_mean(namespace, NAMESPACES)}"
        )
    return Spec(DEFAULT_NAMESPACE, text)


def _check_python_target(target: str) -> None:
    module, sep, factory = target.rpartition(":")
    if not sep or not module or not factory:
        raise ConfigError(
            f"python model spec needs 'python:package.module:factory', got 'python:{target}'"
        )
