"""init(): write a starting mar.yaml (and, for task custom, a handler.py scaffold) into a folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import SpecError
from .._files import PUBLIC_FILE, write_atomic
from .._names import suggest_isvc_name, suggest_model_name
from .._source import is_model_uri, parse_model_uri
from .._templating import render_template
from .parse import check_model_name, load_spec
from .settings import SPEC_FILENAME, TASKS

_TASK_OPTIONS: dict[str, dict[str, Any]] = {
    "text-classification": {"max_length": 128},
    "token-classification": {"max_length": 128},
    "embeddings": {"max_length": 128},
    "image-classification": {"image_size": [224, 224], "grayscale": False},
    "tensor": {},
    "custom": {},
}


@dataclass(frozen=True)
class InitResult:
    """What init() wrote: the mar.yaml, and the handler.py scaffold for task custom (else None)."""

    spec: Path
    handler: Path | None

    def to_dict(self) -> dict[str, Any]:
        return {"spec": str(self.spec), "handler": str(self.handler) if self.handler is not None else None}


def init(task: str, directory: str | Path, *, model: str | Path | None = None, name: str | None = None,
         force: bool = False) -> InitResult:
    """Write DIRECTORY/mar.yaml for TASK (and DIRECTORY/handler.py for custom); return the paths written.

    Refuses to overwrite existing files unless ``force``. Raises SpecError for an unknown task or a bad name.
    """
    if task not in TASKS:
        raise SpecError(f"unknown task {task!r}", hint=f"one of {', '.join(TASKS)}")
    folder = Path(directory)
    name = name or suggest_model_name(folder.resolve().name)
    check_model_name(name, key="--name")
    spec_file = folder / SPEC_FILENAME
    handler_file = folder / "handler.py" if task == "custom" else None
    for existing in (spec_file, handler_file):
        if existing is not None and existing.exists() and not force:
            raise SpecError(f"{existing} already exists", hint="pass --force to overwrite it, or pick another folder")
    model_value = None
    if isinstance(model, str) and is_model_uri(model):  # an MLflow URI, resolved when building
        model_value = parse_model_uri(model, key="--model").uri
    elif model is not None:
        model_path = Path(model).resolve()
        if not model_path.exists():
            raise SpecError(f"{model_path} does not exist", key="--model")
        model_value = os.path.relpath(model_path, folder.resolve())
    text = render_template(
        "mar.yaml.jinja", name=name, task=task, model=model_value, options=_TASK_OPTIONS[task],
        isvc_name=suggest_isvc_name(name), model_hint=_MODEL_HINTS[task],
    )
    handler_text = None
    if handler_file is not None:
        handler_text = render_template("custom_handler.py.jinja", name=name, class_name=_class_name(name))
    write_atomic(spec_file, text, mode=PUBLIC_FILE)  # creates the folder
    if handler_file is not None and handler_text is not None:
        write_atomic(handler_file, handler_text, mode=PUBLIC_FILE)
    if model_value is not None or task == "custom":
        load_spec(spec_file)  # what init writes must load back
    return InitResult(spec_file, handler_file)


def _class_name(name: str) -> str:
    parts = [p for p in "".join(c if c.isalnum() else " " for c in name).split() if p]
    cls = "".join(p[:1].upper() + p[1:] for p in parts) or "Model"
    return (cls if cls[0].isalpha() else "M" + cls) + "Handler"


_MODEL_HINTS = {
    "text-classification": "a folder from model.save_pretrained() and tokenizer.save_pretrained()",
    "token-classification": "a folder from model.save_pretrained() and tokenizer.save_pretrained()",
    "embeddings": "a folder from model.save_pretrained() and tokenizer.save_pretrained()",
    "image-classification": "a TorchScript .pt, or a state_dict with model_file",
    "tensor": "a TorchScript .pt, or a state_dict with model_file",
    "custom": "",
}
