"""Whether requirements have a release for an image's Python and platform: asked of the package index with pip's
own finder (``pip install --dry-run --no-deps --python-version X.Y --platform ...``), installing nothing.

Each requirement is judged on its own (``--no-deps``: what the worker's ``pip install -r`` would fetch first for
it); a release whose Requires-Python excludes the image's Python is named. About 1-2 s per call here (measured).
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass

from .images import ImageFacts

INDEX_TIMEOUT_S = 120.0
MAX_ROUNDS = 8  # pip stops at the first requirement it cannot find: one more round for each, at most this many
_NOT_FOUND = re.compile(r"No matching distribution found for (?P<requirement>\S+)")


@dataclass(frozen=True)
class Unavailable:
    """A requirement with no release for the image; ``requires_python`` when one exists for another Python."""

    requirement: str
    requires_python: str | None


def unavailable(requirements: list[str], facts: ImageFacts) -> tuple[list[Unavailable], str]:
    """The requirements that have no release for ``facts``' Python and platform; and, when the index could not be
    asked (no network, no pip), why (the list is then empty)."""
    platforms = [arg for p in facts.platforms() for arg in ("--platform", p)]
    left, found = list(requirements), list[Unavailable]()
    for _ in range(MAX_ROUNDS):
        if not left:
            break
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-deps", "--ignore-installed",
                   "--disable-pip-version-check", "--python-version", facts.python, "--only-binary=:all:",
                   *platforms, *left]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=INDEX_TIMEOUT_S, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            return found, f"pip could not be run: {exc}"
        if done.returncode == 0:
            break
        missing = _NOT_FOUND.search(done.stderr)
        if missing is None or missing.group("requirement") not in left:
            tail = " / ".join(line for line in done.stderr.strip().splitlines()[-2:])
            return found, f"the package index could not be asked: {tail}"
        requirement = missing.group("requirement")
        if f"requirement {requirement} (from versions: none)" in done.stderr:
            # Nothing at all under that name: an index that cannot be reached reads the same as a wrong name.
            return found, (f"the index lists no release at all of {requirement} (unreachable, or a name it does "
                           "not have)")
        found.append(Unavailable(requirement, _requires_python(requirement, done.stderr)))
        left.remove(requirement)
    return found, ""


def _requires_python(requirement: str, stderr: str) -> str | None:
    pinned = re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==(?P<version>[^;\s]+)", requirement)
    if pinned is None:
        return None
    found = re.search(rf"(?<![\w.]){re.escape(pinned.group('version'))} Requires-Python (?P<spec>[^;\n]+)", stderr)
    return found.group("spec").strip() if found else None
