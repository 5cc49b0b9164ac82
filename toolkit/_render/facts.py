"""What render reads from a layout: its models, their KServe defaults (mar.yaml's ``kserve`` section recorded in
each archive's mar_build.json), the snapshot entries the thread budget counts, and the metrics settings."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .._errors import LayoutError
from .._layout import Layout, SnapshotEntry, check, read_archive, read_layout
from .._spec import KServeSettings, Runtime, parse_kserve_settings

log = logging.getLogger("toolkit.render")


@dataclass
class LayoutFacts:
    """A layout as render sees it; the empty default stands for "no layout" (name and storage URI given)."""

    models: list[str] = field(default_factory=list)
    entries: list[SnapshotEntry] = field(default_factory=list)
    defaults: KServeSettings | None = None
    metrics_port: int | None = None
    metrics_mode: str | None = None


def read_layout_facts(path: str | Path) -> LayoutFacts:
    """Read the layout at ``path``; LayoutError when it is not usable (unreadable, no models, a missing archive).

    When models disagree on their KServe defaults the first model's win, with a warning naming the others;
    archives not built by mar-build contribute nothing.
    """
    layout = _usable_layout(path)
    facts = LayoutFacts(models=list(dict.fromkeys(layout.model_names())), entries=list(layout.entries))
    source: str | None = None
    for entry in layout.entries:
        mar = layout.model_store / (entry.mar_name or f"{entry.name}.mar")
        if not mar.is_file():
            raise LayoutError(
                f"model_snapshot names {mar.name} for model {entry.name!r}, but {mar} does not exist",
                path=layout.path, hint="rebuild the layout, or run `mar-build check LAYOUT`",
            )
        raw = (read_archive(mar).build_info or {}).get("kserve")
        if not isinstance(raw, dict):
            continue
        found = _settings_from_build_info(raw, mar)
        if facts.defaults is None:
            facts.defaults, source = found, entry.name
            log.info("KServe defaults from model %r (%s)", entry.name, mar.name)
        elif found != facts.defaults:
            log.warning(
                "model %r has other KServe defaults than %r; the first model's are used, flags override them",
                entry.name, source,
            )
    facts.metrics_port = _port(layout.properties.get("metrics_address"))
    facts.metrics_mode = layout.properties.get("metrics_mode")
    return facts


def _usable_layout(path: str | Path) -> Layout:
    layout = read_layout(path)
    if layout.problems:
        raise LayoutError(
            f"{layout.path} is not a usable layout: " + "; ".join(layout.problems),
            path=layout.path, problems=layout.problems, hint="run `mar-build check LAYOUT` for every problem",
        )
    if not layout.entries:
        raise LayoutError(
            f"{layout.config_path} has no model_snapshot models: KServe's wrapper would serve nothing",
            path=layout.path, hint="build the layout with `mar-build build SPEC -o LAYOUT`",
        )
    return layout


def _port(address: str | None) -> int | None:
    if not address:
        return None
    try:
        return urlsplit(address).port
    except ValueError:
        return None


def _settings_from_build_info(raw: dict[str, Any], mar: Path) -> KServeSettings:
    known = {f.name for f in dataclasses.fields(KServeSettings)}
    unknown = sorted(set(raw) - known)
    if unknown:
        # An archive from a newer mar-build: use what this version knows rather than refuse to render.
        log.warning("%s: ignoring KServe settings this mar-build does not know: %s", mar.name, ", ".join(unknown))
    return parse_kserve_settings({k: v for k, v in raw.items() if k in known}, source=mar)


def preflight(path: str | Path, runtime: Runtime, runtime_version: str | None, *, custom_image: bool = False) -> None:
    """Run `check` on the layout for the runtime (and the pytorch/torchserve-kfs tag) that will serve it, and log
    each finding with its fix: render still writes the manifests, the user sees what the pod would trip over."""
    # An image of the user's own (--image) is not in the table of what the stock images ship: its rules are off.
    report = check(path, runtime=runtime, runtime_version=runtime_version, pod=not custom_image)
    for problem in report.problems:
        where = f" for runtime version {runtime_version}" if runtime_version else ""
        logging.getLogger("toolkit.render.preflight").warning("preflight%s: %s", where, problem)
