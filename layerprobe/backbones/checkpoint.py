"""The layerprobe checkpoint: weights plus everything needed to rebuild the model.

``layerprobe pretrain`` writes these; ``load(path)`` or ``load("layerprobe:PATH")`` reads one
back with no extra arguments. Two encodings, picked by the file suffix:

- ``.safetensors``: the state dict as tensors; the header metadata holds ``format``,
  ``format_version``, ``spec``, ``tensors_sha256``, and JSON strings ``model_kwargs``,
  ``preprocess``, ``pretrain_info``.
- ``.pt`` / ``.pth``: one dict with the same fields as Python objects, plus ``state_dict``.

``tensors_sha256`` (:func:`~layerprobe.backbones.weights.tensors_sha256`) is the hash of the
state dict's tensors when written; reading recomputes it and refuses a file whose tensors were
damaged since. Checkpoints written before the hash existed have none and load as before.
Files are written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from layerprobe.backbones.preprocess import Preprocess
from layerprobe.backbones.spec import parse_spec
from layerprobe.backbones.weights import HASH_KEY, check_tensors_sha256, read_file, tensors_sha256
from layerprobe.errors import CheckpointError, ConfigError
from layerprobe.runtime.atomic import atomic_path

FORMAT = "layerprobe-checkpoint"
FORMAT_VERSION = 1


@dataclass
class CheckpointContents:
    """What a layerprobe checkpoint holds."""

    spec: str
    state_dict: dict[str, torch.Tensor]
    model_kwargs: dict = field(default_factory=dict)
    preprocess: Preprocess | None = None
    pretrain_info: dict = field(default_factory=dict)


def save_checkpoint(
    path: str | Path,
    spec: str,
    state_dict: Mapping[str, torch.Tensor],
    *,
    model_kwargs: dict | None = None,
    preprocess: Preprocess | dict | None = None,
    pretrain_info: dict | None = None,
) -> Path:
    """Write a layerprobe checkpoint (``.safetensors``, or ``.pt``/``.pth``) and return its path.

    Parameters
    ----------
    spec : the architecture, e.g. ``timm:vit_tiny_patch16_224`` (not itself a checkpoint).
    state_dict : the model's weights.
    model_kwargs : keyword arguments the architecture is built with (JSON-able).
    preprocess : the preprocessing to store; None means the architecture's default.
    pretrain_info : pretraining knobs and upstream accuracy (JSON-able), e.g.
        ``{"upstream_accuracy": 0.71, "data_fraction": 0.1, "epochs": 10}``.
    """
    path = Path(path)
    parsed = parse_spec(spec)
    if parsed.namespace == "layerprobe":
        raise ConfigError(
            f"save_checkpoint needs an architecture spec, not another checkpoint ({spec!r})"
        )
    if isinstance(preprocess, dict):
        preprocess = Preprocess.from_dict(preprocess)
    fields = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spec": str(parsed),
        "model_kwargs": dict(model_kwargs or {}),
        "preprocess": preprocess.to_dict() if preprocess is not None else None,
        "pretrain_info": dict(pretrain_info or {}),
    }
    for key in ("model_kwargs", "pretrain_info"):
        _check_json(fields[key], key)
    # Copies: safetensors refuses tensors that share memory (tied weights) or are not contiguous.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    fields[HASH_KEY] = tensors_sha256(tensors)
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import save_file

            metadata = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
            save_file(tensors, str(tmp), metadata=metadata)
        else:
            torch.save({**fields, "state_dict": tensors}, tmp)
    return path


def read_checkpoint(path: str | Path) -> CheckpointContents:
    """Read a layerprobe checkpoint.

    Parameters
    ----------
    path : a file written by :func:`save_checkpoint`.

    Returns
    -------
    CheckpointContents
        The architecture spec, the weights (name -> tensor), the model arguments, the
        preprocessing and the pre-training record.

    Raises
    ------
    CheckpointError
        A plain weights file, a newer format, or metadata without an architecture; the message
        says what to do.
    """
    tensors, extra = read_file(path)
    if extra.get("format") != FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is a weights file without layerprobe metadata; give the architecture as "
            "MODEL and this file as --checkpoint"
        )
    version = int(extra.get("format_version", 0))
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} is a layerprobe checkpoint of format {version}, newer than this "
            f"layerprobe reads ({FORMAT_VERSION}); upgrade layerprobe"
        )
    if not extra.get("spec"):
        raise CheckpointError(
            f"layerprobe checkpoint {str(path)!r} names no architecture; rewrite it"
        )
    try:
        fields = {k: _decode(extra.get(k)) for k in ("model_kwargs", "preprocess", "pretrain_info")}
    except json.JSONDecodeError as err:
        raise CheckpointError(
            f"layerprobe checkpoint {str(path)!r} has corrupt metadata ({err})"
        ) from err
    state = tensors or extra.get("state_dict") or {}
    if HASH_KEY in extra:  # absent in checkpoints written before it existed
        check_tensors_sha256(path, state, extra[HASH_KEY])
    return CheckpointContents(
        spec=str(extra["spec"]),
        state_dict=dict(state),
        model_kwargs=fields["model_kwargs"] or {},
        preprocess=Preprocess.from_dict(fields["preprocess"]) if fields["preprocess"] else None,
        pretrain_info=fields["pretrain_info"] or {},
    )


def _decode(value):
    # safetensors metadata holds JSON strings; a .pt dict holds the objects themselves.
    return json.loads(value) if isinstance(value, str) else value


def _check_json(value, what: str) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{what} must be JSON-serialisable: {err}") from err
