"""Building a ``torch.nn.Module`` from a spec: timm, torchvision, a user's Python factory, or
(optional extras) a Hugging Face ``transformers`` model or an open_clip image tower.

Random initialisation is seeded (seed 0, without touching the caller's RNG state), so the
same spec and arguments always give the same weights, hence the same model key.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from layerprobe.backbones.preprocess import Preprocess, hf_preprocess, open_clip_preprocess
from layerprobe.errors import (
    CheckpointError,
    ConfigError,
    EnvironmentProblem,
    UnknownNameError,
    did_you_mean,
    first_line,
)
from layerprobe.runtime.warn import LayerprobeWarning

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
    if pretrained:
        require_hugging_face("timm")

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


def require_hugging_face(hub: str) -> None:
    """:func:`require_network` for weights that ``hub`` downloads from the Hugging Face Hub,
    unless ``HF_HUB_OFFLINE`` says to use the Hugging Face cache only."""
    if not _hub_offline():
        require_network(
            "huggingface.co",
            hub,
            "set HF_HUB_OFFLINE=1 to use weights already in the Hugging Face cache",
        )


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
        require_network(
            "download.pytorch.org",
            "torchvision",
            f"put the weights file in {torch.hub.get_dir()}/checkpoints",
        )

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


# ---------------------------------------------------------------------- hub models (extras)
@dataclass
class HubModel:
    """A model from ``transformers`` or ``open_clip``: the image tower, its own preprocessing,
    whether trained weights were loaded, and a tag for its readable name (open_clip)."""

    module: torch.nn.Module
    preprocess: Preprocess
    has_weights: bool
    tag: str = ""


WEIGHT_FILE_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.index.json")


def require_extra(module: str, extra: str, what: str):
    """Import an optional package, or fail with one line naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise EnvironmentProblem(
            f"{what} need the optional package {module!r}, which is not installed here "
            f"({first_line(err)}); pip install 'layerprobe[{extra}]'"
        ) from err


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def _has_weight_files(folder: Path) -> bool:
    return any(any(folder.glob(pattern)) for pattern in WEIGHT_FILE_PATTERNS)


@contextmanager
def _quiet_loading(bars: bool = False):
    """Silence the hubs' own multi-line logging (unused-weight lists, "initialised randomly")
    while a model loads: layerprobe says what matters in one line. ``bars``: keep transformers'
    progress bars (a download from the hub); off, a local load shows none."""
    disabled = logging.root.manager.disable
    logging.disable(logging.WARNING)
    hf_logging = sys.modules.get("transformers.utils.logging")
    verbosity = hf_logging.get_verbosity() if hf_logging else None
    enabled = hf_logging.is_progress_bar_enabled() if hf_logging else False
    if hf_logging:
        hf_logging.set_verbosity_error()
        if not bars:
            hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the hubs' FutureWarnings about their own arguments
            yield
    finally:
        logging.disable(disabled)
        if hf_logging:
            hf_logging.set_verbosity(verbosity)
            if enabled and not bars:
                hf_logging.enable_progress_bar()


def build_hf(name: str, *, kwargs: dict, seed: int = INIT_SEED) -> HubModel:
    """A ``transformers`` vision model (``AutoModel``) from a hub id or a ``save_pretrained`` folder.

    ``kwargs`` override settings of the model's config (``--model-arg drop_path_rate=0``). A
    full CLIP / SigLIP model gives its ``vision_model``. A folder with a config but no weights
    file builds a seeded random init (``has_weights`` False). Cached hub models load without the
    network; others need huggingface.co, checked within seconds.
    """
    transformers = require_extra("transformers", "hf", "hf: models")
    what = f"hf:{name}"
    local = Path(name).is_dir()
    if local and not (Path(name) / "config.json").is_file():
        raise ConfigError(
            f"{what}: no config.json in the folder; save the model there with save_pretrained()"
        )
    kwargs = dict(kwargs)
    with _quiet_loading():
        config, files_only = _hf_config(transformers, name, kwargs, local=local)
    if str(getattr(config, "model_type", "")) == "vit_mae" and "mask_ratio" not in kwargs:
        config.mask_ratio = 0.0  # MAE masks 75 % of the patches by default: keep every one
    has_weights = not local or _has_weight_files(Path(name))
    with _quiet_loading(bars=not files_only):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # weights missing from a checkpoint are initialised too
            try:
                if has_weights:
                    model, info = transformers.AutoModel.from_pretrained(
                        name,
                        config=config,
                        local_files_only=files_only,
                        output_loading_info=True,
                        **_hf_dtype(transformers),
                    )
                else:
                    model, info = transformers.AutoModel.from_config(config), {}
            except (ValueError, KeyError) as err:  # a config class AutoModel does not know
                raise ConfigError(
                    f"{what} cannot be built by AutoModel: {first_line(err)}"
                ) from err
            except OSError as err:
                raise CheckpointError(
                    f"cannot load the weights of {what}: {first_line(err)}"
                ) from err
        try:
            processor = transformers.AutoImageProcessor.from_pretrained(
                name, local_files_only=files_only
            )
        except (OSError, ValueError, KeyError, ImportError):
            processor = None
    tower = getattr(model, "vision_model", None)
    module = tower if isinstance(tower, torch.nn.Module) else model
    vision_config = getattr(config, "vision_config", None) or config
    if processor is None:
        pre = hf_preprocess(None, vision_config)
        warnings.warn(
            f"{what} has no image processor saved; using its config's size {pre.input_size}px "
            f"and mean {list(pre.mean)}, std {list(pre.std)} (save the processor beside the "
            "model, or give --image-size / --mean / --std)",
            LayerprobeWarning,
            stacklevel=4,  # the caller of load()
        )
    else:
        pre = hf_preprocess(processor, vision_config)
    _warn_missing(what, info.get("missing_keys") or [], "vision_model." if module is tower else "")
    return HubModel(module, pre, has_weights)


def _hf_config(transformers, name: str, kwargs: dict, *, local: bool):
    """The config (with ``kwargs`` applied) and whether everything loads from local files."""
    what = f"hf:{name}"

    def read(files_only: bool):
        return transformers.AutoConfig.from_pretrained(
            name, local_files_only=files_only, return_unused_kwargs=True, **kwargs
        )

    try:
        config, unused = read(True)
        files_only = True
    except OSError as err:
        if local:
            raise ConfigError(
                f"{what}: no config.json in the folder ({first_line(err)}); save the model there "
                "with save_pretrained()"
            ) from err
        if _hub_offline():
            raise EnvironmentProblem(
                f"{what} is not in the Hugging Face cache and HF_HUB_OFFLINE is set; load it once "
                "with the network, or give a folder written by save_pretrained()"
            ) from err
        require_network(
            "huggingface.co", "transformers", "give a folder written by save_pretrained()"
        )
        try:
            config, unused = read(False)
        except OSError as err2:
            text = first_line(err2)
            if "not a valid model identifier" in str(err2) or "RepositoryNotFound" in repr(err2):
                raise UnknownNameError(
                    f"no Hugging Face model {name!r} (or it is private or gated); check the id, "
                    "e.g. hf:facebook/dinov2-small, or give a local folder"
                ) from err2
            raise EnvironmentProblem(f"cannot load {what} from the hub: {text}") from err2
        files_only = False
    except ValueError as err:  # a config.json transformers cannot read (unknown model_type)
        raise ConfigError(f"{what}: {first_line(err)}") from err
    if unused:
        key = sorted(unused)[0]
        raise ConfigError(
            f"{what}'s config has no setting {key!r}; --model-arg for hf: models overrides "
            f"settings of its config.json.{did_you_mean(key, list(config.to_dict()))}"
        )
    return config, files_only


def _hf_dtype(transformers) -> dict:
    """float32 weights whatever the checkpoint stores (newer transformers load 'auto')."""
    major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
    return {"dtype" if (major, minor) >= (4, 56) else "torch_dtype": torch.float32}


def _warn_missing(what: str, missing: list[str], prefix: str) -> None:
    """One line when the checkpoint left weights of the probed tower at their random init
    (a text tower's or an unused pooler's keys do not count)."""
    if prefix:
        missing = [k[len(prefix) :] for k in missing if k.startswith(prefix)]
    missing = [k for k in missing if not k.startswith("pooler.")]
    if missing:
        shown = ", ".join(missing[:4]) + (
            f", ... ({len(missing) - 4} more)" if len(missing) > 4 else ""
        )
        warnings.warn(
            f"{what}: {len(missing)} weights are not in the checkpoint and were initialised at "
            f"random ({shown})",
            LayerprobeWarning,
            stacklevel=5,  # the caller of load()
        )


OPEN_CLIP_SCHEMAS = ("local-dir:", "hf-hub:")


def build_open_clip(
    name: str,
    *,
    kwargs: dict,
    image_size: int | None,
    pretrained_flag: bool = False,
    seed: int = INIT_SEED,
) -> HubModel:
    """An open_clip image tower (``model.visual``) and its preprocessing.

    ``name`` is an architecture of ``open_clip.list_models()`` (or ``local-dir:FOLDER`` /
    ``hf-hub:ORG/NAME``); ``kwargs["pretrained"]`` is open_clip's ``pretrained`` (a tag of
    ``open_clip.list_pretrained_tags_by_model(name)`` or a weights file); without it the tower
    has seeded random weights, built offline. Other ``kwargs`` go to ``open_clip.create_model``;
    ``image_size`` becomes its ``force_image_size``. ``pretrained_flag`` (``--pretrained``)
    without a tag is refused with the architecture's tags: open_clip has no default tag.
    """
    open_clip = require_extra("open_clip", "openclip", "open_clip: models")
    what = f"open_clip:{name}"
    kwargs = dict(kwargs)
    tag = kwargs.pop("pretrained", None)
    if tag is not None and not isinstance(tag, str):
        raise ConfigError(f"{what}: pretrained must be a tag name or a weights file, got {tag!r}")
    tag = tag or None
    if image_size is not None:
        kwargs["force_image_size"] = image_size
    downloads = False
    if pretrained_flag and name.startswith(OPEN_CLIP_SCHEMAS):
        raise ConfigError(
            f"--pretrained does not apply to {what} (its weights come with the folder or hub "
            "repo); drop it"
        )
    if name.startswith("local-dir:"):
        folder = Path(name[len("local-dir:") :])
        if not (folder / "open_clip_config.json").is_file():
            raise ConfigError(
                f"{what}: no open_clip_config.json in {str(folder)!r}; give a folder holding "
                "open_clip_config.json (and optionally its weights)"
            )
        has_weights = _has_weight_files(folder)
    elif name.startswith("hf-hub:"):
        has_weights = downloads = True
    else:
        models = open_clip.list_models()
        if name not in models:
            raise UnknownNameError(
                f"unknown open_clip architecture {name!r}; see open_clip.list_models()."
                f"{did_you_mean(name, models)}"
            )
        has_weights = tag is not None
        if pretrained_flag and tag is None:
            tags = open_clip.list_pretrained_tags_by_model(name)
            raise ConfigError(
                f"{what} takes its weights by tag: --model-arg pretrained=TAG (tags: "
                f"{', '.join(tags) or 'none'})"
            )
        if tag is not None and not Path(tag).expanduser().is_file():
            tags = open_clip.list_pretrained_tags_by_model(name)
            if tag not in tags:
                raise UnknownNameError(
                    f"unknown pretrained tag {tag!r} for {what}; its tags: "
                    f"{', '.join(tags) or 'none'}.{did_you_mean(tag, tags)}"
                )
            downloads = True
    if downloads:
        require_hugging_face("open_clip")

    def create(**kw):
        return open_clip.create_model(name, pretrained=tag, **kw)

    with _quiet_loading():
        model = _create(create, kwargs, what, size_key=None, pretrained=downloads, seed=seed)
    visual = model.visual
    cfg = dict(getattr(visual, "preprocess_cfg", None) or {})
    return HubModel(visual, open_clip_preprocess(cfg), has_weights, tag=tag or "")
