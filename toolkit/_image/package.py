"""mar-build's own package, copied into the build context: the code that built the layout is the code in the pod.

The image gets ``toolkit/`` as it is installed here, with ``handlers/`` and ``templates/`` under
``toolkit/_bundled/`` as in an installed wheel (toolkit/_resources.py finds them there), and finds it on
PYTHONPATH: mar-build need not be on a package index for an image to carry it, and its dependencies are pinned in
requirements.txt. No bytecode, no caches.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .._resources import handlers_dir, templates_dir

PACKAGE_DIR = "mar-build"  # the folder in the build context, COPY'd to /opt/mar-build
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".mypy_cache", ".ruff_cache")


def copy_package(context: Path) -> Path:
    """Copy the installed ``toolkit`` package (and its handlers and templates) to ``context/mar-build/toolkit``."""
    package = Path(__file__).resolve().parents[1]
    target = context / PACKAGE_DIR / package.name
    shutil.copytree(package, target, ignore=_IGNORE)
    bundled = target / "_bundled"
    for name, source in (("handlers", handlers_dir()), ("templates", templates_dir())):
        if not (bundled / name).is_dir():  # a source checkout keeps them beside toolkit/, a wheel inside it
            shutil.copytree(source, bundled / name, ignore=_IGNORE)
    return target
