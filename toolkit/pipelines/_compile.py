"""The mlflow_to_kserve pipeline compiled to the YAML Kubeflow Pipelines takes for upload."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

from .._files import write_atomic
from ._components import steps


def compile_pipeline(output: str | Path, image: str, *, env: Mapping[str, str] | None = None) -> Path:
    """Compile mlflow_to_kserve, every step in ``image``, to the pipeline YAML ``output``; return its path.

    The file appears whole or not at all. Raises ToolkitError for a bad image reference (see ``steps``).
    """
    from kfp import compiler

    pipeline = steps(image, env=env).mlflow_to_kserve
    with tempfile.TemporaryDirectory(prefix="mar-build-pipeline-") as tmp:
        compiled = Path(tmp) / "pipeline.yaml"
        compiler.Compiler().compile(pipeline, str(compiled))
        return write_atomic(output, compiled.read_bytes())
