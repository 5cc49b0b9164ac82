"""Importing a Python file of the archive by path, and finding the one subclass it defines (the custom handler, a
state_dict model's nn.Module)."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType


def import_file(path: Path, name: str) -> ModuleType:
    """Import the Python file ``path`` as module ``name``: by path, so nothing else on sys.path stands in for it."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def defined_subclass(module: ModuleType, parent: type, what: str, hint: str = "") -> type:
    """The one subclass of ``parent`` that ``module`` itself defines; raise ValueError for none or several."""
    found = [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, parent) and cls is not parent and cls.__module__ == module.__name__
    ]
    if len(found) != 1:
        names = ", ".join(cls.__name__ for cls in found) or "none"
        raise ValueError(f"{module.__file__} must define exactly one {what} subclass (found: {names}){hint}")
    return found[0]
