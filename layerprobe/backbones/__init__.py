"""Backbones: build a model from a name, load its weights, name its layers, pool them.

>>> from layerprobe.backbones import load
>>> bb = load("vit_tiny_patch16_224", model_args=dict(img_size=32, patch_size=4, depth=3, embed_dim=48, num_heads=3))
>>> [p.name for p in bb.probe_points]
['patch_embed', 'blocks.0', 'blocks.1', 'blocks.2', 'pre_logits']
>>> feats = bb.capture(x, ["blocks.1", "pre_logits"])  # {layer: (B, D)}, one forward pass
"""

from layerprobe.runtime.lazy import lazy_names

# Names load on first use, so importing a light module of the room (its config) does not
# import torch.
_LAZY = {
    "PRE_LOGITS": "layerprobe.backbones.backbone",
    "Backbone": "layerprobe.backbones.backbone",
    "ProbePoint": "layerprobe.backbones.backbone",
    "read_checkpoint": "layerprobe.backbones.checkpoint",
    "save_checkpoint": "layerprobe.backbones.checkpoint",
    "ModelConfig": "layerprobe.backbones.config",
    "as_model_config": "layerprobe.backbones.config",
    "RandomWeightsWarning": "layerprobe.backbones.factory",
    "load": "layerprobe.backbones.factory",
    "POOLS": "layerprobe.backbones.pooling",
    "RESIZE_MODES": "layerprobe.backbones.preprocess",
    "Preprocess": "layerprobe.backbones.preprocess",
    "NAMESPACES": "layerprobe.backbones.spec",
    "parse_spec": "layerprobe.backbones.spec",
}

__getattr__ = lazy_names(__name__, _LAZY)

__all__ = [
    "NAMESPACES",
    "POOLS",
    "PRE_LOGITS",
    "Backbone",
    "ModelConfig",
    "Preprocess",
    "RESIZE_MODES",
    "RandomWeightsWarning",
    "as_model_config",
    "ProbePoint",
    "load",
    "parse_spec",
    "read_checkpoint",
    "save_checkpoint",
]
