"""The alerting rules of one InferenceService: the ``groups`` of a PrometheusRule (and of a promtool rules file).

- MarBuildErrorRatio: more than ``ERROR_RATIO`` of a model's requests answered with a 5xx for 5 minutes.
- MarBuildLatencyNearTimeout: a model's p99 forward pass at ``TIMEOUT_SHARE`` of the predictor timeout for 10
  minutes (requests then start to time out: the forward pass is the part of a request that grows with load), or at
  10 s, the histogram's largest bucket, for longer timeouts.
- MarBuildWorkersRestarting: the server container restarted, or TorchServe loaded a worker again, within 15 minutes.
- MarBuildNoTraffic: a predictor pod ready for 30 minutes that answered no request at all (a wrong Host header, a
  route that points elsewhere, a client calling the InferenceService's name instead of the model's).
"""

from __future__ import annotations

from typing import Any

from .. import _metrics
from . import queries as q

ERROR_RATIO = 0.05
TIMEOUT_SHARE = 0.8
# spec.predictor.timeout unset: Knative's default revision timeout (KServe's Serverless mode) bounds a request.
DEFAULT_TIMEOUT_S = 300
GROUP = "mar-build"


def alert_groups(isvc: str, namespace: str | None = None, *, timeout: int | None = None) -> list[dict[str, Any]]:
    """The rule groups for InferenceService ``isvc`` (in ``namespace``; None: any) whose predictor times out after
    ``timeout`` seconds (None: Knative's default)."""
    s = q.Scope(namespace=namespace, isvc=isvc)
    limit = timeout if timeout is not None else DEFAULT_TIMEOUT_S
    # histogram_quantile answers at most the largest finite bucket bound (10 s, both clients' default buckets):
    # a threshold above it could never be crossed, so the alert then fires at that bound.
    slow = min(TIMEOUT_SHARE * limit, _metrics.names.DEFAULT_BUCKETS[-1])
    where = f"InferenceService {isvc}"
    rules = [
        _rule("MarBuildErrorRatio", f"({q.error_ratio(s, '5m')}) > {ERROR_RATIO}", "5m", "warning",
              f"{where}: model {{{{ $labels.model_name }}}} answers {{{{ $value | humanizePercentage }}}} of its "
              "requests with a 5xx",
              "See the kserve-container log (mar-build status ISVC) for the handler's errors."),
        _rule("MarBuildLatencyNearTimeout",
              f"({q.p99_forward_seconds(s, '5m')}) >= {slow:g}", "10m", "warning",
              f"{where}: model {{{{ $labels.model_name }}}}'s p99 forward pass is {{{{ $value | humanizeDuration }}}}, "
              f"near the predictor timeout of {limit} s",
              "Lower batch_size or max_batch_delay, add workers or replicas, or raise --predictor-timeout."),
        _rule("MarBuildWorkersRestarting", q.restarts(s, "15m"), "0m", "warning",
              f"{where}: the server in pod {{{{ $labels.pod }}}} restarted",
              "An OOM kill or a crashing handler: mar-build status ISVC shows the last state and log."),
        _rule("MarBuildNoTraffic", q.idle_while_ready(s, "30m"), "30m", "info",
              f"{where}: pod {{{{ $labels.pod }}}} is ready but answered no request for 30 minutes",
              "Clients may call the InferenceService's name instead of the model_snapshot key, or send another "
              "Host header."),
    ]
    return [{"name": f"{GROUP}.{isvc}", "rules": rules}]


def _rule(name: str, expr: str, duration: str, severity: str, summary: str, hint: str) -> dict[str, Any]:
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if duration != "0m":
        rule["for"] = duration
    rule["labels"] = {"severity": severity}
    rule["annotations"] = {"summary": summary, "description": hint}
    return rule
