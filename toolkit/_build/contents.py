"""What goes into an archive: the model folder checked against its task, the members, requirements.txt, build info.

Everything here reads the spec and the model's files; nothing is written (archive.py writes the zip).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .._errors import SpecError
from .._resources import handlers_dir
from .._spec import ModelSpec
from .archive import Member, folder_members, handler_members

HF_TASKS = ("text-classification", "token-classification", "embeddings")
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "model.safetensors.index.json")
_TOKENIZER_FILES = (
    "tokenizer.json", "vocab.txt", "tokenizer.model", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
)
# A bare distribution name, with extras: the only requirement pin_requirements pins (a line with a version,
# a URL or a marker is the user's own and is kept as written).
_BARE_REQUIREMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[^\]]*\])?")


def check_model_files(spec: ModelSpec) -> list[str]:
    """Check the model folder holds what the task's handler will load; return warnings, raise SpecError on errors."""
    if spec.task in HF_TASKS:
        _check_hf_folder(spec)
    elif spec.task in ("tensor", "image-classification"):
        _check_weights_file(spec)
    if spec.task == "custom":
        assert spec.handler is not None
        _check_handler_imports(spec.handler, spec)
    if spec.model_file is not None and spec.model_file.suffix != ".py":
        raise SpecError(f"{spec.model_file} must be a .py file", key="model_file", path=spec.source)
    # What the runtime image lacks for the task (transformers, Pillow, their versions) is `check`'s to say: it
    # knows what each image ships.
    return []


def _check_hf_folder(spec: ModelSpec) -> None:
    model = spec.model
    assert model is not None
    if not model.is_dir():
        raise SpecError(
            f"{model} is a file; task {spec.task} needs a Hugging Face model folder", key="model",
            path=spec.source, hint="save it with model.save_pretrained(DIR) and tokenizer.save_pretrained(DIR)",
        )
    if not (model / "config.json").is_file():
        raise SpecError(
            f"{model} has no config.json: not a Hugging Face model folder", key="model", path=spec.source,
            hint="save the model with model.save_pretrained(DIR)",
        )
    if not any(any(model.glob(p)) for p in _WEIGHT_PATTERNS):
        raise SpecError(
            f"{model} has no weights (model.safetensors or pytorch_model.bin)", key="model", path=spec.source,
            hint="save the model with model.save_pretrained(DIR); a config alone is not a model",
        )
    if not any((model / f).is_file() for f in _TOKENIZER_FILES):
        raise SpecError(
            f"{model} has no tokenizer (tokenizer.json or vocab.txt); the worker cannot fetch one from a hub",
            key="model", path=spec.source, hint="save it next to the model with tokenizer.save_pretrained(DIR)",
        )


def _check_weights_file(spec: ModelSpec) -> None:
    model = spec.model
    assert model is not None
    if model.is_dir():
        if spec.task == "tensor" or not (model / "config.json").is_file():
            raise SpecError(
                f"{model} is a folder; task {spec.task} needs a weights file here "
                "(a TorchScript .pt, or a state_dict with model_file)",
                key="model", path=spec.source, hint="set `model: path/to/weights.pt`",
            )
    elif spec.model_file is None and not _is_torchscript(model):
        raise SpecError(
            f"{model} is not a TorchScript archive, and no model_file says which nn.Module its state_dict "
            "belongs to", key="model_file", path=spec.source,
            hint="set `model_file: net.py` (the .py defining the module), or save with torch.jit.save",
        )


def _is_torchscript(path: Path) -> bool:
    # torch.jit.save writes a zip whose members sit under ARCHIVE/code/ and ARCHIVE/constants.pkl
    try:
        with zipfile.ZipFile(path) as zf:
            return any("/code/" in n or n.endswith("/constants.pkl") for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _check_handler_imports(handler: Path, spec: ModelSpec) -> None:
    """Import the custom handler in a fresh interpreter, with the handler package importable as in the worker."""
    if handler.suffix != ".py":
        raise SpecError(f"{handler} must be a .py file", key="handler", path=spec.source)
    with tempfile.TemporaryDirectory(prefix="mar-build-handler-") as tmp:
        shutil.copytree(handlers_dir(), Path(tmp) / "mar_build_handlers", ignore=shutil.ignore_patterns("__pycache__"))
        code = (
            "import importlib, sys\n"
            f"sys.path[:0] = [{tmp!r}, {str(handler.parent)!r}]\n"
            f"importlib.import_module({handler.stem!r})\n"
        )
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        raise SpecError(
            f"{handler} does not import: {lines[-1] if lines else 'exit status ' + str(proc.returncode)}",
            key="handler", path=spec.source,
            hint="fix the error above; run `python -c 'import handler'` in its folder to see the full traceback",
        )


def archive_members(spec: ModelSpec) -> tuple[list[Member], str | None]:
    """The archive's files (handlers, model, model_file, custom handler, extra files) and requirements.txt text."""
    members = handler_members(handlers_dir())
    model = spec.model
    if model is not None:
        members += folder_members(model, "model") if model.is_dir() else [Member(f"model/{model.name}", source=model)]
    if spec.model_file is not None and not _inside(spec.model_file, model):
        members.append(Member(f"model/{spec.model_file.name}", source=spec.model_file))
    if spec.handler is not None:
        members.append(Member(spec.handler.name, source=spec.handler))
    for extra in spec.extra_files:
        members += folder_members(extra, extra.name) if extra.is_dir() else [Member(extra.name, source=extra)]
    requirements = _requirements_txt(spec) if spec.requirements else None
    return members, requirements


def _inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and folder.is_dir() and path.resolve().is_relative_to(folder.resolve())


def _requirements_txt(spec: ModelSpec) -> str:
    lines = []
    for req in spec.requirements:
        if spec.pin_requirements and _BARE_REQUIREMENT.fullmatch(req):
            dist = req.split("[")[0]
            try:
                req = f"{req}=={importlib.metadata.version(dist)}"
            except importlib.metadata.PackageNotFoundError as exc:
                raise SpecError(
                    f"cannot pin {dist!r}: it is not installed in this environment", key="requirements",
                    path=spec.source, hint=f"install it here, or write the version yourself ({dist}==X.Y)",
                ) from exc
        lines.append(req)
    return "\n".join(lines) + "\n"


def _archive_path(path: Path | None, spec: ModelSpec) -> str | None:
    if path is None:
        return None
    model = spec.model
    if model is not None and model.is_dir() and _inside(path, model):
        return "model/" + path.resolve().relative_to(model.resolve()).as_posix()
    return f"model/{path.name}"


def build_info(spec: ModelSpec) -> dict[str, Any]:
    """mar_build.json: what the handler reads at load time, and what inspect, check and render read back."""
    model = spec.model
    model_rel = None if model is None else ("model" if model.is_dir() else f"model/{model.name}")
    built_with = {"python": platform.python_version()}
    for dist in ("mar-build", "torch", "transformers", "torch-model-archiver"):
        try:
            built_with[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    info: dict[str, Any] = {
        "format": 1,
        "name": spec.name,
        "version": spec.version,
        "task": spec.task,
        "model": model_rel,
        "model_file": _archive_path(spec.model_file, spec),
        "model_class": spec.model_class,
        "custom_handler": spec.handler.name if spec.handler is not None else None,
        "class_names": spec.class_names,
        "options": spec.options,
        "max_workers": spec.serving.max_workers,
        "batch_size": spec.serving.batch_size,
        "labels": spec.labels,
        "metadata": spec.metadata,
        "kserve": _jsonable(asdict(spec.kserve)),
        "built_with": built_with,
    }
    if spec.provenance is not None:  # the MLflow model it was built from (registered name, version, run, signature)
        info["source"] = _jsonable(spec.provenance)
    return info


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
