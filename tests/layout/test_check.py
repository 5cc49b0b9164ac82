from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from toolkit import LayoutError
from toolkit._build.builder import build
from toolkit._cli import cli
from toolkit._layout.preflight import check


@pytest.fixture
def layout(tensor_spec, tmp_path: Path) -> Path:
    return build(tensor_spec(), tmp_path / "layout").layout


def _edit(layout: Path, pattern: str, replacement: str) -> None:
    config = layout / "config/config.properties"
    text = config.read_text()
    new = re.sub(pattern, replacement, text, flags=re.M)
    assert new != text, f"pattern {pattern!r} changed nothing"
    config.write_text(new)


def _messages(layout: Path, level: str = "error") -> list[str]:
    return [p.message for p in check(layout).problems if p.level == level]


def test_a_built_layout_is_clean(layout: Path) -> None:
    report = check(layout)
    assert report.ok and report.problems == [] and report.models == ["lin"]


@pytest.mark.parametrize(
    ("pattern", "replacement", "level", "expected"),
    [
        (r"^grpc_inference_port=.*\n", "", "error", "grpc_inference_port is missing"),
        (r"^model_store=.*$", "model_store=/home/model-server/model-store", "error", "model_store="),
        (r"^disable_token_authorization=.*\n", "", "error", "token authorization is left on"),
        (r"^inference_address=.*$", "inference_address=http://0.0.0.0:8080", "error", "port 8080"),
        (r"^management_address=.*$", "management_address=http://0.0.0.0:8081", "warning", "port 8081"),
        (r"^inference_address=.*$", "inference_address=http://0.0.0.0:9000", "warning", "forwards predictions to"),
        (r"^metrics_address=.*$", "metrics_address=http://0.0.0.0:7070", "error", "share port 7070"),
        (r"^metrics_mode=.*$", "metrics_format=prometheus", "warning", "metrics_format is a dead key"),
        (r"^enable_envvars_config=false$", "enable_envvars_config=true", "error", "batchSize 16 with the stock"),
        (r"^enable_envvars_config=false$", "service_envelope=kfserving", "error", "kfserving"),
        (r'"marName":"lin.mar"', '"marName":"bert.mar"', "error", "marName bert.mar is not in model-store/"),
        (r'"modelCount":1', '"modelCount":2', "error", "modelCount is 2 but it lists 1"),
        (r'"batchSize":16,', "", "error", "entry lacks batchSize"),
        (r'model_snapshot=\{', "model_snapshot={{", "error", "not valid JSON"),
        (r'"models":\{"lin"', '"models":{"bert"', "warning", "clients must call /v1/models/bert:predict"),
        (r"^# Prometheus text.*$", "# set metrics_mode=prometheus", "warning", "comment with '='"),
        (r'model_snapshot=\{"name"', 'model_snapshot=\\\n{"name"', "error", "continues over several lines"),
    ],
)
def test_each_problem_is_reported_with_its_fix(layout: Path, pattern, replacement, level, expected) -> None:
    _edit(layout, pattern, replacement)
    report = check(layout)
    found = [p for p in report.problems if p.level == level and expected in p.message]
    assert found, f"no {level} containing {expected!r} in {[str(p) for p in report.problems]}"
    assert all(p.hint for p in found)
    assert report.ok == (level == "warning" and not report.errors)


def test_requirements_without_install_flag(tensor_spec, tmp_path: Path) -> None:
    built = build(tensor_spec(requirements=["numpy"]), tmp_path / "layout").layout
    assert check(built).ok
    _edit(built, r"^install_py_dep_per_model=true\n", "")
    assert any("install_py_dep_per_model is not set" in m for m in _messages(built))


def test_unreferenced_and_unreadable_archives(layout: Path) -> None:
    (layout / "model-store/old.mar").write_bytes(b"not a zip")
    assert any("old.mar is not in model_snapshot" in m for m in _messages(layout, "warning"))
    (layout / "model-store/lin.mar").write_bytes(b"not a zip")
    assert any("is not a zip archive" in m for m in _messages(layout))


def test_the_design_hand_workflow_layout(tmp_path: Path) -> None:
    """The hand-written PVC layout teams use today (PVC leeway, key bert, model-store/bert-model.mar, as KServe's
    samples write it) is read, not rejected: its real problems are named."""
    layout = tmp_path / "leeway"
    (layout / "config").mkdir(parents=True)
    (layout / "model-store").mkdir()
    (layout / "config/config.properties").write_text(
        "inference_address=http://0.0.0.0:8085\nmanagement_address=http://0.0.0.0:8081\n"
        "metrics_address=http://0.0.0.0:8082\ngrpc_inference_port=7070\ngrpc_management_port=7071\n"
        "enable_metrics_api=true\nmetrics_format=prometheus\nnumber_of_netty_threads=4\njob_queue_size=100\n"
        "enable_envvars_config=true\ninstall_py_dep_per_model=true\nmodel_store=/mnt/models/model-store\n"
        'model_snapshot={"name":"startup.cfg","modelCount":1,"models":{"bert":{"1.0":{"defaultVersion":true,'
        '"marName":"bert-model.mar","minWorkers":1,"maxWorkers":5,"batchSize":1,"maxBatchDelay":5000,'
        '"responseTimeout":120}}}}\n'
    )
    with zipfile.ZipFile(layout / "model-store/bert-model.mar", "w") as zf:
        zf.writestr("MAR-INF/MANIFEST.json", '{"model": {"modelName": "bert-model", "modelVersion": "1.0", '
                    '"handler": "handler.py"}}')
    report = check(layout)
    errors = " | ".join(p.message for p in report.errors)
    warnings = " | ".join(p.message for p in report.warnings)
    assert report.models == ["bert"]
    assert "token authorization" in errors
    assert "batchSize" not in errors  # batch 1 is what makes the stock envelope work
    assert "metrics_format is a dead key" in warnings and "port 8081" in warnings
    assert "/v1/models/bert:predict" in warnings
    # Its management API on 0.0.0.0 with TorchServe's default allowed_urls: ShellTorch on the default 0.9.0 image.
    assert "management_address=http://0.0.0.0:8081 listens beyond loopback" in errors and "CVE-2023-43654" in errors
    assert "install_py_dep_per_model=true" in warnings  # the pod may have no package index


def test_not_a_layout(tmp_path: Path) -> None:
    (tmp_path / "config.properties").write_text("a=b\n")
    with pytest.raises(LayoutError, match="not a layout") as err:
        check(tmp_path)
    assert "config/config.properties" in str(err.value.hint)


def test_cli_lists_every_problem_and_exits_1(layout: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(cli, ["check", str(layout)])
    assert ok.exit_code == 0 and ok.output.startswith("ok:")
    _edit(layout, r"^disable_token_authorization=.*\n", "")
    _edit(layout, r"^grpc_inference_port=.*\n", "")
    bad = runner.invoke(cli, ["check", str(layout)])
    assert bad.exit_code == 1
    assert "token authorization" in bad.output and "grpc_inference_port is missing" in bad.output
    assert bad.output.count("fix:") >= 2 and "2 error(s)" in bad.output
    gone = runner.invoke(cli, ["check", str(layout / "model-store")])
    assert gone.exit_code == 1 and "point at the layout folder itself" in gone.output


def test_the_report_as_a_dict_holds_what_check_json_prints(layout: Path) -> None:
    _edit(layout, r"^disable_token_authorization=.*\n", "")
    _edit(layout, r"^metrics_mode=.*\n", "")
    report = check(layout)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["path"] == str(layout) and data["ok"] is False and data["models"] == ["lin"]
    assert (data["errors"], data["warnings"]) == (1, 1)
    assert data["problems"] == [{"level": p.level, "message": p.message, "fix": p.hint} for p in report.problems]
    assert [p["level"] for p in data["problems"]] == ["warning", "error"]
    assert "metrics_mode" in data["problems"][0]["message"] and data["problems"][1]["fix"].startswith("add ")
    cli_json = json.loads(CliRunner().invoke(cli, ["check", "--json", str(layout)]).output)
    assert {k: data[k] for k in cli_json} == cli_json  # every key the CLI prints today, with the same value


def test_cli_check_json_and_its_exit_status(layout: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(cli, ["check", str(layout), "--json"])
    assert ok.exit_code == 0
    assert json.loads(ok.stdout)["ok"] is True and json.loads(ok.stdout)["models"] == ["lin"]
    _edit(layout, r"^disable_token_authorization=.*\n", "")
    bad = runner.invoke(cli, ["check", str(layout), "--json"])
    assert bad.exit_code == 1  # machines get the same verdict as people
    report = json.loads(bad.stdout)
    assert report["ok"] is False
    [problem] = [p for p in report["problems"] if "token authorization" in p["message"]]
    assert problem["level"] == "error" and problem["fix"]


def test_the_torchserve_only_rules_do_not_hold_for_the_python_runtime(layout: Path) -> None:
    """Token authorization and the stock envelope with batchSize > 1 break the TorchServe path only: the python
    runtime checks no tokens and runs a stock envelope per request."""
    _edit(layout, r"^disable_token_authorization=true\n", "")
    _edit(layout, r"^enable_envvars_config=false", "enable_envvars_config=true")
    torchserve = [p.message for p in check(layout).errors]
    assert any("token authorization is left on" in m for m in torchserve)
    assert any("stock kserve envelope on" in m for m in torchserve)
    assert not check(layout, runtime="python").errors
    with pytest.raises(ValueError, match="runtime must be one of torchserve, python"):
        check(layout, runtime="triton")  # type: ignore[arg-type]
