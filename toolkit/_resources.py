"""Where handlers/ and templates/ are, whichever way the toolkit was installed.

A source checkout and an editable install find them at the top of the source tree (next to ``toolkit/``);
an installed wheel carries them as ``toolkit/_bundled/{handlers,templates}`` (see pyproject's force-include).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from ._errors import ToolkitError

_PACKAGE = Path(__file__).resolve().parent


@cache
def resource_dir(name: str) -> Path:
    """Return the folder ``handlers`` or ``templates``; raise ToolkitError when the install lacks it."""
    if name not in ("handlers", "templates"):
        raise ValueError(f"unknown resource {name!r}")
    for candidate in (_PACKAGE / "_bundled" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise ToolkitError(
        f"the toolkit's {name}/ folder is missing from this installation ({_PACKAGE})",
        hint="reinstall mar-build (pip install --force-reinstall mar-build)",
    )


def handlers_dir() -> Path:
    return resource_dir("handlers")


def templates_dir() -> Path:
    return resource_dir("templates")
