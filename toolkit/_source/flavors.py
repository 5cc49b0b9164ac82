"""A downloaded MLflow model made into what mar-build's handlers load without MLflow.

``transformers``: the flavor keeps the model (``model/``) and its tokenizer (``components/tokenizer/``) apart; they
become one Hugging Face folder, as save_pretrained writes it, for the Hugging Face tasks.
``pytorch``: the logged module is loaded once here (mlflow.pytorch) and becomes TorchScript, traced with the logged
input example or an input made from the tensor signature; failing that, its state_dict plus the source of its class
from the model's code paths (the tensor handler's model_file + model_class).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import SpecError

SUPPORTED_FLAVORS = ("transformers", "pytorch")
_TRACE_BATCH = 2  # a -1 dimension of the signature, traced as 2 (not 1, which tracing could take for a constant)

log = logging.getLogger("toolkit.source")


@dataclass
class Servable:
    """The model as build() takes it, and how it was made (recorded in the archive's provenance)."""

    model: Path
    flavor: str
    model_file: Path | None = None
    model_class: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)


def servable(flavor: str, local: Path, meta: Any, out: Path, uri: str) -> Servable:
    """``local`` (a downloaded MLflow model of ``flavor``, its MLmodel read as ``meta``) made servable under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    if flavor == "transformers":
        return _transformers(local, meta.flavors["transformers"], out, uri)
    return _pytorch(local, meta, out, uri)


def _transformers(local: Path, conf: dict[str, Any], out: Path, uri: str) -> Servable:
    binary = conf.get("model_binary")
    if not binary or not (local / binary).is_dir():
        raise SpecError(
            f"{uri} was logged without its weights (a reference to {conf.get('source_model_name')!r} on a hub)",
            key="model", hint="log it with mlflow.transformers.log_model(..., save_pretrained=True)",
        )
    folder = out / "hf"
    sources = [local / binary] + [local / "components" / str(c) for c in conf.get("components") or []]
    for source in sources:
        for path in sorted(source.rglob("*")):
            target = folder / path.relative_to(source)
            if path.is_file() and not target.exists():  # the model's own files first, then each component's
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
    parts = " + ".join(p.relative_to(local).as_posix() + "/" for p in sources if p.is_dir())
    return Servable(folder, "transformers", provenance={
        "converted": f"one Hugging Face folder from {parts}", "mlflow_task": conf.get("task"),
    })


def _pytorch(local: Path, meta: Any, out: Path, uri: str) -> Servable:
    import torch

    with _quiet(), _own_imports(local):
        import mlflow.pytorch

        module = mlflow.pytorch.load_model(str(local))
        if not isinstance(module, torch.fx.GraphModule):  # torch.export's module refuses eval(): it has no modes
            module.eval()
        example, how = _example(local, meta)
        problem = "no input example or tensor signature to trace it with (log_model(..., input_example=X))"
        if example is not None:
            traced, problem = _trace(module, example, how)
            if traced is not None:
                path = out / "model.pt"
                torch.jit.save(traced, str(path))
                return Servable(path, "pytorch", provenance={"converted": f"TorchScript, traced with the {how}"})
        found = _module_source(local, meta, module)
        if isinstance(found, Path):
            path = out / "model.pt"
            torch.save(module.state_dict(), str(path))
            name = type(module).__name__
            return Servable(path, "pytorch", model_file=found, model_class=name, provenance={
                "converted": f"state_dict + {found.name} (class {name}) from the model's code paths"})
    raise SpecError(
        f"{uri}: the pytorch model cannot be made loadable without MLflow: {problem}, and {found}",
        key="model",
        hint="log it again with an input example (mlflow.pytorch.log_model(model, name=..., input_example=X)) "
             "or with the module's source (code_paths=['net.py'], serialization_format='pickle')",
    )


def _example(local: Path, meta: Any) -> tuple[Any, str]:
    """(an input to trace with, where it came from), or (None, "")."""
    import numpy as np
    import torch

    dtype = None
    inputs: Any = meta.signature.inputs if meta.signature is not None else None
    tensor_spec = inputs is not None and inputs.is_tensor_spec() and len(inputs.inputs) == 1
    if tensor_spec:
        dtype = inputs.inputs[0].type
    if meta.saved_input_example_info:
        value = meta.load_input_example(str(local))
        if isinstance(value, np.ndarray) and value.dtype != object:
            return torch.as_tensor(value.astype(dtype) if dtype is not None else value), "logged input example"
    if tensor_spec:
        shape = [_TRACE_BATCH if d == -1 else d for d in inputs.inputs[0].shape]
        sample = np.ones(shape, dtype=dtype)
        return torch.as_tensor(sample), f"signature (a tensor of shape {shape}, {np.dtype(dtype).name})"
    return None, ""


def _trace(module: Any, example: Any, how: str) -> tuple[Any, str]:
    """(the module traced, "") or (None, why not): the trace must answer the example as the module does."""
    import torch

    try:
        traced = torch.jit.trace(module, example)
        with torch.inference_mode():
            same = torch.allclose(traced(example), module(example), rtol=1e-4, atol=1e-5)
    except Exception as exc:  # torch's tracer raises many kinds: each means the same, tracing failed
        return None, f"tracing with the {how} failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
    if not same:
        return None, f"the module traced with the {how} answers differently (control flow that depends on data?)"
    return traced, ""


def _module_source(local: Path, meta: Any, module: Any) -> Path | str:
    """The .py in the model's code paths defining the module's class, or a sentence saying what is missing."""
    cls = type(module)
    code = meta.flavors["pytorch"].get("code")
    if not code or not (local / code).is_dir():
        return f"no code paths with the source of its class {cls.__name__} (log_model(..., code_paths=['net.py']))"
    candidate = local / code / (cls.__module__.replace(".", "/") + ".py")
    if not candidate.is_file():
        return f"the code paths hold no {cls.__module__}.py defining its class {cls.__name__}"
    try:
        cls()
    except TypeError as exc:
        return f"its class {cls.__name__} takes arguments ({exc}), and the handler builds it as {cls.__name__}()"
    return candidate


@contextmanager
def _quiet() -> Iterator[None]:
    """mlflow's and torch's warnings while loading and tracing (TracerWarning and friends) go to the log."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        log.debug("while converting: %s: %s", w.category.__name__, w.message)


@contextmanager
def _own_imports(local: Path) -> Iterator[None]:
    """The code paths mlflow puts on sys.path, and the modules imported from them, gone afterwards."""
    path, before = list(sys.path), set(sys.modules)
    try:
        yield
    finally:
        sys.path[:] = path
        root = str(local.resolve())
        for name in set(sys.modules) - before:
            origin = getattr(sys.modules[name], "__file__", None) or ""
            if origin.startswith(root):
                del sys.modules[name]
