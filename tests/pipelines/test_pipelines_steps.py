"""The steps one at a time: a folder artifact (kfp's importer) built into a layout, a deploy that never gets ready
failing its step with deploy's diagnosis (kfp.local against the deploy tests' stand-in API server), and the step
functions' own errors."""

# No `from __future__ import annotations`: kfp reads the test pipeline's annotations as types.

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy.k8s_support import (
    NAMESPACE,
    POD,
    Frame,
    StandInApiServer,
    cond,
    exited,
    pod,
    running,
    terminated,
    waiting,
)
from pipelines_support import IMAGE, linear_model, local_runs

from toolkit import SpecError, ToolkitError
from toolkit.pipelines._run import build_step

pytestmark = pytest.mark.slow


@pytest.fixture
def oom_cluster(tmp_path: Path) -> Iterator[tuple[StandInApiServer, Path]]:
    """The stand-in with a predictor that is OOMKilled over and over, and a kubeconfig pointing at it."""
    oom = pod(POD, "lin", phase="Running", init=[terminated("storage-initializer", "Completed", 0)],
              containers=[waiting("kserve-container", "CrashLoopBackOff", restarts=4, last=exited("OOMKilled", 137))])
    server = StandInApiServer().start()
    server.frames = [
        Frame(status={"conditions": [cond("Ready", "False")]}, pods=[pod(
            POD, "lin", init=[running("storage-initializer", ready=False)],
            containers=[waiting("kserve-container", "PodInitializing")])]),
        Frame(status={"conditions": [cond("Ready", "False")]}, pods=[oom],
              logs={(POD, "kserve-container", True): "Model lin loaded.\n"}),
    ]
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "s",
        "clusters": [{"name": "s", "cluster": {"server": server.url}}], "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "s", "context": {"cluster": "s", "user": "u", "namespace": NAMESPACE}}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    yield server, path
    server.stop()


def test_a_folder_artifact_builds_and_a_predictor_that_never_gets_ready_fails_the_deploy_step(
    tmp_path: Path, oom_cluster: tuple[StandInApiServer, Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kfp import dsl

    from toolkit.pipelines import steps

    server, kubeconfig = oom_cluster
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    weights = linear_model(tmp_path / "trained", name=None)  # no mar.yaml: the step gets task and name
    s = steps(IMAGE)

    @dsl.pipeline(name="folder-to-kserve")
    def folder_to_kserve(model_dir: str) -> str:
        model = dsl.importer(artifact_uri=model_dir, artifact_class=dsl.Model, reimport=False)
        built = s.build_from_folder(model=model.output, task="tensor", name="lin",
                                    spec="version: '2.0'\noptions: {output: argmax}")
        s.deploy(layout=built.outputs["layout"], isvc_name="lin", storage_uri="pvc://models/lin",
                 namespace=NAMESPACE, wait_timeout=120.0)
        return built.outputs["model_name"]  # type: ignore[no-any-return]

    with local_runs(tmp_path / "root"), pytest.raises(RuntimeError, match="Inner task failed: .*deploy-layout"):
        folder_to_kserve(model_dir=str(weights / "model.pt"))
    logs = capsys.readouterr().out

    # The build step made a layout of the folder's weights with the step's spec.
    layout = next((tmp_path / "root").glob("folder-to-kserve-*/build-layout-from-folder/layout"))
    files = {p.relative_to(layout).as_posix() for p in layout.rglob("*") if p.is_file()}
    assert {"config/config.properties", "model-store/lin.mar"} <= files
    assert '"2.0"' in (layout / "config" / "config.properties").read_text(encoding="utf-8")
    # The deploy step applied the InferenceService, then failed with deploy's diagnosis and its hint.
    assert server.isvc("lin", NAMESPACE) is not None
    assert "is not ready: kserve-container is CrashLoopBackOff" in logs
    assert "last exit: OOMKilled (exit code 137)" in logs
    assert "hint: kserve-container was OOMKilled" in logs
    assert "`mar-build deploy" in logs and "failed (exit status 1)" in logs


@pytest.mark.parametrize(("spec", "message"), [
    ("[1, 2]", "must be a mapping of mar.yaml keys, got list"),
    ("task: [unclosed", "is not YAML"),
    ("model: other.pt", "names a model"),
])
def test_a_bad_step_spec_is_refused_before_any_build(tmp_path: Path, spec: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        build_step(str(tmp_path), str(tmp_path / "layout"), task="tensor", name="lin", spec=spec)
    assert not (tmp_path / "layout").exists()


def test_a_failing_command_fails_the_step_with_its_message(tmp_path: Path) -> None:
    model: Any = linear_model(tmp_path / "m", name="lin")
    with pytest.raises(SpecError, match="has its own mar.yaml"):
        build_step(str(model), str(tmp_path / "layout"), spec="options: {}")
    with pytest.raises(ToolkitError) as info:
        build_step(str(tmp_path / "missing.pt"), str(tmp_path / "layout"), task="tensor", name="lin")
    text = str(info.value)
    assert "`mar-build build" in text and "failed (exit status 1)" in text
    assert "missing.pt" in text  # the command's own error, said in the step's error


def test_the_model_name_defaults_to_the_registered_models_and_is_needed_otherwise(tmp_path: Path) -> None:
    from toolkit.pipelines._run import _registered_name

    assert _registered_name("models:/tiny@champion") == "tiny"
    assert _registered_name("models:/fraud model/3") == "fraud-model"  # made a valid URL name
    with pytest.raises(SpecError, match="needs a model name") as info:
        build_step(str(tmp_path / "weights.pt"), str(tmp_path / "layout"), task="tensor")
    assert "model_name" in (info.value.hint or "")
    assert not (tmp_path / "layout").exists()


def test_build_then_stage_to_a_mounted_claim(tmp_path: Path) -> None:
    from toolkit.pipelines._run import stage_step

    layout = tmp_path / "layout"
    assert build_step(str(linear_model(tmp_path / "m", name="lin")), str(layout), version="3") == ("lin", "3")
    mount = tmp_path / "mnt"
    mount.mkdir()
    assert stage_step(str(layout), "pvc://leeway/lin", mount=str(mount)) == "pvc://leeway/lin"
    assert (mount / "lin" / "model-store" / "lin.mar").read_bytes() == (layout / "model-store" / "lin.mar").read_bytes()
    assert (mount / "lin" / "config" / "config.properties").is_file()
