"""House conventions that a review would otherwise check by hand (issue #18, item 6).

- A public function of the rooms below takes at most three arguments positionally (a probe on
  arrays: its four arrays ``x_train, y_train, x_test, y_test``); the rest are keyword-only, so
  a call names what it passes.
- No comment or docstring points at a markdown file the repository lacks.
- No ``# fmt: skip`` anywhere in the package, tests or benchmarks: ``ruff format`` lays out every
  table.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "layerprobe"
ROOMS = (
    "backbones",
    "tasks",
    "extract",
    "pretrain",
    "results",
    "jobs",
    "analysis",
    "pipelines",
    "probe",
)
MAX_POSITIONAL = 3
# A probe on arrays takes its four arrays positionally, as scikit-learn's estimators do.
FOUR_ARRAYS = ["x_train", "y_train", "x_test", "y_test"]
# Public functions of these rooms that still take more positionally, each in a module another
# change of issue #18 rewrites: (module path below layerprobe/, qualified name).
NOT_YET = {
    ("extract/cache.py", "cache_path"),
    ("extract/cache.py", "partial_path"),
    ("pretrain/ladder.py", "mlp_mixer"),
    ("pretrain/ladder.py", "resolve_model"),
    ("jobs/jobfile.py", "Job.error"),
}
MARKDOWN = re.compile(r"[A-Za-z0-9_./-]+\.md\b")


def _public_functions(path: Path):
    """(qualified name, node) of every public function and public method of a public class."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if not node.name.startswith("_"):
                yield node.name, node
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and not item.name.startswith("_"):
                    yield f"{node.name}.{item.name}", item


def _positional(fn: ast.FunctionDef) -> list[str]:
    names = [a.arg for a in fn.args.posonlyargs + fn.args.args]
    return names[1:] if names and names[0] in ("self", "cls") else names


def _too_many(fn: ast.FunctionDef) -> bool:
    """Whether ``fn`` takes more arguments positionally than the house allows."""
    names = _positional(fn)
    limit = len(FOUR_ARRAYS) if names[:4] == FOUR_ARRAYS else MAX_POSITIONAL
    return len(names) > limit


def _room_files():
    for room in ROOMS:
        yield from sorted((PACKAGE / room).rglob("*.py"))


def test_public_functions_take_at_most_three_arguments_positionally():
    over = []
    for path in _room_files():
        rel = path.relative_to(PACKAGE).as_posix()
        for name, fn in _public_functions(path):
            if _too_many(fn) and (rel, name) not in NOT_YET:
                over.append(f"{rel}:{fn.lineno} {name}({', '.join(_positional(fn))})")
    assert not over, "make the parameters after the first three keyword-only:\n" + "\n".join(over)


def test_the_checker_sees_a_function_with_too_many_positional_arguments(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def ok(a, b, c, *, d): ...\n"
        "def wide(a, b, c, d): ...\n"
        "def arrays(x_train, y_train, x_test, y_test, *, l2s): ...\n"
        "def wider(x_train, y_train, x_test, y_test, l2s): ...\n"
        "def _private(a, b, c, d): ...\n"
        "class Thing:\n"
        "    def method(self, a, b, c, d): ...\n"
    )
    wide = {name for name, fn in _public_functions(sample) if _too_many(fn)}
    assert wide == {"wide", "wider", "Thing.method"}


def test_no_comment_points_at_a_missing_markdown_file():
    missing = []
    for folder in ("layerprobe", "tests", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                for name in MARKDOWN.findall(line):
                    places = (ROOT / name, path.parent / name, ROOT / "docs" / name)
                    if not any(p.is_file() for p in places):
                        missing.append(f"{path.relative_to(ROOT)}:{number} {name}")
    assert not missing, "point these at a file in the repository:\n" + "\n".join(missing)


def test_no_fmt_skip_in_the_package_tests_and_benchmarks():
    marked = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("layerprobe", "tests", "benchmarks")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if line.rstrip().endswith("# fmt: skip")
    ]
    assert not marked, "let ruff format lay these out:\n" + "\n".join(marked)
