"""Load a plain PyTorch model: an eager nn.Module (its .py file + a state_dict) or a TorchScript file.

Shared by the tensor and image-classification handlers (and free for custom handlers to use).
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from types import ModuleType

import torch

from .base import defined_subclass, import_file


def load_torch_model(
    weights: Path, model_file: Path | None, model_class: str | None, device: torch.device
) -> torch.nn.Module:
    """The model in eval mode on ``device``.

    With ``model_file``: instantiate its nn.Module (``model_class``, or the only one it defines) with no arguments
    and load the state_dict ``weights``. Without: ``weights`` is TorchScript. Raises ValueError naming the fix.
    """
    if model_file is None:
        try:
            model = torch.jit.load(str(weights), map_location=device)
        except RuntimeError as exc:
            raise ValueError(
                f"{weights.name} is not a TorchScript file ({exc.__class__.__name__}); for a state_dict, "
                "give the model file (.py defining the nn.Module) as well"
            ) from exc
        return model.eval()
    cls = module_class(_import_model_file(model_file), model_class)
    try:
        model = cls()
    except TypeError as exc:
        raise ValueError(f"{cls.__name__}() must be constructible without arguments: {exc}") from exc
    model.load_state_dict(load_state_dict(weights))
    return model.to(device).eval()


def load_state_dict(weights: Path) -> dict[str, torch.Tensor]:
    """A state_dict from ``.safetensors`` or a torch-saved file (``weights_only``: no code runs at load)."""
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(weights), device="cpu")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"{weights.name} is not a state_dict torch can load safely ({exc}); save model.state_dict(), "
            "not the model object"
        ) from exc
    if not isinstance(state, dict):
        raise ValueError(f"{weights.name} holds a {type(state).__name__}, not a state_dict")
    return state


def module_class(module: ModuleType, name: str | None) -> type[torch.nn.Module]:
    """The nn.Module class ``name`` in ``module``, or the only one it defines; raise ValueError otherwise."""
    if name is not None:
        cls = getattr(module, name, None)
        if not (inspect.isclass(cls) and issubclass(cls, torch.nn.Module)):
            raise ValueError(f"{module.__file__} defines no nn.Module named {name!r}")
        return cls
    return defined_subclass(module, torch.nn.Module, "nn.Module", hint="; name the class to use (model_class)")


def _import_model_file(path: Path) -> ModuleType:
    # Under a private name, by path; its folder goes on sys.path so the file can import its sibling modules.
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.append(folder)
    return import_file(path, f"mar_build_model_{path.stem}")
