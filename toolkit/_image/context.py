"""`mar-build image`: a layout -> the build context of the image its runtime runs in.

The context is a folder ``docker build`` or ``podman build`` turns into the image: ``Dockerfile`` (podman reads
that name too), ``requirements.txt`` (see requirements.py), ``mar-build/`` (package.py) and, with ``bake_layout``,
``layout/`` (config/ and the archives, COPY'd to /mnt/models for an InferenceService without a storageUri).
Both runtimes run as user 1000 (the runtime's securityContext), with a writable $HOME and /tmp.

The folder is written beside its final place and moved there whole; a folder that is neither empty nor a context
written by mar-build is refused. The layout's config.properties gets what the image needs (atomically, every other
byte kept): ``install_py_dep_per_model`` off, since the image carries what the archives packaged, and for
TorchServe (0.12.0 in the image) ``disable_token_authorization=true``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import LayoutError
from .._files import make_temp_dir, write_atomic
from .._layout import CONFIG_RELPATH, MODEL_STORE, Layout, read_layout, set_properties, truthy
from .._templating import render_template
from .bases import Base, ImageError, choose_base
from .package import PACKAGE_DIR, copy_package
from .requirements import merge, packaged_pins, requirements_text, runtime_pins, torch_version

RUNTIMES = ("torchserve", "python")
MARKER = ".mar-build-image.json"  # names a folder as a context mar-build wrote (and may replace)
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
UID = 1000  # the ServingRuntimes' runAsUser (kserve-torchserve's and the one render brings for python)
USER, HOME = "mar-build", "/home/mar-build"
# The stock kserve-torchserve arguments, which KServe passes to the image's entry point (FACTS.md).
TORCHSERVE_ARGS = ["torchserve", "--start", "--model-store=/mnt/models/model-store",
                   "--ts-config=/mnt/models/config/config.properties"]
# mar-build's pod entry point for TorchServe: starts TorchServe with those arguments, then mar-build's wrapper in
# front of it (in place of the image's own, which turns every 4xx into 500).
TORCHSERVE_ENTRY_MODULE = "toolkit._serve.pod"
PYTHON_ENTRY_MODULE = "toolkit._runtime"
PYTHON_ARGS = ["--layout", "/mnt/models", "--http-port", "8080", "--host", "0.0.0.0"]
PY_DEP_KEY = "install_py_dep_per_model"
TOKEN_KEY = "disable_token_authorization"


@dataclass
class ImageContext:
    """What `mar-build image` wrote: the folder, the image's base and Python, its pins, what changed in the layout."""

    path: Path
    runtime: str
    base: str
    python: str
    platforms: list[str]
    gpu: bool
    bake_layout: bool
    requirements: list[str]
    layout_changes: dict[str, str]  # config.properties keys set in the layout (install_py_dep_per_model=false)
    warnings: list[str] = field(default_factory=list)

    @property
    def dockerfile(self) -> Path:
        return self.path / "Dockerfile"

    @property
    def requirements_file(self) -> Path:
        return self.path / "requirements.txt"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "dockerfile": str(self.dockerfile), "runtime": self.runtime, "base": self.base,
            "python": self.python, "platforms": self.platforms, "gpu": self.gpu, "bake_layout": self.bake_layout,
            "requirements": self.requirements, "layout_changes": dict(self.layout_changes),
            "warnings": self.warnings,
        }


def image(
    layout: str | os.PathLike[str], output: str | os.PathLike[str], *, runtime: str = "torchserve",
    base: str | None = None, base_python: str | None = None, gpu: bool = False, bake_layout: bool = False,
) -> ImageContext:
    """Write the build context of ``runtime``'s image for ``layout`` to ``output``; return what was written.

    ``base``: the image to build FROM (default python:3.11-slim-bookworm); ``base_python``: its Python (X.Y) when
    its name does not say; ``gpu``: torch with CUDA (PyPI's build) instead of the CPU build; ``bake_layout``: copy
    the layout into the image at /mnt/models. Raises ImageError (an impossible base, conflicting pins, an output
    folder that is not a context), LayoutError (no layout, an archive that cannot be read).
    """
    if runtime not in RUNTIMES:
        raise ImageError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}",
                         hint="torchserve (TorchServe behind mar-build's wrapper) or python (mar-build's own)")
    chosen = choose_base(base, base_python=base_python)
    source = read_layout(Path(layout))
    if not source.archives:
        raise LayoutError(f"{source.model_store} holds no .mar archive", path=source.path,
                          hint="build one into the layout first: mar-build build SPEC -o LAYOUT")
    packaged, tasks, warnings = packaged_pins(source)
    pins = merge(runtime_pins(runtime, chosen, tasks), packaged, chosen)
    target = Path(output)
    _check_output(target, source)
    header = {"image": f"mar-build's {runtime} runtime", "base": chosen.image,
              "python": chosen.python_version, "platform": chosen.platforms()[0]}
    tmp = make_temp_dir(target.parent, target.name)
    try:
        write_atomic(tmp / "requirements.txt", requirements_text(pins, header))
        copy_package(tmp)
        write_atomic(tmp / "Dockerfile", dockerfile(runtime, chosen, torch=torch_version(pins), gpu=gpu,
                                                   bake=bake_layout))
        changes = layout_changes(source, runtime)
        apply_layout_changes(source, changes)
        if bake_layout:
            _bake(read_layout(source.path), tmp / "layout")
        write_atomic(tmp / MARKER, json.dumps({"runtime": runtime, "base": chosen.image}, indent=2) + "\n")
        _move_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ImageContext(target, runtime, chosen.image, chosen.python_version, chosen.platforms(), gpu,
                        bake_layout, [p.line for p in pins], changes, warnings)


def dockerfile(runtime: str, base: Base, *, torch: str | None, gpu: bool, bake: bool) -> str:
    """The Dockerfile text of ``runtime``'s image on ``base`` (torch ``torch``: its CPU build unless ``gpu``)."""
    if runtime == "torchserve":
        fields: dict[str, Any] = {
            "title": "TorchServe behind mar-build's wrapper (KServe's kserve-torchserve arguments)",
            "java": True, "entrypoint": ["python", "-m", TORCHSERVE_ENTRY_MODULE], "cmd": TORCHSERVE_ARGS,
            "ports": [8080, 8081, 8082], "smoke_import": f"{TORCHSERVE_ENTRY_MODULE}, toolkit._serve.wrapper, ts",
        }
    else:
        fields = {
            "title": "mar-build's python runtime (the handlers in kserve's ModelServer, no Java)",
            "java": False, "entrypoint": ["python", "-m", PYTHON_ENTRY_MODULE], "cmd": PYTHON_ARGS,
            "ports": [8080], "smoke_import": "toolkit._runtime.server",
        }
    return render_template(
        "image/Dockerfile.jinja", base=base.image, python_version=base.python_version,
        platform=base.platforms()[0], torch=torch, torch_index=None if gpu or torch is None else CPU_TORCH_INDEX,
        gpu=gpu, bake=bake, package_dir=PACKAGE_DIR, uid=UID, user=USER, home=HOME, **fields,
    )


def layout_changes(layout: Layout, runtime: str) -> dict[str, str]:
    """The config.properties keys the image needs set in ``layout``, with their values (nothing already right).

    ``install_py_dep_per_model`` off: the image carries the packaged requirements. For TorchServe, whose 0.11.1+
    checks a token on every call by default and would answer the wrapper's token-less readiness polls 400 (the
    pod never ready), ``disable_token_authorization=true``.
    """
    props = layout.properties
    changes = {}
    if truthy(props.get(PY_DEP_KEY)):
        changes[PY_DEP_KEY] = "false"
    if runtime == "torchserve" and not truthy(props.get(TOKEN_KEY)):
        changes[TOKEN_KEY] = "true"
    return changes


def apply_layout_changes(layout: Layout, changes: dict[str, str]) -> None:
    """Write ``changes`` into the layout's config.properties atomically, every other byte kept."""
    if not changes:
        return
    text = set_properties(layout.config_text, changes, comment="set by mar-build image (the image's needs)")
    try:
        write_atomic(layout.config_path, text)
    except OSError as exc:
        raise LayoutError(f"cannot set {', '.join(changes)} in {layout.config_path}: {exc}", path=layout.path,
                          hint="make the layout writable, or set the keys yourself: "
                          + ", ".join(f"{k}={v}" for k, v in changes.items())) from exc


def _bake(layout: Layout, target: Path) -> None:
    """config/config.properties and every archive of ``layout`` under ``target`` (hard links where possible)."""
    (target / MODEL_STORE).mkdir(parents=True)
    (target / CONFIG_RELPATH).parent.mkdir()
    shutil.copy2(layout.config_path, target / CONFIG_RELPATH)
    for mar in layout.archives:
        dest = target / MODEL_STORE / mar.name
        try:
            os.link(mar, dest)
        except OSError:
            shutil.copy2(mar, dest)


def _check_output(target: Path, layout: Layout) -> None:
    if target.exists() and not target.is_dir():
        raise ImageError(f"{target} exists and is not a folder", hint="choose another -o DIR")
    if target.is_dir() and any(target.iterdir()) and not (target / MARKER).is_file():
        raise ImageError(f"{target} is not empty and was not written by `mar-build image`",
                         hint="choose a new or empty -o DIR (an earlier context of mar-build image is replaced)")
    resolved = target.resolve()
    if resolved == layout.path.resolve() or resolved.is_relative_to(layout.path.resolve()):
        raise ImageError(f"{target} is inside the layout {layout.path}",
                         hint="write the context outside the layout: the pod would see it as model files")


def _move_into_place(tmp: Path, target: Path) -> None:
    """``tmp`` becomes ``target``; an earlier context there is removed only once the new one is in place."""
    if not target.exists():
        os.replace(tmp, target)
        return
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
