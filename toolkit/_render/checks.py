"""Value checks for render: each raises a RenderError that names the bad value and says what would be valid.

The naming rules themselves live in ``toolkit._names`` and the storage URI grammar in ``toolkit._uri``; these
functions put their answers into render's own errors and add what only render knows (the level of a storageUri,
KServe's runtime tags and deployment modes, what a YAML 1.1 reader makes of a value).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from .._errors import RenderError
from .._names import (
    env_name_problem,
    image_tag_problem,
    label_key_problem,
    label_value_problem,
    scalar_string,
    suggest_isvc_name,
)
from .._spec import DEPLOYMENT_MODES
from .._templating import to_yaml_scalar
from .._uri import KSERVE_SCHEMES, parse_storage_uri

log = logging.getLogger("toolkit.render")

ANNOTATIONS_MAX_BYTES = 256 * 1024  # Kubernetes' TotalAnnotationSizeLimitB


def check_storage_uri(uri: str) -> tuple[str, str]:
    """Check that ``uri`` is a storageUri KServe can fetch a layout from; return (scheme, bucket or claim).

    The URI must name the folder that holds config/ and model-store/ (the storage-initializer copies its
    contents to /mnt/models). Raises RenderError with the right URI when it points inside a layout.
    """
    parsed = parse_storage_uri(uri, schemes=KSERVE_SCHEMES, error=RenderError)
    scheme, authority, segments = parsed.scheme, parsed.root, parsed.segments
    inside: list[str] = []
    if segments and (segments[-1] == "config.properties" or segments[-1].endswith(".mar")):
        inside.insert(0, segments.pop())
    if segments and segments[-1] in ("config", "model-store"):
        inside.insert(0, segments.pop())
    if inside:
        right = f"{scheme}://{authority}" + "".join("/" + s for s in segments)
        raise RenderError(
            f"{uri!r} points inside a layout (at {'/'.join(inside)}): storageUri must name the folder that holds "
            "config/config.properties and model-store/, which the storage-initializer copies to /mnt/models",
            hint=f"use --storage-uri {right}",
        )
    if scheme in OCI_NEEDS:
        log.warning("storageUri %s: %s", uri, OCI_NEEDS[scheme])
    return scheme, authority


# What the cluster must have for each way KServe reads an image that `stage oci://` pushed.
OCI_NEEDS = {
    "oci": "KServe's modelcar mode: it is off by default; set \"enableModelcar\": true under storageInitializer in "
    "the inferenceservice-config ConfigMap (namespace kserve), and stage with --base IMAGE (sh, ln, sleep, mkdir), "
    "or use oci+fetch:// for an image of files only",
    "oci+fetch": "the storage-initializer pulls the image (KServe releases after 0.20); a plain-http registry needs "
    "storageInitializer.ociInsecureRegistry: true in the inferenceservice-config ConfigMap",
    "oci+native": "a Kubernetes image volume: the cluster needs the ImageVolume feature (Kubernetes >= 1.33)",
}


def check_name(value: Any, problem_of: Callable[[Any], str | None], what: str) -> None:
    """Raise RenderError when ``problem_of(value)`` (a ``toolkit._names`` rule) finds a problem."""
    problem = problem_of(value)
    if problem:
        hint = f"for example {suggest_isvc_name(str(value))!r}"
        raise RenderError(f"{what} {value!r} is not valid: {problem}", hint=hint)


def check_label(key: Any, value: Any) -> None:
    problem = label_key_problem(key)
    if problem is not None:
        raise RenderError(f"label key {key!r} is not valid: {problem}", hint="e.g. team or example.com/team")
    problem = label_value_problem(value)
    if problem is not None:
        raise RenderError(
            f"label {key}={value!r} is not valid: {problem}",
            hint="put free text in an annotation (--annotation) instead",
        )


def check_annotations(annotations: Mapping[str, str]) -> None:
    total = 0
    for key, value in annotations.items():
        problem = label_key_problem(key)
        if problem is not None:
            raise RenderError(f"annotation key {key!r} is not valid: {problem}", hint="e.g. example.com/owner")
        check_yaml_safe(value, f"annotation {key}")
        total += len(key.encode()) + len(value.encode("utf-8", "surrogatepass"))
    if total > ANNOTATIONS_MAX_BYTES:
        raise RenderError(
            f"annotations hold {total} bytes; Kubernetes allows {ANNOTATIONS_MAX_BYTES} in all",
            hint="keep large data out of annotations",
        )


def check_yaml_safe(value: str, what: str) -> None:
    # Belt and braces for the yaml filter: YAML 1.1 readers (PyYAML) take U+0085, U+2028 and U+2029 as line
    # breaks and fold them, with the spaces around them, inside a double-quoted scalar when they are written raw;
    # so a value is only written when it reads back unchanged.
    if yaml.safe_load("v: " + to_yaml_scalar(value))["v"] != value:
        raise RenderError(
            f"{what} cannot be written to YAML unchanged: it holds a character YAML 1.1 readers take as a line "
            "break (U+0085, U+2028 or U+2029)",
            hint="remove that character, or use \\n for a line break",
        )


def check_runtime_version(version: Any, gpus: int) -> None:
    if image_tag_problem(version):
        raise RenderError(
            f"runtime_version {version!r} is not an image tag (letters, digits, '_', '.', '-'; at most 128)",
            hint="a pytorch/torchserve-kfs tag, e.g. 0.12.0 (or 0.12.0-gpu with a GPU)",
        )
    if gpus and not version.endswith("-gpu"):
        # KServe's UpdateImageTag: an explicit runtimeVersion replaces the tag as is; the "-gpu" suffix is only
        # added to the runtime's default tag. So 0.12.0 with a GPU runs the CPU image and the GPU sits idle.
        raise RenderError(
            f"runtime_version {version!r} with gpu={gpus}: KServe uses an explicit runtimeVersion exactly as "
            "given (it appends -gpu only to the runtime's default tag), so this would run the CPU image",
            hint=f"use --runtime-version {version}-gpu, or leave it out to get the default GPU image",
        )
    if not gpus and version.endswith("-gpu"):
        log.warning(
            "runtime_version %s is the GPU image but no GPU is requested: it runs on CPU, from a much larger "
            "image (add --gpu N or use the tag without -gpu)", version,
        )


def check_deployment_mode(mode: Any, metric: str | None) -> None:
    if mode not in DEPLOYMENT_MODES:
        close = [m for m in DEPLOYMENT_MODES if isinstance(mode, str) and m.lower() == mode.lower()]
        hint = f"did you mean {close[0]!r}?" if close else f"one of {', '.join(DEPLOYMENT_MODES)}"
        if mode == "ModelMesh":
            hint = "ModelMesh does not run the kserve-torchserve runtime; use Serverless or RawDeployment"
        raise RenderError(f"deployment_mode {mode!r} is not one KServe's TorchServe runtime runs in", hint=hint)
    if mode in ("RawDeployment", "Standard") and metric in ("concurrency", "rps"):
        log.warning(
            "scale_metric %s needs Knative (Serverless); a %s deployment scales with the HPA on cpu or memory",
            metric, mode,
        )


def whole(value: Any, key: str, *, minimum: int, maximum: int | None = None) -> int | None:
    """``value`` when it is a whole number in range (None stays None); RenderError otherwise (``True`` too)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RenderError(f"{key} must be a whole number, got {type(value).__name__} {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise RenderError(f"{key} must be {bound}, got {value}")
    return value


def expect_type(value: Any, kind: type, key: str) -> None:
    if not isinstance(value, kind):
        raise RenderError(f"{key} must be a {kind.__name__}, got {type(value).__name__}")


def string_map(base: Mapping[str, Any], extra: Mapping[str, Any] | None, what: str) -> dict[str, str]:
    """``base`` with ``extra`` merged key by key, each value the string Kubernetes stores (``_names.scalar_string``:
    ``1`` is "1", ``true`` is "true", as in mar.yaml); RenderError for non-string keys and non-scalar values."""
    merged: dict[str, str] = {}
    for source in (base, extra or {}):
        if not isinstance(source, Mapping):
            raise RenderError(f"{what} must be a mapping of strings, got {type(source).__name__}")
        for key, value in source.items():
            if not isinstance(key, str):
                raise RenderError(f"{what}: keys must be strings, got {key!r}")
            text = scalar_string(value)
            if text is None:
                raise RenderError(
                    f"{what}: {key} must be a string (or a number or true/false), got {type(value).__name__} "
                    f"{value!r}",
                    hint="Kubernetes label, annotation and env values are strings: give the text to store",
                )
            merged[key] = text
    return merged


def set_reserved(annotations: dict[str, str], key: str, value: str, source: str) -> None:
    """Set an annotation render owns, refusing a different value the caller gave for the same key."""
    given = annotations.get(key)
    if given is not None and given != value:
        raise RenderError(
            f"annotation {key}={given!r} contradicts {source} ({value!r})", hint="set it in one place only"
        )
    annotations[key] = value


def check_env(env: Mapping[str, str]) -> None:
    for name, value in env.items():
        problem = env_name_problem(name)
        if problem is not None:
            raise RenderError(f"env {name!r} is not valid: {problem}", hint="e.g. LOG_LEVEL=debug")
        check_yaml_safe(value, f"env {name}")
