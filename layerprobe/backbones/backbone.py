"""A loaded model with named probe points, pooled capture, and a cache key.

Build one with :func:`layerprobe.backbones.load`; the constructor is for models already in
memory (``Backbone("python:mine", model, preprocess)``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn

from layerprobe.backbones import pooling
from layerprobe.backbones.capture import run_sites
from layerprobe.backbones.families import PRE_LOGITS, Family, Site, conv_layout, describe_family
from layerprobe.backbones.preprocess import Preprocess
from layerprobe.backbones.weights import weights_sha256
from layerprobe.errors import ConfigError, UnknownNameError, did_you_mean, first_line
from layerprobe.layers import is_glob, match_item, split_layers

KINDS = {2: "vector", 3: "tokens", 4: "conv"}  # output ndim (with the batch dim) -> kind


@dataclass(frozen=True)
class ProbePoint:
    """One layer that can be probed.

    Attributes
    ----------
    name : stable layer name (``blocks.3``, ``layer2.1``, ``pre_logits``, or a module path).
    depth : position among the model's default probe points, in [0, 1].
    kind : raw output kind: "tokens" (B, L, D), "conv" (B, C, H, W) or "vector" (B, D).
    module : the module path read (``named_modules()`` name).
    hook : "output" (the module's output) or "input" (its input; ``pre_logits``).
    shape : raw output shape for one image at the preprocessing input size (no batch dim).
    prefix_tokens : leading non-patch tokens (class + register tokens) in a token map.
    class_token : whether the token map starts with a class token.
    layout : "NCHW" or "NHWC" (conv maps).
    pooling : a pooling method this point always uses (a head's own), else None.
    """

    name: str
    depth: float
    kind: str
    module: str = ""
    hook: str = "output"
    shape: tuple[int, ...] = ()
    prefix_tokens: int = 0
    class_token: bool = False
    layout: str = "NCHW"
    pooling: str | None = None

    @property
    def site(self) -> Site:
        return Site(self.module, self.hook)


@dataclass(frozen=True)
class _Reading:
    """What the dry run saw at one site: output shape (None if no tensor) and firing order."""

    shape: tuple[int, ...] | None
    order: int


class Backbone:
    """A model in eval mode, its preprocessing, probe points and pooled layer capture.

    Parameters
    ----------
    spec : normalised spec (``timm:NAME``, ``python:mod:fn``, ``layerprobe:PATH`` ...).
    model : the module; it is put in eval mode.
    preprocess : how images become inputs.
    name : readable model name used in the model key (default: from the spec).
    arch_spec : the architecture spec (differs from ``spec`` for checkpoints).
    model_kwargs : the arguments the model was built with.
    pretrain_info : pretraining knobs / upstream accuracy of a layerprobe checkpoint.
    """

    def __init__(
        self,
        spec: str,
        model: nn.Module,
        preprocess: Preprocess,
        *,
        name: str | None = None,
        arch_spec: str | None = None,
        model_kwargs: dict | None = None,
        pretrain_info: dict | None = None,
    ):
        self.spec = spec
        self.arch_spec = arch_spec or spec
        self.model = model.eval()
        self.preprocess = preprocess
        self.name = _safe_name(name or spec.rsplit(":", 1)[-1])
        self.model_kwargs = dict(model_kwargs or {})
        self.pretrain_info = dict(pretrain_info or {})
        self.family: Family = describe_family(model)
        self._selections: dict[tuple[str, ...], list[ProbePoint]] = {}
        self._weights_stamp: tuple | None = None
        self._weights_hash = ""

    def __repr__(self) -> str:
        return f"Backbone({self.spec!r}, input {self.preprocess.input_size}px)"

    # ------------------------------------------------------------------ identity
    @property
    def weights_sha256(self) -> str:
        """sha256 of the weights (state dict tensors in key order).

        Recomputed only when a tensor changed: torch bumps a tensor's ``_version`` on every
        in-place write (``load_state_dict``, an optimizer step), so the key follows the weights.
        """
        stamp = tuple((t.data_ptr(), t._version) for t in self.model.state_dict().values())
        if self._weights_stamp != stamp:
            self._weights_hash = weights_sha256(self.model)
            self._weights_stamp = stamp
        return self._weights_hash

    def model_key(self, pool: str = "auto") -> str:
        """``<readable name>-<12 hex>``: the hash covers weights, preprocessing, pooling and architecture."""
        payload = {
            "weights_sha256": self.weights_sha256,
            "preprocess": self.preprocess.to_dict(),
            "pool": self.canonical_pool(pool),
            "arch": self.arch_spec,
            "model_kwargs": self.model_kwargs,
        }
        text = json.dumps(payload, sort_keys=True, default=repr)
        return f"{self.name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"

    def canonical_pool(self, pool: str) -> str:
        """The pooling option with ``auto`` spelt out (options giving the same features agree)."""
        self._check_pool(pool)
        tokens = any(p.kind == "tokens" for p in self.probe_points)
        if pool == "auto":
            return self.family.auto_tokens if tokens else "gap"
        if pool in ("mean", "gap"):  # both are the patch-token mean on tokens, gap on conv maps
            return "mean" if tokens else "gap"
        return pool

    def with_resize(self, resize: str | None) -> Backbone:
        """The same model with images made square by ``resize`` (None: unchanged). The mode is
        part of the preprocessing, so of the model key. Shares the module with ``self``."""
        if resize is None or resize == self.preprocess.resize:
            return self
        out = copy.copy(self)
        out.preprocess = self.preprocess.with_overrides(resize=resize)
        return out

    def to(self, device: str | torch.device) -> Backbone:
        """Move the model to ``device``; returns self."""
        self.model.to(device)
        return self

    # ------------------------------------------------------------------ probe points
    @cached_property
    def _readings(self) -> dict[Site, _Reading]:
        """One dry run on a blank image: every module's output shape and firing order."""
        sites = [Site(name) for name, _ in self.model.named_modules() if name]
        if self.family.classifier is not None:
            sites.append(Site(self.family.classifier, "input"))
        readings: dict[Site, _Reading] = {}

        def on_read(site: Site, tensor: torch.Tensor | None) -> None:
            shape = tuple(tensor.shape[1:]) if tensor is not None else None
            readings[site] = _Reading(shape, len(readings))

        try:
            run_sites(self.model, self._blank_batch(), sites, on_read=on_read, stop_early=False)
        except (RuntimeError, AssertionError, ValueError) as err:  # the model's own input checks
            size = self.preprocess.input_size
            raise ConfigError(
                f"model {self.spec} fails on a (1, 3, {size}, {size}) input ({first_line(err)}); "
                "check --image-size and --model-arg values"
            ) from err
        return readings

    @cached_property
    def probe_points(self) -> list[ProbePoint]:
        """The default probe points in depth order (depth = i / (n - 1))."""
        found = []
        for c in self.family.candidates:
            reading = self._readings.get(c.site)
            kind = _kind(reading.shape) if reading is not None else None
            if kind is not None:
                found.append((c, reading, kind))
        found.sort(key=lambda crk: crk[1].order)  # depth follows the forward pass, not registration
        n = len(found)
        return [
            ProbePoint(
                name=c.name,
                depth=i / (n - 1) if n > 1 else 1.0,
                kind=kind,
                module=c.site.module,
                hook=c.site.hook,
                shape=r.shape,
                prefix_tokens=c.prefix_tokens if kind == "tokens" else 0,
                class_token=c.class_token and kind == "tokens",
                layout=_layout(r.shape, c.layout),
                pooling=c.pooling,
            )
            for i, (c, r, kind) in enumerate(found)
        ]

    @cached_property
    def layer_names(self) -> list[str]:
        """Every selectable name: default probe points, then module paths with poolable outputs."""
        names = [p.name for p in self.probe_points]
        for site, reading in self._readings.items():
            if site.hook == "output" and _kind(reading.shape) and site.module not in names:
                names.append(site.module)
        return names

    def select(self, layers: str | list[str] = "all") -> list[ProbePoint]:
        """Probe points for ``layers``, in depth order.

        ``layers`` is a selection as :mod:`layerprobe.layers` defines it ("all", names, globs).
        Any ``named_modules()`` path with a tensor output is accepted too.
        """
        items = tuple(split_layers(layers))
        if items not in self._selections:  # capture() selects once per batch: remember answers
            self._selections[items] = self._select(items)
        return list(self._selections[items])

    def _select(self, items: tuple[str, ...]) -> list[ProbePoint]:
        if not items:
            raise ConfigError(
                "no layers given; use 'all', names like blocks.0, or globs like 'blocks.*'"
            )
        chosen: dict[str, ProbePoint] = {}
        for item in items:
            for name in self._expand(item):
                chosen.setdefault(name, self._point(name))
        order = {site: r.order for site, r in self._readings.items()}
        return sorted(chosen.values(), key=lambda p: (p.depth, order.get(p.site, 0)))

    def _expand(self, item: str) -> list[str]:
        defaults = [p.name for p in self.probe_points]
        if item == "all":
            return defaults
        if is_glob(item):
            hits = match_item(item, self.layer_names)
            if not hits:
                raise UnknownNameError(
                    f"layer pattern {item!r} matches no layer of {self.spec}; default layers: "
                    f"{_preview(defaults)}"
                )
            return hits
        if item in self.layer_names:
            return [item]
        known = {name for name, _ in self.model.named_modules() if name}
        if item in known:
            raise ConfigError(
                f"layer {item!r} of {self.spec} gives no poolable tensor (it is not run by forward, "
                "or its output is not (B, D), (B, L, D) or (B, C, H, W)); pick another layer"
            )
        raise UnknownNameError(
            f"unknown layer {item!r} for {self.spec}.{did_you_mean(item, self.layer_names)} "
            f"Run `layerprobe layers {self.spec}` to list them."
        )

    def _point(self, name: str) -> ProbePoint:
        for p in self.probe_points:
            if p.name == name:
                return p
        return self._module_point(name)

    def _module_point(self, module: str) -> ProbePoint:
        """A probe point for any module path: depth of the last default point that ran before it."""
        reading = self._readings[Site(module)]
        depth = 0.0
        for p in self.probe_points:
            if self._readings[p.site].order <= reading.order:
                depth = p.depth
        kind = _kind(reading.shape)
        # A token map as long as the blocks' maps carries the same prefix tokens.
        block = next((p for p in self.probe_points if p.kind == "tokens" and p.class_token), None)
        inherits = kind == "tokens" and block is not None and reading.shape[0] == block.shape[0]
        return ProbePoint(
            name=module,
            depth=depth,
            kind=kind,
            module=module,
            shape=reading.shape,
            prefix_tokens=block.prefix_tokens if inherits else 0,
            class_token=inherits,
            layout=_layout(reading.shape, self.family.layout),
        )

    # ------------------------------------------------------------------ capture
    def layer_pooling(self, layers: str | list[str], pool: str = "auto") -> dict[str, str]:
        """The pooling method each layer uses under ``pool`` (e.g. patch_embed: mean under cls)."""
        self._check_pool(pool)
        return {p.name: self._method(p, pool) for p in self.select(layers)}

    def pooled_widths(self, layers: str | list[str], pool: str = "auto") -> dict[str, int]:
        """Pooled width D of each layer, from the dry run's shapes."""
        self._check_pool(pool)
        return {
            p.name: pooling.width(self._method(p, pool), p.shape, p.layout)
            for p in self.select(layers)
        }

    def capture(
        self, x: torch.Tensor, layers: str | list[str], pool: str = "auto"
    ) -> dict[str, torch.Tensor]:
        """Pooled features of ``layers`` from ONE forward pass that stops after the deepest one.

        Parameters
        ----------
        x : (B, 3, S, S) preprocessed images; the model is moved to x's device if needed.
        layers : see :meth:`select`.
        pool : "auto", "cls", "mean", "cls+mean" or "gap".

        Returns
        -------
        {layer: (B, D) float32 tensor on x's device}, in depth order.
        """
        self._check_pool(pool)
        points = self.select(layers)
        methods = {p.name: self._method(p, pool) for p in points}
        self._follow(x.device)
        by_site: dict[Site, list[ProbePoint]] = {}
        for p in points:
            by_site.setdefault(p.site, []).append(p)
        feats: dict[str, torch.Tensor] = {}

        def on_read(site: Site, tensor: torch.Tensor | None) -> None:
            for p in by_site[site]:
                pooled = pooling.apply(
                    methods[p.name], tensor, prefix_tokens=p.prefix_tokens, layout=p.layout
                )
                # A copy: a view of a layer's output must not see later in-place updates.
                feats[p.name] = pooled.to(torch.float32, copy=True)

        missed = run_sites(self.model, x, by_site, on_read=on_read)
        if missed:
            raise RuntimeError(
                f"layers at {sorted(s.module for s in missed)} did not run in forward"
            )
        return {p.name: feats[p.name] for p in points}

    # ------------------------------------------------------------------ helpers
    def _check_pool(self, pool: str) -> None:
        pooling.check_pool(pool)
        if pool in ("cls", "cls+mean") and not self.family.class_token:
            raise ConfigError(
                f"model {self.spec} has no class token, so pooling {pool!r} is not available; "
                "use auto, mean or gap"
            )

    def _method(self, point: ProbePoint, pool: str) -> str:
        if point.pooling:
            return point.pooling
        return pooling.resolve(
            pool, point.kind, class_token=point.class_token, auto_tokens=self.family.auto_tokens
        )

    def _blank_batch(self) -> torch.Tensor:
        param = next(self.model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        size = self.preprocess.input_size
        return torch.zeros(1, 3, size, size, device=device, dtype=dtype)

    def _follow(self, device: torch.device) -> None:
        param = next(self.model.parameters(), None)
        if param is not None and param.device != device:
            self.model.to(device)


def _kind(shape: tuple[int, ...] | None) -> str | None:
    return KINDS.get(len(shape) + 1) if shape is not None else None


def _layout(shape: tuple[int, ...], prior: str) -> str:
    return conv_layout(shape, prior) if len(shape) == 3 else "NCHW"


def _preview(names: list[str], n: int = 8) -> str:
    return ", ".join(names[:n]) + (f", ... ({len(names) - n} more)" if len(names) > n else "")


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name).strip("._") or "model"


__all__ = ["Backbone", "ProbePoint", "PRE_LOGITS"]
