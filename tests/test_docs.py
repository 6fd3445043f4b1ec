"""The documentation a newcomer reads stays true: the CLI reference is the parsers' own help,
the README is short and its links lead somewhere, and the Python snippet runs as written."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.limits import HANG

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location(
        "cli_ref", ROOT / "docs" / "make_cli_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_generated_from_the_parsers(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    expected = _generator().reference()
    assert (ROOT / "docs" / "cli.md").read_text() == expected, (
        "docs/cli.md is out of date: run `python docs/make_cli_reference.py`"
    )


def test_readme_is_short_and_every_link_exists():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    assert "make demo" in text and "make test" in text
    links = re.findall(r"\]\(([^)#]+)\)", text)
    assert links, "the README links to the reference pages"
    for link in links:
        if not link.startswith("http"):
            assert (ROOT / link).exists(), f"README links to {link}, which does not exist"


@pytest.mark.slow
def test_python_snippet_runs_as_written_when_saved_as_a_script(tmp_path):
    text = (ROOT / "docs" / "python.md").read_text()
    snippet = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    (tmp_path / "snippet.py").write_text(snippet)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run(
        [sys.executable, "snippet.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "pre_logits" in run.stdout and (tmp_path / "results" / "run1").is_dir()
