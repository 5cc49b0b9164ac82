"""build(): a ModelSpec -> LAYOUT/model-store/NAME.mar + LAYOUT/config/config.properties.

A new layout is written in a temp folder beside its target and renamed into place at the end. An existing
layout gains (or replaces) one archive and one model_snapshot entry, each written through a temp file and
os.replace, archive first and config last: a reader never sees a config that names an archive not yet there,
and the other models are left untouched.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .archive import Member, folder_members, handler_members, manifest_json, write_archive
from .._errors import LayoutError, SpecError
from .._files import make_temp_dir, write_atomic
from .._layout import CONFIG_RELPATH, MODEL_STORE, Layout, read_layout, set_properties
from .._resources import handlers_dir
from .._spec import ModelSpec, ServerSettings, load_spec
from .._templating import render_template

log = logging.getLogger("toolkit.build")

MAR_BUILD_MARKER = "written by mar-build"
HF_TASKS = ("text-classification", "token-classification", "embeddings")
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "model.safetensors.index.json")
_TOKENIZER_FILES = (
    "tokenizer.json", "vocab.txt", "tokenizer.model", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
)


@dataclass(frozen=True)
class BuildResult:
    """What build() wrote: the layout, the archive, and every model the layout now serves."""

    layout: Path
    name: str
    version: str
    archive: Path
    archive_size: int
    replaced: bool
    models: list[str]
    warnings: list[str] = field(default_factory=list)

    @property
    def config(self) -> Path:
        return self.layout / CONFIG_RELPATH


Progress = Callable[[int, int], None]


def build(
    spec: ModelSpec | str | Path | None = None,
    output: str | Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> BuildResult:
    """Archive one model into a layout (created, or merged into when it exists).

    ``spec`` is a ModelSpec or a mar.yaml path (or its folder; default the current folder), with ``overrides``
    (dotted keys) applied. ``output`` defaults to ``build/NAME``. Raises SpecError for a wrong spec or model
    folder, ArchiveError when the archive cannot be written, LayoutError when ``output`` exists and is not a layout.
    """
    if not isinstance(spec, ModelSpec):
        spec = load_spec(spec, overrides)
    elif overrides:
        raise TypeError("overrides apply to a spec file; pass a ModelSpec with the values already set")
    layout_path = Path(output) if output is not None else Path("build") / spec.name
    warnings = check_model_files(spec)
    members, requirements = _members(spec)
    build_info = _build_info(spec)
    manifest = manifest_json(name=spec.name, version=spec.version, requirements=requirements is not None)
    if requirements is not None:
        members.append(Member("requirements.txt", data=requirements.encode()))

    existing = _existing_layout(layout_path)
    if existing is None:
        return _build_new(spec, layout_path, members, manifest, build_info, warnings, progress)
    return _build_into(spec, existing, members, manifest, build_info, warnings, progress)


def build_many(
    specs: Sequence[ModelSpec | str | Path],
    output: str | Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> list[BuildResult]:
    """Build several models into one layout; two specs with the same model name are an error before any write."""
    loaded = [s if isinstance(s, ModelSpec) else load_spec(s, overrides) for s in specs]
    names: dict[str, ModelSpec] = {}
    for s in loaded:
        if s.name in names:
            raise SpecError(
                f"two specs name the model {s.name!r} ({names[s.name].source} and {s.source}); "
                "model names must be unique in a layout (they are the URL names)",
                hint="give one of them another `name:` (or --name)",
            )
        names[s.name] = s
    if output is None and len(loaded) > 1:
        raise SpecError("building several models needs one output layout", hint="pass -o LAYOUT")
    return [build(s, output, progress=progress) for s in loaded]


# --------------------------------------------------------------------------------------------------------------
# The model folder


def check_model_files(spec: ModelSpec) -> list[str]:
    """Check the model folder holds what the task's handler will load; return warnings, raise SpecError on errors."""
    warnings: list[str] = []
    model = spec.model
    if spec.task in HF_TASKS:
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
    elif spec.task in ("tensor", "image-classification"):
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
    if spec.task == "custom":
        assert spec.handler is not None
        _check_handler_imports(spec.handler, spec)
    if spec.model_file is not None and spec.model_file.suffix != ".py":
        raise SpecError(f"{spec.model_file} must be a .py file", key="model_file", path=spec.source)
    if spec.task in HF_TASKS + ("custom",) and not spec.requirements:
        warnings.append(
            "no requirements packaged: the default pytorch/torchserve-kfs image has no transformers; "
            "add `requirements: [transformers]` (with pin_requirements: true) or use an image that has it"
            if spec.task in HF_TASKS else ""
        )
    return [w for w in warnings if w]


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


def _members(spec: ModelSpec) -> tuple[list[Member], str | None]:
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
        if spec.pin_requirements and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[^\]]*\])?", req):
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


def _build_info(spec: ModelSpec) -> dict[str, Any]:
    model = spec.model
    model_rel = None if model is None else ("model" if model.is_dir() else f"model/{model.name}")
    built_with = {"python": platform.python_version()}
    for dist in ("mar-build", "torch", "transformers", "torch-model-archiver"):
        try:
            built_with[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
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


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


# --------------------------------------------------------------------------------------------------------------
# config.properties


def snapshot_settings(spec: ModelSpec) -> dict[str, Any]:
    """The model_snapshot entry for one model (TorchServe's key names and order)."""
    s = spec.serving
    settings: dict[str, Any] = {
        "defaultVersion": True,
        "marName": f"{spec.name}.mar",
        "minWorkers": s.min_workers,
        "maxWorkers": s.max_workers,
        "batchSize": s.batch_size,
        "maxBatchDelay": s.max_batch_delay,
        "responseTimeout": s.response_timeout,
    }
    if s.startup_timeout != 120:  # TorchServe's default; older releases do not know the key
        settings["startupTimeout"] = s.startup_timeout
    return settings


def render_config(
    server: ServerSettings,
    models: Mapping[str, tuple[str, dict[str, Any]]],
    *,
    sizes: tuple[int, int],
    install_py_dep_per_model: bool,
) -> str:
    """config.properties text for ``models`` (name -> (version, snapshot settings)), in the given order."""
    snapshot = {
        "name": "startup.cfg",
        "modelCount": len(models),
        "models": {name: {version: settings} for name, (version, settings) in models.items()},
    }
    return render_template(
        "config.properties.jinja",
        server=server,
        snapshot=snapshot,
        max_request_size=sizes[0],
        max_response_size=sizes[1],
        install_py_dep_per_model=install_py_dep_per_model,
    )


# --------------------------------------------------------------------------------------------------------------
# Layout writing


def _existing_layout(path: Path) -> Layout | None:
    if not path.exists():
        return None
    if not path.is_dir():
        raise LayoutError(f"{path} exists and is not a folder", path=path, hint="choose another -o LAYOUT")
    if not any(path.iterdir()):
        return None
    if not (path / CONFIG_RELPATH).is_file():
        raise LayoutError(
            f"{path} exists and is not a layout (no {CONFIG_RELPATH}); refusing to write into it",
            path=path, hint="choose an empty or new folder with -o, or a layout built before",
        )
    layout = read_layout(path)
    if layout.problems:
        raise LayoutError(
            f"{path} has a config.properties that cannot be merged into", path=path, problems=layout.problems,
            hint="fix model_snapshot by hand (run `mar-build check` on it), or build into a new folder",
        )
    return layout


def _build_new(
    spec: ModelSpec, layout_path: Path, members: list[Member], manifest: bytes, build_info: dict[str, Any],
    warnings: list[str], progress: Progress | None,
) -> BuildResult:
    tmp = make_temp_dir(layout_path.parent, layout_path.name)
    try:
        archive = tmp / MODEL_STORE / f"{spec.name}.mar"
        size = write_archive(archive, members, manifest=manifest, build_info=build_info, progress=progress)
        text = render_config(
            spec.server, {spec.name: (spec.version, snapshot_settings(spec))},
            sizes=spec.default_sizes(), install_py_dep_per_model=bool(spec.requirements),
        )
        write_atomic(tmp / CONFIG_RELPATH, text, fsync=False)
        if layout_path.exists():  # an empty folder we may replace
            layout_path.rmdir()
        os.replace(tmp, layout_path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("built %s %s into %s", spec.name, spec.version, layout_path)
    return BuildResult(layout_path, spec.name, spec.version, layout_path / MODEL_STORE / f"{spec.name}.mar",
                       size, False, [spec.name], warnings)


def _build_into(
    spec: ModelSpec, layout: Layout, members: list[Member], manifest: bytes, build_info: dict[str, Any],
    warnings: list[str], progress: Progress | None,
) -> BuildResult:
    names = layout.model_names()
    replaced = spec.name in names
    if len([n for n in names if n == spec.name]) > 1:
        raise LayoutError(f"{layout.path} lists model {spec.name!r} more than once", path=layout.path)
    for entry in layout.entries:
        if entry.name != spec.name and entry.mar_name == f"{spec.name}.mar":
            raise LayoutError(
                f"model {entry.name!r} in {layout.path} already uses {spec.name}.mar", path=layout.path,
                hint=f"give this model another name than {spec.name!r}",
            )
    archive = layout.model_store / f"{spec.name}.mar"
    size = write_archive(archive, members, manifest=manifest, build_info=build_info, progress=progress)

    models: dict[str, tuple[str, dict[str, Any]]] = {}
    for entry in layout.entries:
        if entry.name == spec.name:
            continue
        models[entry.name] = (entry.version, entry.settings)
    models[spec.name] = (spec.version, snapshot_settings(spec))
    if MAR_BUILD_MARKER in layout.config_text:
        text = render_config(
            spec.server, models, sizes=_merged_sizes(layout, spec),
            install_py_dep_per_model=bool(spec.requirements)
            or layout.properties.get("install_py_dep_per_model", "false").lower() == "true",
        )
    else:
        # Hand-written: keep every byte the user wrote and change only the snapshot.
        snapshot = dict(layout.snapshot or {"name": "startup.cfg"})
        snapshot["modelCount"] = len(models)
        snapshot["models"] = {n: {v: s} for n, (v, s) in models.items()}
        text = set_properties(layout.config_text, {"model_snapshot": json.dumps(snapshot, separators=(",", ":"))})
        if spec.requirements and layout.properties.get("install_py_dep_per_model", "").lower() != "true":
            warnings.append(
                "this hand-written config.properties lacks install_py_dep_per_model=true, so the packaged "
                "requirements.txt will not be installed"
            )
    write_atomic(layout.config_path, text, fsync=False)
    log.info("%s %s in %s", "replaced" if replaced else "added", spec.name, layout.path)
    return BuildResult(layout.path, spec.name, spec.version, archive, size, replaced, list(models), warnings)


def _merged_sizes(layout: Layout, spec: ModelSpec) -> tuple[int, int]:
    # The limits are server-wide: keep the larger of what the layout has and what this model needs.
    request, response = spec.default_sizes()
    props = layout.properties
    try:
        request = max(request, int(props.get("max_request_size", 0)))
        response = max(response, int(props.get("max_response_size", 0)))
    except ValueError:
        pass
    return request, response
