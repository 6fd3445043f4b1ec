"""Model specs: ``[namespace:]name``.

``timm:NAME`` (the default namespace: ``vit_small_patch16_224`` alone works),
``torchvision:NAME``, ``python:package.module:factory``, ``layerprobe:PATH`` (a checkpoint
written by ``save_checkpoint``; a bare path to such a file works too), ``hf:ORG/NAME`` or
``hf:FOLDER`` (a Hugging Face ``transformers`` vision model: a hub id or a ``save_pretrained``
folder) and ``open_clip:ARCH`` (an open_clip image tower; ``open_clip:local-dir:FOLDER`` and
``open_clip:hf-hub:ORG/NAME`` as open_clip spells them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from layerprobe.errors import ConfigError, UnknownNameError, did_you_mean

NAMESPACES = ("timm", "torchvision", "python", "layerprobe", "hf", "open_clip")
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
        """A short human name: the model name, the factory name, the checkpoint file stem
        (a run folder's name for its ``checkpoint.pt``, so that runs are told apart), or the
        last part of a hub id or folder (``hf:``, ``open_clip:``)."""
        if self.namespace == "python":
            return self.name.rsplit(":", 1)[-1]
        if self.namespace == "layerprobe":
            path = Path(self.name)
            if path.stem == "checkpoint" and path.parent.name:
                return path.parent.name
            return path.stem
        if self.namespace in ("hf", "open_clip"):  # a hub id's or a folder's last part
            return self.name.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1] or self.name
        return self.name


def parse_spec(text: str) -> Spec:
    """Parse and normalise a model spec (the forms are listed in the module docstring).

    Parameters
    ----------
    text : ``NAMESPACE:NAME`` (``timm``, ``torchvision``, ``hf``, ``open_clip``, ``python``,
        ``layerprobe``) or a bare name (a timm model, or a checkpoint path).

    Returns
    -------
    Spec
        The namespace and the normalised name (a resolved path for checkpoints).

    Raises
    ------
    ConfigError
        An empty spec, a namespace without a name, or a malformed ``python:`` target.
    """
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
        if namespace == "hf":
            return Spec("hf", _hf_source(rest))
        if namespace == "open_clip" and rest.startswith("local-dir:"):
            folder = Path(rest[len("local-dir:") :]).expanduser()
            return Spec("open_clip", f"local-dir:{folder.resolve() if folder.is_dir() else folder}")
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


def _hf_source(name: str) -> str:
    """A local folder as its absolute path (so the spec names it wherever it is run from); a
    hub id (``ORG/NAME`` or ``NAME``) as it is. Something that can only be a path but is not a
    folder is an error: there is no hub id to fall back to."""
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve())
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name
    if looks_like_path or path.exists():
        raise ConfigError(
            f"hf:{name} is not a folder; give a folder written by save_pretrained() "
            "(config.json and weights) or a hub id like facebook/dinov2-small"
        )
    return name
