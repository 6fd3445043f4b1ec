"""Reading weights from files, fitting them into a model, and hashing them.

Accepted files: ``.safetensors``, or a PyTorch ``.pt``/``.pth`` holding a state dict, plain or
nested under ``state_dict`` / ``model`` (DataParallel's ``module.`` prefix is removed).
Loading is strict: a checkpoint that does not fit raises :class:`CheckpointError` naming the
missing keys, the unexpected keys and the shape mismatches.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch

from layerprobe.errors import CheckpointError

NESTED_KEYS = ("state_dict", "model", "model_state_dict")
SHOW_KEYS = 6  # keys named per category in a mismatch message
HASH_KEY = "tensors_sha256"  # where a layerprobe checkpoint keeps tensors_sha256 of its state dict


def read_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a weights file.

    Returns
    -------
    tensors : every tensor in the file (safetensors) or the raw object's tensors (``.pt``).
    extra : the safetensors metadata, or the non-tensor entries of a ``.pt`` dict.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(
            f"checkpoint {str(path)!r} is a folder; give the weights file (.pt/.pth/.safetensors)"
        )
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist; check the path")
    if path.suffix.lower() == ".safetensors":
        return _read_safetensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's to fix
        # torch's first line for these is advice to pass weights_only=False: unsafe, so not ours.
        why = (
            "not a PyTorch file, or it pickles objects other than tensors"
            if isinstance(err, pickle.UnpicklingError)
            else f"{type(err).__name__}: {_first_line(err)}"
        )
        if _is_zip(path) and not isinstance(err, pickle.UnpicklingError):
            raise CheckpointError(
                f"checkpoint {str(path)!r} is damaged or incomplete (cut short while written or "
                f"copied?) and cannot be read ({_first_sentence(err)}); delete it and make it again "
                "(re-run the command that wrote it), or restore a good copy"
            ) from err
        raise CheckpointError(
            f"cannot read {str(path)!r} as a PyTorch checkpoint ({why}); "
            "give a .pt/.pth state dict or a .safetensors file"
        ) from err
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{str(path)!r} holds a {type(obj).__name__}, not a state dict; save model.state_dict()"
        )
    return _split_tensors(obj)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in a weights file (plain, or nested under state_dict/model)."""
    tensors, extra = read_file(path)
    state = _unnest(tensors, extra)
    if HASH_KEY in extra:  # a layerprobe checkpoint given as plain weights: still checked
        check_tensors_sha256(path, state, extra[HASH_KEY])
    if not state:
        keys = ", ".join(sorted(map(str, extra))[:10]) or "none"
        raise CheckpointError(
            f"no state dict found in {str(path)!r} (top-level keys: {keys}); "
            f"save model.state_dict(), plain or under one of {', '.join(NESTED_KEYS)}"
        )
    return _strip_prefix(state, "module.")


def load_weights(
    model: torch.nn.Module, state: dict[str, torch.Tensor], *, source: str, target: str
) -> None:
    """Copy ``state`` into ``model`` strictly; say exactly what does not fit."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: {tuple(state[k].shape)} in file vs {tuple(expected[k].shape)} in model"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:
        parts = [
            _listing("missing keys", missing),
            _listing("unexpected keys", unexpected),
            _listing("shape mismatches", mismatched),
        ]
        raise CheckpointError(
            f"checkpoint {source!r} does not fit model {target!r}: "
            f"{'; '.join(p for p in parts if p)}; check the model name and --model-arg values"
        )
    model.load_state_dict(state, strict=True)


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 of the model's state dict: each tensor's key, dtype, shape and bytes, in key order."""
    return _hash_tensors(model.state_dict().items())


def tensors_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 of a state dict's tensors in sorted key order (each key, dtype, shape and bytes):
    the hash a layerprobe checkpoint stores of its own tensors, independent of dict order."""
    return _hash_tensors(sorted(state.items()))


def check_tensors_sha256(path: str | Path, state: Mapping[str, torch.Tensor], expected) -> None:
    """Raise :class:`CheckpointError` naming ``path`` when ``state``'s :func:`tensors_sha256` is
    not ``expected`` (the hash stored when the file was written): its bytes were damaged."""
    if not isinstance(expected, str) or tensors_sha256(state) != expected:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is damaged: its tensors do not match the sha256 stored when "
            "it was written; delete it and make it again (re-run the command that wrote it), or "
            "restore a good copy"
        )


def _hash_tensors(items) -> str:
    h = hashlib.sha256()
    for key, tensor in items:
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{key}|{t.dtype}|{tuple(tensor.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy())
    return h.hexdigest()


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iter
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(
            f"cannot read {str(path)!r} as safetensors ({type(err).__name__}: {_first_line(err)}); "
            "is the file complete?"
        ) from err
    return tensors, metadata


def _unnest(tensors: dict, extra: dict) -> dict[str, torch.Tensor]:
    if tensors:
        return tensors
    for key in NESTED_KEYS:
        inner = extra.get(key)
        if isinstance(inner, dict):
            found = _unnest(*_split_tensors(inner))
            if found:
                return found
    return {}


def _split_tensors(obj: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """A dict's tensor entries, and the rest."""
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    return tensors, {k: v for k, v in obj.items() if k not in tensors}


def _strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _listing(what: str, items: list[str]) -> str:
    if not items:
        return ""
    shown = ", ".join(items[:SHOW_KEYS])
    more = f", ... ({len(items) - SHOW_KEYS} more)" if len(items) > SHOW_KEYS else ""
    return f"{len(items)} {what} ({shown}{more})"


def _is_zip(path: Path) -> bool:
    """Whether ``path`` starts like a zip file (what ``torch.save`` writes)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _first_sentence(err: BaseException) -> str:
    return _first_line(err).split(". ")[0].rstrip(".")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else ""
