"""Build from a real MLflow registry (`mlflow server`, SQLite, artifacts in a loopback S3 bucket), serve the layout,
and get the answers of the model loaded straight from MLflow."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from mlflow_support import TINY_INPUT, MlflowServer

import toolkit
from toolkit._build import build
from toolkit._layout import inspect, read_archive
from toolkit._spec.parse import parse_spec

pytestmark = pytest.mark.slow


def _spec(name: str, task: str, uri: str, tmp_path: Path, **keys: Any) -> Any:
    return parse_spec({"name": name, "task": task, "model": uri, **keys}, base=tmp_path)


def _mlflow_answers(uri: str, instances: Any, flavor: str) -> Any:
    """What the model answers loaded by MLflow itself (the reference the served answers must equal)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mlflow

        if flavor == "transformers":
            pipeline = mlflow.transformers.load_model(uri)
            return [row["label"] for row in pipeline(list(instances))]
        import torch

        module = mlflow.pytorch.load_model(uri)
        with torch.inference_mode():
            return module(torch.tensor(instances, dtype=torch.float32)).tolist()


def _close(actual: list[list[float]], expected: list[list[float]]) -> bool:
    return all(a == pytest.approx(e, rel=1e-5, abs=1e-6) for a, e in zip(actual, expected, strict=True))


def test_build_by_alias_and_version_serves_what_mlflow_answers(registry, mlflow_env: MlflowServer,
                                                              tmp_path: Path) -> None:
    instances = json.loads((registry.sample.folder / "sample.json").read_text())["instances"]
    texts = [i["data"] for i in instances]
    layout = tmp_path / "layout"
    by_alias = build(_spec("tiny", "tensor", "models:/tiny@champion", tmp_path), layout)
    assert by_alias.models == ["tiny"] and not by_alias.replaced
    by_version = build(_spec("intent", "text-classification", "models:/intent/1", tmp_path,
                             options={"max_length": 64}), layout)
    assert by_version.models == ["tiny", "intent"]
    expected_tiny = _mlflow_answers("models:/tiny/1", TINY_INPUT, "pytorch")
    expected_text = _mlflow_answers("models:/intent/1", texts, "transformers")
    with toolkit.serve(layout, port=_port(), runtime="python") as predictor, toolkit.Client(predictor.url) as client:
        served_tiny = client.predict("tiny", TINY_INPUT)
        served_text = client.predict("intent", texts)
    assert _close(served_tiny, expected_tiny), (served_tiny, expected_tiny)
    assert served_text == expected_text
    # and the alias chose version 1: version 2's weights answer otherwise
    assert not _close(served_tiny, _mlflow_answers("models:/tiny/2", TINY_INPUT, "pytorch"))


def test_the_archive_records_where_it_came_from_and_inspect_shows_it(registry, mlflow_env: MlflowServer,
                                                                     tmp_path: Path) -> None:
    result = build(_spec("tiny", "tensor", "models:/tiny@champion", tmp_path), tmp_path / "layout")
    source = read_archive(result.archive).source
    assert source is not None
    v1 = registry.tiny_v1
    assert {k: source[k] for k in ("uri", "registered_model", "alias", "version", "run_id", "source", "flavor")} == {
        "uri": "models:/tiny@champion", "registered_model": "tiny", "alias": "champion", "version": v1.version,
        "run_id": v1.run_id, "source": v1.source, "flavor": "pytorch",
    }
    assert source["tracking_uri"] == mlflow_env.tracking_uri
    assert source["converted"] == "TorchScript, traced with the logged input example"
    assert source["signature"]["inputs"] == [{"type": "tensor", "tensor-spec": {"dtype": "float32",
                                                                                "shape": [-1, 4]}}]
    [model] = inspect(result.layout).models
    assert model.source == source and model.to_dict()["source"] == source
    lines = "\n".join(model.source_lines())
    assert "models:/tiny@champion (registered model tiny @champion -> version 1; pytorch flavor)" in lines
    assert v1.run_id in lines and "signature" in lines


def test_runs_uri_builds_too(registry, mlflow_env: MlflowServer, tmp_path: Path) -> None:
    v2 = registry.tiny_v2
    result = build(_spec("tiny", "tensor", f"runs:/{v2.run_id}/model", tmp_path), tmp_path / "layout")
    source = read_archive(result.archive).source
    assert source is not None and source["run_id"] == v2.run_id and source["kind"] == "run"
    assert "registered_model" not in source


def test_the_cli_builds_by_version_and_torchserve_serves_it(registry, mlflow_env: MlflowServer,
                                                           tmp_path: Path) -> None:
    from toolkit._cli.build import build_command

    folder = tmp_path / "spec"
    folder.mkdir()
    (folder / "mar.yaml").write_text("name: tiny\ntask: tensor\nmodel: ./not-used\n")
    result = CliRunner().invoke(build_command, [str(folder), "--model", "models:/tiny/2", "-o",
                                                str(tmp_path / "layout"), "--json"])
    assert result.exit_code == 0, result.output
    [built] = json.loads(result.stdout)
    assert built["name"] == "tiny" and built["warnings"] == []
    with toolkit.serve(tmp_path / "layout", port=_port()) as predictor, toolkit.Client(predictor.url) as client:
        served = client.predict("tiny", TINY_INPUT)
    assert _close(served, _mlflow_answers("models:/tiny/2", TINY_INPUT, "pytorch"))


def test_a_pickled_module_becomes_its_state_dict_and_source(mlflow_env: MlflowServer, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "mlflow_tinynet.py").write_text(
        "import torch\n\n\nclass TinyNet(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        torch.manual_seed(5)\n        self.fc = torch.nn.Linear(4, 2)\n\n"
        "    def forward(self, x):\n        return self.fc(x) * 2\n"
    )
    monkeypatch.syspath_prepend(str(code))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mlflow
        from mlflow_tinynet import TinyNet

        net = TinyNet()
        with mlflow.start_run():  # no input example, no signature: tracing has nothing to go on
            mlflow.pytorch.log_model(net, name="model", serialization_format="pickle", pip_requirements=["torch"],
                                     code_paths=[str(code / "mlflow_tinynet.py")], registered_model_name="tinynet")
    del sys.modules["mlflow_tinynet"]
    monkeypatch.syspath_prepend(str(tmp_path))  # no longer the code folder first: the archive must carry it
    sys.path.remove(str(code))
    result = build(_spec("tinynet", "tensor", "models:/tinynet/1", tmp_path), tmp_path / "layout")
    info = read_archive(result.archive)
    assert info.has("model/mlflow_tinynet.py") and info.build_info is not None
    assert (info.build_info["model_file"], info.build_info["model_class"]) == ("model/mlflow_tinynet.py", "TinyNet")
    assert info.source is not None and "state_dict + mlflow_tinynet.py" in info.source["converted"]
    with toolkit.serve(result.layout, port=_port(), runtime="python") as predictor, \
            toolkit.Client(predictor.url) as client:
        served = client.predict("tinynet", TINY_INPUT)
    import torch

    with torch.inference_mode():
        expected = net(torch.tensor(TINY_INPUT)).tolist()
    assert _close(served, expected)


def _port() -> int:
    from stage.s3_support import free_port

    return free_port()


def test_a_signature_alone_is_enough_to_trace(mlflow_env: MlflowServer, tmp_path: Path) -> None:
    import zipfile

    import numpy as np
    import torch
    from mlflow_support import tiny_torch_module

    net = tiny_torch_module(seed=9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mlflow
        from mlflow.models import infer_signature

        x = np.array(TINY_INPUT, dtype=np.float32)
        signature = infer_signature(x, net(torch.from_numpy(x)).detach().numpy())
        with mlflow.start_run():  # pickled, a signature, no input example
            mlflow.pytorch.log_model(net, name="model", serialization_format="pickle", signature=signature,
                                     pip_requirements=["torch"], registered_model_name="signed")
    result = build(_spec("signed", "tensor", "models:/signed/1", tmp_path), tmp_path / "layout")
    source = read_archive(result.archive).source
    assert source is not None
    assert source["converted"] == "TorchScript, traced with the signature (a tensor of shape [2, 4], float32)"
    with zipfile.ZipFile(result.archive) as zf:
        (tmp_path / "model.pt").write_bytes(zf.read("model/model.pt"))
    traced = torch.jit.load(str(tmp_path / "model.pt"))
    batch = torch.rand(5, 4)
    assert torch.allclose(traced(batch), net(batch))
