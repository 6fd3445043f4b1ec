"""Building a ``torch.nn.Module`` from a spec: timm, torchvision, or a user's Python factory.

Random initialisation is seeded (seed 0, without touching the caller's RNG state), so the
same spec and arguments always give the same weights, hence the same model key.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from pathlib import Path

import torch

from layerprobe.errors import (
    ConfigError,
    EnvironmentProblem,
    UnknownNameError,
    did_you_mean,
    first_line,
)

INIT_SEED = 0
# What a model constructor raises for a bad keyword value (a user error when kwargs were given).
BAD_VALUE_ERRORS = (ValueError, AssertionError, RuntimeError, ArithmeticError, IndexError)


def build_timm(
    name: str, *, pretrained: bool, image_size: int | None, kwargs: dict, seed: int = INIT_SEED
) -> torch.nn.Module:
    """``timm.create_model(name, pretrained, **kwargs)``, with ``img_size`` where the model takes it.

    ``seed`` seeds the random initialisation (pre-training runs pass their own)."""
    import timm

    if not timm.is_model(name):
        raise UnknownNameError(
            f"unknown timm model {name!r}; see `timm.list_models()`.{did_you_mean(name, timm.list_models())}"
        )
    arch, _, tag = name.partition(".")
    if tag and name not in (tags := timm.list_pretrained(f"{arch}.*")):
        raise UnknownNameError(
            f"unknown pretrained tag {tag!r} for timm model {arch!r}.{did_you_mean(name, tags)}"
        )
    kwargs = dict(kwargs)
    if image_size is not None:
        kwargs["img_size"] = image_size
    if pretrained and not os.environ.get("HF_HUB_OFFLINE"):
        require_network("huggingface.co", "timm", "set HF_HUB_OFFLINE=1 to use weights already "
                        "in the Hugging Face cache")  # fmt: skip

    def create(**kw):
        return timm.create_model(name, pretrained=pretrained, **kw)

    return _create(
        create,
        kwargs,
        f"timm:{name}",
        size_key="img_size" if image_size else None,
        pretrained=pretrained,
        seed=seed,
    )


NETWORK_TIMEOUT_S = 3.0


def require_network(host: str, hub: str, offline_hint: str) -> None:
    """Fail within seconds, with one line, when ``host`` cannot be reached: the hubs would
    otherwise retry for about a minute before giving up."""
    import socket

    try:
        socket.create_connection((host, 443), timeout=NETWORK_TIMEOUT_S).close()
    except OSError as err:
        raise EnvironmentProblem(
            f"cannot reach {host} for the {hub} pretrained weights ({err.strerror or err}); check "
            f"the network, or {offline_hint}, or pass the weights with --checkpoint"
        ) from err


def _torchvision_cached(name: str) -> bool:
    """Whether the default weights of a torchvision model are already in the torch hub cache."""
    import torchvision

    try:
        url = torchvision.models.get_model_weights(name).DEFAULT.url
    except (ValueError, KeyError, AttributeError):
        return False
    return (Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name).exists()


def build_torchvision(
    name: str, *, pretrained: bool, image_size: int | None, kwargs: dict
) -> torch.nn.Module:
    """``torchvision.models.get_model(name, weights=...)``, with ``image_size`` where the model takes it."""
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    if name not in names:
        raise UnknownNameError(
            f"unknown torchvision classification model {name!r}.{did_you_mean(name, names)}"
        )
    kwargs = dict(kwargs)
    if image_size is not None:
        kwargs["image_size"] = image_size
    if pretrained and not _torchvision_cached(name):
        require_network("download.pytorch.org", "torchvision", "put the weights file in "
                        f"{torch.hub.get_dir()}/checkpoints")  # fmt: skip

    def create(**kw):
        return torchvision.models.get_model(name, weights="DEFAULT" if pretrained else None, **kw)

    return _create(
        create,
        kwargs,
        f"torchvision:{name}",
        size_key="image_size" if image_size else None,
        pretrained=pretrained,
    )


def build_python(target: str, *, kwargs: dict, seed: int = INIT_SEED) -> torch.nn.Module:
    """Call ``factory(**kwargs)`` from ``package.module:factory`` (importable from the cwd too);
    ``seed`` seeds the random initialisation."""
    module_name, _, factory_name = target.rpartition(":")
    # Like `python -m`: the current folder's packages are importable.
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise UnknownNameError(
            f"cannot import {module_name!r} for python:{target} ({err}); check the module path "
            "and that it is importable from the current folder or PYTHONPATH"
        ) from err
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise UnknownNameError(
            f"module {module_name!r} has no callable {factory_name!r}.{did_you_mean(factory_name, names)}"
        )

    _check_arguments(factory, kwargs, f"python:{target}")
    model = _create(factory, kwargs, f"python:{target}", size_key=None, pretrained=False, seed=seed)
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(
            f"python:{target} returned a {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def _check_arguments(factory, kwargs: dict, what: str) -> None:
    """Name the factory's parameters when it is given one it does not take."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins and C extensions: let the call decide
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        names = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
        raise ConfigError(
            f"{what} takes no argument {unknown[0]!r}.{did_you_mean(unknown[0], names)} Its "
            f"parameters: {', '.join(names) or 'none'}"
        )


def _create(
    create,
    kwargs: dict,
    what: str,
    *,
    size_key: str | None,
    pretrained: bool,
    seed: int = INIT_SEED,
):
    """Call ``create(**kwargs)`` under a fixed seed; turn user-caused failures into UserErrors."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            return create(**kwargs)
        except TypeError as err:
            # A size override the architecture does not take: build it at its own size.
            if size_key and size_key in str(err):
                kwargs = {k: v for k, v in kwargs.items() if k != size_key}
                return _create(
                    create, kwargs, what, size_key=None, pretrained=pretrained, seed=seed
                )
            if kwargs:
                raise ConfigError(
                    f"{what} does not accept these arguments {kwargs}: {first_line(err)}"
                ) from err
            raise
        except Exception as err:  # noqa: BLE001 - sorted below; bugs without `pretrained` re-raise
            if not pretrained:
                # Bad values (depth=-1, patch_size=0, ...) fail deep inside the constructor.
                if kwargs and isinstance(err, BAD_VALUE_ERRORS):
                    raise ConfigError(
                        f"{what} cannot be built with {kwargs}: {first_line(err)}"
                    ) from err
                raise
            if isinstance(err, RuntimeError) and "no pretrained weights" in str(err).lower():
                raise ConfigError(f"{what} has no pretrained weights; drop --pretrained") from err
            if isinstance(err, RuntimeError) and "state_dict" in str(err):
                raise ConfigError(
                    f"pretrained weights of {what} do not fit the arguments {kwargs}: {first_line(err)}"
                ) from err
            if isinstance(err, (ValueError, KeyError)):
                raise ConfigError(f"{what} with --pretrained: {first_line(err)}") from err
            raise EnvironmentProblem(
                f"could not download pretrained weights for {what} ({type(err).__name__}: "
                f"{first_line(err)}); check the network (or HF_HUB_OFFLINE / the torch hub cache), "
                "or pass the weights with --checkpoint"
            ) from err
