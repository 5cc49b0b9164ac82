"""What render brings for monitoring: scraping (annotations, a PodMonitor or a ServiceMonitor), the Grafana dashboard
as a ConfigMap for kube-prometheus-stack's sidecar, and the alerts as a PrometheusRule.

The Prometheus Operator ignores scraping annotations: it reads PodMonitor/ServiceMonitor objects whose labels its
Prometheus selects (kube-prometheus-stack selects ``release: RELEASE`` unless told otherwise), so ``release`` puts
that label on every monitoring object. The monitors select the pods KServe labels
``serving.kserve.io/inferenceservice: ISVC`` and ``component: predictor`` and scrape the runtime's metrics port:
TorchServe's 8082 (or the layout's ``metrics_address``), the python runtime's 8080. A ServiceMonitor comes with a
headless Service of that port: KServe's own Services expose only the API port (and Knative has two per revision).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import RenderError
from .._files import write_atomic
from .._monitor import CONTAINER, alert_groups, build_dashboard
from .._templating import render_template
from .checks import check_label
from .facts import read_layout_facts

MONITORS = ("annotations", "podmonitor", "servicemonitor")
ISVC_POD_LABEL = "serving.kserve.io/inferenceservice"  # kserve pkg/constants InferenceServicePodLabelKey
COMPONENT_LABEL = "component"  # kserve pkg/constants KServiceComponentLabel
SERVICE_COMPONENT = ("app.kubernetes.io/component", "metrics")  # the metrics Service's own label
SCRAPE_INTERVAL = "30s"
DASHBOARD_LABEL = ("grafana_dashboard", "1")  # what kube-prometheus-stack's Grafana sidecar looks for


@dataclass(frozen=True)
class MonitorRequest:
    """What monitoring render adds: ``monitor`` (annotations | podmonitor | servicemonitor, or None), the
    ``release`` label, and whether the dashboard ConfigMap and the PrometheusRule come too."""

    monitor: str | None = None
    release: str | None = None
    dashboard: bool = False
    alerts: bool = False

    def check(self) -> MonitorRequest:
        if self.monitor is not None and self.monitor not in MONITORS:
            raise RenderError(f"monitor must be one of {', '.join(MONITORS)}, got {self.monitor!r}",
                              hint="podmonitor for kube-prometheus-stack; annotations for a Prometheus that reads "
                              "prometheus.io annotations")
        if self.release is not None:
            check_label("release", self.release)
            if self.monitor not in ("podmonitor", "servicemonitor") and not self.alerts:
                raise RenderError("a release label was given, but no PodMonitor, ServiceMonitor or PrometheusRule "
                                  "carries it", hint="add --monitor podmonitor (or servicemonitor, --alerts)")
        return self

    @property
    def annotations(self) -> bool:
        return self.monitor == "annotations"


def monitoring_texts(
    request: MonitorRequest, *, isvc: str, namespace: str | None, runtime: str, metrics_port: int,
    models: list[str], timeout: int | None, labels: list[tuple[str, str]],
) -> list[str]:
    """The manifests' texts for ``request`` (the annotations are the InferenceService's, not here)."""
    own = labels + ([("release", request.release)] if request.release is not None else [])
    texts: list[str] = []
    pods = [(ISVC_POD_LABEL, isvc), (COMPONENT_LABEL, "predictor")]
    where = {"namespace": namespace, "isvc": isvc, "port": metrics_port, "runtime": runtime}
    if request.monitor == "podmonitor":
        texts.append(render_template(
            "podmonitor.yaml.jinja", name=isvc, labels=own, selector=pods, container=CONTAINER, path="/metrics",
            interval=SCRAPE_INTERVAL, **where,
        ))
    elif request.monitor == "servicemonitor":
        service = f"{isvc}-metrics"
        service_labels = [*labels, SERVICE_COMPONENT]
        texts.append(render_template(
            "metrics-service.yaml.jinja", name=service, labels=service_labels, pod_selector=pods, **where))
        texts.append(render_template(
            "servicemonitor.yaml.jinja", name=isvc, labels=own, selector=service_labels, service=service,
            path="/metrics", interval=SCRAPE_INTERVAL, **where,
        ))
    if request.dashboard:
        texts.append(dashboard_text(isvc=isvc, namespace=namespace, models=models, labels=labels))
    if request.alerts:
        texts.append(render_template(
            "prometheusrule.yaml.jinja", name=f"{isvc}-alerts", namespace=namespace, labels=own, isvc=isvc,
            groups=alert_groups(isvc, namespace, timeout=timeout),
        ))
    return texts


def dashboard_text(*, isvc: str, namespace: str | None, models: list[str], labels: list[tuple[str, str]]) -> str:
    """The ConfigMap holding the dashboard's JSON, labelled for the Grafana sidecar."""
    model = dashboard_model(isvc=isvc, namespace=namespace, models=models)
    return render_template(
        "dashboard-configmap.yaml.jinja", name=f"{isvc}-dashboard", namespace=namespace, isvc=isvc,
        labels=[DASHBOARD_LABEL, *labels], file=f"mar-build-{isvc}.json",
        dashboard=json.dumps(model, indent=1, sort_keys=True),
    )


def dashboard_model(*, isvc: str | None, namespace: str | None, models: list[str]) -> dict[str, Any]:
    """The dashboard for ``models`` (of InferenceService ``isvc``); RenderError naming the extra to install when
    grafana-foundation-sdk is missing."""
    if importlib.util.find_spec("grafana_foundation_sdk") is None:  # pragma: no cover - in the dev install
        raise RenderError("building the dashboard needs grafana-foundation-sdk",
                          hint="pip install 'mar-build[monitor]'")
    title = f"mar-build: {isvc}" if isvc else "mar-build: " + ", ".join(models or ["models"])
    uid = f"mar-build-{isvc}" if isvc else "mar-build-models"
    return build_dashboard(title=title, uid=uid[:40], models=models, namespace=namespace, isvc=isvc)



@dataclass(frozen=True)
class Dashboard:
    """A Grafana dashboard for a layout's models: ``model`` is Grafana's JSON model, ``text`` the file to import."""

    model: dict[str, Any]
    models: tuple[str, ...]

    @property
    def text(self) -> str:
        return json.dumps(self.model, indent=2, sort_keys=True) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return self.model

    def write(self, path: str | Path) -> Path:
        """Write ``text`` to ``path`` atomically; RenderError when the path is a folder or its folder is missing."""
        target = Path(path)
        if target.is_dir() or not target.parent.is_dir():
            raise RenderError(f"cannot write the dashboard to {target}: "
                              + ("it is a folder" if target.is_dir() else f"{target.parent} does not exist"),
                              hint="give a file in an existing folder, e.g. -o dashboard.json")
        return write_atomic(target, self.text)


def layout_dashboard(layout: str | Path, *, name: str | None = None, namespace: str | None = None) -> Dashboard:
    """The dashboard of ``layout``'s models, its variables preset to InferenceService ``name`` in ``namespace``
    (default: mar.yaml's kserve.name and kserve.namespace recorded in the archives, else none preset).
    Raises LayoutError when the layout is not usable."""
    facts = read_layout_facts(layout)
    defaults = facts.defaults
    isvc = name if name is not None else (defaults.name if defaults is not None else None)
    ns = namespace if namespace is not None else (defaults.namespace if defaults is not None else None)
    return Dashboard(dashboard_model(isvc=isvc, namespace=ns, models=facts.models), tuple(facts.models))
