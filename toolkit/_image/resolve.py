"""Whether an image's requirements.txt resolves for its base: pip's own resolver, for the base's Python and
platform, against the package index, without installing anything (``pip install --dry-run --report``).

This needs the network (the index) and takes seconds to minutes; `mar-build image --resolve` and the tests call it,
writing a context never does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bases import Base, ImageError

RESOLVE_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Resolution:
    """What pip would install in the image: name -> version, and how long resolving took."""

    packages: dict[str, str]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"packages": dict(self.packages), "seconds": round(self.seconds, 1)}


def resolve_requirements(
    requirements: Path, base: Base, *, isolated: bool = False, index_url: str | None = None,
    timeout: float = RESOLVE_TIMEOUT_S,
) -> Resolution:
    """Resolve ``requirements`` for ``base`` (its Python, Linux x86_64, binary wheels only) with pip's resolver.

    ``isolated``: ignore this machine's pip configuration (its mirrors, find-links and constraints): the image
    sees only the index. Raises ImageError with pip's own explanation when it does not resolve.
    """
    cmd = [sys.executable, "-m", "pip", *(["--isolated"] if isolated else []), "install", "--dry-run",
           "--quiet", "--report", "-", "--ignore-installed", "--only-binary=:all:",
           "--python-version", base.python_version, "-r", str(requirements)]
    for platform in base.platforms():
        cmd += ["--platform", platform]
    if index_url is not None:
        cmd += ["--index-url", index_url]
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise ImageError(f"resolving {requirements} took longer than {timeout:.0f} s",
                         hint="check the network to the package index") from exc
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()][-12:]
        raise ImageError(
            f"{requirements} does not resolve for Python {base.python_version} on {base.platforms()[0]}:\n"
            + "\n".join("    " + line for line in lines),
            hint="change the pin pip names (in the archive's requirements, or the base), then run it again",
        )
    report = json.loads(proc.stdout)
    packages = {item["metadata"]["name"]: item["metadata"]["version"] for item in report.get("install", [])}
    return Resolution(packages, seconds)
