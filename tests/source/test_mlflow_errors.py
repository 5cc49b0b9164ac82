"""Every way resolving an MLflow URI fails says what was wrong and how to fix it, fast, and never a credential."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from mlflow_support import MlflowServer
from stage.s3_support import free_port

from toolkit._build import build
from toolkit._errors import SpecError
from toolkit._spec.parse import parse_spec

pytestmark = pytest.mark.slow
SECRET = "s3cr3t-Value-never-printed"


def _fails(uri: str, tmp_path: Path, task: str = "tensor") -> SpecError:
    spec = parse_spec({"name": "m", "task": task, "model": uri}, base=tmp_path)
    with pytest.raises(SpecError) as err:
        build(spec, tmp_path / "layout")
    assert not (tmp_path / "layout").exists(), "nothing is written when the model cannot be had"
    return err.value


@pytest.mark.parametrize(("uri", "message", "hint"), [
    ("models:/tinny/1", "no registered model named 'tinny'", "did you mean 'tiny'?"),
    ("models:/tiny/99", "model 'tiny' has no version 99", "its versions: 2, 1; aliases: @champion"),
    ("models:/tiny@nope", "model 'tiny' has no alias 'nope'", "its aliases: @champion -> 1; its versions: 2, 1"),
    ("runs:/0123456789abcdef0123456789abcdef/model", "run 0123456789abcdef0123456789abcdef does not exist",
     "copy the run id"),
])
def test_unknown_name_version_alias_or_run(registry, mlflow_env: MlflowServer, tmp_path: Path, uri: str,
                                           message: str, hint: str) -> None:
    err = _fails(uri, tmp_path)
    assert message in err.message and mlflow_env.tracking_uri in err.message
    assert err.hint is not None and hint in err.hint


def test_a_server_that_does_not_answer_fails_in_seconds_without_its_password(
    mlflow_env: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:{SECRET}@127.0.0.1:{port}")
    start = time.monotonic()
    err = _fails("models:/tiny/1", tmp_path)
    elapsed = time.monotonic() - start
    print(f"\nunreachable tracking server reported after {elapsed:.1f} s")  # ~3 s: 2 retries; mlflow's own: minutes
    assert f"the MLflow tracking server http://***@127.0.0.1:{port} does not answer (connection refused)" in str(err)
    assert SECRET not in str(err) and "alice" not in str(err)
    assert err.hint is not None and "MLFLOW_TRACKING_URI" in err.hint


def test_no_tracking_uri_says_which_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    err = _fails("models:/tiny/1", tmp_path)
    assert "MLFLOW_TRACKING_URI is not set" in err.message


def test_artifacts_behind_an_endpoint_that_is_down_never_print_credentials(
    registry, mlflow_env: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    text = str(_fails("models:/tiny/1", tmp_path))
    assert "the model files of models:/tiny/1 cannot be downloaded from s3://mlflow/artifacts/" in text
    assert "EndpointConnectionError" in text and "MLFLOW_S3_ENDPOINT_URL (http://127.0.0.1:" in text
    assert "AWS_SECRET_ACCESS_KEY" in text and SECRET not in text


_BUILD = """
import sys
from pathlib import Path
from toolkit._build import build
from toolkit._errors import SpecError
from toolkit._spec.parse import parse_spec
try:
    build(parse_spec({"name": "m", "task": "tensor", "model": "models:/tiny/1"}, base=Path(".")), sys.argv[1])
except SpecError as exc:
    print(exc)
    sys.exit(3)
"""


def test_artifacts_without_credentials_say_which_variables(registry, mlflow_env: MlflowServer,
                                                           tmp_path: Path) -> None:
    # In a fresh process, as a user's: boto3 keeps the credentials a process once found for the process's life.
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    run = subprocess.run([sys.executable, "-c", _BUILD, str(tmp_path / "layout")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 3, run.stderr[-3000:]
    assert "the model files of models:/tiny/1 cannot be downloaded" in run.stdout
    assert "NoCredentialsError" in run.stdout and "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY" in run.stdout
    assert mlflow_env.env["AWS_SECRET_ACCESS_KEY"] not in run.stdout + run.stderr


class _Echo:  # a pyfunc model: a flavor mar-build does not serve
    def predict(self, context: Any, model_input: Any) -> Any:
        return model_input


def test_a_flavor_we_cannot_serve_is_refused_naming_those_we_can(mlflow_env: MlflowServer, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mlflow

        class Echo(mlflow.pyfunc.PythonModel, _Echo):
            pass

        with mlflow.start_run():
            mlflow.pyfunc.log_model(name="model", python_model=Echo(), pip_requirements=["mlflow"],
                                    registered_model_name="echo")
    err = _fails("models:/echo/1", tmp_path)
    assert "is an MLflow model of flavor python_function, which mar-build cannot serve" in err.message
    assert err.hint is not None and "transformers, pytorch" in err.hint


class NoSource(__import__("torch").nn.Module):  # importable here, absent from the model's code paths
    def __init__(self) -> None:
        super().__init__()
        import torch

        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x: Any) -> Any:
        return self.fc(x)


def test_a_pytorch_model_without_example_or_source_says_which_is_missing(mlflow_env: MlflowServer,
                                                                        tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mlflow

        with mlflow.start_run():
            mlflow.pytorch.log_model(NoSource(), name="model", serialization_format="pickle",
                                     pip_requirements=["torch"], registered_model_name="nosource")
    err = _fails("models:/nosource/1", tmp_path)
    assert "the pytorch model cannot be made loadable without MLflow" in err.message
    assert "no input example or tensor signature to trace it with" in err.message
    assert "no code paths with the source of its class NoSource" in err.message
    assert err.hint is not None and "input_example" in err.hint and "code_paths" in err.hint


def test_a_flavor_the_task_cannot_serve(registry, mlflow_env: MlflowServer, tmp_path: Path) -> None:
    err = _fails("models:/intent/1", tmp_path, task="tensor")
    assert "models:/intent/1 is a transformers model; task 'tensor' cannot serve it" in err.message
    assert err.hint is not None and "text-classification" in err.hint
