"""A stand-in for ``layerprobe.pretrain`` (same API and configs, no training) so that the jobs
tests run pretrain and finetune units in seconds: "pre-training" writes a layerprobe checkpoint
of a tiny, seeded convnet; "fine-tuning" writes a small text file."""

from __future__ import annotations

import sys
import types
from pathlib import Path

# The real configs: a job file's [pretrain] / [finetune] tables are checked as a real run checks them.
from layerprobe.pretrain.config import FinetuneConfig, PretrainConfig  # noqa: F401

CALLS: list[tuple[str, str]] = []


def pretrain(config, out_dir, *, force=False, quiet=False, data_root=None) -> Path:
    import torch

    from layerprobe.backbones import load
    from layerprobe.backbones.checkpoint import save_checkpoint

    CALLS.append(("pretrain", str(out_dir)))
    torch.manual_seed(config.seed)
    bb = load("python:tests.helpers_models:tiny_convnet", image_size=32)
    gen = torch.Generator().manual_seed(config.seed * 1000 + int(config.data_fraction * 100))
    with torch.no_grad():  # each run its own weights, as training would give
        for param in bb.model.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=gen))
    info = {
        "upstream_task": config.task,
        "upstream_accuracy": 0.1 + 0.8 * config.data_fraction,
        "data_fraction": config.data_fraction,
        "epochs": config.epochs,
    }
    return save_checkpoint(
        Path(out_dir) / "checkpoint.pt",
        "python:tests.helpers_models:tiny_convnet",
        bb.model.state_dict(),
        preprocess=bb.preprocess,
        pretrain_info=info,
    )


def finetune(model, task, config, *, results_dir, quiet=False) -> Path:
    CALLS.append(("finetune", f"{model.spec} {task}"))
    out = Path(results_dir) / "finetune" / f"{abs(hash((model.spec, task)))}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"{model.spec} {task} {config.epochs}\n")
    return out


def install(monkeypatch) -> types.ModuleType:
    """Make ``import layerprobe.pretrain`` give this module (for the test's duration)."""
    module = sys.modules[__name__]
    monkeypatch.setitem(sys.modules, "layerprobe.pretrain", module)
    CALLS.clear()
    return module
