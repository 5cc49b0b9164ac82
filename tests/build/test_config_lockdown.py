"""What config.properties exposes and how it sizes TorchServe in the pod (toolkit/_build/config.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from toolkit import SpecError
from toolkit._build.builder import build
from toolkit._build.config import pod_sizing, render_config
from toolkit._layout import parse_properties
from toolkit._spec import Resources, ServerSettings

SNAPSHOT = {"m": ("1.0", {"defaultVersion": True, "marName": "m.mar", "minWorkers": 1, "maxWorkers": 1,
                          "batchSize": 1, "maxBatchDelay": 5, "responseTimeout": 120})}


def _config(resources: Resources | None) -> str:
    return render_config(ServerSettings(), SNAPSHOT, sizes=(16 << 20, 16 << 20), install_py_dep_per_model=False,
                         resources=resources)


def test_torchserve_listens_on_loopback_except_for_metrics(tensor_spec, tmp_path: Path) -> None:
    props = parse_properties(build(tensor_spec(), tmp_path / "layout").config.read_text())
    assert props["inference_address"] == "http://127.0.0.1:8085"
    assert props["management_address"] == "http://127.0.0.1:8085"
    assert props["metrics_address"] == "http://0.0.0.0:8082"
    assert props["grpc_inference_address"] == props["grpc_management_address"] == "127.0.0.1"
    assert props["enable_model_api"] == "false"
    # TorchServe matches each comma-separated allowed_urls pattern against the whole URL (Pattern.matches)
    patterns = [re.compile(p, re.IGNORECASE) for p in props["allowed_urls"].split(",")]
    for url in ("http://evil.example/x.mar", "https://evil.example/x.mar", "file:///tmp/x.mar",
                "s3://bucket/x.mar", "file:///mnt/models/model-store/../../tmp/x.mar"):
        assert not any(p.fullmatch(url) for p in patterns), url
    assert any(p.fullmatch("file:///mnt/models/model-store/m.mar") for p in patterns)


def test_the_heap_and_the_default_workers_come_from_the_limits() -> None:
    props = parse_properties(_config(Resources(limits={"cpu": "2500m", "memory": "3Gi"})))
    assert props["vmargs"] == "-Xmx1536m -XX:+ExitOnOutOfMemoryError"
    assert props["default_workers_per_model"] == "3"  # 2.5 CPUs rounded up, as the CFS quota is counted
    small = parse_properties(_config(Resources(limits={"cpu": "500m", "memory": "200Mi"})))
    assert small["vmargs"].startswith("-Xmx128m ")  # the floor
    assert small["default_workers_per_model"] == "1"
    # no limit, no guess: TorchServe (and the JVM) decide as they would
    unlimited = parse_properties(_config(Resources(limits={})))
    assert "vmargs" not in unlimited and "default_workers_per_model" not in unlimited
    assert "vmargs" not in parse_properties(_config(None))


def test_the_sizing_comments_hold_no_equals_sign() -> None:
    text = _config(Resources(limits={"cpu": "2", "memory": "2Gi"}))
    for line in text.splitlines():  # the 0.9.0 wrapper reads any line with '=' as a key
        assert not (line.startswith("#") and "=" in line), line
    assert "(2Gi)" in text and "(2)" in text  # the limits it was sized for, for a reader comparing with render


def test_a_limit_that_is_no_quantity_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match=r"kserve.resources.limits.memory: 'lots' is not a Kubernetes quantity"):
        pod_sizing(Resources(limits={"memory": "lots"}))


def test_a_layout_rebuilt_with_another_model_is_sized_from_the_spec(tensor_spec, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    build(tensor_spec("one", name="one"), layout)
    limits = {"resources": {"limits": {"cpu": "4", "memory": "8Gi"}}}
    props = parse_properties(build(tensor_spec("two", name="two", kserve=limits), layout).config.read_text())
    assert props["vmargs"] == "-Xmx4096m -XX:+ExitOnOutOfMemoryError"
    assert props["default_workers_per_model"] == "4"
