"""The handlers' metrics, reported through the metrics API TorchServe gives handlers (``context.metrics``).

Names, types and labels are toolkit/_metrics/names.py's (tests/metrics pins this table to it: handlers never import
the toolkit, since they run inside TorchServe's workers). TorchServe's frontend exports a model metric only when
the metrics file in config.properties (``metrics_config``) declares it, with the declared labels in the order the
values are sent, and adds ``Hostname``; mar-build layouts ship ``config/metrics.yaml`` declaring these. The python
runtime's context takes the same calls into its Prometheus registry under the same names.

The calls are the stable ones of TorchServe 0.9.0 and 0.12.0: ``get_metric(name, MetricTypes.X)``, else
``add_metric_to_cache(name, unit, dimension_names, MetricTypes.X)``, then ``metric.add_or_update(value, values,
request_id)`` (no default dimensions, so the labels are exactly ours). Reporting never fails a request.
"""

from __future__ import annotations

import enum
import logging
import time
from typing import Any

try:  # TorchServe's own enum where TorchServe runs; the python runtime's context accepts either
    from ts.metrics.metric_type_enum import MetricTypes
except ImportError:  # pragma: no cover - TorchServe is installed wherever the tests run

    class MetricTypes(enum.Enum):  # type: ignore[no-redef]
        COUNTER = "counter"
        GAUGE = "gauge"
        HISTOGRAM = "histogram"


logger = logging.getLogger(__name__)

MODEL_LABELS = ("model_name", "model_version")

# name -> (type, unit, labels after model_name and model_version)
REQUESTS = "mar_build_requests_total"
BAD_REQUESTS = "mar_build_bad_requests_total"
REQUEST_INSTANCES = "mar_build_request_instances"
BATCH_REQUESTS = "mar_build_batch_requests"
FORWARD_BATCH_SIZE = "mar_build_forward_batch_size"
PREPROCESS_SECONDS = "mar_build_preprocess_seconds"
INFERENCE_SECONDS = "mar_build_inference_seconds"
POSTPROCESS_SECONDS = "mar_build_postprocess_seconds"

METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    REQUESTS: ("counter", "count", ("status",)),
    BAD_REQUESTS: ("counter", "count", ("reason",)),
    REQUEST_INSTANCES: ("histogram", "count", ()),
    BATCH_REQUESTS: ("histogram", "count", ()),
    FORWARD_BATCH_SIZE: ("histogram", "count", ()),
    PREPROCESS_SECONDS: ("histogram", "s", ()),
    INFERENCE_SECONDS: ("histogram", "s", ()),
    POSTPROCESS_SECONDS: ("histogram", "s", ()),
}


class Recorder:
    """Reports this handler's metrics for one model and version on ``context.metrics`` (absent: reports nothing)."""

    def __init__(self, context: Any, model_name: str, model_version: str | None) -> None:
        self._cache = getattr(context, "metrics", None)
        self._values = [model_name, str(model_version or "default")]
        self._metrics: dict[str, Any] = {}
        self._broken = False

    def record(self, name: str, value: float, *labels: str) -> None:
        """Add ``value`` to counter ``name`` or observe it in histogram ``name``, with the extra ``labels``."""
        if self._cache is None or self._broken:
            return
        try:
            metric = self._metric(name)
            metric.add_or_update(value, self._values + list(labels), None)
        except Exception:  # a metrics backend must never cost a request its answer
            logger.exception("reporting metric %s failed; this handler reports no more metrics", name)
            self._broken = True

    def _metric(self, name: str) -> Any:
        metric = self._metrics.get(name)
        if metric is None:
            assert self._cache is not None
            kind, unit, extra = METRICS[name]
            metric_type = MetricTypes(kind)
            try:
                metric = self._cache.get_metric(name, metric_type)
            except Exception:  # MetricsCacheKeyError: not in the metrics file the worker read
                metric = self._cache.add_metric_to_cache(name, unit, list(MODEL_LABELS + extra), metric_type)
            self._metrics[name] = metric
        return metric


def counts(values: list[str]) -> dict[str, int]:
    """How often each value occurs, in first-seen order (one counter update per distinct label value)."""
    found: dict[str, int] = {}
    for value in values:
        found[value] = found.get(value, 0) + 1
    return found


class Tally:
    """What one batch did, reported when it is answered: each request's status, why the refused ones were refused,
    the instances per valid request and the preprocessing time."""

    def __init__(self, recorder: Recorder, size: int) -> None:
        self.recorder = recorder
        self.size = size
        self.started = time.perf_counter()
        self.statuses: dict[int, str] = {}
        self.reasons: list[str] = []
        self.instances: list[int] = []

    def refused(self, idx: int, status: int, reason: str | None) -> None:
        """Request ``idx`` is answered ``status``; a 4xx counts as a bad request for ``reason``."""
        self.statuses[idx] = str(status)
        if 400 <= status < 500:
            self.reasons.append(reason or "instance")

    def preprocessed(self, instances: list[int]) -> None:
        """The batch is read: ``instances`` per valid request."""
        self.recorder.record(PREPROCESS_SECONDS, time.perf_counter() - self.started)
        self.recorder.record(BATCH_REQUESTS, self.size)
        for number in instances:
            self.recorder.record(REQUEST_INSTANCES, number)

    def answered(self) -> None:
        """Every request has its answer: count them by status, the refused ones by reason."""
        statuses = [self.statuses.get(idx, "200") for idx in range(self.size)]
        for status, number in counts(statuses).items():
            self.recorder.record(REQUESTS, number, status)
        for reason, number in counts(self.reasons).items():
            self.recorder.record(BAD_REQUESTS, number, reason)
