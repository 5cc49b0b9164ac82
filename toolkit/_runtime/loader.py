"""Loading a layout's models as TorchServe does: unpack each .mar once, import its handler, initialise it.

TorchServe (ts/model_loader.py, 0.9.0 and 0.12.0) reads MAR-INF/MANIFEST.json, imports the manifest's ``handler``
(``module.py`` or ``module.py:function``, the file stem as a top-level module, the model folder on sys.path),
falls back to its built-in handlers (``ts.torch_handler.<name>``) when that import fails, and then takes either the
module's function (``handle`` by default; called ``handle(None, context)`` once to load) or the one class the
module defines (``initialize(context)`` once, ``handle(data, context)`` per batch). The same here, with two
differences on purpose:

- The models of one worker each (minWorkers 1) run in the server's one process, where TorchServe gives each its
  own worker process (models of several workers load in worker processes of their own: workers.py). Archives
  often ship a module of the same name (every mar-build archive has ``mar_build_entry`` and
  ``mar_build_handlers``): before a model is imported, the modules loaded from the previous models' folders leave
  ``sys.modules`` (the loaded handlers keep theirs), so each model runs its own copy, as in separate workers.
- A handler that fails to import *and* is no built-in handler raises its own import error, not the built-in
  lookup's (TorchServe's "No module named 'ts.torch_handler.X'" hides the real cause).

An archive's requirements file is pip-installed into its model folder, once, before the handler is imported, when
config.properties has install_py_dep_per_model=true, as TorchServe does (requirements.py); with the property off
(TorchServe's default) nothing is installed and the runtime warns. The workers of one model may load it at the same
time: unpacking and installing happen under the model's lock in the unpack root, and an unpack lands whole (a temp
folder renamed), so a worker never imports from half a folder.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import shutil
import sys
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import ServeError
from .._files import make_temp_dir
from .._layout import MANIFEST, SnapshotEntry, read_layout
from .context import Context
from .requirements import PROPERTY, install_enabled, model_lock, prepare

log = logging.getLogger("toolkit.runtime")

Entry = Callable[[Any, Context], Any]


@dataclass
class Settings:
    """A model's model_snapshot settings, with TorchServe's defaults for the keys a hand-written entry omits."""

    batch_size: int = 1
    max_batch_delay_ms: float = 100.0
    response_timeout_s: float = 120.0
    min_workers: int = 1

    @classmethod
    def of(cls, entry: SnapshotEntry) -> Settings:
        values = entry.settings

        def number(key: str, default: float) -> float:
            value = values.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                return float(value)
            return default

        return cls(
            batch_size=max(1, int(number("batchSize", 1))),
            max_batch_delay_ms=number("maxBatchDelay", 100.0),
            response_timeout_s=number("responseTimeout", 120.0) or 120.0,
            min_workers=max(1, int(number("minWorkers", 1))),
        )


@dataclass
class LoadedModel:
    """One model_snapshot entry, loaded: its handler's entry point, its context, its settings and envelope."""

    name: str
    version: str
    model_dir: Path
    manifest: dict[str, Any]
    entry: Entry
    context: Context
    settings: Settings
    envelope: str | None = None
    modules: list[str] = field(default_factory=list)


def unpack(mar: Path, target: Path) -> Path:
    """Extract ``mar`` into ``target`` (once: a folder already holding its manifest is reused); return ``target``.

    The archive is extracted into a temp folder beside ``target``, which then takes its place: a folder with a
    manifest is always whole. Call it holding the model's lock when several processes may unpack it.
    """
    if (target / MANIFEST).is_file():
        return target
    tmp = make_temp_dir(target.parent, target.name)
    try:
        with zipfile.ZipFile(mar) as zf:
            root = tmp.resolve()
            for member in zf.namelist():
                # A zip entry must not escape the model's folder ("zip slip").
                if not (root / member).resolve().is_relative_to(root):
                    raise ValueError(f"{mar}: the entry {member!r} lies outside the archive's folder")
            zf.extractall(tmp)
        if target.exists():  # no manifest: what an interrupted unpack of an older mar-build left
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _model_yaml(model_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    config_file = (manifest.get("model") or {}).get("configFile")
    if not config_file:
        return {}
    import yaml

    loaded = yaml.safe_load((model_dir / config_file).read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, dict) else {}


def gpu_for(worker: int, gpus: int) -> int | None:
    """The GPU a model's ``worker``-th worker gets among ``gpus``: round robin, as TorchServe hands them out."""
    return worker % gpus if gpus > 0 else None


def _gpu_id(worker: int) -> int | None:
    import torch

    return gpu_for(worker, torch.cuda.device_count() if torch.cuda.is_available() else 0)


def import_handler(handler: str) -> tuple[Entry, Callable[[Context], Any]]:
    """(entry point, initialise) of the manifest's ``handler``, found the way TorchServe's model loader finds it."""
    module_part, _, function_name = handler.partition(":")
    module_name = module_part.removesuffix(".py").split("/")[-1]
    try:
        module = importlib.import_module(module_name)
    except ImportError as own:
        try:
            module = importlib.import_module(f".{handler}", "ts.torch_handler")
        except ImportError:
            raise own from None
    name = function_name or "handle"
    if hasattr(module, name):
        function: Entry = getattr(module, name)
        return function, lambda context: function(None, context)
    classes = [
        cls for _, cls in inspect.getmembers(module, inspect.isclass) if cls.__module__ == module.__name__
    ]
    if len(classes) != 1:
        raise ValueError(f"Expected only one class in custom service code or a function entry point {classes}")
    service: Any = classes[0]()
    if not hasattr(service, "handle"):
        raise ValueError(f"Expect handle method in class {classes[0]}")
    return service.handle, service.initialize


def _modules_from(folder: Path) -> list[str]:
    root = str(folder.resolve())
    found = []
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None) or ""
        if origin and str(Path(origin).resolve()).startswith(root + "/"):
            found.append(name)
    return found


def load_model(
    entry: SnapshotEntry, layout: Path, unpack_root: Path, *, envelope: str | None, previous: list[LoadedModel],
    properties: Mapping[str, str] | None = None, worker: int = 0,
) -> LoadedModel:
    """Unpack, install the requirements of (install_py_dep_per_model) and initialise one model; ``previous`` are
    the models already loaded in this process (their modules step aside); ``properties`` the layout's
    config.properties (read from ``layout`` when None); ``worker`` the worker's index among the model's (its GPU,
    round robin). Safe to call from several processes for one model."""
    mar = entry.archive(layout)
    install = install_enabled(read_layout(layout).properties if properties is None else properties)
    with model_lock(unpack_root, entry.name):
        model_dir = unpack(mar, unpack_root / entry.name).resolve()
        manifest = json.loads((model_dir / MANIFEST).read_text(encoding="utf-8"))
        requirements = prepare(entry.name, model_dir, manifest, install=install)
    handler = (manifest.get("model") or {}).get("handler")
    if not isinstance(handler, str) or not handler:
        raise ValueError(f"{mar}: MANIFEST.json names no handler")
    for other in previous:
        for module in other.modules:
            sys.modules.pop(module, None)
        while str(other.model_dir) in sys.path:
            sys.path.remove(str(other.model_dir))
    # The model's folder holds its handler and, where they were installed, its requirements (pip -t).
    sys.path.insert(0, str(model_dir))
    settings = Settings.of(entry)
    context = Context(
        model_name=entry.name, model_dir=str(model_dir), manifest=manifest, batch_size=settings.batch_size,
        gpu=_gpu_id(worker), model_yaml_config=_model_yaml(model_dir, manifest),
    )
    try:
        entry_point, initialize = import_handler(handler)
    except ImportError as exc:
        if requirements != "off":
            raise
        file = manifest["model"]["requirementsFile"]
        raise ServeError(
            f"model {entry.name}: its handler {handler} cannot be imported ({exc}), and the archive's {file} was "
            f"not installed: {PROPERTY} is not true",
            hint=f"set {PROPERTY}=true in config/config.properties (the runtime then pip-installs {file} once per "
            "unpacked model), or bake the packages into the image (`mar-build image LAYOUT -o DIR --runtime "
            "python`)",
        ) from exc
    initialize(context)
    version = str((manifest.get("model") or {}).get("modelVersion") or entry.version)
    log.info("model %s (version %s) loaded from %s with handler %s", entry.name, version, mar.name, handler)
    return LoadedModel(entry.name, version, model_dir, manifest, entry_point, context, settings, envelope,
                       _modules_from(model_dir))
