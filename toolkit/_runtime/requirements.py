"""An archive's requirements file, installed by the python runtime the way TorchServe installs it.

TorchServe (frontend ``ModelManager.setupModelDependencies``, 0.9.0 and 0.12.0) does it when config.properties has
``install_py_dep_per_model=true`` (default false) and the manifest names ``model.requirementsFile`` (what
``torch-model-archiver -r`` packs): at registration, before any worker starts, in the unpacked model's folder and
with the server's environment (``PIP_INDEX_URL``, ``PIP_FIND_LINKS``, ``PIP_NO_INDEX``... pass through), it runs

    PYTHON -m pip install -U -t MODEL_DIR -r MODEL_DIR/REQUIREMENTS_FILE

(MODEL_DIR's parent where MODEL_DIR is a symlink). The worker has MODEL_DIR on its PYTHONPATH, ahead of
site-packages, so the handler imports the packages from there. ``-t`` makes pip ignore what is installed already:
every line is fetched and installed again into MODEL_DIR (a packaged ``torch`` pin downloads torch), though what the
server process imported before the handler (torch, numpy) stays the copy in use. A non-zero exit fails the
registration ("Custom pip package installation failed for model M", pip's output in ts_log.log), and the model
never loads. (0.12.0's ``useVenv: true`` in model-config.yaml installs into a venv per model instead; not here.)

Here: the same command with the runtime's own interpreter, the packages in the model's folder, which the loader puts
on sys.path for that model only. Differences, on purpose:

- Once per unpacked folder: a marker written atomically after pip succeeded (the requirements file's sha256 and the
  interpreter) makes a kept unpack folder (``--workdir``) skip pip. TorchServe unpacks afresh at every start, so
  it installs at every start.
- The workers of one model share its folder: the loader holds ``model_lock`` (an flock on a file in the unpack
  root) around unpacking and installing, so a second worker waits and then finds the marker.
- A failure raises ServeError quoting pip's last lines, with the ways out.
- With the property off, an archive that has a requirements file gets one warning naming it: its handler may fail
  to import what the environment lacks (TorchServe says nothing).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from .._errors import ServeError
from .._files import make_dirs, write_atomic
from .._layout import truthy

log = logging.getLogger("toolkit.runtime")

PROPERTY = "install_py_dep_per_model"
MARKER = ".mar-build-requirements.json"  # in the model's folder, once pip succeeded
PIP_TAIL = 15  # pip's last lines an error quotes
# Never a prompt (a server has no terminal) nor a version check against the index at every start.
PIP_DEFAULTS = {"PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}

# What prepare() did: no requirements file; one, left alone (the property is off); installed now; installed before.
Outcome = Literal["none", "off", "installed", "kept"]


def install_enabled(properties: Mapping[str, str]) -> bool:
    """``install_py_dep_per_model`` as TorchServe reads it (Boolean.parseBoolean, default false)."""
    return truthy(properties.get(PROPERTY))


def requirements_file(model_dir: Path, manifest: Mapping[str, Any]) -> Path | None:
    """The manifest's ``model.requirementsFile`` in ``model_dir``, or None when it names none."""
    name = (manifest.get("model") or {}).get("requirementsFile")
    if not isinstance(name, str) or not name:
        return None
    path = (model_dir / name).resolve()
    if not path.is_relative_to(model_dir.resolve()):
        raise ServeError(f"{model_dir / 'MAR-INF/MANIFEST.json'}: requirementsFile {name!r} lies outside the "
                         "archive's folder", hint="pack the file with torch-model-archiver -r FILE")
    return path


@contextmanager
def model_lock(unpack_root: Path, name: str) -> Iterator[None]:
    """Hold an exclusive lock for model ``name``'s folder in ``unpack_root`` (``.NAME.lock``; waits for it)."""
    make_dirs(unpack_root)
    fd = os.open(unpack_root / f".{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the file releases the lock


def prepare(name: str, model_dir: Path, manifest: Mapping[str, Any], *, install: bool,
            environ: Mapping[str, str] | None = None) -> Outcome:
    """Install model ``name``'s requirements into ``model_dir`` when ``install`` (the property) is on and they are
    not installed there yet; warn once when they exist but ``install`` is off. Returns what was done.

    Call it holding ``model_lock``. Raises ServeError (pip's last lines, the fixes) when pip fails.
    """
    requirements = requirements_file(model_dir, manifest)
    if requirements is None:
        return "none"
    if not install:
        log.warning(
            "model %s packages %s but %s is not true: nothing is installed, so its handler fails to import any "
            "of those packages this environment lacks", name, requirements.name, PROPERTY)
        return "off"
    if not requirements.is_file():
        raise ServeError(f"model {name}: MAR-INF/MANIFEST.json names requirementsFile {requirements.name}, which the "
                         "archive lacks", hint="pack it with torch-model-archiver -r FILE")
    stamp = _stamp(requirements)
    marker = model_dir / MARKER
    if _read_marker(marker) == stamp:
        log.info("model %s: %s is installed in %s already (an earlier start)", name, requirements.name, model_dir)
        return "kept"
    run_pip(name, model_dir, requirements, environ)
    write_atomic(marker, json.dumps(stamp, indent=2) + "\n")
    return "installed"


def pip_command(model_dir: Path, requirements: Path) -> list[str]:
    """TorchServe's command, with this interpreter."""
    return [sys.executable, "-m", "pip", "install", "-U", "-t", str(model_dir), "-r", str(requirements)]


def run_pip(name: str, model_dir: Path, requirements: Path, environ: Mapping[str, str] | None = None) -> None:
    """Run ``pip_command`` in ``model_dir`` with ``environ`` (default os.environ); raise ServeError if it fails."""
    cmd = pip_command(model_dir, requirements)
    env = {**PIP_DEFAULTS, **(os.environ if environ is None else environ)}
    log.info("model %s: installing %s (%s=true): %s", name, requirements.name, PROPERTY, " ".join(cmd))
    try:
        done = subprocess.run(cmd, cwd=model_dir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, errors="replace", check=False)
    except OSError as exc:
        raise ServeError(f"model {name}: cannot run pip for {requirements.name}: {exc}", hint=_FIXES) from exc
    output = done.stdout or ""
    log.debug("pip for model %s:\n%s", name, output)
    if done.returncode != 0:
        tail = [line for line in output.splitlines() if line.strip()][-PIP_TAIL:]
        raise ServeError(
            f"model {name}: pip could not install {requirements.name} (exit status {done.returncode}); the "
            "model is not loaded", log_tail=tail, hint=_FIXES)
    log.info("model %s: installed the packages of %s into %s", name, requirements.name, model_dir)


_FIXES = (
    "make the packages reachable from here (a package index: PIP_INDEX_URL, PIP_EXTRA_INDEX_URL; or a folder of "
    f"wheels: PIP_FIND_LINKS with PIP_NO_INDEX=1) or fix the requirement; or bake them into the image with "
    f"`mar-build image LAYOUT -o DIR --runtime python`, which turns {PROPERTY} off; or set {PROPERTY}=false if "
    "the environment has them already"
)


def _stamp(requirements: Path) -> dict[str, str]:
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    return {"requirements": requirements.name, "sha256": digest, "python": sys.executable,
            "python_version": sys.version.split()[0]}


def _read_marker(marker: Path) -> dict[str, str] | None:
    try:
        value = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
