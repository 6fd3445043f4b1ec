"""pretrain: train backbones on an upstream task, score any model's own head, fine-tune.

>>> from layerprobe.pretrain import PretrainConfig, pretrain
>>> ckpt = pretrain(PretrainConfig("resnet-tiny32", data_fraction=0.1, epochs=3), "runs/r1")
>>> # ckpt is a layerprobe checkpoint: `layerprobe extract --model runs/r1/checkpoint.pt ...`

- :func:`pretrain` (``layerprobe pretrain``): the model ladders of :mod:`.ladder`, AdamW with
  the head's own weight decay and learning-rate multiplier, warm-up + cosine, a seeded data
  fraction, upstream accuracy every epoch, a resumable run folder; one process or torchrun.
- :func:`upstream_accuracy` (``layerprobe upstream``): top-1 of a model's own classifier on a
  task's split, recorded beside the model's feature caches so its probe rows carry it.
- :func:`finetune` (``layerprobe finetune``): a new head, the whole network trained on a
  downstream task (learning rate chosen on val, then train + val), rows into the results store.
"""

from layerprobe.runtime.lazy import lazy_names

# Names load on first use, so importing a light module of the room (its config) does not
# import torch.
_LAZY = {
    "FinetuneConfig": "layerprobe.pretrain.config",
    "PretrainConfig": "layerprobe.pretrain.config",
    "finetune": "layerprobe.pretrain.finetune",
    "CHECKPOINT_NAME": "layerprobe.pretrain.folder",
    "run_complete": "layerprobe.pretrain.folder",
    "LADDER": "layerprobe.pretrain.ladder",
    "list_models": "layerprobe.pretrain.ladder",
    "pretrain": "layerprobe.pretrain.run",
    "UpstreamScore": "layerprobe.pretrain.upstream",
    "upstream_accuracy": "layerprobe.pretrain.upstream",
    "upstream_score": "layerprobe.pretrain.upstream",
}

__getattr__ = lazy_names(__name__, _LAZY)

__all__ = [
    "CHECKPOINT_NAME",
    "LADDER",
    "FinetuneConfig",
    "PretrainConfig",
    "finetune",
    "list_models",
    "pretrain",
    "run_complete",
    "UpstreamScore",
    "upstream_accuracy",
    "upstream_score",
]
