"""House conventions that a review would otherwise check by hand (issue #18, item 6).

- A public function anywhere in the package takes at most three arguments positionally (a probe on
  arrays: its four arrays ``x_train, y_train, x_test, y_test``); the rest are keyword-only, so
  a call names what it passes.
- No comment or docstring points at a markdown file the repository lacks, and none in the
  package at a source file or ``layerprobe.<room>.<module>`` it lacks.
- No ``# fmt: skip`` anywhere in the package, tests or benchmarks: ``ruff format`` lays out every
  table.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "layerprobe"
MAX_POSITIONAL = 3
# A probe on arrays takes its four arrays positionally, as scikit-learn's estimators do.
FOUR_ARRAYS = ["x_train", "y_train", "x_test", "y_test"]
# Python calls these positionally: the signatures of warnings.formatwarning / showwarning.
PYTHON_PROTOCOLS = {
    ("runtime/warn.py", "format_one_line"),
    ("runtime/warn.py", "show_one_line"),
}
MARKDOWN = re.compile(r"[A-Za-z0-9_./-]+\.md\b")
# A source file named by its path (``probe/solver.py``) or a module by its dotted name below a
# room (``layerprobe.extract.cache``, ``layerprobe.probe.ridge_accuracy``).
SOURCE_FILE = re.compile(r"(?<![\w.:/-])(?:[A-Za-z0-9_.-]+/)*[A-Za-z0-9_-]+\.py\b")
DOTTED = re.compile(r"\blayerprobe(?:\.[A-Za-z]\w*){2,}")


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


def _package_files():
    yield from sorted(PACKAGE.rglob("*.py"))


def test_public_functions_take_at_most_three_arguments_positionally():
    over = []
    for path in _package_files():
        rel = path.relative_to(PACKAGE).as_posix()
        for name, fn in _public_functions(path):
            if _too_many(fn) and (rel, name) not in PYTHON_PROTOCOLS:
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


def _dotted_exists(ref: str, package: Path) -> bool:
    """Whether ``layerprobe.a.b...`` names a package or module below ``package``, or a name
    that the ``__init__`` of the deepest package it reaches mentions."""
    here = package
    for part in ref.split(".")[1:]:
        if (here / part / "__init__.py").is_file():
            here = here / part
        elif (here / f"{part}.py").is_file():
            return True  # the rest are the module's own names
        else:
            return re.search(rf"\b{part}\b", (here / "__init__.py").read_text()) is not None
    return True


def _missing_sources(path: Path, root: Path) -> list[str]:
    """The source files and dotted module names that ``path``'s lines point at and ``root``
    (a repository with the package ``layerprobe/``) lacks."""
    package = root / "layerprobe"
    missing = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        for name in SOURCE_FILE.findall(line):
            if not any(p.is_file() for p in (root / name, path.parent / name, package / name)):
                missing.append(f"{path.relative_to(root)}:{number} {name}")
        missing += [
            f"{path.relative_to(root)}:{number} {ref}"
            for ref in DOTTED.findall(line)
            if not _dotted_exists(ref, package)
        ]
    return missing


def test_no_comment_in_the_package_points_at_a_missing_source_file():
    missing = [m for path in _package_files() for m in _missing_sources(path, ROOT)]
    assert not missing, "point these at a module in the package:\n" + "\n".join(missing)


def test_the_reference_checker_sees_a_missing_module(tmp_path):
    (tmp_path / "layerprobe" / "probe").mkdir(parents=True)
    (tmp_path / "layerprobe" / "__init__.py").write_text("")
    (tmp_path / "layerprobe" / "probe" / "__init__.py").write_text('__all__ = ["ridge"]\n')
    (tmp_path / "layerprobe" / "probe" / "solver.py").write_text("")
    sample = tmp_path / "layerprobe" / "probe" / "api.py"
    sample.write_text(
        '"""As probe/solver.py and solver.py do; see layerprobe.probe.solver.decompose,\n'
        "layerprobe.probe.ridge, not results/points.py, layerprobe.results.points or\n"
        'layerprobe.probe.lasso."""\n'
    )
    found = [m.split(" ", 1)[1] for m in _missing_sources(sample, tmp_path)]
    assert found == ["results/points.py", "layerprobe.results.points", "layerprobe.probe.lasso"]


def test_no_fmt_skip_in_the_package_tests_and_benchmarks():
    marked = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("layerprobe", "tests", "benchmarks")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if line.rstrip().endswith("# fmt: skip")
    ]
    assert not marked, "let ruff format lay these out:\n" + "\n".join(marked)
