"""mar-build: a trained PyTorch or Hugging Face model to a KServe InferenceService on TorchServe, and back."""

from ._errors import (
    ArchiveError,
    DeployError,
    LayoutError,
    PredictError,
    RenderError,
    ServeError,
    SpecError,
    StagingError,
    TemplateError,
    ToolkitError,
)
from ._spec import KServeSettings, ModelSpec, Resources, ServerSettings, ServingSettings, load_spec

__all__ = [
    "ArchiveError",
    "DeployError",
    "KServeSettings",
    "LayoutError",
    "ModelSpec",
    "PredictError",
    "RenderError",
    "Resources",
    "ServeError",
    "ServerSettings",
    "ServingSettings",
    "SpecError",
    "StagingError",
    "TemplateError",
    "ToolkitError",
    "load_spec",
]
