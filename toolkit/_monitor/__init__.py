"""The monitor room: what Prometheus and Grafana are given about a served layout.

queries (the one home of the PromQL, over toolkit._metrics' names), dashboard (the Grafana dashboard, built with
grafana-foundation-sdk, imported only when a dashboard is built), alerts (the rule groups of a PrometheusRule).
"""

from .alerts import DEFAULT_TIMEOUT_S, alert_groups
from .dashboard import dashboard as build_dashboard
from .dashboard import panel_queries
from .queries import CONTAINER, Scope

__all__ = ["CONTAINER", "DEFAULT_TIMEOUT_S", "Scope", "alert_groups", "build_dashboard", "panel_queries"]
