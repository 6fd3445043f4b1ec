"""One batch of images -> pooled features of every requested layer, ready to store.

One forward pass per batch (``Backbone.capture`` captures every requested layer and does no
work past the deepest one), pooled on the device, cast to the storage dtype there, and copied
to the host in one transfer.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from layerprobe.errors import ConfigError, DataError
from layerprobe.extract.config import FEATURE_DTYPES

DTYPES = {name: getattr(torch, name) for name in FEATURE_DTYPES}
FLOAT16_MAX = 65504.0


class BatchFeatures:
    """Computes ``{layer: (B, D) numpy array}`` for a batch of preprocessed images.

    Parameters
    ----------
    backbone : a loaded :class:`layerprobe.backbones.Backbone`; its model is moved to ``device``.
    layers : layer names, in depth order.
    pool : pooling name passed to ``Backbone.capture`` (``auto``, ``cls``, ``mean``, ...).
    device : where the forward pass runs.
    dtype : ``"float16"`` or ``"float32"``, the dtype of the stored features.
    amp : ``"bf16"`` runs the forward under bfloat16 autocast; ``"none"`` in full precision.
    """

    def __init__(
        self, backbone, layers: list[str], pool: str, device: torch.device, dtype: str, amp: str
    ):
        self.backbone, self.layers, self.pool = backbone, list(layers), pool
        self.device, self.amp = device, amp
        self.dtype = DTYPES[dtype]
        self.cuda = device.type == "cuda"
        model = backbone.model.to(device).eval()
        if self.cuda:  # conv kernels run fastest on NHWC tensors on recent GPUs
            model.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True  # every batch has the same input size

    def _autocast(self):
        if self.amp == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def __call__(self, x: torch.Tensor, items: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Features of ``x`` (B, 3, S, S); ``items`` (B,) only serve to name a bad row in errors."""
        x = x.to(self.device, non_blocking=True)
        if self.cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            with self._autocast():
                pooled = self.backbone.capture(x, self.layers, self.pool)
            # One (B, sum D) tensor: a single cast and a single device -> host copy per batch
            # (outside autocast, which would re-cast the concatenation).
            flat = torch.cat(
                [pooled[name].flatten(1).to(self.dtype) for name in self.layers], dim=1
            )
            if not bool(torch.isfinite(flat).all()):
                self._explain_nonfinite(pooled, items)
            host = flat.cpu().numpy()
        out, col = {}, 0
        for name in self.layers:
            width = pooled[name].flatten(1).shape[1]
            out[name] = host[:, col : col + width]
            col += width
        return out

    def _explain_nonfinite(self, pooled: dict[str, torch.Tensor], items) -> None:
        for name in self.layers:
            values = pooled[name].float()
            bad_rows = (~torch.isfinite(values)).any(dim=1)
            if bad_rows.any():
                row = int(bad_rows.nonzero()[0])
                item = f"item {int(items[row])}" if items is not None else f"row {row} of the batch"
                raise DataError(
                    f"layer {name} gives NaN or infinite features for {item}; check the model weights and the input"
                )
            if self.dtype == torch.float16 and bool((values.abs() > FLOAT16_MAX).any()):
                raise ConfigError(
                    f"features of layer {name} exceed the float16 range (|x| > {FLOAT16_MAX:g}); "
                    "extract with --dtype float32"
                )
        raise DataError(
            "features contain NaN or infinite values; check the model weights and the input"
        )
