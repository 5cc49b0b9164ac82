"""The compiled mlflow_to_kserve pipeline, loaded back from its YAML, run end to end with kfp.local's subprocess
runner: build from a real MLflow registry (`mlflow server`, artifacts in the loopback S3 endpoint) by alias ->
stage to that S3 endpoint -> deploy to the stand-in cluster (whose controller serves the staged layout for real) ->
smoke predict against that predictor. One run for the session (slow); the tests read it.
"""

from __future__ import annotations

import json
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pipelines_support import IMAGE, ControllerStandIn, local_runs
from source.mlflow_support import TINY_INPUT, log_tiny_torch, mlflow_server
from stage.s3_support import MotoServer

import toolkit._cli.pipeline  # noqa: F401  (registers `pipeline` until the group lists it)
from toolkit import PredictError
from toolkit._cli import cli
from toolkit.pipelines._run import predict_step

pytestmark = pytest.mark.slow

NAMESPACE = "kubeflow-user-example-com"
ISVC = "tiny"


def mlflow_predictions(uri: str) -> list[list[float]]:
    """What the registered model answers, loaded straight from MLflow."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mlflow
        import torch

        module = mlflow.pytorch.load_model(uri)
        with torch.inference_mode():
            return module(torch.tensor(TINY_INPUT, dtype=torch.float32)).tolist()  # type: ignore[no-any-return]


def kubeconfig(path: Path, server: str) -> Path:
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "standin", "cluster": {"server": server}}],
        "users": [{"name": "pipeline", "user": {"token": "stand-in-token"}}],
        "contexts": [{"name": "stand-in", "context": {"cluster": "standin", "user": "pipeline",
                                                       "namespace": NAMESPACE}}],
        "current-context": "stand-in",
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@dataclass
class Run:
    output: str
    seconds: float
    root: Path
    bucket: str
    champion: list[list[float]]  # models:/tiny@champion (version 1) as MLflow answers
    latest: list[list[float]]    # models:/tiny/2
    standin: ControllerStandIn


@pytest.fixture(scope="module")
def run(moto: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    import boto3
    from click.testing import CliRunner
    from kfp import components

    tmp = tmp_path_factory.mktemp("pipeline-run")
    bucket = f"pipeline-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1").create_bucket(Bucket=bucket)
    with mlflow_server(tmp / "mlflow", s3_endpoint=moto.url) as server:
        v1 = log_tiny_torch(server, "tiny", seed=1)
        log_tiny_torch(server, "tiny", seed=2)
        with server.client_env():
            import mlflow

            mlflow.MlflowClient().set_registered_model_alias("tiny", "champion", v1.version)
            champion, latest = mlflow_predictions("models:/tiny@champion"), mlflow_predictions("models:/tiny/2")
        # The MLflow settings reach the steps the way a cluster's would: compiled into the pipeline.
        compiled = tmp / "pipeline.yaml"
        result = CliRunner().invoke(cli, [
            "pipeline", "-o", str(compiled), "--image", IMAGE, "--env", f"MLFLOW_TRACKING_URI={server.tracking_uri}",
            "--env", f"MLFLOW_S3_ENDPOINT_URL={moto.url}",
        ])
        assert result.exit_code == 0, result.output
        pipeline = components.load_component_from_file(str(compiled))
        standin = ControllerStandIn().start()
        mp = pytest.MonkeyPatch()
        mp.setenv("KUBECONFIG", str(kubeconfig(tmp / "kubeconfig", standin.url)))
        mp.setenv("AWS_ENDPOINT_URL", moto.url)  # what the storage-initializer gets from the S3 Secret, for serve
        mp.setenv("S3_USE_HTTPS", "0")
        try:
            with local_runs(tmp / "root"):
                start = time.monotonic()
                task = pipeline(
                    model_uri="models:/tiny@champion", task="tensor", storage_uri=f"s3://{bucket}/tiny",
                    isvc_name=ISVC, namespace=NAMESPACE, s3_endpoint=moto.url,
                    render_args=f"--runtime python --image {IMAGE}", smoke_instances=json.dumps(TINY_INPUT),
                )
                seconds = time.monotonic() - start
            print(f"mlflow_to_kserve under kfp.local, end to end: {seconds:.1f} s")
            yield Run(task.output, seconds, tmp / "root", bucket, champion, latest, standin)
        finally:
            mp.undo()
            standin.stop()


def _close(actual: Any, expected: Any) -> bool:
    return all(a == pytest.approx(e, rel=1e-5, abs=1e-6) for a, e in zip(actual, expected, strict=True))


def test_the_pipeline_served_what_mlflow_answers_for_the_alias(run: Run) -> None:
    assert run.standin.error is None, run.standin.error
    served = json.loads(run.output)
    assert _close(served, run.champion)
    assert not _close(served, run.latest)  # the alias's version 1, not the latest version 2


def test_the_layout_was_staged_where_the_inference_service_reads_it(run: Run, moto: MotoServer) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=run.bucket)["Contents"]}
    layout = next(run.root.rglob("build-layout/layout"))
    files = {p.relative_to(layout).as_posix() for p in layout.rglob("*") if p.is_file()}
    # What the pod reads (more files may sit in the layout for other readers: stage decides what goes).
    assert {"tiny/config/config.properties", "tiny/model-store/tiny.mar"} <= keys <= {f"tiny/{f}" for f in files}
    assert run.standin.served_uri == f"s3://{run.bucket}/tiny"


def test_deploy_applied_the_rendered_manifests_and_kept_them_as_an_artifact(run: Run) -> None:
    assert run.standin.isvc(ISVC, NAMESPACE) is not None
    assert run.standin.serving_runtime(f"{ISVC}-mar-build", NAMESPACE) is not None  # render_args reached render
    # The S3 Secret with the keys went to the cluster, never into the manifests artifact.
    secrets = [o for (plural, _, _), o in run.standin.objects.items() if plural == "secrets"]
    assert secrets and all("testing-secret" in json.dumps(s) for s in secrets)
    manifests = list(run.root.rglob("deploy-layout/manifests"))
    assert len(manifests) == 1
    text = manifests[0].read_text(encoding="utf-8")
    assert {"ServiceAccount", "ServingRuntime", "InferenceService"} <= {
        d["kind"] for d in yaml.safe_load_all(text) if d}
    assert "testing-secret" not in text


def test_every_step_ran(run: Run) -> None:
    tasks = {p.name for p in next(run.root.glob("mlflow-to-kserve-*")).iterdir() if p.is_dir()}
    assert {"build-layout", "stage-layout", "deploy-layout", "smoke-predict"} <= tasks


def test_the_smoke_step_fails_on_other_predictions(run: Run) -> None:
    url = run.standin.predictor.url
    assert _close(json.loads(predict_step(url, ISVC, instances=json.dumps(TINY_INPUT))), run.champion)
    with pytest.raises(PredictError, match="expected"):
        predict_step(url, ISVC, instances=json.dumps(TINY_INPUT), expected=json.dumps(run.latest))
