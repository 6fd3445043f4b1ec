"""``layerprobe ARGS`` (or ``python ARGS``) as a user runs it from a shell: a fresh process in the
repository root with this checkout first on PYTHONPATH, output captured as text."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.limits import HANG

ROOT = Path(__file__).resolve().parents[1]


def shell_env(base: dict | None = None, **extra: str) -> dict:
    """``base`` (default: this process's environment) and ``extra`` with this checkout first on
    PYTHONPATH."""
    env = dict(os.environ if base is None else base, **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def python_shell(
    *args, env: dict | None = None, cwd: Path = ROOT, timeout: float = HANG
) -> subprocess.CompletedProcess:
    """``python ARGS`` (each argument through ``str``) in ``cwd``; ``env`` defaults to
    ``shell_env()``. Waits at most ``timeout`` seconds (a hang, not a speed goal)."""
    return subprocess.run(
        [sys.executable, *map(str, args)],
        env=shell_env() if env is None else env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def python_started(*args, env: dict | None = None) -> subprocess.Popen:
    """``python ARGS`` started in the repository root (not waited for), stdout and stderr piped
    as text; ``env`` defaults to ``shell_env()``."""
    return subprocess.Popen(
        [sys.executable, *map(str, args)],
        env=shell_env() if env is None else env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def layerprobe_shell(
    *args, env: dict | None = None, cwd: Path = ROOT, timeout: float = HANG
) -> subprocess.CompletedProcess:
    """``python -m layerprobe ARGS``, as ``python_shell``."""
    return python_shell("-m", "layerprobe", *args, env=env, cwd=cwd, timeout=timeout)
