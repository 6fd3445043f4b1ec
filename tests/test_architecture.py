"""The rooms of the package import only rooms upstream of them in the flow (ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "layerprobe"
BASICS = {
    "errors",
    "layers",
    "locks",
    "options",
    "progress",
    "registry",
    "runtime",
    "__init__",
    "__main__",
}
# room -> the rooms it may import (besides the basics); the table in ARCHITECTURE.md.
MAY_IMPORT = {
    "backbones": set(),
    "tasks": set(),
    "extract": {"backbones", "tasks"},
    "results": set(),
    "probe": {"extract", "results", "tasks"},
    "pretrain": {"backbones", "extract", "results", "tasks"},
    "analysis": {"extract", "results"},
    "jobs": {"backbones", "tasks", "extract", "results", "probe", "pretrain"},
    "pipelines": {"backbones", "tasks", "extract", "results", "probe", "pretrain", "analysis"},
}


def _imported_rooms(path: Path) -> set[str]:
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "layerprobe" and len(parts) > 1:
                rooms.add(parts[1])
    return rooms


def test_every_room_imports_only_rooms_upstream_of_it():
    wrong = []
    for room, allowed in MAY_IMPORT.items():
        for path in sorted((PACKAGE / room).rglob("*.py")):
            for other in _imported_rooms(path) - allowed - BASICS - {room}:
                wrong.append(f"{path.relative_to(PACKAGE.parent)} imports layerprobe.{other}")
    assert not wrong, "imports against the flow (ARCHITECTURE.md):\n" + "\n".join(wrong)


def test_every_room_is_on_the_map():
    rooms = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert rooms - {"commands", "runtime"} == set(MAY_IMPORT)


def test_the_basics_import_no_room():
    wrong = []
    basics = [PACKAGE / f"{name}.py" for name in BASICS - {"__main__"}] + list(
        (PACKAGE / "runtime").rglob("*.py")
    )
    for path in sorted(p for p in basics if p.exists()):
        for other in _imported_rooms(path) - BASICS:
            wrong.append(f"{path.relative_to(PACKAGE.parent)} imports layerprobe.{other}")
    assert not wrong, "the basics (floor 1) import rooms:\n" + "\n".join(wrong)


# Modules outside extract/ that may import h5py, and why: PCam's images and labels come as HDF5
# files of the dataset itself (a task's loader reads them); they are not the feature cache.
H5PY_BESIDES_EXTRACT = {"layerprobe/tasks/real/pcam.py"}


def test_only_extract_imports_h5py():
    """The feature cache has one reader (``extract/cache.py``): no other room opens HDF5."""
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE.parent).as_posix()
        if name.startswith("layerprobe/extract/") or name in H5PY_BESIDES_EXTRACT:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module or ""]
            else:
                continue
            if any(m.split(".")[0] == "h5py" for m in modules):
                wrong.append(f"{name}:{node.lineno} imports h5py")
    assert not wrong, (
        "only layerprobe/extract/ reads the feature cache; go through extract/cache.py "
        "(find_caches, read_info, open_cache, read_arrays):\n" + "\n".join(wrong)
    )
