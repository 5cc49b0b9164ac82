"""The metrics room: the names both runtimes export (names.py), the layout's metrics.yaml that declares them
(declared.py), and the preflight rule that finds a handler metric no metrics file declares (rules.py)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from . import names
from .declared import layout_metrics_file, metrics_yaml, parse_declared, write_metrics_file
from .names import (
    ALL_METRICS,
    BY_NAME,
    HANDLER_METRICS,
    METRICS_CONFIG_KEY,
    METRICS_PORT_ENV,
    TORCHSERVE_METRICS,
    Metric,
)
from .rules import findings as metrics_findings

if TYPE_CHECKING:
    from .registry import HandlerMetrics, RuntimeMetrics, StatusCounter


def handler_metrics(model_name: str) -> HandlerMetrics:
    """The python runtime's ``context.metrics`` for one model (imports prometheus_client: call it there only)."""
    from .registry import HandlerMetrics

    return HandlerMetrics(model_name)


def runtime_metrics() -> RuntimeMetrics:
    """The python runtime's TorchServe-named frontend counters (imports prometheus_client)."""
    from . import registry

    return registry.runtime_metrics()


def declare_layout_metrics(properties: Mapping[str, str], layout: Path) -> list[str]:
    """The python runtime exports what the layout's metrics file (metrics_config) declares under model_metrics too,
    as TorchServe would (a custom handler's metrics); returns the names. A missing or unreadable file declares
    nothing here (`check` reports it)."""
    from .registry import declare_file

    path = layout_metrics_file(properties, layout)
    try:
        declared = parse_declared(path.read_text(encoding="utf-8")) if path is not None else {}
    except (OSError, UnicodeDecodeError, ValueError):
        return []
    declare_file(declared)
    return sorted(declared)


def record_handler_metrics() -> None:
    """In a worker process of the python runtime: record handler metrics for the server process to export."""
    from . import registry

    registry.record_handler_metrics()


def drain_handler_metrics() -> list[tuple[str, str, float, list[str]]]:
    """What a worker process recorded since the last call (imports prometheus_client)."""
    from . import registry

    return registry.drain_handler_metrics()


def replay_handler_metrics(records: list[tuple[str, str, float, list[str]]]) -> None:
    """In the server process: export a worker process's recorded handler metrics (imports prometheus_client)."""
    if records:
        from . import registry

        registry.replay_handler_metrics(records)


def runtime_middleware() -> type[StatusCounter]:
    """The ASGI middleware that counts the python runtime's responses by status class (imports prometheus_client)."""
    from .registry import StatusCounter

    return StatusCounter


def serve_metrics_port(host: str) -> int | None:
    """The python runtime's own metrics listener, on $MAR_BUILD_METRICS_PORT when set (imports prometheus_client)."""
    from . import registry

    return registry.serve_metrics_port(host)


__all__ = [
    "ALL_METRICS", "BY_NAME", "HANDLER_METRICS", "METRICS_CONFIG_KEY", "METRICS_PORT_ENV", "TORCHSERVE_METRICS",
    "Metric", "declare_layout_metrics", "drain_handler_metrics", "handler_metrics", "layout_metrics_file",
    "metrics_findings", "metrics_yaml", "names", "parse_declared", "record_handler_metrics", "replay_handler_metrics",
    "runtime_metrics", "runtime_middleware", "serve_metrics_port", "write_metrics_file",
]
