"""The Grafana dashboard of an InferenceService's models, built with grafana-foundation-sdk (the ``monitor`` extra).

Variables: the Prometheus data source, ``namespace``, ``isvc`` (the InferenceService, read from the predictor pods'
names) and ``model`` (the ``model_name`` label; several or All). One row per model (repeated over ``model``):
requests by status, latency p50/p95/p99, queue latency, batch size distribution, instances per second, bad
requests by reason. One row for the predictor pods: worker restarts, CPU and memory against their limits. The
PromQL is queries.py's, so the alerts and the dashboard read the same series.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .. import _metrics
from . import queries as q

n = _metrics.names  # the metric names (the room exports the module)
DASHBOARD_TAGS = ["mar-build", "kserve"]
PANEL_HEIGHT = 8
PANEL_WIDTH = 12


@dataclass(frozen=True)
class PanelSpec:
    """One panel: its title, what it says, its unit, its queries (expression, legend), and its kind."""

    title: str
    description: str
    unit: str
    targets: tuple[tuple[str, str], ...]
    kind: str = "timeseries"  # or heatmap


def model_panels(s: q.Scope) -> list[PanelSpec]:
    """The panels of one model (``s.model``)."""
    return [
        PanelSpec("Requests by status", "Requests the handler answered per second, by HTTP status.", "reqps",
                  ((q.request_rate_by_status(s), "{{status}}"),)),
        PanelSpec("Latency", "p50/p95/p99 of one forward pass (the handler's inference seconds), and the mean "
                  "time from a request's arrival to its answer.", "s",
                  tuple((q.latency_quantile(s, v), f"forward p{round(v * 100)}") for v in (0.5, 0.95, 0.99))
                  + ((q.mean_request_latency(s), "request, mean"),)),
        PanelSpec("Queue latency", "Mean seconds a request waited for a free worker.", "s",
                  ((q.mean_queue_latency(s), "queue, mean"),)),
        PanelSpec("Batch size distribution", "Forward passes by the number of instances they ran with.", "short",
                  ((q.batch_size_buckets(s), "{{le}}"),), kind="heatmap"),
        PanelSpec("Instances per second", "Instances served per second, and the mean batch size.", "short",
                  ((q.instances_per_second(s), "instances/s"), (q.mean_batch_size(s), "mean batch size"))),
        PanelSpec("Bad requests by reason", "Requests the handler refused with a 4xx, by reason ("
                  + ", ".join(n.BAD_REQUEST_REASONS) + ").", "reqps",
                  ((q.bad_requests_by_reason(s), "{{reason}}"),)),
    ]


def pod_panels(s: q.Scope) -> list[PanelSpec]:
    """The panels of the InferenceService's predictor pods."""
    return [
        PanelSpec("Worker restarts", "Restarts of the server container (kube-state-metrics) and TorchServe workers "
                  "loaded again inside a running container.", "short",
                  ((q.container_restarts(s), "container {{pod}}"), (q.worker_reloads(s), "workers {{pod}}"))),
        PanelSpec("CPU against limit", "CPU cores the server container uses, and its limit.", "short",
                  ((q.cpu_used(s), "used {{pod}}"), (q.cpu_limit(s), "limit {{pod}}"))),
        PanelSpec("Memory against limit", "Working set of the server container, and its limit.", "bytes",
                  ((q.memory_used(s), "working set {{pod}}"), (q.memory_limit(s), "limit {{pod}}"))),
    ]


def dashboard(*, title: str = "mar-build models", uid: str = "mar-build-models", models: Sequence[str] = (),
              namespace: str | None = None, isvc: str | None = None) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (a dict). ``models``/``namespace``/``isvc`` preselect the variables
    (the layout's models, the InferenceService render made); the choices come from Prometheus either way."""
    from grafana_foundation_sdk.builders import dashboard as d
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    builder = (d.Dashboard(title).uid(uid).tags(DASHBOARD_TAGS).refresh("30s").time("now-1h", "now")
               .description("KServe predictor pods serving mar-build layouts (TorchServe or the python runtime)."))
    for variable in _variables(models=models, namespace=namespace, isvc=isvc):
        builder = builder.with_variable(variable)
    ids = iter(range(1, 1000))
    builder = builder.with_row(d.Row("Model $model").repeat("model").id(next(ids)))
    for spec in model_panels(q.DASHBOARD_SCOPE):
        builder = builder.with_panel(_panel(spec, next(ids)))
    builder = builder.with_row(d.Row("Predictor pods of $isvc").id(next(ids)))
    for spec in pod_panels(q.DASHBOARD_SCOPE):
        builder = builder.with_panel(_panel(spec, next(ids)))
    built: dict[str, Any] = _without_nulls(json.loads(json.dumps(builder.build(), cls=JSONEncoder)))
    return built


def panel_queries(model: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expression) of every query of a dashboard's JSON model, rows' panels included."""
    found: list[tuple[str, str]] = []
    for panel in model.get("panels", []):
        for inner in [panel, *panel.get("panels", [])]:
            found += [(inner["title"], t["expr"]) for t in inner.get("targets", []) if t.get("expr")]
    return found


def _without_nulls(value: Any) -> Any:
    """The model without the ``null`` fields the SDK writes for options it leaves unset (Grafana fills defaults in
    for missing fields, not for nulls)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _datasource() -> Any:
    from grafana_foundation_sdk.models.dashboard import DataSourceRef

    return DataSourceRef(type_val="prometheus", uid="${datasource}")


def _variables(*, models: Sequence[str], namespace: str | None, isvc: str | None) -> list[Any]:
    from grafana_foundation_sdk.builders import dashboard as d
    from grafana_foundation_sdk.models.dashboard import VariableOption, VariableRefresh, VariableSort

    def current(value: str | None) -> Callable[[Any], Any]:
        return lambda v: v.current(VariableOption(selected=True, text=value, value=value)) if value else v

    # Targets of predictor pods (a PodMonitor's have a container label, a ServiceMonitor's may not).
    predictors = 'up{pod=~".+-predictor-.+"}'
    requests = f'{n.REQUESTS}{{namespace="$namespace", pod=~"$isvc-predictor-.*"}}'
    namespace_var = (d.QueryVariable("namespace").label("Namespace").datasource(_datasource())
                     .query(f"label_values({predictors}, namespace)").refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
                     .sort(VariableSort.ALPHABETICAL_ASC))
    isvc_var = (d.QueryVariable("isvc").label("InferenceService").datasource(_datasource())
                .query('label_values(up{namespace="$namespace", pod=~".+-predictor-.+"}, pod)')
                .regex("/^(.+)-predictor-.*/").refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
                .sort(VariableSort.ALPHABETICAL_ASC))
    model_var = (d.QueryVariable("model").label("Model").datasource(_datasource())
                 .query(f"label_values({requests}, {n.MODEL_NAME})").multi(True).include_all(True)
                 .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC))
    if models:
        options = list(models)
        model_var = model_var.current(VariableOption(selected=True, text=options, value=options))
    return [
        d.DatasourceVariable("datasource").label("Prometheus").type("prometheus"),
        current(namespace)(namespace_var), current(isvc)(isvc_var), model_var,
    ]


def _panel(spec: PanelSpec, panel_id: int) -> Any:
    from grafana_foundation_sdk.builders import heatmap, prometheus, timeseries
    from grafana_foundation_sdk.models.prometheus import PromQueryFormat

    builder: Any = heatmap.Panel() if spec.kind == "heatmap" else timeseries.Panel().unit(spec.unit)
    builder = (builder.id(panel_id).title(spec.title).description(spec.description).datasource(_datasource())
               .span(PANEL_WIDTH).height(PANEL_HEIGHT))
    for index, (expr, legend) in enumerate(spec.targets):
        target = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(chr(ord("A") + index))
        if spec.kind == "heatmap":
            target = target.format(PromQueryFormat.HEATMAP)
        builder = builder.with_target(target)
    return builder
