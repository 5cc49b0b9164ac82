"""`mar-build pipeline` and toolkit.pipelines.compile_pipeline: the YAML Kubeflow Pipelines takes, read back with the
kfp SDK; kfp stays out of `import toolkit` and `mar-build --help`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from pipelines_support import IMAGE

import toolkit._cli.pipeline  # noqa: F401  (registers `pipeline` until the group lists it)
from toolkit import ToolkitError
from toolkit._cli import cli

STEPS = ["build-layout", "stage-layout", "deploy-layout", "smoke-predict"]


def _compiled(tmp_path: Path, *extra: str) -> tuple[Path, Any]:
    from google.protobuf.json_format import MessageToDict
    from kfp import components

    out = tmp_path / "pipeline.yaml"
    result = CliRunner().invoke(cli, ["pipeline", "-o", str(out), "--image", IMAGE, *extra])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote pipeline mlflow-to-kserve to {out} (steps run in {IMAGE})\n"
    loaded = components.load_component_from_file(str(out))
    return out, (loaded, MessageToDict(loaded.pipeline_spec))


def test_the_compiled_pipeline_loads_back_with_its_steps_parameters_and_image(tmp_path: Path) -> None:
    _, (loaded, spec) = _compiled(tmp_path, "--env", "MLFLOW_TRACKING_URI=http://mlflow.kubeflow:5000")
    assert loaded.name == "mlflow-to-kserve"
    inputs = set(loaded.component_spec.inputs)
    assert {"model_uri", "storage_uri", "isvc_name", "namespace", "smoke_instances", "s3_endpoint"} <= inputs
    required = {n for n, i in loaded.component_spec.inputs.items() if not i.optional}
    assert required == {"model_uri", "storage_uri", "isvc_name"}
    executors = spec["deploymentSpec"]["executors"]
    assert sorted(executors) == sorted(f"exec-{s}" for s in STEPS)
    for name, executor in executors.items():
        container = executor["container"]
        assert container["image"] == IMAGE, name
        assert container["env"] == [{"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow.kubeflow:5000"}]
        # kfp is not pip-installed at run time: the image has it (no network needed in the pod).
        assert "pip install" not in " ".join(container["command"])
        assert "from toolkit.pipelines._run import" in container["command"][-1]
    tasks = spec["root"]["dag"]["tasks"]
    assert sorted(tasks) == sorted(STEPS)
    assert tasks["stage-layout"]["dependentTasks"] == ["build-layout"]
    assert sorted(tasks["deploy-layout"]["dependentTasks"]) == ["build-layout", "stage-layout"]
    assert sorted(tasks["smoke-predict"]["dependentTasks"]) == ["build-layout", "deploy-layout"]
    assert all(t["cachingOptions"] == {} for t in tasks.values())  # caching off: an alias may move
    assert spec["root"]["outputDefinitions"]["parameters"]["Output"]["parameterType"] == "STRING"


def test_the_file_is_plain_pipeline_yaml(tmp_path: Path) -> None:
    out, _ = _compiled(tmp_path)
    doc = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert doc["pipelineInfo"]["name"] == "mlflow-to-kserve"
    assert doc["schemaVersion"] == "2.1.0"


def test_json_output_and_a_bad_image(tmp_path: Path) -> None:
    out = tmp_path / "p.yaml"
    result = CliRunner().invoke(cli, ["pipeline", "-o", str(out), "--image", IMAGE, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"pipeline": "mlflow-to-kserve", "output": str(out), "image": IMAGE}
    bad = CliRunner().invoke(cli, ["pipeline", "-o", str(tmp_path / "bad.yaml"), "--image", "python:3.11"])
    assert bad.exit_code == 1
    assert "error: the pipeline image 'python:3.11' does not start with a registry host" in bad.stderr
    assert not (tmp_path / "bad.yaml").exists()
    usage = CliRunner().invoke(cli, ["pipeline", "-o", str(out), "--image", IMAGE, "--env", "NOVALUE"])
    assert usage.exit_code == 2 and "'NOVALUE' is not KEY=VALUE" in usage.stderr


def test_the_public_names() -> None:
    import toolkit.pipelines

    assert toolkit.pipelines.__all__ == ["PIPELINE_NAME", "Steps", "compile_pipeline", "steps"]
    made = toolkit.pipelines.steps(IMAGE)
    assert made.image == IMAGE
    assert [c.name for c in (made.build, made.build_from_folder, made.stage, made.deploy, made.predict)] == [
        "build-layout", "build-layout-from-folder", "stage-layout", "deploy-layout", "smoke-predict"]


def test_steps_refuses_a_bad_image() -> None:
    from toolkit.pipelines import steps

    with pytest.raises(ToolkitError, match="is not a valid repository name"):
        steps("ghcr.io/Team/UPPER:1")


@pytest.mark.parametrize("code", [
    "import toolkit, toolkit._cli",
    # the pipeline command registered, as the group does when --help lists the commands
    "import toolkit._cli.pipeline; from toolkit._cli import main; main()",
])
def test_kfp_stays_out_of_import_toolkit_and_help(code: str) -> None:
    probe = f"import sys; sys.argv = ['mar-build', '--help']\ntry:\n    {code}\nexcept SystemExit:\n    pass\n" \
            "print(sorted(m for m in sys.modules if m == 'kfp' or m.startswith(('kfp.', 'toolkit.pipelines'))))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
