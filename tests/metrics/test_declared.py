"""The names, the layout's metrics.yaml, and the handler side of the metrics API, without a server.

The handler's reports go through TorchServe's own metrics cache (ts.metrics.MetricsCacheYamlImpl, what a worker
builds from metrics_config) and come out as the [METRICS] lines TorchServe's frontend parses.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from handlers import metrics as handler_metrics
from toolkit._metrics import HANDLER_METRICS, TORCHSERVE_METRICS, metrics_yaml, names, parse_declared

TS_METRICS_YAML = Path(__import__("ts").__file__).parent / "configs" / "metrics.yaml"


def test_the_handlers_report_exactly_the_names_the_toolkit_declares() -> None:
    expected = {m.name: (m.kind, m.unit, m.labels) for m in HANDLER_METRICS}
    actual = {name: (kind, unit, handler_metrics.MODEL_LABELS + extra)
              for name, (kind, unit, extra) in handler_metrics.METRICS.items()}
    assert actual == expected


def test_the_metrics_file_keeps_every_default_of_torchserve_0_12() -> None:
    stock = yaml.safe_load(TS_METRICS_YAML.read_text())
    ours = yaml.safe_load(metrics_yaml())
    for section in ("ts_metrics", "model_metrics"):
        for kind, entries in stock[section].items():
            declared = {e["name"]: e for e in ours[section][kind]}
            for entry in entries:
                assert declared[entry["name"]] == entry, (section, kind, entry)
    assert {m.name for m in TORCHSERVE_METRICS} == {
        e["name"] for s in ("ts_metrics", "model_metrics") for es in stock[s].values() for e in es}


def test_the_metrics_file_holds_only_keys_torchserve_s_frontend_maps() -> None:
    # SnakeYAML maps the file onto MetricConfiguration: an unknown key stops TorchServe's metrics altogether.
    document = yaml.safe_load(metrics_yaml())
    assert set(document) == {"dimensions", "ts_metrics", "model_metrics"}
    for section in ("ts_metrics", "model_metrics"):
        assert set(document[section]) <= {"counter", "gauge", "histogram"}
        for entries in document[section].values():
            assert all(set(e) == {"name", "unit", "dimensions"} for e in entries)
    declared = parse_declared(metrics_yaml())
    assert {m.name: (m.kind, m.labels) for m in HANDLER_METRICS}.items() <= declared.items()


def test_a_built_layout_names_its_metrics_file(tmp_path: Path) -> None:
    from toolkit._build.builder import build
    from toolkit._layout import read_layout
    from toolkit._spec.parse import parse_spec

    model = tmp_path / "linear.pt"
    import torch

    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(model))
    spec = parse_spec({"name": "linear", "task": "tensor", "model": str(model)}, base=tmp_path)
    layout = build(spec, tmp_path / "layout").layout
    properties = read_layout(layout).properties
    assert properties[names.METRICS_CONFIG_KEY] == names.POD_METRICS_CONFIG == "/mnt/models/config/metrics.yaml"
    assert (layout / "config" / names.METRICS_FILE).read_text() == metrics_yaml()


@pytest.fixture
def ts_cache(tmp_path: Path) -> object:
    """TorchServe's own backend cache, built from our metrics file as a worker builds it."""
    from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl

    path = tmp_path / "metrics.yaml"
    path.write_text(metrics_yaml())
    cache = MetricsCacheYamlImpl(config_file_path=str(path))
    cache.initialize_cache()
    return cache


class _Context:
    def __init__(self, cache: object) -> None:
        self.metrics = cache


def test_the_handler_reports_through_torchserve_s_cache_as_the_frontend_reads_it(
    ts_cache: object, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = handler_metrics.Recorder(_Context(ts_cache), "intent", "1.0")
    with caplog.at_level(logging.INFO, logger="ts.metrics.caching_metric"):
        recorder.record(handler_metrics.REQUESTS, 3, "200")
        recorder.record(handler_metrics.INFERENCE_SECONDS, 0.25)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[METRICS]")]
    assert lines[0].startswith(
        "[METRICS]mar_build_requests_total.Count:3|#model_name:intent,model_version:1.0,status:200|#type:COUNTER|")
    assert lines[1].startswith(
        "[METRICS]mar_build_inference_seconds.Seconds:0.25|#model_name:intent,model_version:1.0|#type:HISTOGRAM|")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_failing_metrics_backend_never_fails_the_request(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def get_metric(self, *args: object) -> object:
            raise RuntimeError("backend down")

        add_metric_to_cache = get_metric

    recorder = handler_metrics.Recorder(_Context(Broken()), "intent", "1.0")
    recorder.record(handler_metrics.REQUESTS, 1, "200")
    recorder.record(handler_metrics.REQUESTS, 1, "200")  # reported once, then silent
    assert len([r for r in caplog.records if "reporting metric" in r.getMessage()]) == 1


def test_the_python_runtime_context_takes_torchserve_s_calls_into_prometheus() -> None:
    from prometheus_client import REGISTRY
    from ts.metrics.dimension import Dimension

    from toolkit._metrics import handler_metrics as runtime_context_metrics
    from toolkit._metrics.names import Metric
    from toolkit._metrics.registry import HOST, declare

    declare([Metric("test_custom_total", "counter", "count", ("shard", "ModelName", "Level"), "model_metrics", "")])
    cache = runtime_context_metrics("intent")
    cache.add_counter("test_custom_total", 2, dimensions=[Dimension("shard", "a")])  # ModelName, Level appended
    cache.add_counter("never_declared", 1)
    recorder = handler_metrics.Recorder(_Context(cache), "intent", "1.0")
    recorder.record(handler_metrics.BAD_REQUESTS, 1, "instance")
    labels = {"shard": "a", "ModelName": "intent", "Level": "Model", "Hostname": HOST}
    assert REGISTRY.get_sample_value("test_custom_total", labels) == 2
    bad = {"model_name": "intent", "model_version": "1.0", "reason": "instance", "Hostname": HOST}
    assert REGISTRY.get_sample_value("mar_build_bad_requests_total", bad) == 1
    assert cache.dropped == {"never_declared": 1}


def test_the_python_runtime_exports_what_the_layout_s_metrics_file_declares(tmp_path: Path) -> None:
    from prometheus_client import REGISTRY

    from toolkit._metrics import declare_layout_metrics
    from toolkit._metrics import handler_metrics as runtime_context_metrics
    from toolkit._metrics.registry import HOST

    text = metrics_yaml().replace(
        "model_metrics:\n  counter:\n",
        "model_metrics:\n  counter:\n  - name: layout_cache_hits\n    unit: count\n"
        "    dimensions: [ModelName, Level]\n")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "metrics.yaml").write_text(text)
    declared = declare_layout_metrics({"metrics_config": "/mnt/models/config/metrics.yaml"}, tmp_path)
    assert "layout_cache_hits" in declared
    runtime_context_metrics("intent").add_counter("layout_cache_hits", 3)
    labels = {"ModelName": "intent", "Level": "Model", "Hostname": HOST}
    assert REGISTRY.get_sample_value("layout_cache_hits", labels) == 3  # as TorchServe names it: no _total
