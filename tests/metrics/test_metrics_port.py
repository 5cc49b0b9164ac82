"""--metrics-port and the run copy of config.properties: where the metrics are served, and the metrics file found
in the layout (TorchServe takes metrics_config from no flag, and the pod's path is not this machine's)."""

from __future__ import annotations

from pathlib import Path

import pytest
from serve.serve_support import free_port

from toolkit import ServeError
from toolkit._layout import parse_properties
from toolkit._serve import serve
from toolkit._serve.config import free_port_config, local_paths

TEXT = """inference_address=http://127.0.0.1:8085
management_address=http://127.0.0.1:8081
metrics_address=http://0.0.0.0:8082
metrics_mode=prometheus
metrics_config=/mnt/models/config/metrics.yaml
model_store=/mnt/models/model-store
"""


def test_the_run_copy_serves_metrics_on_the_given_port_with_the_layout_s_metrics_file(tmp_path: Path) -> None:
    port = free_port()
    text, addresses, remapped = free_port_config(TEXT, parse_properties(TEXT), tmp_path, avoid=[8080],
                                                 metrics_port=port)
    props = parse_properties(text)
    assert props["metrics_address"] == f"http://127.0.0.1:{port}" and addresses["metrics"].endswith(f":{port}")
    assert f"metrics_address 8082 -> {port}" in remapped
    assert props["metrics_config"] == str(tmp_path / "config" / "metrics.yaml")
    assert props["inference_address"] != props["metrics_address"]


def test_without_metrics_config_the_run_copy_adds_none(tmp_path: Path) -> None:
    props = parse_properties(TEXT.replace("metrics_config=/mnt/models/config/metrics.yaml\n", ""))
    assert local_paths(props, tmp_path) == {}
    assert local_paths({"metrics_config": "/etc/metrics.yaml"}, tmp_path) == {}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"ts_ports": "config"}, "ts_ports='config' keeps the file's ports"),
    ({"port": 18181, "metrics_port": 18181}, "both the metrics port and another port"),
])
def test_a_metrics_port_that_cannot_be_is_refused_before_anything_starts(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {"metrics_port": free_port(), **kwargs}
    with pytest.raises(ServeError, match=message):
        serve(tmp_path, **arguments)  # type: ignore[arg-type]
