"""A layout's ``config/metrics.yaml``: TorchServe's default metrics plus the handlers', in TorchServe's format.

In Prometheus mode TorchServe's frontend exports only the metrics its metrics file declares (pytorch/serve
docs/metrics.md, "Model Metrics Auto Detection"), and it reads that file once, at start. Without a ``metrics_config``
key it reads its own ``ts/configs/metrics.yaml``, which declares none of the handlers' metrics, so they vanish.
The file written here keeps every default (names.TORCHSERVE_METRICS, which mirror TorchServe 0.12.0's file) and adds
names.HANDLER_METRICS under ``model_metrics``. The Java frontend maps the file onto its configuration class, so no
key beyond ``dimensions``, ``ts_metrics``, ``model_metrics`` and each metric's ``name``/``unit``/``dimensions`` may
appear; comments may.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .._files import write_atomic
from .names import ALL_METRICS, METRICS_CONFIG_KEY, METRICS_FILE, POD_METRICS_CONFIG, Metric

_HEADER = """\
# TorchServe's metrics configuration, written by mar-build (config.properties' metrics_config names it).
# In Prometheus mode TorchServe exports only the metrics declared here: its own defaults (ts_metrics, and
# HandlerTime/PredictionTime) and the mar-build handlers' (mar_build_*). TorchServe adds the label Hostname to
# every model metric. Declare any metric a custom handler reports under model_metrics, with its labels in the
# order the handler sends their values; restart TorchServe to apply a change.
"""

_KINDS = ("counter", "gauge", "histogram")


def metrics_yaml(metrics: tuple[Metric, ...] = ALL_METRICS) -> str:
    """The metrics file declaring ``metrics`` (default: TorchServe's defaults and the handlers'), as text."""
    sections: dict[str, dict[str, list[dict[str, Any]]]] = {"ts_metrics": {}, "model_metrics": {}}
    for metric in metrics:
        entry = {"name": metric.name, "unit": metric.unit, "dimensions": list(metric.labels)}
        sections[metric.section].setdefault(metric.kind, []).append(entry)
    dimensions = sorted({label for metric in metrics for label in metric.labels})
    document = {"dimensions": dimensions, **{k: _ordered(v) for k, v in sections.items() if v}}
    return _HEADER + yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=120)


def _ordered(section: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    return {kind: section[kind] for kind in _KINDS if kind in section}


def parse_declared(text: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """The model metrics a metrics file declares: name -> (type, labels as declared). Raises ValueError for a file
    TorchServe could not read (not YAML, no model_metrics mapping, a metric without name or dimensions list)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"not YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise ValueError("not a mapping with ts_metrics and model_metrics")
    section = document.get("model_metrics")
    if not isinstance(section, dict) or not section:
        raise ValueError("no model_metrics section (TorchServe's workers refuse such a file)")
    declared: dict[str, tuple[str, tuple[str, ...]]] = {}
    for kind, entries in section.items():
        if kind not in _KINDS or not isinstance(entries, list):
            raise ValueError(f"model_metrics.{kind}: the types are {', '.join(_KINDS)}, each a list")
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise ValueError(f"model_metrics.{kind}: every metric needs a name, a unit and dimensions")
            labels = entry.get("dimensions") or []
            if not isinstance(labels, list):
                raise ValueError(f"model_metrics.{kind}.{entry['name']}: dimensions must be a list")
            declared[entry["name"]] = (kind, tuple(str(label) for label in labels))
    return declared


def write_metrics_file(config_dir: Path, *, replace: bool = True) -> Path | None:
    """Write ``config_dir/metrics.yaml`` (atomically, as the pod's user can read it); with ``replace=False`` an
    existing file is left as it is. Returns the path written, or None."""
    path = config_dir / METRICS_FILE
    if not replace and path.exists():
        return None
    return write_atomic(path, metrics_yaml(), fsync=False)


def layout_metrics_file(properties: Mapping[str, str], layout: Path) -> Path | None:
    """Where the file config.properties' ``metrics_config`` names lies in ``layout``: the pod's ``/mnt/models/X``
    is ``LAYOUT/X``. None when the key is absent or names a path outside /mnt/models (not in the layout)."""
    value = properties.get(METRICS_CONFIG_KEY, "").strip()
    root = POD_METRICS_CONFIG.split("/config/")[0] + "/"
    if not value.startswith(root):
        return None
    return layout / value[len(root):]
