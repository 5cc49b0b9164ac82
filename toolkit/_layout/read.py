"""Reading layouts and archives: config.properties, model_snapshot, and what a .mar holds.

A layout is the folder KServe's storageUri must point at:

    LAYOUT/config/config.properties
    LAYOUT/model-store/NAME.mar

It may have been written by mar-build or by hand; everything here reads both.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._errors import ArchiveError, LayoutError
from .properties import parse_properties

CONFIG_RELPATH = Path("config") / "config.properties"
MODEL_STORE = "model-store"
BUILD_INFO = "mar_build.json"
MANIFEST = "MAR-INF/MANIFEST.json"


@dataclass(frozen=True)
class SnapshotEntry:
    """One model in model_snapshot: its key (the URL name), version and settings."""

    name: str
    version: str
    settings: dict[str, Any]

    @property
    def mar_name(self) -> str | None:
        value = self.settings.get("marName")
        return value if isinstance(value, str) else None

    def archive(self, layout: Path) -> Path:
        """The .mar this entry serves from ``layout``'s model store (``marName``, else NAME.mar, as TorchServe)."""
        return layout / MODEL_STORE / (self.mar_name or f"{self.name}.mar")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "settings": dict(self.settings)}


@dataclass
class Layout:
    """What a layout folder holds, as read; ``problems`` lists what could not be read (for `check`)."""

    path: Path
    properties: dict[str, str]
    config_text: str
    snapshot: dict[str, Any] | None
    entries: list[SnapshotEntry]
    archives: list[Path]
    problems: list[str] = field(default_factory=list)

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_RELPATH

    @property
    def model_store(self) -> Path:
        return self.path / MODEL_STORE

    def model_names(self) -> list[str]:
        return [e.name for e in self.entries]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict: paths as strings, the parsed keys and snapshot, the problems (not the raw text)."""
        return {
            "path": str(self.path), "properties": dict(self.properties), "snapshot": self.snapshot,
            "entries": [e.to_dict() for e in self.entries], "archives": [str(p) for p in self.archives],
            "problems": list(self.problems),
        }


def read_layout(path: str | Path) -> Layout:
    """Read LAYOUT/config/config.properties and list LAYOUT/model-store/*.mar.

    Raises LayoutError when the folder or its config file is missing. A model_snapshot that is not valid JSON
    does not raise: it is recorded in ``problems`` so that `check` can report it with everything else.
    """
    root = Path(path)
    if not root.is_dir():
        raise LayoutError(
            f"{root} is not a folder", path=root,
            hint="a layout is a folder with config/config.properties and model-store/*.mar (mar-build build -o DIR)",
        )
    config = root / CONFIG_RELPATH
    if not config.is_file():
        hint = "build one with `mar-build build SPEC -o DIR`"
        if root.name in ("config", MODEL_STORE) and (root.parent / CONFIG_RELPATH).is_file():
            hint = f"point at the layout folder itself ({root.parent}), not at its {root.name}/ folder"
        elif (root / "config.properties").is_file():
            hint = "config.properties must be inside a config/ folder: move it to config/config.properties"
        raise LayoutError(f"{config} does not exist: {root} is not a layout", path=root, hint=hint)
    text = config.read_text(encoding="utf-8", errors="replace")
    props = parse_properties(text)
    problems: list[str] = []
    snapshot, entries = parse_snapshot(props.get("model_snapshot"), problems)
    store = root / MODEL_STORE
    archives = sorted(store.glob("*.mar")) if store.is_dir() else []
    return Layout(root, props, text, snapshot, entries, archives, problems)


def parse_snapshot(value: str | None, problems: list[str]) -> tuple[dict[str, Any] | None, list[SnapshotEntry]]:
    """model_snapshot's JSON -> (the object, one entry per model version); what is wrong goes to ``problems``."""
    if value is None:
        return None, []
    try:
        snapshot = json.loads(value)
    except json.JSONDecodeError as exc:
        problems.append(f"model_snapshot is not valid JSON ({exc.msg} at column {exc.colno}); it must be one line")
        return None, []
    if not isinstance(snapshot, dict) or not isinstance(snapshot.get("models"), dict):
        problems.append('model_snapshot has no "models" object')
        return snapshot if isinstance(snapshot, dict) else None, []
    entries: list[SnapshotEntry] = []
    for name, versions in snapshot["models"].items():
        if not isinstance(versions, dict) or not versions:
            problems.append(f'model_snapshot entry "{name}" must map a version to its settings')
            continue
        for version, settings in versions.items():
            if not isinstance(settings, dict):
                problems.append(f'model_snapshot entry "{name}" version "{version}" must be an object')
                continue
            entries.append(SnapshotEntry(str(name), str(version), settings))
    return snapshot, entries


@dataclass(frozen=True)
class ArchiveMember:
    """One file in a .mar: its name, size unpacked and in the zip, and whether it is stored (not deflated)."""

    name: str
    size: int
    compressed: int
    stored: bool


@dataclass(frozen=True)
class ArchiveInfo:
    """What a .mar says about itself: MANIFEST.json, mar-build's build info (if built by us) and its files."""

    path: Path
    manifest: dict[str, Any]
    build_info: dict[str, Any] | None
    members: list[ArchiveMember]

    @property
    def model_name(self) -> str | None:
        value = self.manifest.get("model", {}).get("modelName")
        return value if isinstance(value, str) else None

    @property
    def version(self) -> str | None:
        value = self.manifest.get("model", {}).get("modelVersion")
        return value if isinstance(value, str) else None

    @property
    def handler(self) -> str | None:
        value = self.manifest.get("model", {}).get("handler")
        return value if isinstance(value, str) else None

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    @property
    def source(self) -> dict[str, Any] | None:
        """Where the model came from when it was built from an MLflow URI (build info's ``source``), else None."""
        value = (self.build_info or {}).get("source")
        return value if isinstance(value, dict) else None

    def has(self, name: str) -> bool:
        return any(m.name == name for m in self.members)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict: the path as a string, the manifest and build info as read, every member."""
        return {
            "path": str(self.path), "manifest": self.manifest, "build_info": self.build_info,
            "members": [asdict(m) for m in self.members],
        }


def read_archive(path: str | Path) -> ArchiveInfo:
    """Open a .mar (a zip) and read its manifest and build info; raise ArchiveError when it is not one."""
    mar = Path(path)
    try:
        with zipfile.ZipFile(mar) as zf:
            members = [
                ArchiveMember(i.filename, i.file_size, i.compress_size, i.compress_type == zipfile.ZIP_STORED)
                for i in zf.infolist()
                if not i.is_dir()
            ]
            names = {m.name for m in members}
            if MANIFEST not in names:
                raise ArchiveError(
                    f"{mar} has no {MANIFEST}: it is not a TorchServe model archive", path=mar,
                    hint="build it with `mar-build build` or torch-model-archiver",
                )
            manifest = json.loads(zf.read(MANIFEST))
            build_info = json.loads(zf.read(BUILD_INFO)) if BUILD_INFO in names else None
    except zipfile.BadZipFile as exc:
        raise ArchiveError(
            f"{mar} is not a zip archive", path=mar,
            hint="KServe's wrapper only reads *.mar zip files; rebuild with the default archive format",
        ) from exc
    except FileNotFoundError as exc:
        raise ArchiveError(f"{mar} does not exist", path=mar) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"{mar}: manifest or build info is not valid JSON ({exc})", path=mar) from exc
    return ArchiveInfo(mar, manifest, build_info, members)
