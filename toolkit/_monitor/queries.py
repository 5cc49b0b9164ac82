"""The one home of the PromQL that the dashboard and the alerts run, written against toolkit._metrics.names.

Every series is selected the way a PodMonitor (or ServiceMonitor) of ``render --monitor`` labels it: the target
labels ``namespace``, ``pod`` and ``container`` that the Prometheus Operator adds from the pod. KServe names a
predictor pod ``ISVC-predictor-...`` in both deployment modes (``ISVC-predictor-00001-deployment-...`` under
Knative, ``ISVC-predictor-...`` raw), and names the server's container ``kserve-container``; the pod's CPU and
memory come from cAdvisor (``container_*``) and its limits, readiness and restarts from kube-state-metrics
(``kube_pod_*``), which kube-prometheus-stack scrapes with the same ``namespace``/``pod``/``container`` labels.

A ``Scope`` holds the matcher values: Grafana variables (``$namespace``, ``$isvc``, ``$model``) for the dashboard,
fixed values for an InferenceService's alerts.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import _metrics

n = _metrics.names  # the metric names (the room exports the module)
CONTAINER = "kserve-container"  # KServe's name for the model server's container (pkg/constants)
RATE_WINDOW = "$__rate_interval"  # Grafana's: at least four scrape intervals

# cAdvisor and kube-state-metrics, as kube-prometheus-stack scrapes them.
CPU_SECONDS = "container_cpu_usage_seconds_total"
MEMORY_WORKING_SET = "container_memory_working_set_bytes"
RESOURCE_LIMITS = "kube_pod_container_resource_limits"
CONTAINER_RESTARTS = "kube_pod_container_status_restarts_total"
POD_READY = "kube_pod_status_ready"
WORKER_LOAD_TIME = "WorkerLoadTime"  # TorchServe's gauge, set at every (re)load of a worker


@dataclass(frozen=True)
class Scope:
    """What the queries match: a namespace, an InferenceService's pods, a model (regex matchers, so that a
    Grafana multi-value or "All" variable works too). ``namespace`` None matches every namespace."""

    namespace: str | None
    isvc: str
    model: str = ".+"

    def pods(self, *, container: bool = False) -> str:
        """The matchers of the predictor pods (and their server container)."""
        parts = [f'namespace=~"{self.namespace}"'] if self.namespace is not None else []
        parts.append(f'pod=~"{self.isvc}-predictor-.*"')
        if container:
            parts.append(f'container="{CONTAINER}"')
        return ", ".join(parts)

    def models(self) -> str:
        """The matchers of one model's series on those pods."""
        return f'{self.pods()}, {n.MODEL_NAME}=~"{self.model}"'


DASHBOARD_SCOPE = Scope(namespace="$namespace", isvc="$isvc", model="$model")


def _rate(metric: str, matchers: str, window: str) -> str:
    return f"rate({metric}{{{matchers}}}[{window}])"


def request_rate_by_status(s: Scope, window: str = RATE_WINDOW) -> str:
    return f"sum by ({n.STATUS}) ({_rate(n.REQUESTS, s.models(), window)})"


def latency_quantile(s: Scope, q: float, window: str = RATE_WINDOW) -> str:
    """The q-quantile of one forward pass's seconds (the handler's inference histogram)."""
    bucket = n.INFERENCE_SECONDS + "_bucket"
    return f"histogram_quantile({q}, sum by (le) ({_rate(bucket, s.models(), window)}))"


def mean_request_latency(s: Scope, window: str = RATE_WINDOW) -> str:
    """Seconds from a request's arrival at the server to its answer, averaged (TorchServe's microsecond counters)."""
    return (f"sum({_rate(n.TS_INFERENCE_LATENCY, s.models(), window)}) / "
            f"sum({_rate(n.TS_INFERENCE_REQUESTS, s.models(), window)}) / 1e6")


def mean_queue_latency(s: Scope, window: str = RATE_WINDOW) -> str:
    """Seconds a request waited for a worker, averaged."""
    return (f"sum({_rate(n.TS_QUEUE_LATENCY, s.models(), window)}) / "
            f"sum({_rate(n.TS_INFERENCE_REQUESTS, s.models(), window)}) / 1e6")


def batch_size_buckets(s: Scope, window: str = RATE_WINDOW) -> str:
    """Forward passes per batch-size bucket (a heatmap of the histogram's cumulative buckets)."""
    return f"sum by (le) (increase({n.FORWARD_BATCH_SIZE}_bucket{{{s.models()}}}[{window}]))"


def mean_batch_size(s: Scope, window: str = RATE_WINDOW) -> str:
    return (f"sum({_rate(n.FORWARD_BATCH_SIZE + '_sum', s.models(), window)}) / "
            f"sum({_rate(n.FORWARD_BATCH_SIZE + '_count', s.models(), window)})")


def instances_per_second(s: Scope, window: str = RATE_WINDOW) -> str:
    return f"sum({_rate(n.REQUEST_INSTANCES + '_sum', s.models(), window)})"


def bad_requests_by_reason(s: Scope, window: str = RATE_WINDOW) -> str:
    return f"sum by ({n.REASON}) ({_rate(n.BAD_REQUESTS, s.models(), window)})"


def container_restarts(s: Scope, window: str = RATE_WINDOW) -> str:
    """Restarts of the server's container (kube-state-metrics): a crashed python runtime, an OOM kill."""
    return f"sum by (pod) (increase({CONTAINER_RESTARTS}{{{s.pods(container=True)}}}[{window}]))"


def worker_reloads(s: Scope, window: str = RATE_WINDOW) -> str:
    """TorchServe workers loaded again inside a running container (a worker that died and was restarted)."""
    return f"sum by (pod) (changes({WORKER_LOAD_TIME}{{{s.pods()}}}[{window}]))"


def cpu_used(s: Scope, window: str = RATE_WINDOW) -> str:
    return f"sum by (pod) ({_rate(CPU_SECONDS, s.pods(container=True), window)})"


def cpu_limit(s: Scope) -> str:
    return f'sum by (pod) ({RESOURCE_LIMITS}{{{s.pods(container=True)}, resource="cpu"}})'


def memory_used(s: Scope) -> str:
    return f"sum by (pod) ({MEMORY_WORKING_SET}{{{s.pods(container=True)}}})"


def memory_limit(s: Scope) -> str:
    return f'sum by (pod) ({RESOURCE_LIMITS}{{{s.pods(container=True)}, resource="memory"}})'


# Alerts ---------------------------------------------------------------------------------------------------------

def error_ratio(s: Scope, window: str) -> str:
    """Per model: the share of requests answered with a 5xx (a client's 4xx is the client's, not the server's)."""
    by = f"sum by (namespace, {n.MODEL_NAME})"
    errors = _rate(n.REQUESTS, f'{s.models()}, {n.STATUS}=~"5.."', window)
    return f"{by} ({errors}) / {by} ({_rate(n.REQUESTS, s.models(), window)})"


def p99_forward_seconds(s: Scope, window: str) -> str:
    bucket = n.INFERENCE_SECONDS + "_bucket"
    return (f"histogram_quantile(0.99, sum by (namespace, {n.MODEL_NAME}, le) "
            f"({_rate(bucket, s.models(), window)}))")


def restarts(s: Scope, window: str) -> str:
    return (f"sum by (namespace, pod) (increase({CONTAINER_RESTARTS}{{{s.pods(container=True)}}}[{window}])) > 0 "
            f"or sum by (namespace, pod) (changes({WORKER_LOAD_TIME}{{{s.pods()}}}[{window}])) > 0")


def idle_while_ready(s: Scope, window: str) -> str:
    """Pods that are ready and answered no request at all within ``window``."""
    ready = f'max by (namespace, pod) ({POD_READY}{{{s.pods()}, condition="true"}}) == 1'
    served = f"sum by (namespace, pod) ({_rate(n.REQUESTS, s.pods(), window)}) > 0"
    return f"{ready} unless on (namespace, pod) ({served})"
