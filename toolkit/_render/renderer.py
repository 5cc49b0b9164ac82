"""Render the Kubernetes manifests that serve a layout on KServe's TorchServe runtime.

The InferenceService (serving.kserve.io/v1beta1) and, where asked, the S3 Secret with the ServiceAccount that lists
it, and a PersistentVolumeClaim. The text comes from ``templates/*.yaml.jinja`` with every value written as a safe
YAML scalar; ``Manifests.documents`` is that text parsed back, so what is applied and what is written are one thing.

Values come from the layout's archives (mar.yaml's ``kserve`` section, recorded in each archive's mar_build.json)
and from explicit arguments, which win. Everything a user can get wrong is checked here with a RenderError (or a
SpecError for names) that says what would be valid: names, label and annotation keys and values, resource
quantities, the storage URI's level, replicas, the runtime version's ``-gpu`` tag.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from .. import _names
from .._errors import LayoutError, RenderError, TemplateError
from .._files import PRIVATE_FILE, PUBLIC_FILE, write_atomic
from .._layout import read_archive, read_layout
from .._names import (
    dns1123_label_problem,
    dns1123_subdomain_problem,
    image_tag_problem,
    label_key_problem,
    label_value_problem,
    suggest_isvc_name,
)
from .._spec import (
    DEPLOYMENT_MODES,
    KServeSettings,
    Resources,
    check_isvc_name,
    parse_kserve_settings,
)
from .._templating import render_template, to_yaml_scalar
from .._uri import KSERVE_SCHEMES, parse_storage_uri

log = logging.getLogger("toolkit.render")

# Deployment modes KServe reads from serving.kserve.io/deploymentMode. Knative/Standard are the names KServe uses
# since kserve/kserve#4608 (0.16+); the older names are still accepted there, so they are the portable choice.
SCALE_METRICS = ("cpu", "memory", "concurrency", "rps")  # the CRD's enum for predictor.scaleMetric
PROTOCOLS = ("v1", "v2")
ACCESS_MODES = ("ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany", "ReadWriteOncePod")
RUNTIME_METRICS_PORT = 8082  # the kserve-torchserve runtime's prometheus.kserve.io/port

DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
PROMETHEUS_ANNOTATION = "serving.kserve.io/enable-prometheus-scraping"
PROMETHEUS_PORT_ANNOTATION = "prometheus.kserve.io/port"
S3_ANNOTATIONS = "serving.kserve.io/s3-"
GPU_RESOURCE = "nvidia.com/gpu"
ANNOTATIONS_MAX_BYTES = 256 * 1024  # Kubernetes' TotalAnnotationSizeLimitB

_S3_ENDPOINT = re.compile(r"(?:(?P<scheme>https?)://)?(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?/?")
_S3_REGION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


# --------------------------------------------------------------------------------------------------------------
# What a caller asks for


@dataclass(frozen=True)
class S3Credentials:
    """How the storage-initializer reaches an S3 (or S3-compatible) store: the Secret KServe reads.

    ``endpoint`` is ``https://host[:port]``, ``http://host:port`` or a bare ``host[:port]`` (None: AWS S3);
    ``use_https`` defaults to the endpoint's scheme (https when it has none). ``anonymous`` reads a public bucket
    with no keys. The keys are only held here when the caller put them here (or called ``from_env``); they never
    appear in ``repr`` or in any error message.
    """

    endpoint: str | None = None
    region: str | None = None
    use_https: bool | None = None
    verify_ssl: bool | None = None
    anonymous: bool = False
    secret_name: str | None = None  # default: NAME-s3
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(
        cls,
        *,
        endpoint: str | None = None,
        region: str | None = None,
        use_https: bool | None = None,
        verify_ssl: bool | None = None,
        secret_name: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> S3Credentials:
        """Credentials with the keys taken from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (an explicit ask).

        Raises RenderError naming the missing variable (never a value).
        """
        env = os.environ if environ is None else environ
        missing = [k for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if not env.get(k)]
        if missing:
            verb = "is" if len(missing) == 1 else "are"
            raise RenderError(
                f"{' and '.join(missing)} {verb} not set: the S3 Secret needs both keys",
                hint="export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... (the keys the storage-initializer "
                "reads the bucket with), or use --s3-anonymous for a public bucket",
            )
        return cls(
            endpoint=endpoint, region=region, use_https=use_https, verify_ssl=verify_ssl, secret_name=secret_name,
            access_key_id=env["AWS_ACCESS_KEY_ID"], secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )

    @property
    def has_keys(self) -> bool:
        return bool(self.access_key_id) or bool(self.secret_access_key)


@dataclass(frozen=True)
class PvcRequest:
    """A PersistentVolumeClaim to create; its name defaults to the claim in ``pvc://CLAIM/PATH``."""

    size: str
    storage_class: str | None = None
    access_mode: str = "ReadWriteOnce"
    name: str | None = None


@dataclass(frozen=True)
class Endpoint:
    """Where a client calls one model of the InferenceService."""

    model: str  # the model_snapshot key: the name in the URL
    path: str  # /v1/models/MODEL:predict
    host: str  # the Host header through the ingress gateway: NAME.NAMESPACE.example.com by default
    cluster_url: str  # the same call from inside the cluster (a notebook)


@dataclass(frozen=True, repr=False)
class Manifests:
    """Rendered manifests: ``documents`` (parsed, in apply order) and ``text`` (the same, as multi-document YAML).

    Apply order: Secret, ServiceAccount, PersistentVolumeClaim, InferenceService. A Secret that holds S3 keys is
    never part of ``documents``/``text``: it is ``secret``, a Manifests of its own, written only on purpose
    (``manifests.secret.write(FILE)``, mode 0600). ``all_documents()`` is everything to apply through the API.
    """

    documents: list[dict[str, Any]]
    text: str
    secret: Manifests | None = None
    endpoints: tuple[Endpoint, ...] = ()

    def __repr__(self) -> str:
        # No values: a notebook that displays the object must not show the keys of a Secret.
        names = ", ".join(f"{d.get('kind')}/{d.get('metadata', {}).get('name')}" for d in self.documents)
        extra = ", secret=<Secret with keys, not shown>" if self.secret is not None else ""
        return f"Manifests([{names}]{extra})"

    def all_documents(self) -> list[dict[str, Any]]:
        """Every document in apply order, the keyed Secret first: for applying through the API, not for files."""
        return (self.secret.documents if self.secret is not None else []) + self.documents

    def write(self, path: str | Path) -> Path:
        """Write ``text`` to ``path`` atomically (temp file + os.replace); return the path.

        A file holding a Secret with data is created with mode 0600 from the start; others get 0644.
        Raises RenderError when the path is a folder or its folder does not exist.
        """
        target = Path(path)
        if target.is_dir():
            raise RenderError(f"{target} is a folder", hint="give a file name, e.g. isvc.yaml")
        if not target.parent.is_dir():
            raise RenderError(f"{target.parent} does not exist", hint="create the folder first")
        # The temp file is 0600 from its creation, so keys are never readable by others, not even for a moment.
        mode = PRIVATE_FILE if _holds_secret_data(self.documents) else PUBLIC_FILE
        return write_atomic(target, self.text, mode=mode)


def _holds_secret_data(documents: Iterable[Mapping[str, Any]]) -> bool:
    return any(
        any((d.get("stringData") or {}).values()) or any((d.get("data") or {}).values())
        for d in documents
        if d.get("kind") == "Secret"
    )


# --------------------------------------------------------------------------------------------------------------
# render


def render(
    layout: str | Path | None = None,
    *,
    name: str | None = None,
    storage_uri: str | None = None,
    namespace: str | None = None,
    settings: KServeSettings | None = None,
    s3: S3Credentials | None = None,
    pvc: PvcRequest | None = None,
    protocol: str | None = None,
    runtime_version: str | None = None,
    gpu: int | None = None,
    requests: Mapping[str, str] | None = None,
    limits: Mapping[str, str] | None = None,
    min_replicas: int | None = None,
    max_replicas: int | None = None,
    scale_target: int | None = None,
    scale_metric: str | None = None,
    service_account: str | None = None,
    deployment_mode: str | None = None,
    timeout: int | None = None,
    canary_traffic_percent: int | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    prometheus: bool = False,
) -> Manifests:
    """Render the manifests that serve ``layout`` (a folder with config/ and model-store/) from ``storage_uri``.

    Defaults: ``settings`` when given, otherwise the KServe section of mar.yaml as recorded in the layout's first
    model_snapshot archive (when models disagree, the first model's wins and a warning names the others; archives
    not built by mar-build contribute nothing). Every other argument that is not None overrides those defaults;
    ``requests``/``limits``/``labels``/``annotations`` are merged key by key. ``layout`` may be None when the
    caller gives the name and storage URI (no model URLs are known then).

    ``gpu`` > 0 requests and limits ``nvidia.com/gpu``. KServe appends ``-gpu`` to the runtime's default image tag
    by itself for GPU requests, but uses ``runtime_version`` exactly as given when one is set, so with a GPU an
    explicit runtime version must name the GPU tag (``0.12.0-gpu``); render checks that and says so.

    S3: ``s3`` adds the Secret KServe reads (annotations for endpoint, https, region, anonymous access) and a
    ServiceAccount that lists it, which the InferenceService then runs as. Keys are never written into the
    InferenceService. A Secret that holds keys (the caller put them in ``S3Credentials`` or used
    ``S3Credentials.from_env``) is kept apart in ``Manifests.secret`` so that writing or printing the manifests
    cannot leak them; an anonymous Secret holds no keys and is part of ``documents``.

    Raises RenderError (or SpecError for an InferenceService name) naming the bad value and what would be valid,
    and LayoutError when ``layout`` is not a readable layout.
    """
    facts = _read_layout(layout) if layout is not None else _LayoutFacts()
    base = settings if settings is not None else facts.defaults or KServeSettings()
    _expect_type(base, KServeSettings, "settings")

    isvc_name = _isvc_name(_first(name, base.name), facts.models)
    ns = _first(namespace, base.namespace)
    if ns is not None:
        _check_name(ns, dns1123_label_problem, "namespace")
    uri = _first(storage_uri, base.storage_uri)
    if uri is None:
        raise RenderError(
            "no storage URI: the InferenceService must say where the layout is",
            hint="stage the layout first (mar-build stage LAYOUT s3://BUCKET/PREFIX or pvc://CLAIM/PATH) and pass "
            "--storage-uri with the URI it printed",
        )
    scheme, authority = check_storage_uri(uri)
    proto = _protocol(_first(protocol, base.protocol) or "v1")

    gpus = _whole(_first(gpu, base.gpu), "gpu", minimum=0) or 0
    version = _first(runtime_version, base.runtime_version)
    if version is not None:
        _check_runtime_version(version, gpus)
    res_requests, res_limits = _resolve_resources(base.resources, requests, limits, gpus)
    if not gpus and facts.workers:
        _check_workers(facts.workers, res_limits.get("cpu"))

    scaling = _scaling(
        min_replicas=_first(min_replicas, base.min_replicas), max_replicas=_first(max_replicas, base.max_replicas),
        scale_target=_first(scale_target, base.scale_target), scale_metric=_first(scale_metric, base.scale_metric),
        timeout=_first(timeout, base.timeout),
        canary_traffic_percent=_first(canary_traffic_percent, base.canary_traffic_percent),
    )
    mode = _first(deployment_mode, base.deployment_mode)
    if mode is not None:
        _check_deployment_mode(mode, scaling["scale_metric"])

    isvc_labels = _string_map(base.labels, labels, "labels")
    for key, value in isvc_labels.items():
        _check_label(key, value)
    isvc_annotations = _string_map(base.annotations, annotations, "annotations")
    if mode is not None:
        _set_reserved(isvc_annotations, DEPLOYMENT_MODE_ANNOTATION, mode, "deployment_mode")
    if prometheus:
        _add_prometheus(isvc_annotations, facts, layout is not None)
    _check_annotations(isvc_annotations)

    sa = _first(service_account, base.service_account)
    texts: list[str] = []
    secret: Manifests | None = None
    aux_labels = [("app.kubernetes.io/managed-by", "mar-build"), ("app.kubernetes.io/part-of", isvc_name)]
    if s3 is not None:
        _expect_type(s3, S3Credentials, "s3")
        if scheme != "s3":
            raise RenderError(
                f"S3 credentials were given but the storage URI is {uri!r}",
                hint="S3 settings apply to s3://BUCKET/PREFIX storage URIs only; drop them or fix --storage-uri",
            )
        sa = sa or f"{isvc_name}-sa"
        _check_name(sa, dns1123_subdomain_problem, "service account")
        secret_name, secret_text = _render_secret(s3, isvc_name, ns, aux_labels)
        if s3.has_keys:
            secret = _parse([secret_text])  # kept apart: see Manifests
        else:
            texts.append(secret_text)
        texts.append(render_template(
            "serviceaccount.yaml.jinja", name=sa, namespace=ns, labels=aux_labels, secrets=[secret_name],
        ))
    elif sa is not None:
        _check_name(sa, dns1123_subdomain_problem, "service account")
    if pvc is not None:
        _expect_type(pvc, PvcRequest, "pvc")
        texts.append(_render_pvc(pvc, scheme, authority, uri, ns, aux_labels))

    texts.append(render_template(
        "inferenceservice.yaml.jinja",
        name=isvc_name, namespace=ns, labels=sorted(isvc_labels.items()), annotations=sorted(isvc_annotations.items()),
        service_account=sa, protocol=proto, runtime_version=version, storage_uri=uri,
        limits=_ordered(res_limits), requests=_ordered(res_requests), **scaling,
    ))
    manifests = _parse(texts)
    _check_written(manifests.documents[-1], isvc_name, isvc_labels, isvc_annotations, uri)
    endpoints = tuple(_endpoint(m, isvc_name, ns, proto) for m in facts.models)
    return dataclasses.replace(manifests, secret=secret, endpoints=endpoints)


def _isvc_name(name: str | None, models: list[str]) -> str:
    if name is None:
        if not models:
            raise RenderError("no InferenceService name", hint="pass --name NAME (a DNS-1035 label, e.g. 'torchserve')")
        name = suggest_isvc_name(models[0])
        log.info("InferenceService name defaults to %r (from model %r)", name, models[0])
    _check_isvc_name(name)
    return name


def _protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise RenderError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if protocol == "v2":
        log.warning(
            "protocol v2: mar-build's handlers answer the v1 envelope ({'instances': [...]}); v2 needs a handler "
            "that speaks it"
        )
    return protocol


def _scaling(
    *, min_replicas: Any, max_replicas: Any, scale_target: Any, scale_metric: Any, timeout: Any,
    canary_traffic_percent: Any,
) -> dict[str, Any]:
    """The predictor's replica, autoscaling, timeout and canary fields, checked; None where not set."""
    low = _whole(min_replicas, "min_replicas", minimum=0)
    high = _whole(max_replicas, "max_replicas", minimum=0)
    # maxReplicas 0 means "no upper bound" to KServe.
    if low is not None and high is not None and high != 0 and low > high:
        raise RenderError(
            f"min_replicas ({low}) is larger than max_replicas ({high})", hint="set max_replicas >= min_replicas"
        )
    if scale_metric is not None and scale_metric not in SCALE_METRICS:
        raise RenderError(f"scale_metric must be one of {', '.join(SCALE_METRICS)}, got {scale_metric!r}")
    return {
        "min_replicas": low,
        "max_replicas": high,
        "scale_target": _whole(scale_target, "scale_target", minimum=1),
        "scale_metric": scale_metric,
        "timeout": _whole(timeout, "timeout", minimum=1),
        "canary_traffic_percent": _whole(canary_traffic_percent, "canary_traffic_percent", minimum=0, maximum=100),
    }


def _add_prometheus(annotations: dict[str, str], facts: _LayoutFacts, have_layout: bool) -> None:
    _set_reserved(annotations, PROMETHEUS_ANNOTATION, "true", "prometheus")
    # The runtime's own annotations point at 8082; a layout serving metrics elsewhere needs the override.
    if facts.metrics_port is not None and facts.metrics_port != RUNTIME_METRICS_PORT:
        _set_reserved(annotations, PROMETHEUS_PORT_ANNOTATION, str(facts.metrics_port), "prometheus")
    if have_layout and facts.metrics_mode != "prometheus":
        log.warning(
            "the layout's config.properties does not set metrics_mode=prometheus: TorchServe's /metrics answers "
            "empty, so scraping finds nothing (rebuild with mar-build build)"
        )


# --------------------------------------------------------------------------------------------------------------
# The layout's defaults


@dataclass
class _LayoutFacts:
    models: list[str] = field(default_factory=list)
    defaults: KServeSettings | None = None
    metrics_port: int | None = None
    metrics_mode: str | None = None
    workers: int = 0  # minWorkers (those TorchServe starts) summed over the models; 0 when some model has none


def _read_layout(path: str | Path) -> _LayoutFacts:
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
    facts = _LayoutFacts(models=list(dict.fromkeys(layout.model_names())))
    counts = [entry.settings.get("minWorkers") for entry in layout.entries]
    if all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in counts):
        facts.workers = sum(counts)  # type: ignore[arg-type]
    source: str | None = None
    for entry in layout.entries:
        mar = layout.model_store / (entry.mar_name or f"{entry.name}.mar")
        if not mar.is_file():
            raise LayoutError(
                f"model_snapshot names {mar.name} for model {entry.name!r}, but {mar} does not exist",
                path=layout.path, hint="rebuild the layout, or run `mar-build check LAYOUT`",
            )
        info = read_archive(mar)
        raw = (info.build_info or {}).get("kserve")
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
    address = layout.properties.get("metrics_address")
    if address:
        try:
            facts.metrics_port = urlsplit(address).port
        except ValueError:
            facts.metrics_port = None
    facts.metrics_mode = layout.properties.get("metrics_mode")
    return facts


def _settings_from_build_info(raw: dict[str, Any], mar: Path) -> KServeSettings:
    known = {f.name for f in dataclasses.fields(KServeSettings)}
    unknown = sorted(set(raw) - known)
    if unknown:
        # An archive from a newer mar-build: use what this version knows rather than refuse to render.
        log.warning("%s: ignoring KServe settings this mar-build does not know: %s", mar.name, ", ".join(unknown))
    return parse_kserve_settings({k: v for k, v in raw.items() if k in known}, source=mar)


# --------------------------------------------------------------------------------------------------------------
# Checks


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
    return scheme, authority


def _check_isvc_name(name: str) -> None:
    check_isvc_name(name, key="name")


def _check_name(value: Any, problem_of: Callable[[Any], str | None], what: str) -> None:
    problem = problem_of(value)
    if problem:
        hint = f"for example {suggest_isvc_name(str(value))!r}"
        raise RenderError(f"{what} {value!r} is not valid: {problem}", hint=hint)


def _check_label(key: Any, value: Any) -> None:
    problem = label_key_problem(key)
    if problem is not None:
        raise RenderError(f"label key {key!r} is not valid: {problem}", hint="e.g. team or example.com/team")
    problem = label_value_problem(value)
    if problem is not None:
        raise RenderError(
            f"label {key}={value!r} is not valid: {problem}",
            hint="put free text in an annotation (--annotation) instead",
        )


def _check_annotations(annotations: Mapping[str, str]) -> None:
    total = 0
    for key, value in annotations.items():
        problem = label_key_problem(key)
        if problem is not None:
            raise RenderError(f"annotation key {key!r} is not valid: {problem}", hint="e.g. example.com/owner")
        if not isinstance(value, str):
            raise RenderError(f"annotation {key} must be a string, got {type(value).__name__} {value!r}",
                              hint=f'quote it: "{value}"')
        _check_yaml_safe(value, f"annotation {key}")
        total += len(key.encode()) + len(value.encode("utf-8", "surrogatepass"))
    if total > ANNOTATIONS_MAX_BYTES:
        raise RenderError(
            f"annotations hold {total} bytes; Kubernetes allows {ANNOTATIONS_MAX_BYTES} in all",
            hint="keep large data out of annotations",
        )


def _check_yaml_safe(value: str, what: str) -> None:
    # Belt and braces for the yaml filter: YAML 1.1 readers (PyYAML) take U+0085, U+2028 and U+2029 as line
    # breaks and fold them, with the spaces around them, inside a double-quoted scalar when they are written raw;
    # so a value is only written when it reads back unchanged.
    if yaml.safe_load("v: " + to_yaml_scalar(value))["v"] != value:
        raise RenderError(
            f"{what} cannot be written to YAML unchanged: it holds a character YAML 1.1 readers take as a line "
            "break (U+0085, U+2028 or U+2029)",
            hint="remove that character, or use \\n for a line break",
        )


def _check_runtime_version(version: Any, gpus: int) -> None:
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


def _check_deployment_mode(mode: Any, metric: str | None) -> None:
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


def _whole(value: Any, key: str, *, minimum: int, maximum: int | None = None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RenderError(f"{key} must be a whole number, got {type(value).__name__} {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise RenderError(f"{key} must be {bound}, got {value}")
    return value


def _expect_type(value: Any, kind: type, key: str) -> None:
    if not isinstance(value, kind):
        raise RenderError(f"{key} must be a {kind.__name__}, got {type(value).__name__}")


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _string_map(base: Mapping[str, str], extra: Mapping[str, str] | None, what: str) -> dict[str, str]:
    merged: dict[str, str] = {}
    for source in (base, extra or {}):
        if not isinstance(source, Mapping):
            raise RenderError(f"{what} must be a mapping of strings, got {type(source).__name__}")
        for key, value in source.items():
            if not isinstance(key, str):
                raise RenderError(f"{what}: keys must be strings, got {key!r}")
            if not isinstance(value, str):
                raise RenderError(
                    f"{what}: {key} must be a string, got {type(value).__name__} {value!r}",
                    hint="Kubernetes label and annotation values are strings: quote numbers and booleans",
                )
            merged[key] = value
    return merged


def _set_reserved(annotations: dict[str, str], key: str, value: str, source: str) -> None:
    given = annotations.get(key)
    if given is not None and given != value:
        raise RenderError(
            f"annotation {key}={given!r} contradicts {source} ({value!r})", hint="set it in one place only"
        )
    annotations[key] = value


# --------------------------------------------------------------------------------------------------------------
# Resources


def parse_quantity(text: str) -> Decimal:
    """The value of a Kubernetes resource quantity ("500m", "0.5Gi", "2", "1e3"); RenderError when it is not one."""
    try:
        return _names.parse_quantity(text)
    except ValueError as exc:
        raise RenderError(str(exc), hint=_names.QUANTITY_HINT) from exc


def _resources(base: Mapping[str, str], extra: Mapping[str, Any] | None, what: str) -> dict[str, str]:
    merged: dict[str, str] = {}
    for source in (base, extra or {}):
        if not isinstance(source, Mapping):
            raise RenderError(f"resources.{what} must be a mapping, got {type(source).__name__}")
        for key, value in source.items():
            problem = label_key_problem(key)
            if problem is not None:
                raise RenderError(f"resources.{what}: {key!r} is not a resource name: {problem}")
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise RenderError(f"resources.{what}.{key} must be a quantity string, got {value!r}")
            text = value if isinstance(value, str) else str(value)
            try:
                parse_quantity(text)
            except RenderError as exc:
                raise RenderError(f"resources.{what}.{key}: {exc.message}", hint=exc.hint) from exc
            merged[key] = text
    return merged


def _resolve_resources(
    base: Resources, requests: Mapping[str, Any] | None, limits: Mapping[str, Any] | None, gpus: int
) -> tuple[dict[str, str], dict[str, str]]:
    """(requests, limits): the defaults with the overrides merged key by key, GPUs added, quantities checked."""
    res_requests = _resources(base.requests, requests, "requests")
    res_limits = _resources(base.limits, limits, "limits")
    if gpus:
        for what, table in (("limits", res_limits), ("requests", res_requests)):
            if table.get(GPU_RESOURCE, str(gpus)) != str(gpus):
                raise RenderError(
                    f"{what}.{GPU_RESOURCE} is {table[GPU_RESOURCE]!r} but gpu is {gpus}",
                    hint="set the GPU count in one place (--gpu N)",
                )
            table[GPU_RESOURCE] = str(gpus)
    _check_requests_within_limits(res_requests, res_limits)
    return res_requests, res_limits


def _check_workers(workers: int, cpu_limit: str | None) -> None:
    """Warn when the workers TorchServe starts (minWorkers) outnumber the CPUs the pod may use.

    Each worker holds its own copy of the model and runs one batch at a time; the handlers give each worker
    (CPUs / max_workers) torch threads. More workers than CPUs only take turns on them, with a model copy each in
    the memory limit. Fewer is a valid choice (more threads per worker), said at -v: on 2 CPUs one
    single-threaded worker per CPU served 1.2-1.5 x one worker with both threads (benchmarks/defaults.py).
    """
    if cpu_limit is None:
        return
    cpus = max(1, math.ceil(parse_quantity(cpu_limit)))  # the handlers round a CPU quota up the same way
    if workers > cpus:
        log.warning(
            "the layout starts %d worker(s) on limits.cpu %s: they take turns on %d CPU(s), and each holds its "
            "own copy of the model within the memory limit; set serving.min_workers to %d in all (and rebuild), "
            "or raise the CPU limit (--cpu-limit)", workers, cpu_limit, cpus, cpus,
        )
    elif workers < cpus:
        log.info(
            "the layout starts %d worker(s) on limits.cpu %s: one single-threaded worker per CPU "
            "(serving.min_workers and max_workers: %d) usually serves more under load, if the memory limit holds "
            "that many copies of the model", workers, cpu_limit, cpus,
        )


def _check_requests_within_limits(requests: Mapping[str, str], limits: Mapping[str, str]) -> None:
    for key, request in requests.items():
        limit = limits.get(key)
        if limit is None:
            continue
        if parse_quantity(request) > parse_quantity(limit):
            raise RenderError(
                f"requests.{key} ({request}) is more than limits.{key} ({limit}): Kubernetes rejects such a pod",
                hint=f"raise the limit or lower the request (--{key}-request/--{key}-limit); unless mar.yaml's "
                "kserve.resources says otherwise both default to 1 CPU and 2Gi, the runtime's defaults",
            )
        if "/" in key and "kubernetes.io/" not in key and parse_quantity(request) != parse_quantity(limit):
            raise RenderError(
                f"requests.{key} ({request}) differs from limits.{key} ({limit}): extended resources cannot be "
                "overcommitted", hint="set them equal",
            )


def _ordered(table: Mapping[str, str]) -> list[tuple[str, str]]:
    first = ("cpu", "memory", "ephemeral-storage")
    return sorted(table.items(), key=lambda kv: (first.index(kv[0]) if kv[0] in first else len(first), kv[0]))


# --------------------------------------------------------------------------------------------------------------
# S3 and PVC


def _render_secret(
    s3: S3Credentials, isvc_name: str, namespace: str | None, labels: list[tuple[str, str]]
) -> tuple[str, str]:
    """(name, text) of the Secret KServe reads the S3 settings and keys from."""
    name = s3.secret_name or f"{isvc_name}-s3"
    _check_name(name, dns1123_subdomain_problem, "secret name")
    text = render_template(
        "secret.yaml.jinja", name=name, namespace=namespace, labels=labels, annotations=_s3_annotations(s3),
        keys=_s3_keys(s3),
    )
    return name, text


def _s3_annotations(s3: S3Credentials) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    use_https = s3.use_https
    if s3.endpoint is not None:
        match = _S3_ENDPOINT.fullmatch(s3.endpoint) if isinstance(s3.endpoint, str) else None
        if match is None:
            raise RenderError(
                f"S3 endpoint {s3.endpoint!r} is not a host[:port] or http(s)://host[:port] URL",
                hint="e.g. https://s3.us-east-1.amazonaws.com or http://minio-service.kubeflow:9000",
            )
        scheme = match.group("scheme")
        if scheme is not None and use_https is not None and use_https != (scheme == "https"):
            raise RenderError(f"S3 endpoint {s3.endpoint!r} contradicts use_https={use_https}")
        if use_https is None:
            use_https = scheme != "http"
        port = match.group("port")
        if port is not None and not 0 < int(port) < 65536:
            raise RenderError(f"S3 endpoint {s3.endpoint!r}: port {port} is out of range")
        # KServe wants host[:port] here and builds the URL from s3-usehttps.
        out.append((S3_ANNOTATIONS + "endpoint", match.group("host") + (f":{port}" if port else "")))
    if use_https is not None:
        out.append((S3_ANNOTATIONS + "usehttps", "1" if use_https else "0"))
    if s3.region is not None:
        if not isinstance(s3.region, str) or not _S3_REGION.fullmatch(s3.region):
            raise RenderError(f"S3 region {s3.region!r} is not a region name", hint="e.g. us-east-1")
        out.append((S3_ANNOTATIONS + "region", s3.region))
    if s3.verify_ssl is not None:
        out.append((S3_ANNOTATIONS + "verifyssl", "1" if s3.verify_ssl else "0"))
    if s3.anonymous:
        out.append((S3_ANNOTATIONS + "useanoncredential", "true"))
    return out


def _s3_keys(s3: S3Credentials) -> list[tuple[str, str]]:
    if s3.anonymous:
        if s3.has_keys:
            raise RenderError("S3 credentials are anonymous and also hold keys", hint="choose one")
        # KServe only reads a Secret's annotations when it has the key entries, so they are present, empty.
        return [("AWS_ACCESS_KEY_ID", ""), ("AWS_SECRET_ACCESS_KEY", "")]
    if not s3.has_keys:
        raise RenderError(
            "the S3 Secret needs keys, and none were given",
            hint="write the Secret to its own file with --s3-secret-file FILE (keys from AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY; in Python S3Credentials.from_env()), use --s3-anonymous for a public bucket, "
            "or name an existing ServiceAccount with --service-account instead of S3 settings",
        )
    keys = [("AWS_ACCESS_KEY_ID", s3.access_key_id), ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key)]
    for key, value in keys:
        # The message names the variable, never the value.
        if not isinstance(value, str) or not value or not value.isascii() or not value.isprintable() \
                or any(ch.isspace() for ch in value):
            raise RenderError(f"{key} is empty or holds spaces or control characters", hint="check the key")
    return [(k, str(v)) for k, v in keys]


def _render_pvc(
    pvc: PvcRequest, scheme: str, claim: str, uri: str, namespace: str | None, labels: list[tuple[str, str]]
) -> str:
    if scheme != "pvc":
        raise RenderError(
            f"a PVC was asked for but the storage URI is {uri!r}",
            hint="a PVC serves pvc://CLAIM/PATH storage URIs; drop the PVC options or fix --storage-uri",
        )
    name = pvc.name or claim
    if name != claim:
        raise RenderError(
            f"the PVC is named {name!r} but the storage URI reads claim {claim!r}", hint="use the same name"
        )
    try:
        size = parse_quantity(pvc.size)
    except RenderError as exc:
        raise RenderError(f"PVC size: {exc.message}", hint="e.g. 10Gi") from exc
    if size <= 0:
        raise RenderError(f"PVC size must be more than 0, got {pvc.size!r}", hint="e.g. 10Gi")
    if pvc.access_mode not in ACCESS_MODES:
        raise RenderError(f"PVC access mode {pvc.access_mode!r} is not one of {', '.join(ACCESS_MODES)}")
    if pvc.storage_class is not None:
        _check_name(pvc.storage_class, dns1123_subdomain_problem, "storage class")
    return render_template(
        "pvc.yaml.jinja", name=name, namespace=namespace, labels=labels, size=pvc.size,
        access_mode=pvc.access_mode, storage_class=pvc.storage_class,
    )


# --------------------------------------------------------------------------------------------------------------
# Text and documents


def _parse(texts: list[str]) -> Manifests:
    text = "---\n".join(texts)
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:  # a template bug: values cannot break the YAML
        raise TemplateError(f"rendered text is not valid YAML: {exc}", template="*.yaml.jinja") from exc
    if len(documents) != len(texts) or not all(isinstance(d, dict) for d in documents):
        raise TemplateError("rendered text does not hold one mapping per manifest", template="*.yaml.jinja")
    return Manifests(documents=documents, text=text)


def _check_written(
    isvc: dict[str, Any], name: str, labels: Mapping[str, str], annotations: Mapping[str, str], uri: str
) -> None:
    meta = isvc.get("metadata", {})
    written = (meta.get("name"), meta.get("labels", {}), meta.get("annotations", {}),
               isvc["spec"]["predictor"]["model"].get("storageUri"))
    if written != (name, dict(labels), dict(annotations), uri):
        raise TemplateError(
            "the InferenceService does not read back as rendered", template="inferenceservice.yaml.jinja"
        )


def _endpoint(model: str, name: str, namespace: str | None, protocol: str) -> Endpoint:
    ns = namespace or "NAMESPACE"
    path = f"/v2/models/{model}/infer" if protocol == "v2" else f"/v1/models/{model}:predict"
    return Endpoint(
        model=model, path=path, host=f"{name}.{ns}.example.com",
        cluster_url=f"http://{name}-predictor.{ns}.svc.cluster.local{path}",
    )


__all__ = [
    "Endpoint",
    "Manifests",
    "PvcRequest",
    "S3Credentials",
    "check_storage_uri",
    "parse_quantity",
    "render",
]
