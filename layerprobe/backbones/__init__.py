"""Backbones: build a model from a name, load its weights, name its layers, pool them.

>>> from layerprobe.backbones import load
>>> bb = load("vit_tiny_patch16_224", model_args=dict(img_size=32, patch_size=4, depth=3, embed_dim=48, num_heads=3))
>>> [p.name for p in bb.probe_points]
['patch_embed', 'blocks.0', 'blocks.1', 'blocks.2', 'pre_logits']
>>> feats = bb.capture(x, ["blocks.1", "pre_logits"])  # {layer: (B, D)}, one forward pass
"""

from layerprobe.backbones.backbone import PRE_LOGITS, Backbone, ProbePoint
from layerprobe.backbones.checkpoint import read_checkpoint, save_checkpoint
from layerprobe.backbones.config import ModelConfig, as_model_config
from layerprobe.backbones.factory import RandomWeightsWarning, load
from layerprobe.backbones.pooling import POOLS
from layerprobe.backbones.preprocess import RESIZE_MODES, Preprocess
from layerprobe.backbones.spec import NAMESPACES, parse_spec

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
