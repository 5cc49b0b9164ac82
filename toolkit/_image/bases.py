"""The image an image context builds FROM: which Python and C library it has, and what it cannot carry.

mar-build itself needs Python >= 3.10 (its own package, copied into the image, runs the wrapper or the python
runtime). The images KServe runs for TorchServe, ``pytorch/torchserve-kfs`` 0.8.2 ... 0.12.0, are built on
``pytorch/torchserve`` with Python 3.9 (pytorch/serve docker/Dockerfile, ``ARG PYTHON_VERSION=3.9``), so they cannot
carry mar-build's wrapper: both runtimes start from an official ``python`` image instead, Debian bookworm, on which
the TorchServe image adds Java 17 and TorchServe from PyPI. A base whose Python cannot be told from its name must be
told (``base_python``), since every pin is resolved for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .._errors import SpecError, ToolkitError
from .._pod import PYTHON_BASE_IMAGE, TORCHSERVE_IMAGE, image_facts

DEFAULT_BASE = PYTHON_BASE_IMAGE
MIN_PYTHON = (3, 10)  # mar-build's requires-python (pyproject.toml)
# glibc of each Debian release the official python images are built on: what the manylinux wheel tags must not
# exceed. An official python image without a release in its tag is the newest Debian (trixie in 2026).
DEBIAN_GLIBC = {"bullseye": (2, 31), "bookworm": (2, 36), "trixie": (2, 41)}
DEFAULT_DEBIAN = "trixie"
# The TorchServe images: every tag 0.8.2 ... 0.12.0 is FROM pytorch/torchserve with Python 3.9 (toolkit/_pod's table
# for the tags it holds; pytorch/serve docker/Dockerfile's ARG PYTHON_VERSION=3.9 for the others).
_TORCHSERVE_REPOSITORIES = (TORCHSERVE_IMAGE, "pytorch/torchserve")
_TORCHSERVE_PYTHON = "3.9"
_OFFICIAL_PYTHON = re.compile(
    r"(?P<version>3\.\d+)(?:\.\d+)?(?:-(?P<variant>slim|alpine\d*(?:\.\d+)?))?(?:-(?P<release>[a-z]+))?"
)


class ImageError(ToolkitError):
    """An image build context cannot be written as asked: a base that cannot carry mar-build, pins that conflict."""


@dataclass(frozen=True)
class Base:
    """The base image and the platform every requirement is resolved for."""

    image: str
    python: tuple[int, int]
    glibc: tuple[int, int]

    @property
    def python_version(self) -> str:
        return f"{self.python[0]}.{self.python[1]}"

    def platforms(self, machine: str = "x86_64") -> list[str]:
        """pip's --platform values for this base: every manylinux tag its glibc runs, newest first.

        pip does not widen one --platform to older glibc versions, and torch 2.13 ships only manylinux_2_28
        wheels: ``manylinux2014_x86_64`` alone finds no torch at all (measured).
        """
        major, minor = self.glibc
        tags = [f"manylinux_{major}_{m}_{machine}" for m in range(minor, 16, -1)]
        return [*tags, f"manylinux2014_{machine}", "linux_" + machine]


def choose_base(image: str | None, *, base_python: str | None = None) -> Base:
    """The base for ``image`` (None: DEFAULT_BASE); ``base_python`` ("3.12") for an image not named for its Python.

    Raises ImageError for a base whose Python is older than mar-build's, an Alpine (musl) base, and an image whose
    Python cannot be told.
    """
    name = image or DEFAULT_BASE
    repository, tag = _split(name)
    if repository in _TORCHSERVE_REPOSITORIES:
        raise ImageError(
            f"{name} has Python {_torchserve_python(tag)}: mar-build's wrapper and runtime need Python >= 3.10, "
            "so this base cannot carry them",
            hint=f"leave out --base (mar-build's default, {DEFAULT_BASE} with Java 17 and TorchServe from PyPI), "
            "or deploy the stock image without `mar-build image` (KServe's kserve-torchserve)",
        )
    official = _OFFICIAL_PYTHON.fullmatch(tag or "") if repository == "library/python" else None
    if official is not None and (official.group("variant") or "").startswith("alpine"):
        raise ImageError(f"{name} is an Alpine (musl) image: torch publishes no wheels for it and the build "
                         "uses apt-get", hint=f"use a Debian-based one, e.g. --base {DEFAULT_BASE}")
    release = (official.group("release") if official else None) or DEFAULT_DEBIAN
    glibc = DEBIAN_GLIBC.get(release)
    if glibc is None:
        raise ImageError(f"{name}: unknown Debian release {release!r}",
                         hint=f"one of {', '.join(DEBIAN_GLIBC)}, e.g. --base {DEFAULT_BASE}")
    version = base_python or (official.group("version") if official else None)
    if version is None:
        raise ImageError(
            f"cannot tell which Python {name} has, and every pin is resolved for it",
            hint="say it with --base-python X.Y (a Debian-based image with python and pip on PATH)",
        )
    python = _python_version(version)
    if python < MIN_PYTHON:
        raise ImageError(f"{name} has Python {version}: mar-build needs Python >= 3.10",
                         hint=f"use a newer base, e.g. --base {DEFAULT_BASE}")
    return Base(name, python, glibc)


def _torchserve_python(tag: str | None) -> str:
    try:
        return image_facts("torchserve", tag).python
    except SpecError:
        return _TORCHSERVE_PYTHON


def _python_version(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)\.(\d+)(?:\.\d+)?", text.strip())
    if match is None:
        raise ImageError(f"--base-python must be a Python version X.Y, got {text!r}", hint="e.g. --base-python 3.12")
    return int(match.group(1)), int(match.group(2))


def _split(image: str) -> tuple[str, str | None]:
    """(repository as Docker Hub spells it in full, tag) of an image reference: python:3.11 -> library/python."""
    name = image.partition("@")[0]
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        name = rest if first in ("docker.io", "index.docker.io", "registry-1.docker.io") else name
    repository, _, tag = name.rpartition(":") if ":" in name.rpartition("/")[2] else (name, "", "")
    if "/" not in repository:
        repository = f"library/{repository}"
    return repository, tag or None
