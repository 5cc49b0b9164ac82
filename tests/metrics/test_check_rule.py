"""The preflight rule: a metric a handler reports that no metrics file declares (toolkit/_metrics/rules.py)."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from toolkit._layout import read_layout, set_properties
from toolkit._metrics import metrics_findings, metrics_yaml, names

CUSTOM_HANDLER = '''
class Handler:
    def handle(self, data, context):
        context.metrics.add_counter("CacheHits", 1)
        context.metrics.add_time(name="TokenizeTime", value=2.0)
        context.metrics.add_metric(f"dynamic_{len(data)}", 1, "count")  # built at run time: not seen
        return data
'''


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A layout mar-build built (task tensor): its archive carries the mar-build handlers and their metrics."""
    import torch

    from toolkit._build.builder import build
    from toolkit._spec.parse import parse_spec

    root = tmp_path_factory.mktemp("rule")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(root / "linear.pt"))
    spec = parse_spec({"name": "linear", "task": "tensor", "model": str(root / "linear.pt")}, base=root)
    return build(spec, root / "layout").layout


def _copy(layout: Path, target: Path, **properties: str | None) -> Path:
    shutil.copytree(layout, target)
    config = target / "config" / "config.properties"
    text = config.read_text()
    keep = {k: v for k, v in properties.items() if v is not None}
    for key in [k for k, v in properties.items() if v is None]:
        text = "".join(line for line in text.splitlines(keepends=True) if not line.startswith(f"{key}="))
    config.write_text(set_properties(text, keep) if keep else text)
    return target


def test_a_layout_mar_build_built_declares_every_metric_its_handlers_report(built: Path) -> None:
    assert metrics_findings(read_layout(built)) == []


def test_a_config_without_metrics_config_loses_the_handlers_metrics(built: Path, tmp_path: Path) -> None:
    layout = _copy(built, tmp_path / "hand", metrics_config=None)
    [(level, message, fix)] = metrics_findings(read_layout(layout))
    assert level == "warning"
    assert "linear.mar reports metrics that TorchServe's default metrics file does not declare" in message
    assert all(m.name in message for m in names.HANDLER_METRICS)
    assert "metrics_config=/mnt/models/config/metrics.yaml" in fix


def test_model_metrics_auto_detect_exports_them_anyway(built: Path, tmp_path: Path) -> None:
    layout = _copy(built, tmp_path / "auto", metrics_config=None, model_metrics_auto_detect="true")
    assert metrics_findings(read_layout(layout)) == []


def test_a_metrics_file_the_layout_lacks_is_an_error(built: Path, tmp_path: Path) -> None:
    layout = _copy(built, tmp_path / "nofile")
    (layout / "config" / "metrics.yaml").unlink()
    [(level, message, _)] = metrics_findings(read_layout(layout))
    assert level == "error"
    assert "config/metrics.yaml" in message and "workers fail to start" in message


def test_a_metrics_file_outside_the_pod_s_folder_is_flagged(built: Path, tmp_path: Path) -> None:
    layout = _copy(built, tmp_path / "outside", metrics_config="/etc/ts/metrics.yaml")
    [(level, message, _)] = metrics_findings(read_layout(layout))
    assert level == "warning" and "/mnt/models" in message


def test_a_declaration_with_other_labels_is_flagged(built: Path, tmp_path: Path) -> None:
    layout = _copy(built, tmp_path / "relabelled")
    path = layout / "config" / "metrics.yaml"
    path.write_text(path.read_text().replace("[model_name, model_version, status]", "[model_name, status]"))
    [(level, message, _)] = metrics_findings(read_layout(layout))
    assert level == "warning"
    assert "mar_build_requests_total as a counter with labels ['model_name', 'status']" in message


def test_a_custom_handler_s_metric_is_flagged_until_declared(built: Path, tmp_path: Path) -> None:
    layout = _copy(built, tmp_path / "custom")
    mar = layout / "model-store" / "linear.mar"
    with zipfile.ZipFile(mar, "a") as archive:
        archive.writestr("custom_handler.py", CUSTOM_HANDLER)
    [(level, message, _)] = metrics_findings(read_layout(layout))
    assert level == "warning"
    assert message.endswith("does not declare, so TorchServe exports none of them: CacheHits, TokenizeTime")
    declared = metrics_yaml().replace(
        "model_metrics:\n  counter:\n",
        "model_metrics:\n  counter:\n  - name: CacheHits\n    unit: count\n    dimensions: [ModelName, Level]\n"
        "  - name: TokenizeTime\n    unit: ms\n    dimensions: [ModelName, Level]\n",
    )
    (layout / "config" / "metrics.yaml").write_text(declared)
    assert metrics_findings(read_layout(layout)) == []


def test_building_into_a_hand_written_layout_keeps_its_config_and_check_names_the_gap(
    built: Path, tmp_path: Path
) -> None:
    """A hand-written config.properties keeps its bytes (only model_snapshot changes); the metrics file lands beside
    it, unreferenced, and the rule says what to add."""
    import torch

    from toolkit._build.builder import build
    from toolkit._spec.parse import parse_spec

    layout = _copy(built, tmp_path / "hand", metrics_config=None)
    config = layout / "config" / "config.properties"
    config.write_text("".join(line for line in config.read_text().splitlines(keepends=True)
                              if "written by mar-build" not in line))
    (layout / "config" / "metrics.yaml").unlink()
    before = [line for line in config.read_text().splitlines() if not line.startswith("model_snapshot=")]
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(tmp_path / "other.pt"))
    build(parse_spec({"name": "other", "task": "tensor", "model": str(tmp_path / "other.pt")}, base=tmp_path), layout)
    assert [line for line in config.read_text().splitlines() if not line.startswith("model_snapshot=")] == before
    assert (layout / "config" / "metrics.yaml").read_text() == metrics_yaml()
    [(level, message, fix)] = metrics_findings(read_layout(layout))
    assert level == "warning" and "mar_build_requests_total" in message
    assert "metrics_config=/mnt/models/config/metrics.yaml" in fix


def test_for_the_python_runtime_a_missing_metrics_file_is_only_a_warning(built: Path, tmp_path: Path) -> None:
    layout = _copy(built, tmp_path / "nofile-python")
    (layout / "config" / "metrics.yaml").unlink()
    [(level, message, _)] = metrics_findings(read_layout(layout), runtime="python")
    assert level == "warning" and "config/metrics.yaml" in message
