"""config/config.properties for a layout: rendered from the template, or merged into one written by hand.

A config mar-build wrote (it carries MAR_BUILD_MARKER) is rendered again with every model; a hand-written one
keeps every byte its author wrote, and only its model_snapshot line changes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._errors import SpecError
from .._layout import Layout, set_properties
from .._names import QUANTITY_HINT, parse_quantity
from .._spec import ModelSpec, Resources, ServerSettings
from .._templating import render_template

MAR_BUILD_MARKER = "written by mar-build"
_TS_DEFAULT_STARTUP_TIMEOUT = 120  # TorchServe's own default; older releases do not know the key
MIB = 1024 * 1024
MIN_HEAP_MIB = 128  # a floor: room for a few requests of the default 16 MiB max_request_size in flight

Models = Mapping[str, tuple[str, dict[str, Any]]]
"""model name -> (version, its model_snapshot settings), in the order the snapshot lists them."""


def snapshot_settings(spec: ModelSpec) -> dict[str, Any]:
    """The model_snapshot entry for one model (TorchServe's key names and order)."""
    s = spec.serving
    settings: dict[str, Any] = {
        "defaultVersion": True,
        "marName": f"{spec.name}.mar",
        "minWorkers": s.min_workers,
        "maxWorkers": s.max_workers,
        "batchSize": s.batch_size,
        "maxBatchDelay": s.max_batch_delay,
        "responseTimeout": s.response_timeout,
    }
    if s.startup_timeout != _TS_DEFAULT_STARTUP_TIMEOUT:
        settings["startupTimeout"] = s.startup_timeout
    return settings


@dataclass(frozen=True)
class Sizing:
    """What config.properties takes from the pod's ``limits``: the JVM heap and the default worker count."""

    heap_mib: int | None
    memory_limit: str | None
    default_workers: int | None
    cpu_limit: str | None


def pod_sizing(resources: Resources | None) -> Sizing:
    """The JVM heap (half of ``limits.memory``, at least MIN_HEAP_MIB) and the workers per model TorchServe starts
    where an entry gives none (the CPUs of ``limits.cpu``, rounded up); None where the limit is not set.

    Never the CPUs of this machine, nor of the node (os.cpu_count() in a container sees every core): the limit is
    what the pod gets. Raises SpecError for a limit that is not a Kubernetes quantity.
    """
    limits = resources.limits if resources is not None else {}
    memory, cpu = limits.get("memory"), limits.get("cpu")
    heap = None if memory is None else max(MIN_HEAP_MIB, int(_quantity(memory, "memory") / 2 / MIB))
    workers = None if cpu is None else max(1, math.ceil(_quantity(cpu, "cpu")))
    return Sizing(heap, None if memory is None else str(memory), workers, None if cpu is None else str(cpu))


def _quantity(value: Any, key: str) -> Any:
    try:
        return parse_quantity(str(value))
    except ValueError as exc:
        raise SpecError(f"kserve.resources.limits.{key}: {exc}", hint=QUANTITY_HINT) from exc


def render_config(
    server: ServerSettings, models: Models, *, sizes: tuple[int, int], install_py_dep_per_model: bool,
    resources: Resources | None = None,
) -> str:
    """config.properties text for ``models`` (name -> (version, snapshot settings)), in the given order, sized for
    the pod's ``resources`` (the spec's kserve.resources; without it no heap or default worker count is written)."""
    sizing = pod_sizing(resources)
    snapshot = {
        "name": "startup.cfg",
        "modelCount": len(models),
        "models": {name: {version: settings} for name, (version, settings) in models.items()},
    }
    return render_template(
        "config.properties.jinja",
        server=server,
        snapshot=snapshot,
        max_request_size=sizes[0],
        max_response_size=sizes[1],
        install_py_dep_per_model=install_py_dep_per_model,
        heap=None if sizing.heap_mib is None else {"mib": sizing.heap_mib, "limit": sizing.memory_limit},
        default_workers=None if sizing.default_workers is None
        else {"count": sizing.default_workers, "limit": sizing.cpu_limit},
    )


def merged_config(layout: Layout, spec: ModelSpec, models: Models, warnings: list[str]) -> str:
    """The layout's config.properties serving ``models`` now that ``spec``'s model is built into it.

    What a reader should know about the result (a hand-written config that will not install the packaged
    requirements) is appended to ``warnings``.
    """
    if MAR_BUILD_MARKER in layout.config_text:
        return render_config(
            spec.server, models, sizes=_merged_sizes(layout, spec),
            install_py_dep_per_model=bool(spec.requirements)
            or layout.properties.get("install_py_dep_per_model", "false").lower() == "true",
            resources=spec.kserve.resources,
        )
    snapshot = dict(layout.snapshot or {"name": "startup.cfg"})
    snapshot["modelCount"] = len(models)
    snapshot["models"] = {n: {v: s} for n, (v, s) in models.items()}
    text = set_properties(layout.config_text, {"model_snapshot": json.dumps(snapshot, separators=(",", ":"))})
    if spec.requirements and layout.properties.get("install_py_dep_per_model", "").lower() != "true":
        warnings.append(
            "this hand-written config.properties lacks install_py_dep_per_model=true, so the packaged "
            "requirements.txt will not be installed"
        )
    return text


def _merged_sizes(layout: Layout, spec: ModelSpec) -> tuple[int, int]:
    # The limits are server-wide: keep the larger of what the layout has and what this model needs.
    request, response = spec.default_sizes()
    props = layout.properties
    try:
        request = max(request, int(props.get("max_request_size", 0)))
        response = max(response, int(props.get("max_response_size", 0)))
    except ValueError:
        pass
    return request, response
