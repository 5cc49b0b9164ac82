"""mar.yaml: the model spec, parsed into dataclasses with precise errors.

Syntax is checked at the edge (YAML, CLI option types); meaning is checked here: every key is known (or named with
a "did you mean" hint), every value has the right type and range, names are what TorchServe and KServe accept,
and paths are resolved relative to the spec file.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .._errors import SpecError
from .._names import (
    dns1035_label_problem,
    model_name_problem,
    scalar_string,
    suggest_isvc_name,
    suggest_model_name,
    version_problem,
)
from .._source import is_model_uri, parse_model_uri
from .settings import (
    DEPLOYMENT_MODES,
    SPEC_FILENAME,
    TASKS,
    KServeSettings,
    ModelSpec,
    Resources,
    ServerSettings,
    ServingSettings,
)

# --------------------------------------------------------------------------------------------------------------
# Parsing


_SECTIONS: dict[str, type] = {
    "serving": ServingSettings,
    "server": ServerSettings,
    "kserve": KServeSettings,
    "resources": Resources,
}


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _unknown_key(key: str, known: list[str], *, where: str, path: Path | None) -> SpecError:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
    return SpecError(f"unknown key {key!r}", path=path, key=where.rstrip(".") or None, hint=hint)


def _expect(value: Any, kind: type | tuple[type, ...], key: str, path: Path | None, what: str) -> Any:
    # bool is an int in Python; a YAML `true` where a number belongs is a mistake, not 1.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise SpecError(f"expected {what}, got {value!r}", path=path, key=key)
    if not isinstance(value, kind):
        raise SpecError(f"expected {what}, got {type(value).__name__} {value!r}", path=path, key=key)
    return value


def _str_map(value: Any, key: str, path: Path | None) -> dict[str, str]:
    """A mapping of labels, annotations or resources: each value the string Kubernetes stores, by the rule render()
    uses too (``_names.scalar_string``: ``1`` is "1", ``true`` is "true"); SpecError for anything else."""
    _expect(value, dict, key, path, "a mapping of strings")
    out = {}
    for k, v in value.items():
        text = scalar_string(v)
        if not isinstance(k, str) or text is None:
            raise SpecError(
                f"expected string keys and scalar values (text, numbers, true/false), got {k!r}: {v!r}",
                path=path, key=key, hint='write the value as text, e.g. "2001-12-14"',
            )
        out[k] = text
    return out


def _int(value: Any, key: str, path: Path | None, *, minimum: int = 0, maximum: int | None = None) -> int:
    _expect(value, int, key, path, "a whole number")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise SpecError(f"must be {bound}, got {value}", path=path, key=key)
    return int(value)


def _section(cls: type, raw: Any, key: str, path: Path | None) -> Any:
    if raw is None:
        return cls()
    _expect(raw, dict, key, path, "a mapping")
    known = _field_names(cls)
    values: dict[str, Any] = {}
    for k, v in raw.items():
        # YAML users write both max-workers and max_workers; accept the dash form.
        name = str(k).replace("-", "_")
        if name not in known:
            raise _unknown_key(str(k), known, where=key, path=path)
        sub = f"{key}.{name}"
        if cls is Resources:
            values[name] = _str_map(v, sub, path) if v is not None else {}
        elif name == "resources":
            values[name] = _section(Resources, v, sub, path)
        elif name in ("labels", "annotations"):
            values[name] = _str_map(v, sub, path)
        elif v is None:
            continue
        else:
            default = next(f for f in dataclasses.fields(cls) if f.name == name).default
            if isinstance(default, int) or name in _INT_FIELDS:
                maximum = 100 if name == "canary_traffic_percent" else 65535 if name.endswith("_port") else None
                values[name] = _int(v, sub, path, minimum=_INT_MIN.get(name, 0), maximum=maximum)
            else:
                values[name] = str(_expect(v, (str, int, float), sub, path, "a string"))
    instance = cls(**values)
    _check_section(instance, key, path)
    return instance


_INT_FIELDS = {
    "netty_threads", "job_queue_size", "max_request_size", "max_response_size", "min_replicas",
    "max_replicas", "scale_target", "timeout", "canary_traffic_percent",
}
_INT_MIN = {
    "max_workers": 1, "batch_size": 1, "response_timeout": 1, "startup_timeout": 1, "netty_threads": 1,
    "job_queue_size": 1, "max_request_size": 1, "max_response_size": 1, "inference_port": 1,
    "management_port": 1, "metrics_port": 1, "grpc_inference_port": 1, "grpc_management_port": 1,
    "scale_target": 1, "timeout": 1,
}


def _check_section(value: Any, key: str, path: Path | None) -> None:
    if isinstance(value, ServingSettings) and value.min_workers > value.max_workers:
        raise SpecError(
            f"min_workers ({value.min_workers}) is larger than max_workers ({value.max_workers})",
            path=path, key=key, hint="set max_workers >= min_workers",
        )
    if isinstance(value, KServeSettings):
        if value.protocol not in ("v1", "v2"):
            raise SpecError(f"protocol must be v1 or v2, got {value.protocol!r}", path=path, key=f"{key}.protocol")
        if value.deployment_mode is not None and value.deployment_mode not in DEPLOYMENT_MODES:
            raise SpecError(
                f"deployment_mode must be one of {', '.join(DEPLOYMENT_MODES)}, got {value.deployment_mode!r}",
                path=path, key=f"{key}.deployment_mode",
                hint="Serverless (Knative) is KServe's default; RawDeployment runs a plain Deployment",
            )
        if value.name is not None:
            check_isvc_name(value.name, path=path, key=f"{key}.name")


def parse_kserve_settings(raw: Mapping[str, Any], *, source: Path | None = None) -> KServeSettings:
    """Check a ``kserve:`` mapping (from mar.yaml or an archive's mar_build.json) as mar.yaml is checked."""
    settings = _section(KServeSettings, dict(raw), "kserve", source)
    assert isinstance(settings, KServeSettings)
    return settings


def check_model_name(name: str, *, path: Path | None = None, key: str = "name") -> str:
    """Raise SpecError unless ``name`` is a valid TorchServe model name (the URL name)."""
    problem = model_name_problem(name)
    if problem:
        raise SpecError(
            f"{str(name)[:80]!r}{'...' if len(str(name)) > 80 else ''} is not a valid model name: {problem}",
            path=path, key=key, hint=f"for example {suggest_model_name(str(name))!r}",
        )
    return name


def check_isvc_name(name: str, *, path: Path | None = None, key: str = "kserve.name") -> str:
    """Raise SpecError unless ``name`` is a DNS-1035 label of at most 63 characters."""
    problem = dns1035_label_problem(name)
    if problem:
        raise SpecError(
            f"{name!r} is not a valid InferenceService name: {problem}",
            path=path, key=key, hint=f"for example {suggest_isvc_name(str(name))!r}",
        )
    return name


# model_uri and provenance are not keys of their own: `model:` takes the URI, build() records the provenance
_TOP_KEYS = [f.name for f in dataclasses.fields(ModelSpec) if f.name not in ("source", "model_uri", "provenance")]


def _path(value: Any, key: str, base: Path, path: Path | None) -> Path:
    _expect(value, str, key, path, "a path")
    return (base / Path(value).expanduser()).resolve()


def parse_spec(raw: Mapping[str, Any], *, base: Path, source: Path | None = None) -> ModelSpec:
    """Turn a mapping (mar.yaml's content, overrides applied) into a ModelSpec, resolving paths against ``base``."""
    if not isinstance(raw, Mapping):
        raise SpecError("the spec must be a mapping of keys to values", path=source)
    values: dict[str, Any] = {"source": source}
    for k, v in raw.items():
        key = str(k).replace("-", "_")
        if key not in _TOP_KEYS:
            raise _unknown_key(str(k), _TOP_KEYS, where="", path=source)
        if v is None:
            continue
        if key in _SECTIONS:
            values[key] = _section(_SECTIONS[key], v, key, source)
        elif key == "model" and is_model_uri(v):
            values["model_uri"] = parse_model_uri(v, path=source).uri
        elif key in ("model", "handler", "model_file"):
            values[key] = _path(v, key, base, source)
        elif key == "extra_files":
            items = v if isinstance(v, list) else [v]
            values[key] = [_path(item, key, base, source) for item in items]
        elif key == "labels":
            values[key] = _str_map(v, key, source)
        elif key == "metadata":
            values[key] = dict(_expect(v, dict, key, source, "a mapping"))
        elif key == "options":
            values[key] = dict(_expect(v, dict, key, source, "a mapping"))
        elif key == "class_names":
            values[key] = _class_names(v, base, source)
        elif key == "requirements":
            values[key] = _requirements(v, base, source)
        elif key == "pin_requirements":
            values[key] = _expect(v, bool, key, source, "true or false")
        elif key == "version":
            values[key] = str(_expect(v, (str, int, float), key, source, "a version string"))
        else:
            values[key] = _expect(v, str, key, source, "a string")

    for required in ("name", "task"):
        if required not in values:
            raise SpecError(f"missing required key {required!r}", path=source, hint=_REQUIRED_HINTS[required])
    spec = ModelSpec(**values)
    _validate(spec)
    return spec


_REQUIRED_HINTS = {
    "name": "add `name: my-model` (the name in /v1/models/NAME:predict)",
    "task": f"add `task: ...`, one of {', '.join(TASKS)}",
}


def _class_names(value: Any, base: Path, source: Path | None) -> list[str]:
    if isinstance(value, str):
        # a path to index_to_name.json ({"0": "neg", ...}) or a labels.txt (one name a line)
        file = (base / value).resolve()
        if not file.is_file():
            raise SpecError(f"class names file {file} does not exist", path=source, key="class_names")
        text = file.read_text(encoding="utf-8")
        if file.suffix == ".json":
            data = json.loads(text)
            if isinstance(data, dict):
                return [str(data[k]) for k in sorted(data, key=lambda s: int(s))]
            value = data
        else:
            return [line.strip() for line in text.splitlines() if line.strip()]
    if isinstance(value, dict):
        try:
            return [str(value[k]) for k in sorted(value, key=int)]
        except (TypeError, ValueError) as exc:
            raise SpecError("class_names mapping keys must be class ids 0..N-1", path=source) from exc
    _expect(value, list, "class_names", source, "a list of names, a mapping id -> name, or a file path")
    return [str(v) for v in value]


def _requirements(value: Any, base: Path, source: Path | None) -> list[str]:
    if isinstance(value, str):
        file = (base / value).resolve()
        if not file.is_file():
            raise SpecError(f"requirements file {file} does not exist", path=source, key="requirements")
        lines = file.read_text(encoding="utf-8").splitlines()
        return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    _expect(value, list, "requirements", source, "a list of requirement strings or a requirements.txt path")
    return [str(v) for v in value]


def _validate(spec: ModelSpec) -> None:
    source = spec.source
    check_model_name(spec.name, path=source)
    problem = version_problem(spec.version)
    if problem:
        raise SpecError(f"{spec.version!r} is not a valid version: {problem}", path=source, key="version")
    if spec.task not in TASKS:
        close = difflib.get_close_matches(spec.task, TASKS, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}?" if close else f"one of {', '.join(TASKS)}"
        raise SpecError(f"unknown task {spec.task!r}", path=source, key="task", hint=hint)
    if spec.task == "custom" and spec.handler is None:
        raise SpecError(
            "task 'custom' needs a handler file", path=source, key="handler",
            hint="run `mar-build init custom DIR` to scaffold one, then set `handler: handler.py`",
        )
    if spec.task != "custom" and spec.model is None and spec.model_uri is None:
        raise SpecError(
            f"task {spec.task!r} needs a model", path=source, key="model",
            hint="set `model: PATH` to the model folder, or an MLflow URI such as models:/NAME/VERSION "
                 "(or pass --model)",
        )
    for key in ("model", "handler", "model_file"):
        p = getattr(spec, key)
        if p is not None and not p.exists():
            raise SpecError(
                f"{p} does not exist", path=source, key=key,
                hint="paths in mar.yaml are relative to the folder that holds mar.yaml",
            )
    for p in spec.extra_files:
        if not p.exists():
            raise SpecError(f"{p} does not exist", path=source, key="extra_files")


# --------------------------------------------------------------------------------------------------------------
# Files and overrides


def apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``raw`` with ``overrides`` applied; keys may be dotted (``serving.batch_size``); None is skipped."""
    merged: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for dotted, value in overrides.items():
        if value is None:
            continue
        parts = dotted.split(".")
        target = merged
        for part in parts[:-1]:
            node = target.get(part)
            if not isinstance(node, dict):
                node = {}
            target[part] = node = dict(node)
            target = node
        target[parts[-1]] = value
    return merged


def read_spec_file(path: Path) -> dict[str, Any]:
    """Read mar.yaml as a mapping, with YAML syntax errors reported at their line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SpecError(
            f"{path} does not exist", hint="run `mar-build init TASK DIR` to write a mar.yaml"
        ) from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"not valid YAML: {exc}", path=path) from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpecError("the spec must be a mapping of keys to values", path=path)
    return raw


def spec_path(path: str | Path | None) -> Path:
    """A spec argument may be a mar.yaml file or the folder that holds one (default: the current folder)."""
    p = Path(path) if path is not None else Path.cwd()
    return p / SPEC_FILENAME if p.is_dir() else p


def load_spec(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> ModelSpec:
    """Load mar.yaml (a file or its folder) and apply ``overrides`` (dotted keys); raise SpecError on any problem."""
    file = spec_path(path)
    raw = read_spec_file(file)
    raw = apply_overrides(raw, overrides or {})
    return parse_spec(raw, base=file.parent.resolve(), source=file)


__all__ = [
    "DEPLOYMENT_MODES", "SPEC_FILENAME", "TASKS", "KServeSettings", "ModelSpec", "Resources", "ServerSettings",
    "ServingSettings", "apply_overrides", "check_isvc_name", "check_model_name", "load_spec", "parse_kserve_settings",
    "parse_spec", "read_spec_file", "spec_path", "suggest_isvc_name", "suggest_model_name",
]
