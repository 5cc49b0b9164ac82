"""inspect(): what a .mar or a layout holds: models, versions, handler, task, labels, sizes."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .._errors import LayoutError
from .read import ArchiveInfo, read_archive, read_layout


@dataclass(frozen=True)
class ModelSummary:
    """One archive, as seen from the URL (``name`` is the model_snapshot key when read from a layout)."""

    name: str
    archive: Path
    archive_model_name: str | None
    version: str | None
    handler: str | None
    task: str | None
    labels: dict[str, str]
    metadata: dict[str, Any]
    class_names: list[str] | None
    size: int
    content_size: int
    files: int
    largest: list[tuple[str, int]]
    settings: dict[str, Any] | None = None
    built_with: dict[str, str] = field(default_factory=dict)
    # the MLflow model it was built from: uri, registered_model, version (and alias), run_id, source, signature...
    source: dict[str, Any] | None = None

    @property
    def predict_path(self) -> str:
        return f"/v1/models/{self.name}:predict"

    def source_lines(self) -> list[str]:
        """What ``inspect`` prints of the provenance: nothing for a model built from a folder."""
        s = self.source
        if not s:
            return []
        if s.get("registered_model"):
            asked = f"@{s['alias']}" if s.get("alias") else f"version {s.get('version')}"
            what = f"registered model {s['registered_model']} {asked}"
            what += f" -> version {s.get('version')}" if s.get("alias") else ""
        else:
            what = f"run {s.get('run_id')}, artifact {s.get('path')}"
        lines = [f"  from:     {s.get('uri')} ({what}; {s.get('flavor')} flavor)"]
        details = [f"{k} {s[k]}" for k in ("run_id", "source", "tracking_uri") if s.get(k)]
        if details:
            lines.append("            " + ", ".join(details))
        if s.get("converted"):
            lines.append(f"            served as {s['converted']}")
        signature = s.get("signature") or {}
        if signature.get("inputs"):
            outputs = json.dumps(signature.get("outputs"))
            lines.append(f"  signature: inputs {json.dumps(signature['inputs'])}, outputs {outputs}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field (the archive path as a string, ``largest`` as file/bytes objects)."""
        data = asdict(self)
        data["archive"] = str(self.archive)
        data["largest"] = [{"file": n, "bytes": s} for n, s in self.largest]
        return data


@dataclass(frozen=True)
class Inspection:
    """What inspect() found: a single archive, or a layout with its models and config.properties keys."""

    path: Path
    kind: Literal["archive", "layout"]
    models: list[ModelSummary]
    properties: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (what ``mar-build inspect --json`` prints)."""
        return {
            "path": str(self.path), "kind": self.kind, "models": [m.to_dict() for m in self.models],
            "properties": None if self.properties is None else dict(self.properties),
        }


def _summary(info: ArchiveInfo, name: str | None = None, settings: dict[str, Any] | None = None) -> ModelSummary:
    build = info.build_info or {}
    largest = sorted(((m.name, m.size) for m in info.members), key=lambda item: -item[1])[:5]
    return ModelSummary(
        name=name or info.model_name or info.path.stem,
        archive=info.path,
        archive_model_name=info.model_name,
        version=info.version,
        handler=info.handler,
        task=build.get("task"),
        labels=dict(build.get("labels") or {}),
        metadata=dict(build.get("metadata") or {}),
        class_names=build.get("class_names"),
        size=info.size,
        content_size=sum(m.size for m in info.members),
        files=len(info.members),
        largest=largest,
        settings=settings,
        built_with=dict(build.get("built_with") or {}),
        source=info.source,
    )


def inspect(path: str | Path) -> Inspection:
    """Describe a .mar file or a layout folder; raise ArchiveError/LayoutError when it is neither."""
    target = Path(path)
    if target.is_file():
        return Inspection(target, "archive", [_summary(read_archive(target))])
    if not target.exists():
        raise LayoutError(f"{target} does not exist", path=target, hint="pass a .mar file or a layout folder")
    layout = read_layout(target)
    archives = {p.name: p for p in layout.archives}
    models = []
    for entry in layout.entries:
        mar = archives.get(entry.mar_name or "")
        if mar is not None:
            models.append(_summary(read_archive(mar), entry.name, entry.settings))
    listed = {m.archive.name for m in models}
    models += [_summary(read_archive(p)) for name, p in archives.items() if name not in listed]
    return Inspection(target, "layout", models, layout.properties)
