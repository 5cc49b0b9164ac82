"""Kubeflow Pipelines v2 steps for mar-build: build, stage, deploy and smoke-predict components, and the ready
``mlflow_to_kserve`` pipeline made of them (the ``pipelines`` extra: kfp). Nothing else in the toolkit imports kfp.

    from toolkit.pipelines import steps, compile_pipeline
    s = steps("ghcr.io/team/mar-build:1.0")       # every component runs `mar-build` in this image
    s.mlflow_to_kserve                             # the pipeline: kfp.Client().create_run_from_pipeline_func(...)
    compile_pipeline("pipeline.yaml", "ghcr.io/team/mar-build:1.0")     # = mar-build pipeline -o ... --image ...
"""

from __future__ import annotations

from ._compile import compile_pipeline
from ._components import PIPELINE_NAME, Steps, steps

__all__ = ["PIPELINE_NAME", "Steps", "compile_pipeline", "steps"]
