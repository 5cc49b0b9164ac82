"""render(): the Kubernetes manifests that serve a layout on KServe, with TorchServe or mar-build's python runtime.

The InferenceService (serving.kserve.io/v1beta1) and, where asked, the S3 Secret with the ServiceAccount that lists
it, a PersistentVolumeClaim, and a namespaced ServingRuntime (``runtimes``). The text comes from
``templates/*.yaml.jinja`` with every value written as a safe YAML scalar; ``Manifests.documents`` is that text
parsed back, so what is applied and what is written are one thing.

Values come from the layout's archives (mar.yaml's ``kserve`` section, recorded in each archive's mar_build.json)
and from explicit arguments, which win. Everything a user can get wrong is checked with a RenderError (or a
SpecError for names) that says what would be valid: names, label and annotation keys and values, resource
quantities, the storage URI's level, replicas, the runtime version's ``-gpu`` tag, the runtime's image. The steps:
the target (name, namespace, storage URI), the predictor model's fields, the runtime, the replicas, the metadata,
the storage access manifests.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from .._errors import RenderError
from .._names import dns1123_label_problem, dns1123_subdomain_problem, suggest_isvc_name
from .._spec import KServeSettings, Runtime, check_isvc_name
from .._templating import render_template
from .checks import (
    check_annotations,
    check_deployment_mode,
    check_env,
    check_label,
    check_name,
    check_runtime_version,
    check_storage_uri,
    expect_type,
    set_reserved,
    string_map,
    whole,
)
from .facts import LayoutFacts, preflight, read_layout_facts
from .manifests import Manifests, check_written, endpoint, parse_documents
from .monitoring import MonitorRequest, monitoring_texts
from .pvc import PvcRequest, render_pvc
from .resources import ordered, resolve_resources
from .runtimes import RuntimeChoice, choose_runtime
from .s3 import S3Credentials, render_secret
from .threads import predictor_env, thread_budget

log = logging.getLogger("toolkit.render")

SCALE_METRICS = ("cpu", "memory", "concurrency", "rps")  # the CRD's enum for predictor.scaleMetric
PROTOCOLS = ("v1", "v2", "grpc-v2")

DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
PROMETHEUS_ANNOTATION = "serving.kserve.io/enable-prometheus-scraping"
PROMETHEUS_PORT_ANNOTATION = "prometheus.kserve.io/port"


@dataclass(frozen=True)
class _Target:
    """The InferenceService to render and the storage URI it reads (scheme and bucket or claim split out)."""

    name: str
    namespace: str | None
    uri: str
    scheme: str
    root: str


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
    env: Mapping[str, str] | None = None,
    prometheus: bool = False,
    runtime: str | None = None,
    image: str | None = None,
    serving_runtime: bool = False,
    monitor: str | None = None,
    monitor_release: str | None = None,
    dashboard: bool = False,
    alerts: bool = False,
) -> Manifests:
    """Render the manifests that serve ``layout`` (a folder with config/ and model-store/) from ``storage_uri``.

    Defaults: ``settings`` when given, otherwise the KServe section of mar.yaml as recorded in the layout's first
    model_snapshot archive (when models disagree, the first model's wins and a warning names the others; archives
    not built by mar-build contribute nothing). Every other argument that is not None overrides those defaults;
    ``requests``/``limits``/``labels``/``annotations`` are merged key by key. ``layout`` may be None when the
    caller gives the name and storage URI (no model URLs are known then). Label, annotation and ``env`` values
    are strings; numbers and booleans are taken as mar.yaml takes them (``1`` is "1", ``true`` is "true").

    Threads: every model's workers share the CPUs of ``limits.cpu``. With a layout whose worker counts are known,
    the predictor's ``env`` gets ``MAR_BUILD_THREADS`` (the CPUs divided by the workers of all models, at least
    one; the handlers use it for torch), unless ``env`` sets it; more workers than CPUs is a logged warning.

    ``gpu`` > 0 requests and limits ``nvidia.com/gpu``. KServe appends ``-gpu`` to the runtime's default image tag
    by itself for GPU requests, but uses ``runtime_version`` exactly as given when one is set, so with a GPU an
    explicit runtime version must name the GPU tag (``0.12.0-gpu``); render checks that and says so.

    S3: ``s3`` adds the Secret KServe reads (annotations for endpoint, https, region, anonymous access) and a
    ServiceAccount that lists it, which the InferenceService then runs as. Keys are never written into the
    InferenceService. A Secret that holds keys (the caller put them in ``S3Credentials`` or used
    ``S3Credentials.from_env``) is kept apart in ``Manifests.secret`` so that writing or printing the manifests
    cannot leak them; an anonymous Secret holds no keys and is part of ``documents``.

    Runtime: ``runtime`` "torchserve" (the default) is KServe's TorchServe runtime, found by ``modelFormat:
    pytorch`` in the cluster's ``kserve-torchserve``, or, with ``serving_runtime``, a pinned namespaced copy of it
    that render brings (``pytorch/torchserve-kfs:RUNTIME_VERSION``, default 0.9.0, ``-gpu`` with a GPU; ``image``
    replaces it). "python" is mar-build's own runtime: a namespaced ServingRuntime running ``image`` (required) and
    an InferenceService that selects it; the pytorch/torchserve-kfs ``runtime_version`` does not apply to it. The
    ServingRuntime comes before the InferenceService in ``documents``. For KServe's own TorchServe runtime,
    ``image`` replaces the predictor container's image (``spec.predictor.model.image``: one ``mar-build image``
    built, say).

    Monitoring: ``monitor`` "annotations" adds KServe's scraping annotation (``prometheus=True`` is the same),
    "podmonitor"/"servicemonitor" a monitoring.coreos.com/v1 PodMonitor/ServiceMonitor of the predictor pods;
    ``monitor_release`` is the ``release`` label kube-prometheus-stack selects them by; ``dashboard`` adds the
    Grafana dashboard as a ConfigMap for its sidecar, ``alerts`` a PrometheusRule. All come before the
    InferenceService in ``documents``.

    Raises RenderError (or SpecError for an InferenceService name) naming the bad value and what would be valid,
    and LayoutError when ``layout`` is not a readable layout.
    """
    watch = MonitorRequest("annotations" if prometheus and monitor is None else monitor, monitor_release,
                           dashboard, alerts).check()
    facts = read_layout_facts(layout) if layout is not None else LayoutFacts()
    base = settings if settings is not None else facts.defaults or KServeSettings()
    expect_type(base, KServeSettings, "settings")
    chosen = _choose(
        base, name=name, namespace=namespace, storage_uri=storage_uri, protocol=protocol,
        runtime_version=runtime_version, gpu=gpu, min_replicas=min_replicas, max_replicas=max_replicas,
        scale_target=scale_target, scale_metric=scale_metric, service_account=service_account,
        deployment_mode=deployment_mode, timeout=timeout, canary_traffic_percent=canary_traffic_percent,
    )
    target = _target(chosen, facts)
    kind = runtime if runtime is not None else "torchserve"
    model = _model_fields(chosen, facts, requests=requests, limits=limits, env=env, runtime=kind,
                          explicit_version=runtime_version is not None)
    choice = choose_runtime(
        kind, isvc=target.name, namespace=target.namespace, protocol=model["protocol"], gpus=model.pop("gpus"),
        image=image, serving_runtime=serving_runtime, runtime_version=model["runtime_version"],
        labels=_aux_labels(target),
    )
    scaling = _scaling(chosen)
    if layout is not None:
        preflight(layout, cast(Runtime, kind), model["runtime_version"], custom_image=image is not None)
    isvc_labels, isvc_annotations = _metadata(
        chosen, labels, annotations, scale_metric=scaling["scale_metric"], facts=facts, prometheus=watch.annotations,
        have_layout=layout is not None, choice=choice,
    )
    texts, secret, account = _storage_access(target, chosen.service_account, s3, pvc)
    texts += [choice.text] if choice.text is not None else []
    texts += monitoring_texts(
        watch, isvc=target.name, namespace=target.namespace, runtime=choice.kind,
        metrics_port=_metrics_port(facts, choice), models=facts.models, timeout=scaling["timeout"],
        labels=_aux_labels(target),
    )
    texts.append(render_template(
        "inferenceservice.yaml.jinja", name=target.name, namespace=target.namespace,
        labels=sorted(isvc_labels.items()), annotations=sorted(isvc_annotations.items()), service_account=account,
        storage_uri=target.uri, runtime=choice.runtime, model_format=choice.model_format,
        image=choice.image if choice.text is None else None, **model, **scaling,
    ))
    manifests = parse_documents(texts)
    check_written(manifests.documents[-1], name=target.name, labels=isvc_labels, annotations=isvc_annotations,
                  uri=target.uri, env=model["env"], runtime=choice.runtime,
                  runtime_document=_runtime_document(manifests.documents, choice))
    endpoints = tuple(endpoint(m, target.name, target.namespace, model["protocol"]) for m in facts.models)
    return dataclasses.replace(manifests, secret=secret, endpoints=endpoints)


def _choose(base: KServeSettings, **overrides: Any) -> KServeSettings:
    """``base`` with each override that is not None in its place (the merged tables are resolved later)."""
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})


def _target(chosen: KServeSettings, facts: LayoutFacts) -> _Target:
    name = chosen.name
    if name is None:
        if not facts.models:
            raise RenderError("no InferenceService name", hint="pass --name NAME (a DNS-1035 label, e.g. 'torchserve')")
        name = suggest_isvc_name(facts.models[0])
        log.info("InferenceService name defaults to %r (from model %r)", name, facts.models[0])
    check_isvc_name(name, key="name")
    if chosen.namespace is not None:
        check_name(chosen.namespace, dns1123_label_problem, "namespace")
    uri = chosen.storage_uri
    if uri is None:
        raise RenderError(
            "no storage URI: the InferenceService must say where the layout is",
            hint="stage the layout first (mar-build stage LAYOUT s3://BUCKET/PREFIX or pvc://CLAIM/PATH) and pass "
            "--storage-uri with the URI it printed",
        )
    scheme, root = check_storage_uri(uri)
    return _Target(name=name, namespace=chosen.namespace, uri=uri, scheme=scheme, root=root)


def _model_fields(
    chosen: KServeSettings, facts: LayoutFacts, *, requests: Mapping[str, Any] | None,
    limits: Mapping[str, Any] | None, env: Mapping[str, Any] | None, runtime: str, explicit_version: bool,
) -> dict[str, Any]:
    """The predictor model's template fields: protocol, runtime version, resources and environment, checked
    (and ``gpus``, for the runtime)."""
    proto = _protocol(chosen.protocol or "v1", runtime)
    gpus = whole(chosen.gpu, "gpu", minimum=0) or 0
    version = _runtime_version(chosen.runtime_version, runtime, explicit=explicit_version)
    if version is not None:
        check_runtime_version(version, gpus)
    res_requests, res_limits = resolve_resources(chosen.resources, requests, limits, gpus)
    own_env = string_map({}, env, "env")
    check_env(own_env)
    threads = thread_budget(facts.entries, res_limits.get("cpu"), gpus=gpus, runtime=cast(Runtime, runtime))
    return {
        "protocol": proto, "runtime_version": version, "limits": ordered(res_limits),
        "requests": ordered(res_requests), "env": predictor_env(own_env, threads), "gpus": gpus,
    }


def _runtime_version(version: str | None, runtime: str, *, explicit: bool) -> str | None:
    """The pytorch/torchserve-kfs tag; for the python runtime none (KServe would put it on the runtime's image)."""
    if version is None or runtime != "python":
        return version
    if explicit:
        raise RenderError(
            f"runtime_version {version!r} is a pytorch/torchserve-kfs tag; the python runtime runs --image, and "
            "KServe would replace that image's tag with it", hint="drop --runtime-version and tag the image instead",
        )
    log.warning("runtime_version %s from the layout's mar.yaml is a TorchServe image tag: not used with the python "
                "runtime", version)
    return None


def _protocol(protocol: str, runtime: str) -> str:
    if protocol not in PROTOCOLS:
        raise RenderError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if protocol == "grpc-v2" and runtime != "python":
        raise RenderError(
            "protocol grpc-v2 is rendered for the python runtime only: on kserve-torchserve a gRPC call reaches the "
            "stock image's wrapper, whose gRPC infer mar-build has not run (locally, mar-build's own wrapper answers "
            "it: serve --grpc-port)",
            hint="add --runtime python --image IMAGE, or use --protocol v2 (REST)",
        )
    if protocol == "v2" and runtime == "torchserve":
        log.warning(
            "protocol v2: mar-build's handlers answer the v1 envelope ({'instances': [...]}); v2 needs a handler "
            "that speaks it"
        )
    return protocol


def _scaling(chosen: KServeSettings) -> dict[str, Any]:
    """The predictor's replica, autoscaling, timeout and canary fields, checked; None where not set."""
    low = whole(chosen.min_replicas, "min_replicas", minimum=0)
    high = whole(chosen.max_replicas, "max_replicas", minimum=0)
    # maxReplicas 0 means "no upper bound" to KServe.
    if low is not None and high is not None and high != 0 and low > high:
        raise RenderError(
            f"min_replicas ({low}) is larger than max_replicas ({high})", hint="set max_replicas >= min_replicas"
        )
    metric = chosen.scale_metric
    if metric is not None and metric not in SCALE_METRICS:
        raise RenderError(f"scale_metric must be one of {', '.join(SCALE_METRICS)}, got {metric!r}")
    return {
        "min_replicas": low,
        "max_replicas": high,
        "scale_target": whole(chosen.scale_target, "scale_target", minimum=1),
        "scale_metric": metric,
        "timeout": whole(chosen.timeout, "timeout", minimum=1),
        "canary_traffic_percent": whole(chosen.canary_traffic_percent, "canary_traffic_percent", minimum=0,
                                        maximum=100),
    }


def _metadata(
    chosen: KServeSettings, labels: Mapping[str, Any] | None, annotations: Mapping[str, Any] | None, *,
    scale_metric: str | None, facts: LayoutFacts, prometheus: bool, have_layout: bool, choice: RuntimeChoice,
) -> tuple[dict[str, str], dict[str, str]]:
    """The InferenceService's labels and annotations: the defaults with the caller's merged key by key, and the
    annotations render owns (deployment mode, Prometheus scraping) added; every key and value checked."""
    mode = chosen.deployment_mode
    if mode is not None:
        check_deployment_mode(mode, scale_metric)
    isvc_labels = string_map(chosen.labels, labels, "labels")
    for key, value in isvc_labels.items():
        check_label(key, value)
    isvc_annotations = string_map(chosen.annotations, annotations, "annotations")
    if mode is not None:
        set_reserved(isvc_annotations, DEPLOYMENT_MODE_ANNOTATION, mode, "deployment_mode")
    if prometheus:
        _add_prometheus(isvc_annotations, facts, have_layout, choice)
    check_annotations(isvc_annotations)
    return isvc_labels, isvc_annotations


def _metrics_port(facts: LayoutFacts, choice: RuntimeChoice) -> int:
    """Where the pod's /metrics answers: the python runtime's API port, else the layout's metrics_address port."""
    if choice.kind == "python" or facts.metrics_port is None:
        return choice.metrics_port
    return facts.metrics_port


def _runtime_document(documents: list[dict[str, Any]], choice: RuntimeChoice) -> dict[str, Any] | None:
    """The ServingRuntime render brought (an empty mapping, which check_written refuses, if it went missing)."""
    if choice.text is None:
        return None
    return next((d for d in documents if d.get("kind") == "ServingRuntime"), {})


def _add_prometheus(annotations: dict[str, str], facts: LayoutFacts, have_layout: bool, choice: RuntimeChoice) -> None:
    set_reserved(annotations, PROMETHEUS_ANNOTATION, "true", "prometheus")
    if choice.kind == "python":
        return  # its /metrics is the server's own, on the port its ServingRuntime's annotation names
    # The runtime's own annotations point at 8082; a layout serving metrics elsewhere needs the override.
    if facts.metrics_port is not None and facts.metrics_port != choice.metrics_port:
        set_reserved(annotations, PROMETHEUS_PORT_ANNOTATION, str(facts.metrics_port), "prometheus")
    if have_layout and facts.metrics_mode != "prometheus":
        log.warning(
            "the layout's config.properties does not set metrics_mode=prometheus: TorchServe's /metrics answers "
            "empty, so scraping finds nothing (rebuild with mar-build build)"
        )


def _storage_access(
    target: _Target, service_account: str | None, s3: S3Credentials | None, pvc: PvcRequest | None
) -> tuple[list[str], Manifests | None, str | None]:
    """(texts of the Secret, ServiceAccount and PVC to apply first, the Secret with keys kept apart, the service
    account the predictor runs as)."""
    texts: list[str] = []
    secret: Manifests | None = None
    account = service_account
    aux_labels = _aux_labels(target)
    if s3 is not None:
        expect_type(s3, S3Credentials, "s3")
        if target.scheme != "s3":
            raise RenderError(
                f"S3 credentials were given but the storage URI is {target.uri!r}",
                hint="S3 settings apply to s3://BUCKET/PREFIX storage URIs only; drop them or fix --storage-uri",
            )
        account = account or f"{target.name}-sa"
        check_name(account, dns1123_subdomain_problem, "service account")
        secret_name, secret_text = render_secret(s3, target.name, target.namespace, aux_labels)
        if s3.has_keys:
            secret = parse_documents([secret_text])  # kept apart: see Manifests
        else:
            texts.append(secret_text)
        texts.append(render_template(
            "serviceaccount.yaml.jinja", name=account, namespace=target.namespace, labels=aux_labels,
            secrets=[secret_name],
        ))
    elif account is not None:
        check_name(account, dns1123_subdomain_problem, "service account")
    if pvc is not None:
        expect_type(pvc, PvcRequest, "pvc")
        texts.append(render_pvc(pvc, target.scheme, target.root, target.uri, target.namespace, aux_labels))
    return texts, secret, account


def _aux_labels(target: _Target) -> list[tuple[str, str]]:
    """The labels of everything rendered beside the InferenceService: who manages it, which service it is part of."""
    return [("app.kubernetes.io/managed-by", "mar-build"), ("app.kubernetes.io/part-of", target.name)]


__all__ = ["PROTOCOLS", "SCALE_METRICS", "render"]
