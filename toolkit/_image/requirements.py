"""The image's requirements file: what the runtime needs, what the models' tasks need, what the archives packaged.

Every distribution mar-build itself needs is pinned to the version installed here (the one this layout was built
and tested with), its markers evaluated for the base's Python on Linux. An archive's packaged requirements.txt is
carried as written, and must agree with those pins: TorchServe then need not install anything per model
(``install_py_dep_per_model`` goes off), and a pod without a package index still has every library.
"""

from __future__ import annotations

import importlib.metadata
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from .._layout import Layout, read_archive
from .bases import Base, ImageError

DISTRIBUTION = "mar-build"
HF_TASKS = ("text-classification", "token-classification", "embeddings")
# mar-build's extras each runtime carries. The storage-initializer, not the predictor, downloads the model, so
# neither carries kserve-storage (and its cloud SDKs); the python runtime runs no TorchServe, so no torchserve.
RUNTIME_EXTRAS = {"torchserve": ("serve",), "python": ("serve",)}
TASK_SOURCE = "the tasks' libraries"
LEFT_OUT = {"torchserve": ("kserve-storage",), "python": ("kserve-storage", "torchserve")}


@dataclass(frozen=True)
class Pin:
    """One line of requirements.txt and why it is there (``mar-build[serve]``, ``task embeddings``, ``bert.mar``)."""

    requirement: Requirement
    source: str

    @property
    def name(self) -> str:
        return canonicalize_name(self.requirement.name)

    @property
    def line(self) -> str:
        return str(self.requirement)


def target_environment(base: Base) -> dict[str, str]:
    """The marker environment of the base (Linux, x86_64, its Python), for evaluating ``; python_version < ...``."""
    env = {key: str(value) for key, value in default_environment().items()}
    env.update(python_version=base.python_version, python_full_version=f"{base.python_version}.0",
               sys_platform="linux", platform_system="Linux", platform_machine="x86_64", os_name="posix",
               implementation_name="cpython", platform_python_implementation="CPython")
    return env


def runtime_pins(runtime: str, base: Base, tasks: Iterable[str]) -> list[Pin]:
    """torch, mar-build's own dependencies with the runtime's extras, and the libraries of ``tasks``, pinned."""
    extras = {"", *RUNTIME_EXTRAS[runtime]}
    task_extras = {"hf" for t in tasks if t in HF_TASKS} | {"image" for t in tasks if t == "image-classification"}
    env = target_environment(base)
    left_out = {canonicalize_name(n) for n in LEFT_OUT[runtime]}
    pins = [_pinned(Requirement("torch"), "torch")]
    try:
        declared = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise ImageError(f"{DISTRIBUTION} is not installed here, so its dependencies are unknown",
                         hint="install it (pip install -e . in a checkout, or pip install mar-build)") from exc
    for text in declared:
        req = Requirement(text)
        extra = _bringing_extra(req, extras | task_extras, env)
        if extra is None or canonicalize_name(req.name) in left_out:
            continue
        req.marker = None
        if extra in task_extras - extras:
            source = TASK_SOURCE
        else:
            source = f"{DISTRIBUTION}[{extra}]" if extra else f"{DISTRIBUTION} (its own dependencies)"
        pins.append(_pinned(req, source))
    _check_python(pins, base)
    return pins


def _bringing_extra(req: Requirement, extras: set[str], env: dict[str, str]) -> str | None:
    """The extra of ``extras`` that brings ``req`` ('' for a core dependency), or None."""
    if req.marker is None or req.marker.evaluate({**env, "extra": ""}):
        return ""
    return next((e for e in sorted(extras) if e and req.marker.evaluate({**env, "extra": e})), None)


def _pinned(req: Requirement, source: str) -> Pin:
    """``req`` pinned to the version installed here (its public part: torch 2.13.0+cpu -> 2.13.0)."""
    try:
        installed = Version(importlib.metadata.version(req.name)).public
    except importlib.metadata.PackageNotFoundError:
        return Pin(req, source)  # as declared: pip resolves it for the base
    if req.specifier and not req.specifier.contains(installed, prereleases=True):
        return Pin(req, source)
    pinned = Requirement(str(req))
    pinned.specifier = SpecifierSet(f"=={installed}")
    return Pin(pinned, source)


def _check_python(pins: Iterable[Pin], base: Base) -> None:
    """ImageError when a pinned release installed here declares a Requires-Python the base's Python is outside of."""
    for pin in pins:
        try:
            requires = importlib.metadata.metadata(pin.requirement.name)["Requires-Python"]
        except importlib.metadata.PackageNotFoundError:
            continue
        if requires and not SpecifierSet(requires).contains(f"{base.python_version}.0", prereleases=True):
            raise ImageError(
                f"{pin.line} (from {pin.source}) needs Python {requires}; the base {base.image} has "
                f"Python {base.python_version}", hint="use a base with a newer Python, e.g. the default "
                "python:3.11-slim-bookworm",
            )


def packaged_pins(layout: Layout) -> tuple[list[Pin], list[str], list[str]]:
    """(each requirement the layout's archives packaged, the archives' tasks from their build info, warnings for
    archives whose libraries the image can only guess: hand-built or custom ones that packaged none)."""
    pins: list[Pin] = []
    tasks: list[str] = []
    warnings: list[str] = []
    for mar in layout.archives:
        info = read_archive(mar)
        task = info.build_info.get("task") if info.build_info else None
        if isinstance(task, str):
            tasks.append(task)
        name = info.manifest.get("model", {}).get("requirementsFile")
        if not isinstance(name, str) or not info.has(name):
            if task is None or task == "custom":
                whose = "a custom handler" if task else "a handler mar-build did not write"
                warnings.append(
                    f"{mar.name} packages no requirements.txt and runs {whose}: the image carries torch and what "
                    "the runtime needs, nothing else; package the handler's libraries (requirements: in mar.yaml, "
                    "or the archive's requirements.txt) if it imports more")
            continue
        with zipfile.ZipFile(mar) as zf:
            text = zf.read(name).decode("utf-8", errors="replace")
        pins.extend(_parse_lines(text, f"{mar.name}:{name}"))
    return pins, tasks, warnings


def _parse_lines(text: str, source: str) -> list[Pin]:
    pins = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            raise ImageError(
                f"{source} line {number}: {line!r} is not a requirement the image can carry ({exc})",
                hint="package plain requirements (name, extras, version, marker); options such as --index-url "
                "belong in the image build, not in an archive",
            ) from exc
        pins.append(Pin(req, source))
    return pins


def merge(runtime: list[Pin], packaged: list[Pin], base: Base) -> list[Pin]:
    """One pin per distribution. A runtime pin stays and must satisfy every packaged specifier of its name (the
    runtime's libraries are what it was tested with); a task library the archives pin is theirs; packaged
    specifiers of one name from several archives are combined. Raises ImageError for a conflict."""
    env = target_environment(base)
    fixed = {p.name: p for p in runtime if p.source != TASK_SOURCE}
    merged: dict[str, Pin] = {p.name: p for p in runtime}
    seen: dict[str, Pin] = {}
    for pin in packaged:
        req = pin.requirement
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        if pin.name in fixed:
            ours = fixed[pin.name]
            version = _exact(ours.requirement)
            if version is not None and req.specifier and not req.specifier.contains(version, prereleases=True):
                raise ImageError(
                    f"{pin.source} wants {req}, but the image carries {ours.line} ({ours.source})",
                    hint=f"rebuild the archive with a requirement {ours.requirement.name} accepts "
                    f"({ours.requirement.name}=={version} is what runs the pod), or leave the pin out",
                )
            continue
        earlier = seen.get(pin.name)
        if earlier is not None:
            combined = _combine(earlier, pin)
            seen[pin.name] = combined
            merged[pin.name] = combined
            continue
        seen[pin.name] = pin
        merged[pin.name] = pin
    return list(merged.values())


def _combine(a: Pin, b: Pin) -> Pin:
    req = Requirement(str(a.requirement))
    req.extras = set(a.requirement.extras) | set(b.requirement.extras)
    req.specifier = a.requirement.specifier & b.requirement.specifier
    req.marker = None
    versions = [v for v in (_exact(a.requirement), _exact(b.requirement)) if v is not None]
    if len(set(versions)) > 1 or (versions and not req.specifier.contains(versions[0], prereleases=True)):
        raise ImageError(f"{a.source} wants {a.requirement} and {b.source} wants {b.requirement}: one image "
                         "cannot carry both", hint="build the archives with the same version, or use one image "
                         "per layout")
    return Pin(req, f"{a.source}, {b.source}")


def _exact(req: Requirement) -> str | None:
    specs = list(req.specifier)
    return specs[0].version if len(specs) == 1 and specs[0].operator in ("==", "===") else None


def requirements_text(pins: Iterable[Pin], header: Mapping[str, str]) -> str:
    """requirements.txt: a header, then the pins grouped by source, sorted by name within a group."""
    lines = [f"# {key}: {value}" for key, value in header.items()]
    groups: dict[str, list[Pin]] = {}
    for pin in pins:
        groups.setdefault(pin.source, []).append(pin)
    for source, members in groups.items():
        lines += ["", f"# {source}"]
        lines += [p.line for p in sorted(members, key=lambda p: p.name)]
    return "\n".join(lines) + "\n"


def torch_version(pins: Iterable[Pin]) -> str | None:
    """The exact torch version among ``pins`` (None when torch is not pinned exactly)."""
    for pin in pins:
        if pin.name == "torch":
            return _exact(pin.requirement)
    return None
