"""A real load with the image's libraries: a cached venv with the image's transformers and tokenizers on the image's
Python, and a probe that loads a model folder's config and tokenizer in it.

Only config and tokenizer are loaded: they are what today's transformers/tokenizers write in a newer format than a
2023 image reads (tokenizer.json of tokenizers >= 0.20 stores BPE merges as pairs, which 0.14 refuses; new
``model_type`` names). The weights need the image's torch, which installs here only for the current Python
(torch 2.1 has no wheel this machine can fetch cheaply), so they are judged from their files (``torchfiles.py``).

The venv lives in ``$MAR_BUILD_CACHE_DIR/compat/py3.9-transformers4.34.0-tokenizers0.14.1`` (made once, about 25 s
and 145 MB measured here); the image's Python comes from ``$MAR_BUILD_COMPAT_PYTHON``, pyenv's versions or
``pythonX.Y`` on PATH. Anything that stops the probe (no such Python, no package index) is returned as a reason, never
raised: `check` then says that it could not load the folder the image's way.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from .._files import cache_dir, write_atomic
from .images import ImageFacts

log = logging.getLogger("toolkit.pod")

VENV_TIMEOUT_S = 600.0
PROBE_TIMEOUT_S = 120.0
PROBE_TEXTS = ("Hello World!", "Where is my parcel? It was due on 3 March.", "naïve café — déjà vu 😀")

# Runs inside the venv (the image's Python and transformers): print one JSON line with what loaded.
_PROBE = r"""
import json, sys, warnings
warnings.filterwarnings("ignore")
path, texts = sys.argv[1], json.loads(sys.argv[2])
out = {}
try:
    from transformers import AutoConfig
    out["model_type"] = AutoConfig.from_pretrained(path, local_files_only=True).model_type
except Exception as exc:
    out["config_error"] = f"{type(exc).__name__}: {exc}"[:600]
try:
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    out["tokenizer"] = type(tok).__name__
    out["ids"] = [tok(t)["input_ids"] for t in texts]
except Exception as exc:
    out["tokenizer_error"] = f"{type(exc).__name__}: {exc}"[:600]
print("PROBE " + json.dumps(out))
"""


@dataclass(frozen=True)
class ProbeResult:
    """What the probe found: ``model_type`` and ``tokenizer`` class when they loaded, the errors when they did not,
    the token ids of PROBE_TEXTS (None without a tokenizer)."""

    model_type: str | None = None
    config_error: str | None = None
    tokenizer: str | None = None
    tokenizer_error: str | None = None
    ids: list[list[int]] | None = None


def find_python(version: str) -> Path | None:
    """An interpreter of ``version`` (``"3.9"``) that runs: $MAR_BUILD_COMPAT_PYTHON when set (and then only it),
    else pyenv's, else pythonX.Y on PATH (which may be a pyenv shim that refuses to run that version)."""
    explicit = os.environ.get("MAR_BUILD_COMPAT_PYTHON")
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    on_path = shutil.which(f"python{version}")
    if explicit:  # the one that was asked for, or none
        candidates = [Path(explicit)]
    else:
        candidates = sorted(root.glob(f"{version}.*/bin/python{version}"), reverse=True) if root.is_dir() else []
        candidates += [Path(on_path)] if on_path else []
    for candidate in candidates:
        try:
            done = subprocess.run([str(candidate), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                  capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0 and done.stdout.strip() == version:
            return candidate
    return None


def venv_name(facts: ImageFacts) -> str:
    return f"py{facts.python}-transformers{facts.transformers}-tokenizers{facts.tokenizers}"


def _pins(facts: ImageFacts) -> list[str]:
    names = ("transformers", "tokenizers", "huggingface-hub", "numpy", "safetensors")
    return [f"{n}=={facts.packages[n]}" for n in names if n in facts.packages]


def image_venv(facts: ImageFacts) -> tuple[Path | None, str]:
    """The python of the cached venv holding ``facts``' transformers and tokenizers, made on first use; or None and
    why it cannot be had."""
    venv = cache_dir() / "compat" / venv_name(facts)
    python = venv / "bin" / "python"
    if (venv / ".complete").is_file():
        return python, ""
    interpreter = find_python(facts.python)
    if interpreter is None:
        return None, (f"no Python {facts.python} here (set MAR_BUILD_COMPAT_PYTHON, or install it with pyenv) to "
                      f"load the model folder with the image's transformers {facts.transformers}")
    venv.parent.mkdir(parents=True, exist_ok=True)
    log.info("making %s once, to load model folders as %s would (about half a minute)", venv, facts.image)
    work = Path(tempfile.mkdtemp(prefix=venv.name + ".", dir=venv.parent))
    try:
        # The venv is made in a temporary folder and moved into place whole: a half-made one is never used.
        _run([str(interpreter), "-m", "venv", str(work)], VENV_TIMEOUT_S)
        _run([str(work / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-compile",
              "--disable-pip-version-check", *_pins(facts)], VENV_TIMEOUT_S)
        (work / ".complete").write_text("\n".join(_pins(facts)) + "\n", encoding="utf-8")
        if venv.exists() and not (venv / ".complete").is_file():
            shutil.rmtree(venv, ignore_errors=True)  # a leftover of a run that was killed midway
        work.rename(venv)  # only `python -m` is used, which works from a moved venv (its scripts would not)
    except (OSError, subprocess.SubprocessError) as exc:
        if (venv / ".complete").is_file():  # another process made it meanwhile
            return python, ""
        return None, f"could not make a venv with the image's transformers {facts.transformers}: {exc}"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return python, ""


def _run(command: list[str], timeout: float) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise subprocess.SubprocessError(f"{Path(command[0]).name} {command[1]} {command[2]} failed: "
                                         + " / ".join(tail))
    return done.stdout


def probe_folder(python: Path | str, folder: Path) -> ProbeResult:
    """Load ``folder``'s config and tokenizer with ``python`` (the image venv's, or sys.executable for today's).
    The answer is remembered per interpreter, libraries and file contents: asking again costs nothing."""
    key = _probe_key(python, folder)
    remembered = cache_dir() / "compat" / "probes" / f"{key}.json"
    try:
        return ProbeResult(**json.loads(remembered.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        pass
    result = _probe(python, folder)
    if "the probe did not run" not in (result.config_error or ""):
        try:
            remembered.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(remembered, json.dumps(asdict(result)))
        except OSError as exc:  # the cache is never needed
            log.debug("cannot remember the probe in %s: %s", remembered, exc)
    return result


def _probe_key(python: Path | str, folder: Path) -> str:
    digest = hashlib.sha256(f"{python}\0{_PROBE}\0{PROBE_TEXTS}\0".encode())
    if str(python) == sys.executable:  # this interpreter's libraries may change under the same path
        for name in ("transformers", "tokenizers"):
            try:
                version = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                version = "none"
            digest.update(f"{name}={version}\0".encode())
    for path in sorted(folder.iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _probe(python: Path | str, folder: Path) -> ProbeResult:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error",
           "PYTHONNOUSERSITE": "1"}
    done = subprocess.run(
        [str(python), "-c", _PROBE, str(folder), json.dumps(PROBE_TEXTS)], capture_output=True, text=True,
        timeout=PROBE_TIMEOUT_S, env=env, check=False,
    )
    for line in done.stdout.splitlines():
        if line.startswith("PROBE "):
            found = json.loads(line[len("PROBE "):])
            return ProbeResult(**{k: found.get(k) for k in ProbeResult.__dataclass_fields__})
    tail = " / ".join((done.stderr or "").strip().splitlines()[-2:])
    return ProbeResult(config_error=f"the probe did not run: {tail}", tokenizer_error=f"the probe did not run: {tail}")
