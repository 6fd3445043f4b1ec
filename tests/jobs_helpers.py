"""Job files for the jobs tests: tiny models on small built-in tasks."""

from __future__ import annotations

from pathlib import Path

TASKS = ("builtin/textures", "builtin/histology", "builtin/occlusion")
SHOTS, SEEDS, L2S = (1, 5), 2, (0.1, 1.0, 10.0)

VIT = """
[[models]]
spec = "timm:vit_tiny_patch16_224"
label = "vit-tiny"
model_args = { img_size = 32, patch_size = 4, depth = 3, embed_dim = 48, num_heads = 3, num_classes = 10 }
"""
CONVNET = """
[[models]]
spec = "python:tests.helpers_models:tiny_convnet"
image_size = 32
"""
BROKEN = """
[[models]]
spec = "python:tests.helpers_models:tiny_convnet"
label = "broken"
image_size = 32
model_args = { widht = 8 }
"""


def job_text(
    name: str,
    root: Path,
    tasks=TASKS,
    models=VIT + CONVNET,
    extra: str = "",
    cache: Path | None = None,
) -> str:
    """A job of ``models`` on ``tasks`` with its folder under ``root``."""
    listed = ", ".join(f'"{t}"' for t in tasks)
    head = f'[job]\nname = "{name}"\ndir = "{root / name}"\ntasks = [{listed}]\n'
    if cache is not None:
        head += f'cache = "{cache}"\n'
    probe = (
        f"\n[probe]\nshots = {list(SHOTS)}\nseeds = {SEEDS}\nl2s = {list(L2S)}\n"
        "\n[extract]\nbatch_size = 256\n"
    )
    return head + models + probe + extra


def write_job(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
