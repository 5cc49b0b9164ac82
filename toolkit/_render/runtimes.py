"""Which runtime serves the InferenceService, and the namespaced ServingRuntime render brings for it.

Two runtimes serve the same layout: ``torchserve`` (KServe's ``kserve-torchserve`` ClusterServingRuntime, image
``pytorch/torchserve-kfs``, chosen by ``modelFormat: pytorch``) and ``python`` (mar-build's own KServe predictor,
``python -m toolkit._runtime``, in an image the user names). KServe is removing ``kserve-torchserve``
(kserve/kserve#5638), so render can bring a pinned copy of it (``serving_runtime=True``); the python runtime
always comes with its own. Either ServingRuntime is namespaced, named after the InferenceService, and selected by
``spec.predictor.model.runtime``.

What KServe does for ``kserve-torchserve`` alone is written into the runtime here, because KServe keys it on that
runtime name (``SetRuntimeDefaults``, ``UpdateImageTag``): the ``serviceEnvelope`` label the stock runtime's
``TS_SERVICE_ENVELOPE`` placeholder reads, the ``PROTOCOL_VERSION`` env of the wrapper, and the ``-gpu`` tag.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .._errors import RenderError
from .._pod import DEFAULT_TAG as TORCHSERVE_DEFAULT_TAG  # kserve-torchserve's tag in every KServe up to 0.20
from .._spec import RUNTIMES, Resources
from .._templating import render_template
from .._uri import parse_image_ref
from .resources import ordered

log = logging.getLogger("toolkit.render")

TORCHSERVE_IMAGE = "pytorch/torchserve-kfs"

TORCHSERVE_METRICS_PORT = 8082  # kserve-torchserve's prometheus.kserve.io/port
PYTHON_MODEL_FORMAT = "mar-build"
PYTHON_PORT = 8080  # KServe's HTTP port: the runtime's API, its /metrics and its /docs
# KServe's gRPC port. KServe routes one port per predictor, the container's first (Knative takes one port only), and
# takes a port named h2c (or grpc*) for HTTP/2: a grpc-v2 runtime declares that port alone and still answers its
# readiness probe on the HTTP port (/v2/health/ready: not ready while the models load).
PYTHON_GRPC_PORT = 8081
# The stock runtime's arguments (tests/schemas/kserve/kserve-torchserve-runtime.yaml), unchanged.
TORCHSERVE_ARGS = (
    "torchserve", "--start", "--model-store=/mnt/models/model-store",
    "--ts-config=/mnt/models/config/config.properties",
)
PYTHON_COMMAND = ("python", "-m", "toolkit._runtime")
# --host: the pod is reached from outside its network namespace, whatever the entry point's local default is.
PYTHON_ARGS = ("--layout", "/mnt/models", "--http-port", str(PYTHON_PORT), "--host", "0.0.0.0")
# what KServe's controller sets for kserve-torchserve (SetTorchServeDefaults: kservev2 for v2 and grpc-v2)
ENVELOPES = {"v1": "kserve", "v2": "kservev2", "grpc-v2": "kservev2"}
IMAGE_HINT = (
    "pass --image REGISTRY/REPOSITORY:TAG: an image with mar-build (toolkit._runtime), kserve, torch and the "
    "models' libraries installed, e.g. --image ghcr.io/team/mar-build-runtime:1.0"
)


@dataclass(frozen=True)
class RuntimeChoice:
    """The runtime's part of the manifests: what the InferenceService names, and the ServingRuntime to apply."""

    kind: str  # torchserve | python
    model_format: str  # spec.predictor.model.modelFormat.name
    runtime: str | None  # spec.predictor.model.runtime; None: KServe picks kserve-torchserve by model format
    metrics_port: int  # where the pod's /metrics answers (the runtime's prometheus.kserve.io/port)
    image: str | None = None  # the ServingRuntime's image
    text: str | None = None  # the ServingRuntime manifest, None when render brings none


def choose_runtime(
    kind: str, *, isvc: str, namespace: str | None, protocol: str, gpus: int, image: str | None,
    serving_runtime: bool, runtime_version: str | None, labels: list[tuple[str, str]],
) -> RuntimeChoice:
    """The runtime ``kind`` serving InferenceService ``isvc``, with its ServingRuntime when one is brought.

    ``runtime_version`` is the checked pytorch/torchserve-kfs tag (torchserve only). An ``image`` for KServe's own
    TorchServe runtime goes on the InferenceService's predictor (``RuntimeChoice.image`` with no ``text``). Raises
    RenderError for an unknown runtime, a python runtime without an image, and an image with a runtime version.
    """
    if kind not in RUNTIMES:
        raise RenderError(f"runtime must be one of {', '.join(RUNTIMES)}, got {kind!r}",
                          hint="torchserve (KServe's TorchServe runtime) or python (mar-build's own)")
    if not isinstance(serving_runtime, bool):
        raise RenderError(f"serving_runtime must be true or false, got {serving_runtime!r}")
    where = (isvc, namespace, protocol, labels)
    if kind == "python":
        if image is None:
            raise RenderError("runtime python needs the image that runs it", hint=IMAGE_HINT)
        return _bring("python", check_image(image), *where)
    if image is not None and runtime_version is not None:
        raise RenderError(
            "both an image and a runtime version are given: KServe would replace the image's tag with the "
            "runtime version", hint="give the tag in --image only",
        )
    if not serving_runtime:
        # KServe's own runtime, its container's image replaced by the InferenceService's (spec.predictor.model.image).
        # KServe appends -gpu to that image's tag for a GPU pod of kserve-torchserve unless it ends so already
        # (UpdateImageTag): ghcr.io/team/img:1.0 would become :1.0-gpu, a digest would break.
        if image is not None and gpus and not image.endswith("-gpu"):
            raise RenderError(
                f"with a GPU, KServe runs {image}-gpu instead of {image} on its TorchServe runtime",
                hint="tag the GPU build of the image ...-gpu (e.g. :1.0-gpu), or add --serving-runtime",
            )
        return RuntimeChoice("torchserve", "pytorch", None, TORCHSERVE_METRICS_PORT,
                             check_image(image) if image is not None else None)
    if image is None:
        # KServe adds -gpu only to kserve-torchserve's default tag; a runtime of our own must name it.
        tag = runtime_version or TORCHSERVE_DEFAULT_TAG + ("-gpu" if gpus else "")
        return _bring("torchserve", f"{TORCHSERVE_IMAGE}:{tag}", *where)
    return _bring("torchserve", check_image(image), *where)


def _bring(
    kind: str, image: str, isvc: str, namespace: str | None, protocol: str, labels: list[tuple[str, str]]
) -> RuntimeChoice:
    """The ServingRuntime of ``kind`` running ``image`` for InferenceService ``isvc``."""
    fields: dict[str, Any]
    if kind == "torchserve":
        name, model_format, port = f"{isvc}-torchserve", "pytorch", TORCHSERVE_METRICS_PORT
        fields = {
            "description": "KServe's TorchServe runtime (kserve-torchserve, pinned)", "server_type": "torchserve",
            "protocols": ["v1", "v2", "grpc-v2"], "command": [], "args": list(TORCHSERVE_ARGS), "port": None,
            "grpc_port": None,
            "env": [("TS_SERVICE_ENVELOPE", ENVELOPES[protocol]), ("PROTOCOL_VERSION", protocol)],
        }
    else:
        name, model_format, port = f"{isvc}-{PYTHON_MODEL_FORMAT}", PYTHON_MODEL_FORMAT, PYTHON_PORT
        grpc = protocol == "grpc-v2"  # the runtime is the InferenceService's own: rendered for its protocol
        fields = {
            "description": "mar-build's python runtime (the .mar files in the kserve ModelServer)",
            "server_type": None, "protocols": ["v1", "v2"] + (["grpc-v2"] if grpc else []),
            "command": list(PYTHON_COMMAND), "port": PYTHON_PORT, "grpc_port": PYTHON_GRPC_PORT if grpc else None,
            "args": list(PYTHON_ARGS) + (["--grpc-port", str(PYTHON_GRPC_PORT)] if grpc else []),
            # The envelope a handler written for the stock one expects, read only when the layout sets
            # enable_envvars_config=true (mar-build's layouts do not): the same rows as under TorchServe.
            "env": [("TS_SERVICE_ENVELOPE", ENVELOPES[protocol])],
        }
    defaults = Resources()  # the stock runtime's 1 CPU / 2Gi; the InferenceService's resources override them
    text = render_template(
        "servingruntime.yaml.jinja", name=name, namespace=namespace, labels=labels, metrics_port=port,
        model_format=model_format, image=image, requests=ordered(defaults.requests),
        limits=ordered(defaults.limits), **fields,
    )
    return RuntimeChoice(kind, model_format, name, port, image, text)


def check_image(image: object) -> str:
    """``image`` when it is an image reference (Docker Hub's ``team/repo:tag`` too); RenderError otherwise.

    An image without a tag, or tagged ``latest``, is a logged warning: each node runs whatever it pulled last.
    """
    if not isinstance(image, str) or not image:
        raise RenderError(f"image must be an image reference, got {image!r}", hint=IMAGE_HINT)
    name = image.partition("@")[0]
    first = name.partition("/")[0]
    # Kubernetes, like distribution/reference, reads a name whose first part has no '.' or ':' and is not
    # "localhost" as Docker Hub's (library/ for a single part); the registry-host rule of _uri wants it spelt out.
    if "/" not in name:
        normalised = f"docker.io/library/{image}"
    elif "." in first or ":" in first or first == "localhost":
        normalised = image
    else:
        normalised = f"docker.io/{image}"
    ref = parse_image_ref(normalised, what="image", error=RenderError)
    if ref.digest is None and ref.tag in (None, "latest"):
        log.warning(
            "image %s has no fixed tag: each node runs whatever 'latest' it pulled last; tag the image (e.g. :1.0) "
            "or pin a digest (@sha256:...)", image,
        )
    return image
