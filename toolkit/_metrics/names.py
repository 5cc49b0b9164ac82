"""The one home of the metric names both runtimes export on ``/metrics`` and a layout's config/metrics.yaml declares.

Two kinds, as TorchServe (0.9.0 and 0.12.0) has them in Prometheus mode (``metrics_mode=prometheus``):

- **TorchServe's own** (``ts_metrics`` in its metrics.yaml, counted by the Java frontend): requests by status class
  for the whole server (``Requests2XX/4XX/5XX``, every response of every API, health checks included), and per
  model ``ts_inference_requests_total``, ``ts_inference_latency_microseconds``, ``ts_queue_latency_microseconds``
  (counters of requests and of microseconds: latency = rate(latency) / rate(requests); no status label); host gauges.
- **The handlers'** (``model_metrics``, reported by ``handlers/base.py`` through ``context.metrics``, exported by the
  frontend only because the layout's metrics.yaml declares them): requests by HTTP status and bad requests by
  reason per model and version, instances per request, requests per batch, instances per forward pass, and the
  preprocess / inference / postprocess seconds. TorchServe adds a ``Hostname`` label to every model metric; the
  python runtime adds the same, so a query reads the same on both.

Histograms carry the default buckets of both Prometheus clients (Java simpleclient and prometheus_client, the
same 14 bounds, 0.005 to 10): TorchServe's metrics.yaml cannot set buckets. They fit the seconds; for the counts
(instances, requests, batch sizes) they give the mean exactly (``_sum / _count``) and a coarse distribution
(1, 2.5, 5, 7.5, 10 and above).

These names are a contract: dashboards and alerts query them (toolkit/_monitor). Add, never rename.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["counter", "gauge", "histogram"]
Section = Literal["ts_metrics", "model_metrics"]

# The file beside config.properties, and where the pod sees it (TorchServe resolves metrics_config from its working
# directory, so the key holds the absolute path, as model_store does).
METRICS_FILE = "metrics.yaml"
METRICS_CONFIG_KEY = "metrics_config"
POD_METRICS_CONFIG = "/mnt/models/config/metrics.yaml"
# The python runtime serves /metrics on its HTTP port; this variable gives them a listener of their own (a port).
METRICS_PORT_ENV = "MAR_BUILD_METRICS_PORT"

# Label names
MODEL_NAME = "model_name"  # the model_snapshot key (the URL name)
MODEL_VERSION = "model_version"  # the archive's version (TorchServe's own counters say "default" for the default one)
STATUS = "status"  # the HTTP status code the handler answered, as text: "200", "400", "500"
REASON = "reason"  # why a request was refused: one of BAD_REQUEST_REASONS
HOSTNAME = "Hostname"  # added by TorchServe's frontend to every model metric (the python runtime adds it too)
TS_HOSTNAME = "hostname"  # TorchServe's own per-model counters spell it in lower case
LEVEL = "Level"  # TorchServe's host metrics: "Host"

# TorchServe's own (frontend)
REQUESTS_2XX = "Requests2XX"
REQUESTS_4XX = "Requests4XX"
REQUESTS_5XX = "Requests5XX"
TS_INFERENCE_REQUESTS = "ts_inference_requests_total"
TS_INFERENCE_LATENCY = "ts_inference_latency_microseconds"
TS_QUEUE_LATENCY = "ts_queue_latency_microseconds"

# The handlers' (model metrics)
REQUESTS = "mar_build_requests_total"
BAD_REQUESTS = "mar_build_bad_requests_total"
REQUEST_INSTANCES = "mar_build_request_instances"
BATCH_REQUESTS = "mar_build_batch_requests"
FORWARD_BATCH_SIZE = "mar_build_forward_batch_size"
PREPROCESS_SECONDS = "mar_build_preprocess_seconds"
INFERENCE_SECONDS = "mar_build_inference_seconds"
POSTPROCESS_SECONDS = "mar_build_postprocess_seconds"

# Why a request was refused (the ``reason`` label): a fixed set, so the label stays small.
BAD_REQUEST_REASONS = (
    "body",  # no body TorchServe could hand over, or a JSON body that does not parse
    "envelope",  # "instances" not a list, or empty
    "instance",  # an instance the handler cannot read (preprocess_instance refused it)
    "request",  # the instances of one request do not go together (check_request)
    "v2",  # a v2 (Open Inference Protocol) body or tensor that is malformed
    "pass",  # the forward pass refused the instances (e.g. a tensor shape the model does not take)
)

# The bounds both Prometheus clients use by default (Java simpleclient Histogram, prometheus_client DEFAULT_BUCKETS).
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


@dataclass(frozen=True)
class Metric:
    """One exported metric: its Prometheus name, type, unit (as metrics.yaml states it), the labels in the order
    the metrics file declares them (TorchServe's added ``Hostname`` not included, see ``exported_labels``), where
    it is declared, and what it measures."""

    name: str
    kind: Kind
    unit: str
    labels: tuple[str, ...]
    section: Section
    help: str

    @property
    def exported_labels(self) -> tuple[str, ...]:
        """The labels a scrape shows (model metrics gain TorchServe's ``Hostname``)."""
        return self.labels + ((HOSTNAME,) if self.section == "model_metrics" else ())


_HOST = (LEVEL, HOSTNAME)
_TS_MODEL = (MODEL_NAME, MODEL_VERSION, TS_HOSTNAME)
_MODEL = (MODEL_NAME, MODEL_VERSION)


def _ts(name: str, kind: Kind, unit: str, labels: tuple[str, ...], text: str) -> Metric:
    return Metric(name, kind, unit, labels, "ts_metrics", text)


def _ours(name: str, kind: Kind, unit: str, labels: tuple[str, ...], text: str) -> Metric:
    return Metric(name, kind, unit, labels, "model_metrics", text)


TORCHSERVE_METRICS: tuple[Metric, ...] = (
    _ts(REQUESTS_2XX, "counter", "Count", _HOST, "responses with a 2xx status, every API of the server"),
    _ts(REQUESTS_4XX, "counter", "Count", _HOST, "responses with a 4xx status, every API of the server"),
    _ts(REQUESTS_5XX, "counter", "Count", _HOST, "responses with a 5xx status, every API of the server"),
    _ts(TS_INFERENCE_REQUESTS, "counter", "Count", _TS_MODEL, "inference requests received, per model"),
    _ts(TS_INFERENCE_LATENCY, "counter", "Microseconds", _TS_MODEL,
        "microseconds from a request's arrival to its answer, summed per model"),
    _ts(TS_QUEUE_LATENCY, "counter", "Microseconds", _TS_MODEL,
        "microseconds requests waited for a worker, summed per model"),
    _ts("QueueTime", "gauge", "Milliseconds", _HOST, "time the last job waited in the queue"),
    _ts("WorkerThreadTime", "gauge", "Milliseconds", _HOST, "time the last job spent in the worker thread"),
    _ts("WorkerLoadTime", "gauge", "Milliseconds", ("WorkerName", LEVEL, HOSTNAME), "time a worker took to load"),
    _ts("CPUUtilization", "gauge", "Percent", _HOST, "CPU use of the host"),
    _ts("MemoryUsed", "gauge", "Megabytes", _HOST, "memory used on the host"),
    _ts("MemoryAvailable", "gauge", "Megabytes", _HOST, "memory available on the host"),
    _ts("MemoryUtilization", "gauge", "Percent", _HOST, "memory use of the host"),
    _ts("DiskUsage", "gauge", "Gigabytes", _HOST, "disk used"),
    _ts("DiskUtilization", "gauge", "Percent", _HOST, "disk use"),
    _ts("DiskAvailable", "gauge", "Gigabytes", _HOST, "disk available"),
    _ts("GPUMemoryUtilization", "gauge", "Percent", (LEVEL, "DeviceId", HOSTNAME), "GPU memory use"),
    _ts("GPUMemoryUsed", "gauge", "Megabytes", (LEVEL, "DeviceId", HOSTNAME), "GPU memory used"),
    _ts("GPUUtilization", "gauge", "Percent", (LEVEL, "DeviceId", HOSTNAME), "GPU use"),
    # TorchServe's own backend metrics (its default model_metrics), kept so declaring ours does not drop them.
    _ours("HandlerTime", "gauge", "ms", ("ModelName", LEVEL), "milliseconds the last batch spent in the handler"),
    _ours("PredictionTime", "gauge", "ms", ("ModelName", LEVEL), "milliseconds of the last prediction"),
)

HANDLER_METRICS: tuple[Metric, ...] = (
    _ours(REQUESTS, "counter", "count", (*_MODEL, STATUS),
          "requests the handler answered, by the HTTP status it answered"),
    _ours(BAD_REQUESTS, "counter", "count", (*_MODEL, REASON),
          "requests the handler refused (4xx), by reason"),
    _ours(REQUEST_INSTANCES, "histogram", "count", _MODEL,
          "instances per request (its _sum is the instances served)"),
    _ours(BATCH_REQUESTS, "histogram", "count", _MODEL,
          "requests per server-side batch the handler received"),
    _ours(FORWARD_BATCH_SIZE, "histogram", "count", _MODEL,
          "instances per forward pass (the batch size each forward ran with)"),
    _ours(PREPROCESS_SECONDS, "histogram", "s", _MODEL,
          "seconds reading and checking the requests of one batch"),
    _ours(INFERENCE_SECONDS, "histogram", "s", _MODEL, "seconds of one forward pass"),
    _ours(POSTPROCESS_SECONDS, "histogram", "s", _MODEL, "seconds turning one forward pass's outputs into predictions"),
)

ALL_METRICS: tuple[Metric, ...] = TORCHSERVE_METRICS + HANDLER_METRICS
BY_NAME: dict[str, Metric] = {m.name: m for m in ALL_METRICS}


def exported_name(metric: Metric, sample: Literal["", "bucket", "sum", "count"] = "") -> str:
    """The series name a scrape shows: the name itself, or a histogram's ``_bucket``/``_sum``/``_count``."""
    return f"{metric.name}_{sample}" if sample else metric.name
