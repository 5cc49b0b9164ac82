"""The PrometheusRule `render --alerts` writes: `promtool check rules` on its groups, and `promtool test rules` with
series as the predictor pods and kube-state-metrics export them (Debian's promtool 2.42, run for real)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_support import promtool

from toolkit._render import render

NS, ISVC, MODEL = "team", "intent", "intent"
POD = f"{ISVC}-predictor-00001-deployment-7d9f"
MODEL_LABELS = f'namespace="{NS}", pod="{POD}", model_name="{MODEL}", model_version="1.0", Hostname="{POD}"'
POD_LABELS = f'namespace="{NS}", pod="{POD}", container="kserve-container"'


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rule groups of the PrometheusRule render makes (a 10 s predictor timeout), as a Prometheus rules file."""
    manifests = render(None, name=ISVC, namespace=NS, storage_uri="pvc://models/intent", timeout=10, alerts=True)
    [rule] = [d for d in manifests.documents if d["kind"] == "PrometheusRule"]
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False), encoding="utf-8")
    return path


def annotations_of(rules_file: Path, alert: str, **values: str) -> dict[str, str]:
    """The alert's annotations with its templates filled in as Prometheus fills them for these label values."""
    [group] = yaml.safe_load(rules_file.read_text())["groups"]
    rule = next(r for r in group["rules"] if r["alert"] == alert)
    out = {}
    for key, text in rule["annotations"].items():
        for name, value in values.items():
            text = text.replace("{{ " + name + " }}", value)
        out[key] = text
    return out


def run_tests(tmp_path: Path, rules_file: Path, tests: list[dict[str, Any]]) -> None:
    unit = tmp_path / "tests.yaml"
    unit.write_text(yaml.safe_dump({"rule_files": [str(rules_file)], "evaluation_interval": "1m",
                                    "tests": tests}, sort_keys=False), encoding="utf-8")
    result = promtool("test", "rules", unit)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_checks_the_rules(rules_file: Path):
    result = promtool("check", "rules", rules_file)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout


def test_a_model_answering_one_request_in_seven_with_a_5xx_alerts(tmp_path: Path, rules_file: Path):
    series = [
        {"series": f'mar_build_requests_total{{{MODEL_LABELS}, status="200"}}', "values": "0+60x30"},
        {"series": f'mar_build_requests_total{{{MODEL_LABELS}, status="400"}}', "values": "0+30x30"},
        {"series": f'mar_build_requests_total{{{MODEL_LABELS}, status="500"}}', "values": "0+15x30"},
    ]
    # 15 of 105 requests a minute: 14.29 %. The client's 400s count in the total, never as errors.
    labels = {"severity": "warning", "namespace": NS, "model_name": MODEL}
    fired = annotations_of(rules_file, "MarBuildErrorRatio", **{"$labels.model_name": MODEL,
                                                                "$value | humanizePercentage": "14.29%"})
    run_tests(tmp_path, rules_file, [
        {"interval": "1m", "input_series": series, "alert_rule_test": [
            {"eval_time": "3m", "alertname": "MarBuildErrorRatio", "exp_alerts": []},  # pending: for 5m
            {"eval_time": "20m", "alertname": "MarBuildErrorRatio",
             "exp_alerts": [{"exp_labels": labels, "exp_annotations": fired}]},
        ]},
        {"interval": "1m", "input_series": series[:2], "alert_rule_test": [
            {"eval_time": "20m", "alertname": "MarBuildErrorRatio", "exp_alerts": []},
        ]},
    ])


def test_a_p99_forward_pass_near_the_predictor_timeout_alerts(tmp_path: Path, rules_file: Path):
    def buckets(slow: str) -> list[dict[str, str]]:
        # Per minute: 1 pass under 5 s, the others between 5 and 10 s.
        return [{"series": f'mar_build_inference_seconds_bucket{{{MODEL_LABELS}, le="{le}"}}', "values": values}
                for le, values in (("1.0", "0+1x30"), ("5.0", "0+1x30"), ("10.0", slow), ("+Inf", slow))]

    # p99 = 5 + 5 x (9.9 - 1) / 9 = 9.944 s >= 8 s (0.8 x the 10 s timeout).
    fired = annotations_of(rules_file, "MarBuildLatencyNearTimeout", **{
        "$labels.model_name": MODEL, "$value | humanizeDuration": "9.944s"})
    run_tests(tmp_path, rules_file, [
        {"interval": "1m", "input_series": buckets("0+10x30"), "alert_rule_test": [
            {"eval_time": "25m", "alertname": "MarBuildLatencyNearTimeout", "exp_alerts": [
                {"exp_labels": {"severity": "warning", "namespace": NS, "model_name": MODEL},
                 "exp_annotations": fired}]},
        ]},
        # Every pass under 5 s: p99 below 5 s, no alert.
        {"interval": "1m", "input_series": buckets("0+1x30"), "alert_rule_test": [
            {"eval_time": "25m", "alertname": "MarBuildLatencyNearTimeout", "exp_alerts": []},
        ]},
    ])


def test_a_restarted_container_or_a_reloaded_worker_alerts(tmp_path: Path, rules_file: Path):
    fired = annotations_of(rules_file, "MarBuildWorkersRestarting", **{"$labels.pod": POD})
    labels = {"severity": "warning", "namespace": NS, "pod": POD}
    run_tests(tmp_path, rules_file, [
        {"interval": "1m", "input_series": [
            {"series": f"kube_pod_container_status_restarts_total{{{POD_LABELS}}}", "values": "0 0 0 1 1 1 1 1"}],
         "alert_rule_test": [
             {"eval_time": "2m", "alertname": "MarBuildWorkersRestarting", "exp_alerts": []},
             {"eval_time": "5m", "alertname": "MarBuildWorkersRestarting",
              "exp_alerts": [{"exp_labels": labels, "exp_annotations": fired}]},
         ]},
        # TorchServe loaded worker W-9000 again (its load time gauge changed) inside a container that kept running.
        {"interval": "1m", "input_series": [
            {"series": f'WorkerLoadTime{{namespace="{NS}", pod="{POD}", WorkerName="W-9000-intent_1.0", '
                       'Level="Host"}', "values": "2300 2300 2300 2950 2950"}],
         "alert_rule_test": [
             {"eval_time": "4m", "alertname": "MarBuildWorkersRestarting",
              "exp_alerts": [{"exp_labels": labels, "exp_annotations": fired}]},
         ]},
    ])


def test_a_ready_pod_without_a_request_for_30_minutes_alerts(tmp_path: Path, rules_file: Path):
    ready = {"series": f'kube_pod_status_ready{{namespace="{NS}", pod="{POD}", condition="true"}}',
             "values": "1x60"}
    fired = annotations_of(rules_file, "MarBuildNoTraffic", **{"$labels.pod": POD})
    run_tests(tmp_path, rules_file, [
        {"interval": "1m", "input_series": [
            ready, {"series": f'mar_build_requests_total{{{MODEL_LABELS}, status="200"}}', "values": "5x60"}],
         "alert_rule_test": [
             {"eval_time": "20m", "alertname": "MarBuildNoTraffic", "exp_alerts": []},  # pending: for 30m
             {"eval_time": "45m", "alertname": "MarBuildNoTraffic", "exp_alerts": [
                 {"exp_labels": {"severity": "info", "namespace": NS, "pod": POD}, "exp_annotations": fired}]},
         ]},
        {"interval": "1m", "input_series": [
            ready, {"series": f'mar_build_requests_total{{{MODEL_LABELS}, status="200"}}', "values": "0+1x60"}],
         "alert_rule_test": [{"eval_time": "45m", "alertname": "MarBuildNoTraffic", "exp_alerts": []}]},
    ])
