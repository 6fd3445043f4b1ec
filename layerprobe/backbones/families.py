"""Each model family's default probe points and head pooling.

A family maps stable layer names to hook sites (a module path and whether its output or its
input is read):

- ViT-like (timm ``patch_embed`` + ``blocks`` + ``num_prefix_tokens``; torchvision
  ``VisionTransformer``): ``patch_embed``, ``blocks.0`` ... , ``pre_logits``.
- MLP-Mixer (timm ``MlpMixer``, also ResMLP / gMLP): ``stem``, ``blocks.0`` ..., ``pre_logits``.
- ResNet (timm and torchvision): ``stem`` (after the first activation, before max-pooling, as
  timm's ``forward_intermediates``), every residual block ``layer1.0`` ..., ``pre_logits``.
- other timm models: the modules of ``feature_info`` (their stages), ``pre_logits``.
- Hugging Face ``transformers`` vision models: ``embeddings`` (the first hidden state), one point
  per encoder layer (``blocks.0`` ... for ViT-like encoders: ViT, DeiT, DINOv2, CLIP, SigLIP;
  ``stages.0`` ... for hierarchical ones: ConvNeXt, Swin), ``pre_logits`` (the final norm the
  pooler or head reads; SigLIP: its attention-pooling head's output; CLIP: the normed class
  token). Class, distillation and register tokens are the prefix tokens.
- open_clip image towers: a ViT (``patch_embed``, ``blocks.0`` ..., ``pre_logits`` = the final
  norm before the projection) or a ModifiedResNet (``stem``, ``layer1.0`` ..., ``pre_logits`` =
  the attention pool's output, the image embedding).
- anything else: the top-level children (a Sequential of composite blocks, like torchvision's
  ``features``, is opened one level), ``pre_logits``.

``pre_logits`` is always the input of the classifier (timm's ``get_classifier()``, else the
last ``nn.Linear``): the pooled representation the head sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

PRE_LOGITS = "pre_logits"
SKIP_TYPES = (nn.Dropout, nn.Identity, nn.Flatten)
LONG_STACK = 6  # a Sequential of more leaf layers than this is a stack, not one block


@dataclass(frozen=True)
class Site:
    """Where a probe point reads: a module's output, or its input (``pre_logits``)."""

    module: str
    hook: str = "output"  # "output" or "input"


@dataclass(frozen=True)
class Candidate:
    """A default probe point before a dry run has told its output shape."""

    name: str
    site: Site
    prefix_tokens: int = 0
    class_token: bool = False
    layout: str = "NCHW"
    pooling: str | None = None  # a fixed pooling method, whatever the user's option


@dataclass
class Family:
    """A model's default probe points and the token pooling its head uses (``auto``)."""

    name: str
    candidates: list[Candidate]
    auto_tokens: str = "mean"
    class_token: bool = False
    prefix_tokens: int = 0
    layout: str = "NCHW"
    classifier: str | None = None


def describe_family(model: nn.Module) -> Family:
    """The family of ``model`` (see module docstring), found by its structure, not its spec."""
    classifier = _classifier_path(model)
    for detect in (
        _hf,
        _open_clip_vit,
        _open_clip_resnet,
        _timm_vit,
        _torchvision_vit,
        _mixer,
        _resnet,
        _timm_generic,
    ):
        family = detect(model, classifier)
        if family is not None:
            break
    else:
        family = _generic(model, classifier)
    has_pre_logits = any(c.name == PRE_LOGITS for c in family.candidates)
    if classifier is not None and not has_pre_logits:
        family.candidates.append(Candidate(PRE_LOGITS, Site(classifier, "input")))
    family.classifier = classifier
    return family


def _timm_vit(model: nn.Module, classifier: str | None) -> Family | None:
    if not (
        hasattr(model, "patch_embed")
        and hasattr(model, "blocks")
        and hasattr(model, "num_prefix_tokens")
    ):
        return None
    if not isinstance(model.blocks, (nn.Sequential, nn.ModuleList)):
        return None
    prefix = int(model.num_prefix_tokens)
    cls = bool(getattr(model, "has_class_token", getattr(model, "cls_token", None) is not None))
    points = [Candidate("patch_embed", Site("patch_embed"))]  # before the class token is added
    points += [
        Candidate(f"blocks.{i}", Site(f"blocks.{i}"), prefix_tokens=prefix, class_token=cls)
        for i in range(len(model.blocks))
    ]
    if getattr(model, "dist_token", None) is not None and hasattr(model, "head_dist"):
        # DeiT distilled: the head averages the class and distillation tokens of the final norm.
        pre = Candidate(PRE_LOGITS, Site("norm"), prefix, True, pooling="cls_dist")
        return Family("vit_distilled", [*points, pre], "cls_dist", cls, prefix)
    return Family("vit", points, _timm_head_pool(model, cls), cls, prefix)


def _torchvision_vit(model: nn.Module, classifier: str | None) -> Family | None:
    from torchvision.models.vision_transformer import VisionTransformer

    if not isinstance(model, VisionTransformer):
        return None
    layers = list(model.encoder.layers.named_children())
    points = [Candidate("patch_embed", Site("conv_proj"))]  # a conv map (B, D, h, w)
    points += [
        Candidate(f"blocks.{i}", Site(f"encoder.layers.{name}"), prefix_tokens=1, class_token=True)
        for i, (name, _) in enumerate(layers)
    ]
    return Family("torchvision_vit", points, "cls", True, 1)


def _mixer(model: nn.Module, classifier: str | None) -> Family | None:
    from timm.models.mlp_mixer import MlpMixer

    if not isinstance(model, MlpMixer):
        return None
    points = [Candidate("stem", Site("stem"))]
    points += [Candidate(f"blocks.{i}", Site(f"blocks.{i}")) for i in range(len(model.blocks))]
    return Family("mixer", points, "mean")


def _resnet(model: nn.Module, classifier: str | None) -> Family | None:
    from timm.models.resnet import ResNet as TimmResNet
    from torchvision.models.resnet import ResNet as TvResNet

    if isinstance(model, TimmResNet):
        stem = "act1"
    elif isinstance(model, TvResNet):
        stem = "relu"
    else:
        return None
    points = [Candidate("stem", Site(stem))]
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        for name, _ in getattr(model, stage).named_children():
            points.append(Candidate(f"{stage}.{name}", Site(f"{stage}.{name}")))
    return Family("resnet", points, "mean")


HF_STACKS = ("encoder.layer", "encoder.layers", "layers", "encoder.stages", "encoder.blocks")


def _hf(model: nn.Module, classifier: str | None) -> Family | None:
    """A ``transformers`` vision model (recognised by its module, without importing the package)."""
    if not type(model).__module__.startswith("transformers."):
        return None
    modules = dict(model.named_modules())
    stack = next(
        (s for s in HF_STACKS if isinstance(modules.get(s), (nn.ModuleList, nn.Sequential))), None
    )
    embeddings = modules.get("embeddings")
    if stack is None or embeddings is None:
        return None
    config = getattr(model, "config", None)
    hierarchical = stack == "encoder.stages" or isinstance(getattr(config, "depths", None), list)
    cls = any(
        isinstance(getattr(embeddings, a, None), (nn.Parameter, torch.Tensor))
        for a in ("cls_token", "class_embedding")
    )
    prefix = int(cls) + int(getattr(embeddings, "distillation_token", None) is not None)
    registers = getattr(embeddings, "register_tokens", None)
    if isinstance(registers, torch.Tensor) and registers.dim() == 3:
        prefix += int(registers.shape[1])
    tokens = {"prefix_tokens": prefix, "class_token": cls}
    # CLIP normalises the embeddings before the encoder: its first hidden state is that output.
    first = "pre_layrnorm" if "pre_layrnorm" in modules else "embeddings"
    points = [Candidate("embeddings", Site(first), **tokens)]
    kind = "stages" if hierarchical else "blocks"
    points += [
        Candidate(f"{kind}.{i}", Site(f"{stack}.{i}"), **tokens) for i in range(len(modules[stack]))
    ]
    head = modules.get("head")
    if head is not None and type(head).__name__.endswith("AttentionPoolingHead"):
        final = "head"  # SigLIP: attention pooling; its output is the image embedding
    else:
        final = next((m for m in ("post_layernorm", "layernorm", "norm") if m in modules), None)
    if final is None:  # no final norm: the last layer is what a head would read
        final = f"{stack}.{len(modules[stack]) - 1}"
    points.append(Candidate(PRE_LOGITS, Site(final), **tokens))
    return Family("hf", points, "cls" if cls else "mean", cls, prefix)


def _open_clip_vit(model: nn.Module, classifier: str | None) -> Family | None:
    if not (
        type(model).__module__.startswith("open_clip.")
        and type(model).__name__ == "VisionTransformer"
    ):
        return None
    tokens = {"prefix_tokens": 1, "class_token": True}
    points = [Candidate("patch_embed", Site("conv1"))]  # a conv map (B, D, h, w)
    points += [
        Candidate(f"blocks.{i}", Site(f"transformer.resblocks.{i}"), **tokens)
        for i in range(len(model.transformer.resblocks))
    ]
    pool_type = getattr(model, "pool_type", "tok")
    own = "cls" if pool_type == "tok" else "mean"
    if getattr(model, "attn_pool", None) is not None:
        if getattr(model, "attn_pool_contrastive", None) is not None:  # one query: (B, 1, D)
            pre = Candidate(PRE_LOGITS, Site("attn_pool_contrastive"), pooling="cls", **tokens)
        else:  # CoCa: attention pooling, then the norm, then the tower's own pooling
            pre = Candidate(PRE_LOGITS, Site("ln_post"), pooling=own, **tokens)
    else:  # the norm's output: tokens, or (final_ln_after_pool) the pooled vector
        pre = Candidate(PRE_LOGITS, Site("ln_post"), **tokens)
    return Family("open_clip_vit", [*points, pre], own, True, 1)


def _open_clip_resnet(model: nn.Module, classifier: str | None) -> Family | None:
    if not (
        type(model).__module__.startswith("open_clip.") and type(model).__name__ == "ModifiedResNet"
    ):
        return None
    points = [Candidate("stem", Site("act3"))]  # after the 3-conv stem, before its avg-pool
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        for name, _ in getattr(model, stage).named_children():
            points.append(Candidate(f"{stage}.{name}", Site(f"{stage}.{name}")))
    points.append(Candidate(PRE_LOGITS, Site("attnpool")))  # (B, D): the image embedding
    return Family("open_clip_resnet", points, "mean")


def _timm_generic(model: nn.Module, classifier: str | None) -> Family | None:
    info = getattr(model, "feature_info", None)
    if not info or not isinstance(info, (list, tuple)) or not isinstance(info[0], dict):
        return None
    modules = dict(model.named_modules())
    cls = getattr(model, "cls_token", None) is not None
    prefix = int(getattr(model, "num_prefix_tokens", 1 if cls else 0))
    layout = "NHWC" if str(getattr(model, "output_fmt", "NCHW")) == "NHWC" else "NCHW"
    names = []
    for d in info:  # a few timm models name modules 'stages_0' in feature_info for 'stages.0'
        module = str(d.get("module", ""))
        module = module if module in modules else module.replace("_", ".")
        if module in modules and module not in names:
            names.append(module)
    if not names:
        return None
    points = [
        Candidate(n, Site(n), prefix_tokens=prefix, class_token=cls, layout=layout) for n in names
    ]
    return Family("timm", points, _timm_head_pool(model, cls), cls, prefix, layout)


def _generic(model: nn.Module, classifier: str | None) -> Family:
    from torchvision.models.swin_transformer import SwinTransformer

    layout = "NHWC" if isinstance(model, SwinTransformer) else "NCHW"  # a prior; see conv_layout
    names: list[str] = []
    for name, child in model.named_children():
        if isinstance(child, SKIP_TYPES):
            continue
        if _is_stack(child):  # `features` of torchvision CNNs: its stages are the blocks
            names += [
                f"{name}.{n}" for n, c in child.named_children() if not isinstance(c, SKIP_TYPES)
            ]
        else:  # a plain module, or a small conv-bn-relu Sequential: one block
            names.append(name)
    # The classifier's output (logits), or a container ending in it, is not a representation.
    names = [
        n for n in names if not (classifier and (n == classifier or classifier.startswith(n + ".")))
    ]
    points = [Candidate(n, Site(n), layout=layout) for n in names]
    return Family("generic", points, "mean", layout=layout)


def _is_stack(module: nn.Module) -> bool:
    """A Sequential / ModuleList of composite blocks, or a long one (VGG's `features`)."""
    if not isinstance(module, (nn.Sequential, nn.ModuleList)):
        return False
    children = list(module.children())
    return len(children) > LONG_STACK or any(len(list(c.children())) > 0 for c in children)


def _timm_head_pool(model: nn.Module, class_token: bool) -> str:
    """The token pooling of a timm head: 'token' -> cls, 'avg' -> mean, 'max', 'avgmax'."""
    pool = getattr(model, "global_pool", None)
    pool = pool if isinstance(pool, str) else ""
    mapped = {"token": "cls", "avg": "mean", "max": "max", "avgmax": "avgmax"}.get(pool)
    if mapped == "cls" and not class_token:
        return "mean"
    # '' or 'map' (attention pooling, no per-layer analogue): the class token where there is one.
    return mapped or ("cls" if class_token else "mean")


def _classifier_path(model: nn.Module) -> str | None:
    """Path of the classifier module: timm's get_classifier(), else the last nn.Linear."""
    paths = {id(m): name for name, m in model.named_modules() if name}
    get = getattr(model, "get_classifier", None)
    if callable(get):
        try:
            head = get()
        except Exception:  # noqa: BLE001 - a user model's own method; fall back to the last Linear
            head = None
        if isinstance(head, (tuple, list)):
            head = head[0] if head else None
        if isinstance(head, nn.Module) and id(head) in paths:
            return paths[id(head)]
    linears = [name for name, m in model.named_modules() if name and isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def conv_layout(shape: tuple[int, ...], prior: str) -> str:
    """NCHW or NHWC for one image's (3-dim) conv map; inputs are square, so H == W tells."""
    a, b, c = shape
    if b == c and a != b:
        return "NCHW"
    if a == b and c != a:
        return "NHWC"
    return prior
