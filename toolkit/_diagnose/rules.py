"""The known failures of a KServe TorchServe predictor, one rule each: ``rule(facts) -> Hint | None``.

Each rule recognises one failure by the text the component really prints: KServe's storage-initializer
(``kserve_storage`` and botocore messages), TorchServe's frontend and ``model_server.py`` (pytorch/serve), and the
KServe wrapper of the ``pytorch/torchserve-kfs`` image (pytorch/serve ``kubernetes/kserve/kserve_wrapper``). Both
``status`` (the cluster's logs) and ``serve`` (the local run's logs) run the same table, in ``RULES`` order (most
specific first); ``find_hints`` is the keyword form the callers use.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from .facts import Facts, Hint, line_of
from .pods import IMAGE_WAITING, ContainerReport, PodReport, clip

Rule = Callable[[Facts], Hint | None]

# -- storage-initializer: S3 credentials, missing bucket, empty prefix, unreachable endpoint -----------------------
_S3_CREDENTIALS = re.compile(
    r"NoCredentialsError|Unable to locate credentials|InvalidAccessKeyId|SignatureDoesNotMatch|"
    r"S3 authentication failed|Invalid AWS credentials|AccessDenied|Access Denied|Access denied to S3 resource|"
    r"\(403\) when calling the \w+ operation|S3 error \[403\]"
)
_S3_NO_BUCKET = re.compile(
    r"NoSuchBucket|The specified bucket does not exist|S3 bucket '[^']*' does not exist|S3 resource '[^']*' not found|"
    r"\(404\) when calling the HeadBucket operation"
)
_NO_OBJECTS = re.compile(r"Failed to fetch model\. No model found in|No model found in")
_S3_UNREACHABLE = re.compile(
    r"Could not connect to the endpoint URL|Failed to connect to S3 endpoint|EndpointConnectionError"
)


def s3_credentials(facts: Facts) -> Hint | None:
    if not (m := _S3_CREDENTIALS.search(facts.init_log)):
        return None
    return Hint(
        "s3-credentials",
        f"the storage-initializer was refused access to {facts.uri} ({line_of(m, facts.init_log)})",
        "give the InferenceService S3 credentials: a Secret with AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY and the serving.kserve.io/s3-endpoint (s3-usehttps, s3-region) annotations, "
        "attached to a ServiceAccount that spec.predictor.serviceAccountName names (mar-build render writes "
        "all three); check that the key may read that bucket",
    )


def s3_bucket(facts: Facts) -> Hint | None:
    if not (m := _S3_NO_BUCKET.search(facts.init_log)):
        return None
    return Hint(
        "s3-bucket",
        f"the bucket of {facts.uri} does not exist at the S3 endpoint ({line_of(m, facts.init_log)})",
        "check the bucket name in storageUri and the serving.kserve.io/s3-endpoint annotation of the S3 Secret "
        "(for MinIO: the in-cluster endpoint), then stage there with mar-build stage",
    )


def s3_empty(facts: Facts) -> Hint | None:
    if not (m := _NO_OBJECTS.search(facts.init_log)):
        return None
    return Hint(
        "s3-empty",
        f"nothing is stored under {facts.uri} ({line_of(m, facts.init_log)})",
        "stage the layout there first (mar-build stage LAYOUT URI) and use the storageUri it prints",
    )


def s3_endpoint(facts: Facts) -> Hint | None:
    if not (m := _S3_UNREACHABLE.search(facts.init_log)):
        return None
    return Hint(
        "s3-endpoint",
        f"the storage-initializer cannot reach the S3 endpoint ({line_of(m, facts.init_log)})",
        "check the serving.kserve.io/s3-endpoint annotation (host:port reachable from the cluster) and "
        'serving.kserve.io/s3-usehttps ("0" for a plain-HTTP MinIO)',
    )


# -- kserve-container: the storageUri level, the wrapper's mandatory keys, missing archives, tokens, names ----------
_LAYOUT_LEVEL = re.compile(
    r"--ts-config file not found: \S+|--model-store directory not found: \S+|"
    r"No such file or directory: '/mnt/models/config/config\.properties'|Model store path is not found"
)
# The keys the image's wrapper reads with config[...] (kserve_wrapper/__main__.py parse_config): a KeyError without.
_MISSING_KEY = re.compile(
    r"KeyError: '(inference_address|management_address|grpc_inference_port|model_store|model_snapshot)'"
)
_MAR_MISSING = re.compile(r"Model not found at: \S+|Failed to load model: \S+")
_TOKEN = re.compile(
    r"InvalidKeyException|Token Authorization failed|\"GET /models/[^\s\"?]+(?:\?[^\s\"]*)? HTTP/1\.1\" 400"
)
_TOKEN_ENFORCED = re.compile(r"TorchServe now enforces token authorization by default")
_WRAPPER_GAVE_UP = re.compile(r"Failed loading model (\S+)")
# The wrapper's readiness poll for a model TorchServe did not register: TorchServe's access log line for it.
_WRAPPER_ASKS_UNKNOWN = re.compile(r"\"GET /models/([^\s\"?]+)(?:\?[^\s\"]*)? HTTP/1\.1\" 404")
_NAME_UNKNOWN = re.compile(r"Model with name (\S+?) does not exist|Model not found: (\S+)")
_SERVED_NAMES = re.compile(r"Wrapper ?: Model names \[([^\]]*)\]")
_NO_MODULE = re.compile(r"No module named '([^']+)'")
_WORKER_DIED = re.compile(r"Backend worker process died|Load model failed: (\S+), error: Worker died")


def storage_uri_level(facts: Facts) -> Hint | None:
    if not (m := _LAYOUT_LEVEL.search(facts.serve_log)):
        return None
    return Hint(
        "storage-uri-level",
        f"/mnt/models does not hold a layout ({line_of(m, facts.serve_log)})",
        f"point storageUri at the folder that holds config/config.properties and model-store/ (the URI "
        f"mar-build stage printed), not at model-store/ or a parent folder; now: {facts.uri}",
    )


def config_key(facts: Facts) -> Hint | None:
    if not (m := _MISSING_KEY.search(facts.serve_log)):
        return None
    return Hint(
        "config-key",
        f"config.properties lacks {m.group(1)}, which the KServe wrapper in the image requires",
        "rebuild the layout with mar-build build (it writes inference_address, management_address, "
        "grpc_inference_port, model_store and model_snapshot) and stage it again",
    )


def mar_missing(facts: Facts) -> Hint | None:
    if not (m := _MAR_MISSING.search(facts.serve_log)):
        return None
    return Hint(
        "mar-missing",
        f"TorchServe could not load an archive named in model_snapshot ({line_of(m, facts.serve_log)})",
        "stage the whole layout again so that every marName in config.properties is in model-store/",
    )


def token_auth(facts: Facts) -> Hint | None:
    """TorchServe >= 0.11.1 enforces tokens; the image's wrapper polls readiness without one (400
    InvalidKeyException), or, where the log lacks that line, gives up after the banner."""
    log = facts.serve_log
    token = _TOKEN.search(log)
    if token is None and _TOKEN_ENFORCED.search(log):
        token = _WRAPPER_GAVE_UP.search(log)
    if token is None:
        return None
    return Hint(
        "token-auth",
        f"TorchServe enforces token authorization and the KServe wrapper sends no token "
        f"({line_of(token, log)}), so the model never turns ready",
        "set disable_token_authorization=true in config.properties (mar-build build writes it) and stage "
        "again, or add --disable-token-auth to the predictor's args",
    )


def _served_names(log: str) -> list[str]:
    """The model names the wrapper said it serves (its "Wrapper : Model names [...]" line), if it said."""
    served = _SERVED_NAMES.search(log)
    names = [n.strip().strip("'\"") for n in served.group(1).split(",")] if served else []
    return [n for n in names if n]


def model_name(facts: Facts) -> Hint | None:
    """A call for a model TorchServe does not serve: the name in the URL is the model_snapshot key."""
    if not (m := _NAME_UNKNOWN.search(facts.serve_log)):
        return None
    asked = (m.group(1) or m.group(2) or "").rstrip(".")
    names = _served_names(facts.serve_log)
    where = f"it is served as {', '.join(repr(n) for n in names)}" if names else "its name is its model_snapshot key"
    call = f"/v1/models/{names[0]}:predict" if names else "/v1/models/KEY:predict"
    also = f" (the InferenceService is {facts.isvc_name!r})" if facts.isvc_name and facts.isvc_name == asked else ""
    return Hint(
        "model-name",
        f"a call asked for model {asked!r}, which TorchServe does not serve{also}; {where}",
        f"call {call} (the name in the URL is the key in model_snapshot, not the InferenceService name), "
        "or set name: in mar.yaml to the name you want and rebuild",
        fatal=False,
    )


def wrapper_model_name(facts: Facts) -> Hint | None:
    if not (m := _WRAPPER_ASKS_UNKNOWN.search(facts.serve_log)):
        return None
    served = _SERVED_NAMES.search(facts.serve_log)
    return Hint(
        "wrapper-model-name",
        f"the KServe wrapper asks TorchServe for model {m.group(1)!r}, which TorchServe did not register "
        f"({line_of(m, facts.serve_log)})" + (f"; the wrapper read the names [{served.group(1)}]" if served else ""),
        "the wrapper serves the keys of model_snapshot (and 'model' when it lists none) and TorchServe "
        "registers the same keys unless an archive failed to load: rebuild the layout with mar-build build, "
        "check it with mar-build check, and stage it again",
    )


def _missing_modules(log: str) -> list[str]:
    # TorchServe's fallback import (ts.torch_handler.NAME) fails too; it is not the module the handler lacks.
    return [mod for mod in _NO_MODULE.findall(log) if not mod.startswith("ts.torch_handler")]


def missing_module(facts: Facts) -> Hint | None:
    """A worker died while loading because the handler imports a package the image lacks."""
    modules = _missing_modules(facts.serve_log)
    if not modules:
        return None
    died = " (TorchServe: Worker died)" if _WORKER_DIED.search(facts.serve_log) else ""
    return Hint(
        "missing-module",
        f"the handler imports {modules[0]!r}, which the serving image lacks{died}",
        f"add {modules[0].split('.')[0]} to requirements in mar.yaml and set install_py_dep_per_model=true "
        "(the pod then needs a package index), or serve from an image that has it",
    )


def worker_died(facts: Facts) -> Hint | None:
    """A worker died while loading for a reason no other rule names (missing-module speaks for its own)."""
    died = _WORKER_DIED.search(facts.serve_log)
    if died is None or _missing_modules(facts.serve_log):
        return None
    return Hint(
        "worker-died",
        f"a TorchServe worker died while loading the model ({line_of(died, facts.serve_log)})",
        "read the MODEL_LOG lines of the kserve-container log above for the handler's error; run "
        "mar-build serve on the same layout to reproduce it locally",
        fatal=False,  # TorchServe restarts dead workers: one death alone does not doom the pod
    )


# -- container states, scheduling, events, KServe's model status ----------------------------------------------------
def _first_container(facts: Facts, test: Callable[[ContainerReport], bool]) -> ContainerReport | None:
    return next((c for c in facts.containers if test(c)), None)


def oom(facts: Facts) -> Hint | None:
    if (c := _first_container(facts, lambda c: c.oom_killed)) is None:
        return None
    limit = f" (memory limit {c.memory_limit})" if c.memory_limit else ""
    return Hint(
        "oom",
        f"{c.label} was OOMKilled{limit}",
        "raise the memory limit (spec.predictor.model.resources.limits.memory; kserve.resources in "
        "mar.yaml), or lower minWorkers/maxWorkers: each TorchServe worker holds its own copy of the model",
    )


def _image_fix(image: str) -> str:
    tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else "latest"
    if "torchserve-kfs" not in image:
        return "check the image name and tag, and the registry credentials (imagePullSecrets)"
    # KServe appends -gpu to the runtime's default tag for GPU requests, but uses runtimeVersion as given: a GPU
    # predictor with runtimeVersion must name the -gpu tag itself.
    gpu = (
        f"; {tag} is not a published GPU tag"
        if tag.endswith("-gpu")
        else "; with a GPU request, runtimeVersion must name the -gpu tag (e.g. 0.12.0-gpu)"
    )
    return (
        "set spec.predictor.model.runtimeVersion to a published pytorch/torchserve-kfs tag (KServe's "
        f"default 0.9.0 up to the newest 0.12.0){gpu}"
    )


def image(facts: Facts) -> Hint | None:
    c = _first_container(facts, lambda c: c.state == "waiting" and c.reason in IMAGE_WAITING)
    if c is None:
        return None
    return Hint("image", f"{c.label} cannot pull image {c.image or '?'} ({c.reason})", _image_fix(c.image))


def unschedulable(facts: Facts) -> Hint | None:
    pod = next((p for p in facts.pods if p.unschedulable), None)
    if pod is None or pod.unschedulable is None:
        return None
    wants_gpu = "nvidia.com/gpu" in pod.unschedulable
    return Hint(
        "unschedulable",
        f"pod {pod.name} cannot be scheduled ({clip(pod.unschedulable)})",
        "lower resources.requests, or add nodes with room" + (" and GPUs (nvidia.com/gpu)" if wants_gpu else ""),
        fatal=False,
    )


def pvc_missing(facts: Facts) -> Hint | None:
    if not (m := re.search(r'persistentvolumeclaim "([^"]+)" not found', "\n".join(facts.events))):
        return None
    return Hint(
        "pvc-missing",
        f"the PersistentVolumeClaim {m.group(1)!r} of storageUri does not exist in this namespace",
        "create it (mar-build render writes the PVC manifest) or fix the claim in storageUri pvc://CLAIM/PATH",
    )


def pvc_attached(facts: Facts) -> Hint | None:
    if not any("Multi-Attach error" in e for e in facts.events):
        return None
    return Hint(
        "pvc-attached",
        "the PVC is ReadWriteOnce and already attached to another node (often the notebook that staged it)",
        "stop the pod that holds it, or stage to a ReadWriteMany volume or to S3",
        fatal=False,
    )


def runtime(facts: Facts) -> Hint | None:
    failure = facts.model_failure
    if not failure or not re.search(r"NoSupportingRuntime|RuntimeNotRecognized|RuntimeDisabled", failure):
        return None
    return Hint(
        "runtime",
        f"KServe found no serving runtime for this predictor ({failure})",
        "check that the ClusterServingRuntime kserve-torchserve exists and is enabled (kubectl get "
        "clusterservingruntimes) and that modelFormat is pytorch with a protocolVersion it supports",
    )


RULES: tuple[Rule, ...] = (
    s3_credentials, s3_bucket, s3_empty, s3_endpoint,
    storage_uri_level, config_key, mar_missing, token_auth, model_name, wrapper_model_name,
    missing_module, worker_died,
    oom, image, unschedulable, pvc_missing, pvc_attached, runtime,
)


def hints_of(facts: Facts, rules: Sequence[Rule] = RULES) -> list[Hint]:
    """The hints of every rule that recognises something in ``facts``, in rule order, one per key."""
    hints: list[Hint] = []
    for rule in rules:
        hint = rule(facts)
        if hint is not None and all(h.key != hint.key for h in hints):
            hints.append(hint)
    return hints


def find_hints(
    *,
    containers: Sequence[ContainerReport] = (),
    logs: Mapping[str, str] | None = None,
    events: Sequence[str] = (),
    pods: Sequence[PodReport] = (),
    storage_uri: str | None = None,
    isvc_name: str | None = None,
    model_failure: str | None = None,
) -> list[Hint]:
    """The recognised failures in these facts, most specific first. ``logs`` maps container name -> log text."""
    facts = Facts(
        logs=dict(logs or {}), containers=tuple(containers), pods=tuple(pods), events=tuple(events),
        storage_uri=storage_uri, isvc_name=isvc_name, model_failure=model_failure,
    )
    return hints_of(facts)
