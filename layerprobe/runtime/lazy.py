"""Lazy package names: a package's public names load on first use (PEP 562).

A room's ``__init__`` that re-exports functions of heavy modules (torch) makes every import of
a light module of the room (its config) pay for them; :func:`lazy_names` defers them instead.
A name that is also a submodule (``layerprobe.pretrain.finetune`` the module, ``finetune`` the
function) stays the function when the submodule loads, as it was with eager imports.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Mapping


def lazy_names(package: str, names: Mapping[str, str]) -> Callable[[str], object]:
    """The module ``__getattr__`` of ``package`` that loads ``names`` (name -> module) on use.

    Parameters
    ----------
    package : the package's ``__name__``.
    names : each public name and the module that defines it.

    Returns
    -------
    The function to assign to the package's ``__getattr__``.
    """
    module = sys.modules[package]

    class Package(types.ModuleType):
        def __setattr__(self, name: str, value: object) -> None:
            if name in names and getattr(value, "__name__", None) == f"{package}.{name}":
                return  # the submodule of the same name: the package's name is the function
            super().__setattr__(name, value)

    module.__class__ = Package

    def __getattr__(name: str) -> object:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(names[name]), name)
        setattr(module, name, value)
        return value

    return __getattr__
