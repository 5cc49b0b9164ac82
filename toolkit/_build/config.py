"""config/config.properties for a layout: rendered from the template, or merged into one written by hand.

A config mar-build wrote (it carries MAR_BUILD_MARKER) is rendered again with every model; a hand-written one
keeps every byte its author wrote, and only its model_snapshot line changes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .._layout import Layout, set_properties
from .._spec import ModelSpec, ServerSettings
from .._templating import render_template

MAR_BUILD_MARKER = "written by mar-build"
_TS_DEFAULT_STARTUP_TIMEOUT = 120  # TorchServe's own default; older releases do not know the key

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


def render_config(
    server: ServerSettings, models: Models, *, sizes: tuple[int, int], install_py_dep_per_model: bool
) -> str:
    """config.properties text for ``models`` (name -> (version, snapshot settings)), in the given order."""
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
