"""mar-build: a trained PyTorch or Hugging Face model to a KServe InferenceService on TorchServe, and back.

The flow, one call a step (the `mar-build` commands are thin adapters over the same calls):

    spec = load_spec("samples/text-classification")        # mar.yaml + overrides
    result = build(spec, "build/intent")                    # layout: config/config.properties + model-store/*.mar
    check(result.layout)                                    # preflight: every known KServe/TorchServe pitfall
    with serve(result.layout) as predictor:                 # the predictor pod, locally (runtime="python": no Java)
        Client(predictor.url).predict("intent", ["Where is my parcel?"])
    stage(result.layout, "s3://models/intent")              # or pvc://claim/prefix with mount=
    manifests = render(result.layout, name="intent", storage_uri="s3://models/intent")
    deploy(manifests)                                       # apply, wait, diagnose
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

# Heavier parts (kserve, boto3, kubernetes, httpx) load on first use, so `import toolkit` stays quick.
_LAZY = {
    "init": "._spec",
    "build": "._build",
    "build_many": "._build",
    "BuildResult": "._build",
    "CheckReport": "._layout",
    "LocalPredictor": "._serve",
    "RuntimePredictor": "._serve",
    "StageResult": "._stage",
    "DeployResult": "._deploy",
    "inspect": "._layout",
    "check": "._layout",
    "serve": "._serve",
    "stage": "._stage",
    "render": "._render",
    "Manifests": "._render",
    "S3Credentials": "._render",
    "PvcRequest": "._render",
    "deploy": "._deploy",
    "status": "._deploy",
    "delete": "._deploy",
    "Client": "._client",
    "AsyncClient": "._client",
}

if TYPE_CHECKING:
    from ._build import BuildResult, build, build_many
    from ._client import AsyncClient, Client
    from ._deploy import DeployResult, delete, deploy, status
    from ._layout import CheckReport, check, inspect
    from ._render import Manifests, PvcRequest, S3Credentials, render
    from ._serve import LocalPredictor, RuntimePredictor, serve
    from ._spec import init
    from ._stage import StageResult, stage


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'toolkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "ArchiveError",
    "AsyncClient",
    "BuildResult",
    "CheckReport",
    "Client",
    "DeployError",
    "DeployResult",
    "KServeSettings",
    "LayoutError",
    "LocalPredictor",
    "Manifests",
    "ModelSpec",
    "PredictError",
    "PvcRequest",
    "RenderError",
    "Resources",
    "RuntimePredictor",
    "S3Credentials",
    "ServeError",
    "ServerSettings",
    "ServingSettings",
    "SpecError",
    "StageResult",
    "StagingError",
    "TemplateError",
    "ToolkitError",
    "build",
    "build_many",
    "check",
    "delete",
    "deploy",
    "init",
    "inspect",
    "load_spec",
    "render",
    "serve",
    "stage",
    "status",
]
