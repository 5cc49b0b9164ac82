"""build(): a ModelSpec -> LAYOUT/model-store/NAME.mar + LAYOUT/config/config.properties.

A new layout is written in a temp folder beside its target and renamed into place at the end. An existing
layout gains (or replaces) one archive and one model_snapshot entry, each written through a temp file and
os.replace, archive first and config last: a reader never sees a config that names an archive not yet there,
and the other models are left untouched.

Every file and folder gets its mode explicitly (0644, 0755), never through the process umask: KServe's runtime
reads the layout as user 1000, rarely the user who built it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import LayoutError, SpecError
from .._events import Progress
from .._files import make_dirs, make_temp_dir, write_atomic
from .._layout import CONFIG_RELPATH, MODEL_STORE, Layout, read_layout
from .._metrics import write_metrics_file
from .._source import resolve
from .._spec import ModelSpec, load_spec
from .archive import Member, manifest_json, write_archive
from .config import MAR_BUILD_MARKER, merged_config, render_config, snapshot_settings
from .contents import HF_TASKS, archive_members, build_info, check_model_files

__all__ = ["BuildResult", "build", "build_many", "check_model_files"]

log = logging.getLogger("toolkit.build")


@dataclass(frozen=True)
class BuildResult:
    """What build() wrote: the layout, the archive, and every model the layout now serves."""

    layout: Path
    name: str
    version: str
    archive: Path
    archive_size: int
    replaced: bool
    models: list[str]
    warnings: list[str] = field(default_factory=list)

    @property
    def config(self) -> Path:
        return self.layout / CONFIG_RELPATH

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of the result, paths as strings (what ``mar-build build --json`` prints per model)."""
        return {
            "layout": str(self.layout), "name": self.name, "version": self.version, "archive": str(self.archive),
            "archive_size": self.archive_size, "replaced": self.replaced, "models": list(self.models),
            "config": str(self.config), "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class _Archive:
    """What one build writes into the layout's model-store/: the members, the manifest and the build info."""

    members: list[Member]
    manifest: bytes
    build_info: dict[str, Any]

    def write(self, target: Path, progress: Progress | None) -> int:
        return write_archive(target, self.members, manifest=self.manifest, build_info=self.build_info,
                             progress=progress)


def build(
    spec: ModelSpec | str | Path | None = None,
    output: str | Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> BuildResult:
    """Archive one model into a layout (created, or merged into when it exists).

    ``spec`` is a ModelSpec or a mar.yaml path (or its folder; default the current folder), with ``overrides``
    (dotted keys) applied. ``output`` defaults to ``build/NAME``. ``progress(done, total)`` gets the archive's
    bytes as they are written. A spec whose model is an MLflow URI (``spec.model_uri``) is downloaded to a temp
    folder first and built from there as from a folder; the archive records where it came from. Raises SpecError
    for a wrong spec, model folder or model URI, ArchiveError when the archive cannot be written, LayoutError when
    ``output`` exists and is not a layout.
    """
    if not isinstance(spec, ModelSpec):
        spec = load_spec(spec, overrides)
    elif overrides:
        raise TypeError("overrides apply to a spec file; pass a ModelSpec with the values already set")
    if spec.model_uri is not None:
        with tempfile.TemporaryDirectory(prefix="mar-build-source-") as tmp:
            return build(_from_source(spec, Path(tmp)), output, progress=progress)
    layout_path = Path(output) if output is not None else Path("build") / spec.name
    warnings = check_model_files(spec)
    members, requirements = archive_members(spec)
    if requirements is not None:
        members.append(Member("requirements.txt", data=requirements.encode()))
    manifest = manifest_json(name=spec.name, version=spec.version, requirements=requirements is not None)
    archive = _Archive(members, manifest, build_info(spec))

    existing = _existing_layout(layout_path)
    if existing is None:
        return _build_new(spec, layout_path, archive, warnings, progress)
    return _build_into(spec, existing, archive, warnings, progress)


# What each MLflow flavor can be served as: the Hugging Face tasks take the transformers folder, the others a module
_FLAVOR_TASKS = {"transformers": HF_TASKS, "pytorch": ("tensor", "image-classification", "custom")}


def _from_source(spec: ModelSpec, workdir: Path) -> ModelSpec:
    """The spec with its model URI downloaded under ``workdir``: model (and model_file/model_class) set to the
    files, the URI kept in the provenance."""
    assert spec.model_uri is not None
    resolved = resolve(spec.model_uri, workdir)
    tasks = _FLAVOR_TASKS[resolved.flavor]
    if spec.task not in tasks:
        raise SpecError(
            f"{spec.model_uri} is a {resolved.flavor} model; task {spec.task!r} cannot serve it", path=spec.source,
            key="task", hint=f"set `task:` to one of {', '.join(tasks)}",
        )
    log.info("building %s from %s (%s)", spec.name, spec.model_uri, resolved.provenance.get("converted"))
    return dataclasses.replace(
        spec, model=resolved.model, model_uri=None, provenance=resolved.provenance,
        model_file=resolved.model_file or spec.model_file, model_class=resolved.model_class or spec.model_class,
    )


def build_many(
    specs: Sequence[ModelSpec | str | Path],
    output: str | Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> list[BuildResult]:
    """Build several models into one layout; two specs with the same model name are an error before any write."""
    loaded = [s if isinstance(s, ModelSpec) else load_spec(s, overrides) for s in specs]
    names: dict[str, ModelSpec] = {}
    for s in loaded:
        if s.name in names:
            raise SpecError(
                f"two specs name the model {s.name!r} ({names[s.name].source} and {s.source}); "
                "model names must be unique in a layout (they are the URL names)",
                hint="give one of them another `name:` (or --name)",
            )
        names[s.name] = s
    if output is None and len(loaded) > 1:
        raise SpecError("building several models needs one output layout", hint="pass -o LAYOUT")
    return [build(s, output, progress=progress) for s in loaded]


def _existing_layout(path: Path) -> Layout | None:
    if not path.exists():
        return None
    if not path.is_dir():
        raise LayoutError(f"{path} exists and is not a folder", path=path, hint="choose another -o LAYOUT")
    if not any(path.iterdir()):
        return None
    if not (path / CONFIG_RELPATH).is_file():
        raise LayoutError(
            f"{path} exists and is not a layout (no {CONFIG_RELPATH}); refusing to write into it",
            path=path, hint="choose an empty or new folder with -o, or a layout built before",
        )
    layout = read_layout(path)
    if layout.problems:
        raise LayoutError(
            f"{path} has a config.properties that cannot be merged into", path=path, problems=layout.problems,
            hint="fix model_snapshot by hand (run `mar-build check` on it), or build into a new folder",
        )
    return layout


def _build_new(
    spec: ModelSpec, layout_path: Path, archive: _Archive, warnings: list[str], progress: Progress | None
) -> BuildResult:
    tmp = make_temp_dir(layout_path.parent, layout_path.name)
    try:
        size = archive.write(make_dirs(tmp / MODEL_STORE) / f"{spec.name}.mar", progress)
        text = render_config(
            spec.server, {spec.name: (spec.version, snapshot_settings(spec))},
            sizes=spec.default_sizes(), install_py_dep_per_model=bool(spec.requirements),
            resources=spec.kserve.resources,
        )
        make_dirs(tmp / CONFIG_RELPATH.parent)
        write_metrics_file(tmp / CONFIG_RELPATH.parent)  # config.properties' metrics_config names it
        write_atomic(tmp / CONFIG_RELPATH, text, fsync=False)
        if layout_path.exists():  # an empty folder we may replace
            layout_path.rmdir()
        os.replace(tmp, layout_path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("built %s %s into %s", spec.name, spec.version, layout_path)
    return BuildResult(layout_path, spec.name, spec.version, layout_path / MODEL_STORE / f"{spec.name}.mar",
                       size, False, [spec.name], warnings)


def _build_into(
    spec: ModelSpec, layout: Layout, archive: _Archive, warnings: list[str], progress: Progress | None
) -> BuildResult:
    names = layout.model_names()
    replaced = spec.name in names
    if len([n for n in names if n == spec.name]) > 1:
        raise LayoutError(f"{layout.path} lists model {spec.name!r} more than once", path=layout.path)
    for entry in layout.entries:
        if entry.name != spec.name and entry.mar_name == f"{spec.name}.mar":
            raise LayoutError(
                f"model {entry.name!r} in {layout.path} already uses {spec.name}.mar", path=layout.path,
                hint=f"give this model another name than {spec.name!r}",
            )
    target = make_dirs(layout.model_store) / f"{spec.name}.mar"
    size = archive.write(target, progress)

    models: dict[str, tuple[str, dict[str, Any]]] = {
        entry.name: (entry.version, entry.settings) for entry in layout.entries if entry.name != spec.name
    }
    models[spec.name] = (spec.version, snapshot_settings(spec))
    # The metrics file before the config that names it; a hand-written layout's own file is left as it is.
    write_metrics_file(layout.config_path.parent, replace=MAR_BUILD_MARKER in layout.config_text)
    write_atomic(layout.config_path, merged_config(layout, spec, models, warnings), fsync=False)
    log.info("%s %s in %s", "replaced" if replaced else "added", spec.name, layout.path)
    return BuildResult(layout.path, spec.name, spec.version, target, size, replaced, list(models), warnings)
