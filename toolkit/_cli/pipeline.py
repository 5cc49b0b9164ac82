"""CLI command: pipeline (registered on the group in __init__). kfp is imported only when the command runs."""

from __future__ import annotations

from pathlib import Path

import click

from . import cli
from ._options import json_option, key_value_pairs
from ._output import finish


@cli.command("pipeline")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The pipeline YAML to write (upload it in the Kubeflow Pipelines UI, or with kfp.Client).")
@click.option("--image", required=True, metavar="IMAGE",
              help="REGISTRY/REPOSITORY:TAG of the image every step runs in: mar-build with its pipelines extra.")
@click.option("--env", "env", multiple=True, callback=key_value_pairs, metavar="KEY=VALUE",
              help="An environment variable for every step, e.g. MLFLOW_TRACKING_URI=http://mlflow.kubeflow:5000 "
              "(repeatable; written into the file: no secrets).")
@json_option()
def pipeline_command(output: Path, image: str, env: dict[str, str], as_json: bool) -> None:
    """Compile the mlflow_to_kserve pipeline (build from a registry URI, stage, deploy, smoke predict) for Kubeflow
    Pipelines v2.

    \b
    Example:
      mar-build pipeline -o mlflow-to-kserve.yaml --image ghcr.io/team/mar-build:1.0 \\
          --env MLFLOW_TRACKING_URI=http://mlflow.kubeflow:5000 --env MLFLOW_S3_ENDPOINT_URL=http://minio-service.kubeflow:9000
    """
    from ..pipelines import PIPELINE_NAME, compile_pipeline

    path = compile_pipeline(output, image, env=env)
    result = {"pipeline": PIPELINE_NAME, "output": str(path), "image": image}
    finish(result, as_json=as_json, show=lambda r: click.echo(f"wrote pipeline {r['pipeline']} to {r['output']} "
                                                               f"(steps run in {r['image']})"))
