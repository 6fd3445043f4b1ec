"""A model factory that ends its own process, for the executor's fault-isolation tests:
``python:tests.helpers_crash:crashing_convnet`` with ``model_args = { how = "kill" }``
(SIGKILL, as the out-of-memory killer does), ``"segv"`` (a crash in native code) or
``"exit"`` (``os._exit(3)``). It prints a line first, which the unit's log must hold. With
``once = PATH`` it ends its process only while the file ``PATH`` does not exist (it makes it
first), so a retry in a fresh worker builds the model."""

from __future__ import annotations

import ctypes
import os
import signal
from pathlib import Path

from tests.helpers_models import tiny_convnet

LAST_WORDS = "crashing_convnet: about to end this process"


def crashing_convnet(how: str = "kill", once: str = "", num_classes: int = 10):
    if once and Path(once).exists():
        return tiny_convnet(num_classes=num_classes)
    if once:
        Path(once).touch()
    print(f"{LAST_WORDS} ({how}, pid {os.getpid()})", flush=True)
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif how == "segv":
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    elif how == "exit":
        os._exit(3)
    return tiny_convnet(num_classes=num_classes)
