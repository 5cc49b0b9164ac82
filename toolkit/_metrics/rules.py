"""The preflight rule for metrics: a metric a handler reports that no metrics file declares is exported nowhere.

TorchServe's frontend exports a model metric only when the metrics file it read at start (``metrics_config``,
else its own default, which declares only HandlerTime and PredictionTime) declares it, unless
``model_metrics_auto_detect=true``. What the handlers report: the mar-build handlers' metrics (names.py) when the
archive carries them, and every metric a custom handler file names in a call on TorchServe's metrics API
(``add_counter("Name", ...)``, ``add_time``, ``add_metric``, ``add_metric_to_cache``...), found by reading the
archive's Python files (a name built at run time cannot be seen, and is not flagged).

``findings(layout)`` returns (level, message, fix) tuples; `check` (toolkit/_layout/preflight.py) adds them.
"""

from __future__ import annotations

import ast
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .declared import layout_metrics_file, parse_declared
from .names import HANDLER_METRICS, METRICS_CONFIG_KEY, METRICS_FILE, POD_METRICS_CONFIG, REQUESTS

if TYPE_CHECKING:
    from .._layout import Layout

Finding = tuple[Literal["error", "warning"], str, str]

# The mar-build handlers report their metrics from this module of the archive.
HANDLER_MODULE = "mar_build_handlers/metrics.py"
_API = {"add_counter", "add_time", "add_size", "add_percent", "add_metric", "add_error", "add_metric_to_cache"}
# TorchServe's own default file (ts/configs/metrics.yaml) declares these model metrics, and the backend reports them.
_TS_DEFAULT_MODEL_METRICS = {"HandlerTime", "PredictionTime"}
_FIX_DECLARE = (
    f"set {METRICS_CONFIG_KEY}={POD_METRICS_CONFIG} in config.properties with config/{METRICS_FILE} in the layout "
    "(mar-build build writes that file; declare each custom metric under model_metrics there)"
)


def findings(layout: Layout, runtime: str = "torchserve") -> list[Finding]:
    """What is wrong with how ``layout`` declares the metrics its handlers report (see the module docstring).
    A metrics file TorchServe cannot read is an error for ``runtime`` torchserve (its workers do not start), a
    warning for the python runtime (which then exports the handlers' own metrics only)."""
    props = layout.properties
    out: list[Finding] = []
    declared, source = _declared(layout, out)
    if runtime != "torchserve":
        out = [("warning", message, fix) for _, message, fix in out]
    if declared is None:
        return out
    if props.get("model_metrics_auto_detect", "").strip().lower() == "true":
        return out
    reported_by = _reported(layout)
    archives_missing: dict[tuple[str, ...], list[str]] = {}  # one finding for the archives that miss the same
    for archive, reported in reported_by.items():
        missing = tuple(sorted(name for name in reported if name not in declared))
        if missing:
            archives_missing.setdefault(missing, []).append(archive)
    for missing, archives in archives_missing.items():
        out.append(("warning", f"{', '.join(archives)} {'reports' if len(archives) == 1 else 'report'} metrics "
                    f"that {source} does not declare, so TorchServe exports none of them: {', '.join(missing)}",
                    _FIX_DECLARE))
    out += _mismatches(declared, source, any(REQUESTS in reported for reported in reported_by.values()))
    return out


def _declared(layout: Layout, out: list[Finding]) -> tuple[dict[str, tuple[str, tuple[str, ...]]] | None, str]:
    value = layout.properties.get(METRICS_CONFIG_KEY, "").strip()
    if not value:
        return {name: ("gauge", ()) for name in _TS_DEFAULT_MODEL_METRICS}, "TorchServe's default metrics file"
    path = layout_metrics_file(layout.properties, layout.path)
    if path is None:
        out.append(("warning", f"{METRICS_CONFIG_KEY}={value} is outside /mnt/models: the predictor pod has "
                    "nothing there but what the image brings", _FIX_DECLARE))
        return None, value
    if not path.is_file():
        out.append(("error", f"{METRICS_CONFIG_KEY}={value}, and the layout has no {path.relative_to(layout.path)}: "
                    "TorchServe's workers fail to start without the file", _FIX_DECLARE))
        return None, value
    try:
        return parse_declared(path.read_text(encoding="utf-8")), str(path.relative_to(layout.path))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        out.append(("error", f"{path}: {exc}", "fix the file, or write it again with mar-build build"))
        return None, value


def _mismatches(declared: dict[str, tuple[str, tuple[str, ...]]], source: str, ours: bool) -> list[Finding]:
    """Our metrics declared with another type or other labels than the handlers send (TorchServe mislabels or
    drops them)."""
    if not ours:
        return []
    out: list[Finding] = []
    for metric in HANDLER_METRICS:
        if metric.name in declared and declared[metric.name] != (metric.kind, metric.labels):
            kind, labels = declared[metric.name]
            out.append(("warning", f"{source} declares {metric.name} as a {kind} with labels {list(labels)}; the "
                        f"handlers report a {metric.kind} with labels {list(metric.labels)}",
                        f"declare it as mar-build build writes config/{METRICS_FILE}"))
    return out


def _archives(layout: Layout) -> list[Path]:
    names = {entry.mar_name for entry in layout.entries if entry.mar_name}
    return [layout.model_store / name for name in sorted(names) if (layout.model_store / name).is_file()]


def _reported(layout: Layout) -> dict[str, set[str]]:
    """archive file name -> the metric names its handlers report."""
    out: dict[str, set[str]] = {}
    for mar in _archives(layout):
        try:
            with zipfile.ZipFile(mar) as archive:
                reported = _names_in(archive)
        except (OSError, zipfile.BadZipFile):
            continue  # `check`'s archive rules report an unreadable archive
        if reported:
            out[mar.name] = reported
    return out


def _names_in(archive: zipfile.ZipFile) -> set[str]:
    members = archive.namelist()
    found = {m.name for m in HANDLER_METRICS} if HANDLER_MODULE in members else set()
    for member in members:
        if not member.endswith(".py") or member.startswith("mar_build_handlers/"):
            continue
        try:
            tree = ast.parse(archive.read(member).decode("utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        found |= api_metric_names(tree)
    return found


def api_metric_names(tree: ast.AST) -> set[str]:
    """The literal metric names a module passes to TorchServe's metrics API (first argument, or ``name=`` /
    ``metric_name=``)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _API):
            continue
        candidates = node.args[:1] + [k.value for k in node.keywords if k.arg in ("name", "metric_name")]
        for arg in candidates:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.add(arg.value)
    return found
