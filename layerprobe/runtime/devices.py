"""Devices: the one list of device choices every stage offers, and the one way to resolve one."""

from __future__ import annotations

import glob
import os
import sys
from typing import TYPE_CHECKING

from layerprobe.errors import ConfigError, EnvironmentProblem

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda")  # auto = CUDA when a GPU is visible, else the CPU

# A Linux machine where torch can see a GPU has one of these: the NVIDIA driver (its version
# file, device nodes), ROCm's kernel driver, or WSL's GPU node.
GPU_NODES = ("/proc/driver/nvidia/version", "/dev/nvidia[0-9]*", "/dev/kfd", "/dev/dxg")


def no_gpu_here() -> bool:
    """True where no GPU can be visible to torch, found without importing torch (Linux: none
    of ``GPU_NODES`` exists); False where torch must be asked."""
    if not sys.platform.startswith("linux"):
        return False
    return not any(os.path.exists(p) if "*" not in p else glob.glob(p) for p in GPU_NODES)


def resolve_device_name(name: str) -> str:
    """The device a stage runs on, as a name (``cpu``, ``cuda``, ``cuda:INDEX``); the same
    answers and errors as :func:`resolve_device`, but ``cpu``, and ``auto`` on a machine with
    no GPU (:func:`no_gpu_here`), are answered without importing torch."""
    name = str(name)
    if name == "cpu" or (name == "auto" and no_gpu_here()):
        return "cpu"
    return str(resolve_device(name))


def resolve_device(name: str) -> torch.device:
    """The torch device a stage runs on.

    Parameters
    ----------
    name : ``auto`` (CUDA when torch sees a GPU, else the CPU), ``cpu``, ``cuda`` or
        ``cuda:INDEX``.

    Returns
    -------
    torch.device : of type ``cpu`` or ``cuda``.

    Raises
    ------
    ConfigError : a name that is none of these.
    EnvironmentProblem : ``cuda`` asked for on a machine where torch sees no GPU (or fewer
        GPUs than the index given).
    """
    import torch

    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name) if name in DEVICES or name.startswith("cuda:") else None
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {name!r}; use one of {', '.join(DEVICES)}")
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise EnvironmentProblem(
                f"--device {name}: no CUDA GPU here (torch sees none); use --device cpu (or auto)"
            )
        if dev.index is not None and dev.index >= count:
            raise EnvironmentProblem(
                f"--device {name}: torch sees {count} CUDA GPU(s), numbered from 0; give a "
                "smaller index, or --device cuda"
            )
    return dev
