"""The preflight's rules about the pod: what its image lacks (syntax, torch files, pins, a package index), what it
exposes (the management API), and the serving settings TorchServe silently drops. Real archives built by the
toolkit, edited where a user's hand-made archive would differ."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from toolkit._build.builder import build
from toolkit._cli import cli
from toolkit._layout.exposure import permissive
from toolkit._layout.preflight import check

MATCH_HANDLER = '''from mar_build_handlers.base import BaseHandler


class EchoHandler(BaseHandler):
    def load(self, model_path):
        self.model = None

    def preprocess_instance(self, instance):
        match instance:
            case {"x": x}:
                return x
            case _:
                return instance
'''

NET = '''import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)
        self.register_buffer("codes", torch.zeros(4, dtype=torch.uint16))

    def forward(self, x):
        return self.linear(x)
'''


def _edit(layout: Path, pattern: str, replacement: str) -> None:
    config = layout / "config/config.properties"
    text = config.read_text()
    new = re.sub(pattern, replacement, text, flags=re.M)
    assert new != text, f"pattern {pattern!r} changed nothing"
    config.write_text(new)


def _found(report, level: str, text: str) -> list:
    return [p for p in report.problems if p.level == level and text in p.message]


@pytest.fixture
def layout(tensor_spec, tmp_path: Path) -> Path:
    return build(tensor_spec(), tmp_path / "layout").layout


def test_handler_syntax_beyond_the_images_python(write_spec, tmp_path: Path) -> None:
    folder = write_spec(name="echo", task="custom", handler="handler.py")
    (folder / "handler.py").write_text(MATCH_HANDLER)
    built = build(folder, tmp_path / "l").layout
    [problem] = _found(check(built), "error", "handler.py line")
    assert "Python 3.9" in problem.message and "pytorch/torchserve-kfs:0.9.0" in problem.message
    assert "Pattern matching" in problem.message and "mar-build image" in problem.hint
    assert "python runtime" in problem.hint
    assert check(built, runtime="python").ok  # its image has Python 3.11


def test_tensors_of_a_dtype_the_images_torch_lacks(write_spec, tmp_path: Path) -> None:
    import torch

    folder = write_spec(name="codes", task="tensor", model="weights.pt", model_file="net.py")
    (folder / "net.py").write_text(NET)
    namespace: dict = {}
    exec(compile(NET, "net.py", "exec"), namespace)
    torch.save(namespace["Net"]().state_dict(), folder / "weights.pt")
    built = build(folder, tmp_path / "l").layout
    [problem] = _found(check(built), "error", "uint16 tensors")
    assert "torch 2.1.0" in problem.message and "torch 2.3 or newer" in problem.message
    assert "runtimeVersion 0.11.0" in problem.hint  # the first tag with torch 2.3
    assert not _found(check(built, runtime_version="0.11.0"), "error", "uint16")
    assert not _found(check(built, runtime="python"), "error", "uint16")


def test_pins_that_cannot_install_next_to_the_images_torch(tensor_spec, tmp_path: Path) -> None:
    built = build(tensor_spec(requirements=["torch==2.13.0", "numpy>=2"]), tmp_path / "l").layout
    report = check(built)
    [torch_pin] = _found(report, "error", "pins torch==2.13.0")
    assert "has torch 2.1.0" in torch_pin.message and "replaces the library the server" in torch_pin.message
    assert "pin torch==2.1.0" in torch_pin.hint
    assert _found(report, "error", "pins numpy>=2 but pytorch/torchserve-kfs:0.9.0 has numpy 1.24.3")
    [index] = _found(report, "warning", "install_py_dep_per_model=true")
    assert "package index" in index.message and "mar-build image" in index.hint
    python = check(built, runtime="python")
    assert not _found(python, "error", "pins")
    [python_index] = _found(python, "warning", "install_py_dep_per_model=true")  # it installs them too
    assert "the python runtime pip-installs" in python_index.message and "mar-build image" in python_index.hint


def test_the_hand_workflows_management_api_is_shelltorch(tmp_path: Path) -> None:
    """The hand workflow's config.properties binds the management API to 0.0.0.0:8081 with TorchServe's default
    allowed_urls: any pod that reaches the predictor can register an archive from anywhere."""
    layout = tmp_path / "leeway"
    (layout / "config").mkdir(parents=True)
    (layout / "model-store").mkdir()
    (layout / "config/config.properties").write_text(
        "inference_address=http://0.0.0.0:8085\nmanagement_address=http://0.0.0.0:8081\n"
        "metrics_address=http://0.0.0.0:8082\ngrpc_inference_port=7070\nmodel_store=/mnt/models/model-store\n"
        'model_snapshot={"name":"startup.cfg","modelCount":1,"models":{"bert":{"1.0":{"defaultVersion":true,'
        '"marName":"bert-model.mar","minWorkers":1,"maxWorkers":5,"batchSize":1,"maxBatchDelay":5000}}}}\n'
    )
    with zipfile.ZipFile(layout / "model-store/bert-model.mar", "w") as zf:
        zf.writestr("MAR-INF/MANIFEST.json", '{"model": {"modelName": "bert", "handler": "handler.py"}}')
    [shelltorch] = _found(check(layout), "error", "management_address=http://0.0.0.0:8081")
    assert "default allowed_urls" in shelltorch.message and "CVE-2023-43654" in shelltorch.message
    assert "no switch for the model API" in shelltorch.message
    assert "127.0.0.1:8085" in shelltorch.hint and "allowed_urls=file:///mnt/models/model-store/.*" in shelltorch.hint
    # 0.12.0 keeps the model API off unless asked: one flag away, a warning; asked, an error again.
    assert _found(check(layout, runtime_version="0.12.0"), "warning", "one flag is all that stands")
    (layout / "config/config.properties").write_text(
        (layout / "config/config.properties").read_text() + "enable_model_api=true\n")
    assert _found(check(layout, runtime_version="0.12.0"), "error", "enable_model_api=true")
    assert not _found(check(layout, pod=False), "error", "management_address")  # a local serve is not the pod
    _edit(layout, r"^management_address=.*$", "management_address=http://127.0.0.1:8085")
    assert not _found(check(layout), "error", "management_address")


def test_a_built_layout_exposes_nothing_and_a_limited_allowed_urls_is_enough(layout: Path) -> None:
    assert check(layout).problems == []
    _edit(layout, r"^management_address=.*$", "management_address=http://0.0.0.0:8085")
    assert not _found(check(layout), "error", "management_address")  # allowed_urls admits the model store only
    _edit(layout, r"^allowed_urls=.*$", "allowed_urls=file:///mnt/models/model-store/.*,https://.*")
    assert _found(check(layout), "error", "allowed_urls=file:///mnt/models/model-store/.*,https://.*")


@pytest.mark.parametrize(
    ("allowed", "expected"),
    [(None, True), ("file://.*|http(s)?://.*", True), ("file:///mnt/models/model-store/.*", False),
     ("https://models.example.com/.*", False), ("http://.*", True), ("(", False), (".*", True)],
)
def test_permissive_allowed_urls(allowed: str | None, expected: bool) -> None:
    assert permissive(allowed) is expected


def _add_model_config(mar: Path, text: str) -> None:
    """What torch-model-archiver --config-file writes: the file in the archive, named by MANIFEST's configFile."""
    copy = mar.with_suffix(".tmp")
    with zipfile.ZipFile(mar) as src, zipfile.ZipFile(copy, "w") as dst:
        for item in src.infolist():
            if item.filename == "model-config.yaml":
                continue
            data = src.read(item)
            if item.filename == "MAR-INF/MANIFEST.json":
                manifest = json.loads(data)
                manifest["model"]["configFile"] = "model-config.yaml"
                data = json.dumps(manifest).encode()
            dst.writestr(item, data)
        dst.writestr("model-config.yaml", text)
    shutil.move(copy, mar)


def test_a_model_config_yaml_that_voids_model_snapshot(layout: Path) -> None:
    mar = layout / "model-store/lin.mar"
    _add_model_config(mar, "minWorkers: 1\nmaxWorkers: 1\nbatchSize: 4\nmaxBatchDelay: 5\n")
    report = check(layout)
    [batch] = _found(report, "warning", "batchSize is 16 in model_snapshot but 4 in the archive's model-config.yaml")
    assert "silently void" in batch.message and "pytorch/serve#2209" in batch.message
    assert not _found(report, "warning", "maxBatchDelay is")  # the two agree there
    _add_model_config(mar, "minWorkers: 3\nmaxWorkers: 2\n")
    assert _found(check(layout), "error", "lin.mar's model-config.yaml has minWorkers 3 > maxWorkers 2")


def test_min_workers_above_max_workers(layout: Path) -> None:
    _edit(layout, r'"minWorkers":\d+', '"minWorkers":4')
    _edit(layout, r'"maxWorkers":\d+', '"maxWorkers":2')
    for report in (check(layout), check(layout, pod=False), check(layout, runtime="python")):
        [problem] = _found(report, "error", "minWorkers 4 > maxWorkers 2")
        assert "model_snapshot" in problem.message and "at least 4" in problem.hint


def test_an_unknown_runtime_version_is_said_not_fatal(layout: Path) -> None:
    report = check(layout, runtime_version="0.7.0")
    [problem] = _found(report, "warning", "runtime_version '0.7.0'")
    assert "compatibility rules were not run" in problem.message and report.ok


def test_cli_check_takes_the_runtime_version(tmp_path: Path, tensor_spec) -> None:
    built = build(tensor_spec(requirements=["torch==2.4.0"]), tmp_path / "l").layout
    runner = CliRunner()
    default = runner.invoke(cli, ["check", str(built)])
    assert default.exit_code == 1 and "has torch 2.1.0" in default.output
    newer = runner.invoke(cli, ["check", str(built), "--runtime-version", "0.12.0", "--json"])
    assert newer.exit_code == 0 and not json.loads(newer.stdout)["errors"]
    gpu = runner.invoke(cli, ["check", str(built), "--runtime-version", "0.12.0-gpu"])
    assert gpu.exit_code == 0


def test_a_requirement_with_no_release_for_the_images_python(tensor_spec, tmp_path: Path) -> None:
    """Asked of the real package index: mlflow 3.17.2 needs Python >= 3.10, the default image has 3.9."""
    built = build(tensor_spec(requirements=["mlflow==3.17.2"]), tmp_path / "l").layout
    [problem] = _found(check(built), "error", "asks for mlflow==3.17.2")
    assert "no release for Python 3.9" in problem.message and "need Python >=3.10" in problem.message
    assert "mar-build image" in problem.hint
    assert not _found(check(built, runtime="python"), "error", "mlflow")  # Python 3.11
    assert not _found(check(built, probe=False), "error", "mlflow")  # the index is asked only when probing


def test_a_name_the_index_does_not_have_is_said_not_judged(tensor_spec, tmp_path: Path) -> None:
    from toolkit._pod import image_facts, unavailable

    missing, why = unavailable(["surely-not-a-real-package-mar-build==1.0"], image_facts())
    assert missing == [] and "lists no release at all" in why
