"""render(monitor=..., dashboard=..., alerts=...): PodMonitor, ServiceMonitor, the dashboard ConfigMap and the
PrometheusRule, validated against the prometheus-operator CRDs and golden; and render(image=...) for TorchServe."""

from __future__ import annotations

import json
import logging
import re

import pytest
import yaml
from click.testing import CliRunner

from toolkit._cli import cli
from toolkit._errors import RenderError
from toolkit._monitor import panel_queries
from toolkit._render import render

NS = "kubeflow-user-example-com"
IMAGE = "ghcr.io/team/mar-build-torchserve:1.0"
TARGET = {"name": "torchserve", "namespace": NS, "storage_uri": "pvc://leeway"}


def by_kind(manifests) -> dict[str, dict]:
    return {d["kind"]: d for d in manifests.documents}


@pytest.mark.parametrize("monitor", ["podmonitor", "servicemonitor"])
def test_a_monitor_selects_the_predictor_pods_and_validates(hand_layout, golden, validate, monitor):
    manifests = render(hand_layout, **TARGET, monitor=monitor, monitor_release="kube-prometheus-stack")
    validate(manifests.documents)
    golden(f"render/{monitor}.yaml", manifests.text)
    assert manifests.documents[-1]["kind"] == "InferenceService"  # still last: apply order, deploy, the CLI
    # The labels KServe puts on predictor pods (pkg/constants: InferenceServicePodLabelKey, KServiceComponentLabel).
    pods = {"serving.kserve.io/inferenceservice": "torchserve", "component": "predictor"}
    if monitor == "podmonitor":
        doc = by_kind(manifests)["PodMonitor"]
        assert doc["spec"]["selector"]["matchLabels"] == pods
        [endpoint] = doc["spec"]["podMetricsEndpoints"]
        address = next(r for r in endpoint["relabelings"] if r.get("targetLabel") == "__address__")
        assert address["replacement"] == "$1:8082"  # TorchServe's metrics port, not the API's
    else:
        doc = by_kind(manifests)["ServiceMonitor"]
        service = by_kind(manifests)["Service"]
        assert service["spec"]["selector"] == pods and service["spec"]["clusterIP"] == "None"
        assert service["spec"]["ports"] == [{"name": "metrics", "port": 8082, "targetPort": 8082, "protocol": "TCP"}]
        # The monitor selects that Service, and nothing of KServe's.
        assert doc["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        assert doc["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "metrics"
        assert doc["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
    assert doc["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # No scraping annotation: the operator would not read it, and a second scraper would double every series.
    assert "serving.kserve.io/enable-prometheus-scraping" not in manifests.documents[-1]["metadata"].get(
        "annotations", {})


def test_the_python_runtime_is_scraped_on_its_api_port(hand_layout, validate):
    manifests = render(hand_layout, **TARGET, runtime="python", image=IMAGE, monitor="podmonitor")
    validate(manifests.documents)
    [endpoint] = by_kind(manifests)["PodMonitor"]["spec"]["podMetricsEndpoints"]
    assert [r["replacement"] for r in endpoint["relabelings"] if "replacement" in r] == ["$1:8080"]
    assert "release" not in by_kind(manifests)["PodMonitor"]["metadata"]["labels"]


def test_a_layout_serving_metrics_elsewhere_is_scraped_there(layout_factory, validate):
    layout = layout_factory({"bert": None}, metrics_port=9092)
    manifests = render(layout, **TARGET, monitor="servicemonitor")
    validate(manifests.documents)
    assert [p["targetPort"] for p in by_kind(manifests)["Service"]["spec"]["ports"]] == [9092]


def test_the_dashboard_configmap_is_labelled_for_the_grafana_sidecar(hand_layout, golden, validate):
    manifests = render(hand_layout, **TARGET, dashboard=True)
    validate(manifests.documents)
    golden("render/dashboard_configmap.yaml", manifests.text)
    configmap = by_kind(manifests)["ConfigMap"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    [(file, text)] = configmap["data"].items()
    assert file == "mar-build-torchserve.json"
    model = json.loads(text)
    assert model["uid"] == "mar-build-torchserve" and model["title"] == "mar-build: torchserve"
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert set(variables) == {"datasource", "namespace", "isvc", "model"}
    assert variables["isvc"]["current"]["value"] == "torchserve" and variables["model"]["current"]["value"] == ["bert"]
    titles = [title for title, _ in panel_queries(model)]
    for wanted in ("Requests by status", "Latency", "Queue latency", "Batch size distribution",
                   "Instances per second", "Bad requests by reason", "Worker restarts", "CPU against limit",
                   "Memory against limit"):
        assert wanted in titles
    # Every query is scoped by the dashboard's variables, so one dashboard serves every InferenceService.
    for _, expr in panel_queries(model):
        assert re.search(r'namespace=~"\$namespace", pod=~"\$isvc-predictor-\.\*"', expr), expr


def test_the_prometheusrule_validates_and_uses_the_predictor_timeout(hand_layout, golden, validate):
    manifests = render(hand_layout, **TARGET, timeout=60, alerts=True, monitor="podmonitor",
                       monitor_release="kube-prometheus-stack")
    validate(manifests.documents)
    golden("render/prometheusrule.yaml", yaml.safe_dump(by_kind(manifests)["PrometheusRule"], sort_keys=False))
    rule = by_kind(manifests)["PrometheusRule"]
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    [group] = rule["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert set(alerts) == {"MarBuildErrorRatio", "MarBuildLatencyNearTimeout", "MarBuildWorkersRestarting",
                           "MarBuildNoTraffic"}
    # 0.8 x the 60 s predictor timeout is above the histogram's largest bucket (10 s): the threshold is that bound.
    assert alerts["MarBuildLatencyNearTimeout"]["expr"].endswith(">= 10")
    short = render(hand_layout, **TARGET, timeout=5, alerts=True)
    [group] = by_kind(short)["PrometheusRule"]["spec"]["groups"]
    assert next(r for r in group["rules"] if r["alert"] == "MarBuildLatencyNearTimeout")["expr"].endswith(">= 4")


def test_prometheus_is_the_annotations_monitor(hand_layout):
    old = render(hand_layout, **TARGET, prometheus=True)
    new = render(hand_layout, **TARGET, monitor="annotations")
    assert old.text == new.text
    assert new.documents[-1]["metadata"]["annotations"]["serving.kserve.io/enable-prometheus-scraping"] == "true"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"monitor": "prometheus-operator"}, "monitor must be one of annotations, podmonitor, servicemonitor"),
        ({"monitor_release": "kps"}, "no PodMonitor, ServiceMonitor or PrometheusRule carries it"),
        ({"monitor": "annotations", "monitor_release": "kps"}, "add --monitor podmonitor"),
        ({"dashboard": True, "monitor_release": "kps"}, "no PodMonitor, ServiceMonitor or PrometheusRule"),
        ({"monitor": "podmonitor", "monitor_release": "bad release!"}, "release"),
    ],
)
def test_monitoring_errors_say_what_would_be_valid(hand_layout, options, message):
    with pytest.raises(RenderError) as info:
        render(hand_layout, **TARGET, **options)
    assert message in str(info.value) and info.value.hint


def test_an_image_for_kserves_own_torchserve_runtime_goes_on_the_predictor(hand_layout, validate, caplog):
    with caplog.at_level(logging.WARNING, logger="toolkit.render"):
        manifests = render(hand_layout, **TARGET, image=IMAGE)
    validate(manifests.documents)
    assert "no fixed tag" not in caplog.text
    [isvc] = manifests.documents
    model = isvc["spec"]["predictor"]["model"]
    assert model["image"] == IMAGE and "runtime" not in model and model["modelFormat"]["name"] == "pytorch"


def test_the_cli_renders_every_monitoring_object(hand_layout, tmp_path):
    out = tmp_path / "isvc.yaml"
    result = CliRunner().invoke(cli, [
        "render", str(hand_layout), "--name", "torchserve", "-n", NS, "--storage-uri", "pvc://leeway",
        "--monitor", "podmonitor", "--monitor-release", "kps", "--dashboard", "--alerts", "--image", IMAGE,
        "--runtime-version", "0.12.0", "-o", str(out),
    ], catch_exceptions=False)
    assert result.exit_code == 1 and "give the tag in --image only" in result.stderr  # the image names its tag
    result = CliRunner().invoke(cli, [
        "render", str(hand_layout), "--name", "torchserve", "-n", NS, "--storage-uri", "pvc://leeway",
        "--monitor", "podmonitor", "--monitor-release", "kps", "--dashboard", "--alerts", "-o", str(out),
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    kinds = [d["kind"] for d in yaml.safe_load_all(out.read_text())]
    assert kinds == ["PodMonitor", "ConfigMap", "PrometheusRule", "InferenceService"]
    assert "wrote PodMonitor torchserve, ConfigMap torchserve-dashboard" in result.stderr


def test_the_cli_keeps_prometheus_and_refuses_a_contradiction(hand_layout):
    base = ["render", str(hand_layout), "--name", "torchserve", "--storage-uri", "pvc://leeway"]
    ok = CliRunner().invoke(cli, [*base, "--prometheus"], catch_exceptions=False)
    assert ok.exit_code == 0 and "enable-prometheus-scraping" in ok.stdout
    bad = CliRunner().invoke(cli, [*base, "--prometheus", "--monitor", "podmonitor"], catch_exceptions=False)
    assert bad.exit_code == 2 and "--prometheus means --monitor annotations" in bad.stderr


def dashboard_cli(*args: str):
    import toolkit._cli.monitor  # noqa: F401  (registers `dashboard` until the integrator lists it in _COMMANDS)

    return CliRunner().invoke(cli, ["dashboard", *args], catch_exceptions=False)


def test_the_dashboard_command_writes_the_json_grafana_imports(hand_layout, tmp_path, golden):
    out = tmp_path / "dashboard.json"
    result = dashboard_cli(str(hand_layout), "-o", str(out), "--name", "torchserve", "-n", NS)
    assert result.exit_code == 0, result.output
    assert f"wrote the dashboard of bert to {out}" in result.stderr and result.stdout == ""
    golden("render/dashboard.json", out.read_text())
    model = json.loads(out.read_text())
    assert "null" not in out.read_text()  # Grafana fills in defaults for missing fields, not for nulls
    assert [p["id"] for p in model["panels"]] == list(range(1, len(model["panels"]) + 1))
    assert json.loads(dashboard_cli(str(hand_layout), "--json", "--name", "torchserve", "-n", NS).stdout) == model


def test_the_dashboard_command_says_what_is_wrong(hand_layout, tmp_path):
    missing = dashboard_cli(str(tmp_path / "nowhere"))
    assert missing.exit_code == 1 and "is not a folder" in missing.stderr and "hint:" in missing.stderr
    folder = dashboard_cli(str(hand_layout), "-o", str(tmp_path))
    assert folder.exit_code == 2 and "is a directory" in folder.stderr  # click's Path(dir_okay=False)
    parent = dashboard_cli(str(hand_layout), "-o", str(tmp_path / "no" / "d.json"))
    assert parent.exit_code == 1 and "does not exist" in parent.stderr and "hint:" in parent.stderr


def test_a_gpu_image_for_kserves_torchserve_runtime_must_carry_the_gpu_tag(hand_layout, validate):
    with pytest.raises(RenderError, match="KServe runs ghcr.io/team/mar-build-torchserve:1.0-gpu") as info:
        render(hand_layout, **TARGET, image=IMAGE, gpu=1)
    assert "--serving-runtime" in info.value.hint
    manifests = render(hand_layout, **TARGET, image=IMAGE + "-gpu", gpu=1)
    validate(manifests.documents)
    assert manifests.documents[-1]["spec"]["predictor"]["model"]["image"] == IMAGE + "-gpu"
