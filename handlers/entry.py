"""TorchServe entry point of every mar-build archive (copied to the archive root as ``mar_build_entry.py``).

TorchServe (0.9.0 and 0.12.0 alike, ``ts/model_loader.py``) imports the manifest's handler as a top-level module
and, finding a module-level ``handle``, calls ``handle(None, context)`` once at load and ``handle(batch, context)``
for every batch. The handler package travels next to this file as ``mar_build_handlers``.

Only the standard library is imported here at module level: TorchServe retries a handler whose import raises
ImportError as one of its built-in handlers, which would bury the real error.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

PACKAGE = "mar_build_handlers"
# task (mar.yaml) -> module of the handler package; "custom" names its own file in mar_build.json.
TASK_MODULES = {
    "text-classification": "text_classification",
    "token-classification": "token_classification",
    "embeddings": "embeddings",
    "image-classification": "image_classification",
    "tensor": "tensor",
}

_service: Any = None


def handle(data: list[dict[str, Any]] | None, context: Any) -> list[Any] | None:
    """TorchServe's function entry point: ``data`` None loads the model, a list of requests is one batch."""
    global _service
    if _service is None:
        _service = load_service(context)
    if data is None:
        return None
    return _service.handle(data, context)


def load_service(context: Any) -> Any:
    """Build and initialise the handler the archive's mar_build.json names; raise ValueError when it cannot."""
    base = importlib.import_module(f"{PACKAGE}.base")
    model_dir = Path(context.system_properties["model_dir"])
    config = base.read_config(model_dir)
    task = config.get("task")
    if task == "custom":
        if not config.get("custom_handler"):
            raise ValueError(f"{base.CONFIG_FILE}: task custom needs custom_handler (the handler file)")
        module = _import_custom(model_dir / config["custom_handler"], base)
    elif task in TASK_MODULES:
        module = importlib.import_module(f"{PACKAGE}.{TASK_MODULES[task]}")
    else:
        raise ValueError(f"{base.CONFIG_FILE}: unknown task {task!r}; expected one of {sorted(TASK_MODULES)} or custom")
    service = base.defined_subclass(module, base.BaseHandler, "BaseHandler")()
    service.initialize(context)
    return service


def _import_custom(path: Path, base: ModuleType) -> ModuleType:
    # Under its own name (pickles and tracebacks say "handler"), but by path and never over another module.
    name = path.stem
    existing = sys.modules.get(name)
    if existing is not None:
        if Path(getattr(existing, "__file__", "") or "").resolve() == path.resolve():
            return existing
        raise ValueError(f"the custom handler {path.name} shadows the module {name!r}; rename the file")
    return base.import_file(path, name)
