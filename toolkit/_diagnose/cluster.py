"""Why an InferenceService is not ready, said in a few lines instead of a dump.

The facts come from the cluster (the InferenceService's conditions and model status, the predictor pods' container
states, their last log lines, recent events); the hints come from matching those facts against the failures listed in
FACTS.md, using the texts the components really print: KServe's storage-initializer (``kserve_storage`` and botocore
messages), TorchServe's frontend and ``model_server.py``, and the KServe wrapper in the ``pytorch/torchserve-kfs``
image. ``find_hints`` is a pure function of those facts, so every rule is testable without a cluster.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._errors import DeployError

if TYPE_CHECKING:
    from .._kube import Cluster

log = logging.getLogger("toolkit.deploy")

ISVC_LABEL = "serving.kserve.io/inferenceservice"
STORAGE_INITIALIZER = "storage-initializer"
KSERVE_CONTAINER = "kserve-container"
# Sidecars whose logs say nothing about the model unless they are the ones failing.
_SIDECARS = {"istio-proxy", "queue-proxy", "istio-init", "istio-validation", "linkerd-proxy"}

LOG_SCAN_LINES = 200  # read this much for the rules (the wrapper names its models early in the log) ...
LOG_SHOW_LINES = 20  # ... and show this much
HEALTHY_LOG_LINES = 5
MAX_PODS = 3
MAX_EVENTS = 10
_MAX_LINE = 240

# Waiting reasons that waiting longer does not fix.
FATAL_WAITING = {
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
}
IMAGE_WAITING = {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"}


# -- facts ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Condition:
    """One entry of status.conditions."""

    type: str
    status: str
    reason: str = ""
    message: str = ""

    def line(self) -> str:
        why = ": ".join(p for p in (self.reason, self.message) if p)
        return f"{self.type:<28} {self.status:<7} {why}".rstrip()


@dataclass(frozen=True)
class ContainerReport:
    """The state of one container of a predictor pod, init containers included."""

    pod: str
    name: str
    init: bool
    state: str  # waiting | running | terminated | unknown
    reason: str = ""
    message: str = ""
    exit_code: int | None = None
    restarts: int = 0
    ready: bool = False
    last_reason: str = ""
    last_exit_code: int | None = None
    image: str = ""
    memory_limit: str | None = None

    @property
    def label(self) -> str:
        return ("init " if self.init else "") + self.name

    def line(self) -> str:
        parts = [self.state + (f" {self.reason}" if self.reason else "")]
        if self.exit_code is not None:
            parts.append(f"exit code {self.exit_code}")
        if self.state == "running":
            parts.append("ready" if self.ready else "not ready")
        if self.restarts:
            parts.append(f"{self.restarts} restart{'s' if self.restarts != 1 else ''}")
        if self.last_reason:
            last = f"last exit: {self.last_reason}"
            if self.last_exit_code is not None:
                last += f" (exit code {self.last_exit_code})"
            parts.append(last)
        text = f"{self.label:<26} " + ", ".join(parts)
        if self.message and self.state == "waiting":
            text += f": {_clip(self.message)}"
        return text

    @property
    def oom_killed(self) -> bool:
        return "OOMKilled" in (self.reason, self.last_reason)

    @property
    def failing(self) -> str | None:
        """Why this container will not get better by waiting, or None."""
        if self.state == "waiting" and self.reason in FATAL_WAITING:
            return f"{self.label} is {self.reason}"
        if self.oom_killed:
            return f"{self.label} was OOMKilled"
        if self.init and self.state == "terminated" and self.exit_code not in (None, 0):
            return f"{self.label} failed ({self.reason or 'Error'}, exit code {self.exit_code})"
        return None


@dataclass(frozen=True)
class PodReport:
    name: str
    phase: str
    containers: tuple[ContainerReport, ...]
    unschedulable: str | None = None  # the scheduler's message, when the pod cannot be placed
    created: str = ""

    def lines(self) -> list[str]:
        out = [f"pod {self.name} ({self.phase})"]
        if self.unschedulable:
            out.append(f"  unschedulable: {_clip(self.unschedulable)}")
        out += ["  " + c.line() for c in self.containers]
        return out


@dataclass(frozen=True)
class LogTail:
    pod: str
    container: str
    previous: bool
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Hint:
    """One recognised failure: what is wrong (``problem``), what to do (``fix``), and whether waiting is futile."""

    key: str
    problem: str
    fix: str
    fatal: bool = True

    def text(self) -> str:
        return f"{self.problem}: {self.fix}"


@dataclass
class Diagnosis:
    """Everything the cluster says about a not-ready InferenceService, plus the hints that explain it."""

    name: str
    namespace: str
    conditions: list[Condition] = field(default_factory=list)
    model_status: str | None = None
    pods: list[PodReport] = field(default_factory=list)
    logs: list[LogTail] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # what could not be read (403s), said once each
    hints: list[Hint] = field(default_factory=list)

    def lines(self, *, hints: bool = True) -> list[str]:
        """The diagnosis as text lines: conditions, model status, pods, log tails, events (and the hints)."""
        out: list[str] = []
        if self.conditions:
            out.append("conditions:")
            out += ["  " + c.line() for c in self.conditions]
        else:
            out.append("conditions: none reported yet (is the KServe controller running?)")
        if self.model_status:
            out.append(f"model status: {self.model_status}")
        if not self.pods and not self.unreadable:
            out.append(f"pods: none with label {ISVC_LABEL}={self.name}")
        for pod in self.pods:
            out += pod.lines()
            for tail in self.logs:
                if tail.pod != pod.name or not tail.lines:
                    continue
                which = "previous run of " if tail.previous else ""
                out.append(f"  {which}{tail.container} log (last {len(tail.lines)} lines):")
                out += ["    | " + _clip(line) for line in tail.lines]
        if self.events:
            out.append("events:")
            out += ["  " + e for e in self.events]
        out += [f"could not read {u}" for u in self.unreadable]
        if hints and self.hints:
            out.append("hints:")
            out += ["  - " + h.text() for h in self.hints]
        return out

    def hint(self) -> str | None:
        """The hints as one string for DeployError(hint=...), one per line."""
        if not self.hints:
            return None
        return "\n        ".join(h.text() for h in self.hints)


def _clip(text: str) -> str:
    text = " ".join(str(text).split()) if "\n" in str(text) else str(text).rstrip()
    return text if len(text) <= _MAX_LINE else text[: _MAX_LINE - 3] + "..."


def conditions_of(isvc: Mapping[str, Any]) -> list[Condition]:
    """status.conditions as Conditions, in the order KServe lists them."""
    out = []
    for c in (isvc.get("status") or {}).get("conditions") or []:
        if isinstance(c, Mapping) and c.get("type"):
            out.append(
                Condition(
                    str(c["type"]),
                    str(c.get("status", "Unknown")),
                    str(c.get("reason") or ""),
                    str(c.get("message") or ""),
                )
            )
    return out


def model_status_of(isvc: Mapping[str, Any]) -> str | None:
    """status.modelStatus in one line ('FailedToLoad (BlockedByFailedLoad): ModelLoadFailed: ...'), if any."""
    ms = (isvc.get("status") or {}).get("modelStatus") or {}
    if not ms:
        return None
    states = ms.get("states") or {}
    text = str(states.get("activeModelState") or states.get("targetModelState") or "unknown")
    if ms.get("transitionStatus"):
        text += f" ({ms['transitionStatus']})"
    failure = ms.get("lastFailureInfo") or {}
    if failure:
        why = ": ".join(str(failure[k]) for k in ("reason", "message") if failure.get(k))
        if failure.get("exitCode") not in (None, 0):
            why += f" (exit code {failure['exitCode']})"
        text += f": {why}"
    return text


def _state(raw: Mapping[str, Any] | None) -> tuple[str, str, str, int | None]:
    raw = raw or {}
    for key in ("waiting", "running", "terminated"):
        if raw.get(key) is not None:
            body = raw[key] or {}
            code = body.get("exitCode")
            return key, str(body.get("reason") or ""), str(body.get("message") or ""), code
    return "unknown", "", "", None


def pod_report(pod: Mapping[str, Any]) -> PodReport:
    """A pod's phase, scheduling trouble and container states (init containers first, as they run)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    limits = {
        c.get("name"): ((c.get("resources") or {}).get("limits") or {}).get("memory")
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])
    }
    images = {
        c.get("name"): c.get("image", "") for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])
    }
    containers = []
    for init, key in ((True, "initContainerStatuses"), (False, "containerStatuses")):
        for cs in status.get(key) or []:
            state, reason, message, code = _state(cs.get("state"))
            _, last_reason, _, last_code = _state(cs.get("lastState"))
            name = str(cs.get("name"))
            containers.append(
                ContainerReport(
                    pod=str(meta.get("name")),
                    name=name,
                    init=init,
                    state=state,
                    reason=reason,
                    message=message,
                    exit_code=code,
                    restarts=int(cs.get("restartCount") or 0),
                    ready=bool(cs.get("ready")),
                    last_reason=last_reason,
                    last_exit_code=last_code,
                    image=str(cs.get("image") or images.get(name) or ""),
                    memory_limit=limits.get(name),
                )
            )
    if not containers:  # not scheduled yet: no statuses, but the spec says which containers will run
        for init, key in ((True, "initContainers"), (False, "containers")):
            for c in spec.get(key) or []:
                containers.append(
                    ContainerReport(
                        pod=str(meta.get("name")),
                        name=str(c.get("name")),
                        init=init,
                        state="waiting",
                        reason="",
                        image=str(c.get("image", "")),
                        memory_limit=limits.get(c.get("name")),
                    )
                )
    unschedulable = None
    for cond in status.get("conditions") or []:
        if (
            cond.get("type") == "PodScheduled"
            and cond.get("status") == "False"
            and cond.get("reason") == "Unschedulable"
        ):
            unschedulable = str(cond.get("message") or "Unschedulable")
    return PodReport(
        name=str(meta.get("name")),
        phase=str(status.get("phase") or "Unknown"),
        containers=tuple(containers),
        unschedulable=unschedulable,
        created=str(meta.get("creationTimestamp") or ""),
    )


def pod_summary(pods: Sequence[PodReport]) -> str:
    """One line for the live view: each pod's containers in their current state."""
    parts = []
    for p in pods:
        cs = ", ".join(
            f"{c.label} {c.state}{' ' + c.reason if c.reason else ''}{' ready' if c.ready else ''}"
            for c in p.containers
            if c.name not in _SIDECARS
        )
        parts.append(
            f"pod {p.name} {p.phase}" + (f" [{cs}]" if cs else "") + (" unschedulable" if p.unschedulable else "")
        )
    return "; ".join(parts) if parts else "no predictor pod yet"


def event_line(ev: Mapping[str, Any]) -> str:
    obj = ev.get("involvedObject") or ev.get("regarding") or {}
    count = int(ev.get("count") or (ev.get("series") or {}).get("count") or 1)
    text = (
        f"{ev.get('type', 'Normal')} {ev.get('reason', '')} {str(obj.get('kind', '')).lower()}/{obj.get('name', '')}: "
    )
    text += _clip(str(ev.get("message") or ev.get("note") or ""))
    return text + (f" (x{count})" if count > 1 else "")


def _event_time(ev: Mapping[str, Any]) -> str:
    return str(
        ev.get("lastTimestamp") or ev.get("eventTime") or (ev.get("metadata") or {}).get("creationTimestamp") or ""
    )


# -- hints: the failures of FACTS.md, recognised by the texts the components print ---------------------------------
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
_LAYOUT_LEVEL = re.compile(
    r"--ts-config file not found: \S+|--model-store directory not found: \S+|"
    r"No such file or directory: '/mnt/models/config/config\.properties'|Model store path is not found"
)
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


def _first(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    return pattern.search(text)


# The prefixes the components put before a message: kserve_storage's "2026-01-01 00:00:00.000 PID logger LEVEL
# [file:func():line] ", TorchServe's "2026-01-01T00:00:00,000 [INFO ] thread logger - ", Python's "INFO:root:".
_LOG_PREFIX = re.compile(
    r"^(?:\d{4}-\d\d-\d\d[T ][\d:.,]+\s+)?"
    r"(?:\d+ \S+ (?:DEBUG|INFO|WARNING|ERROR|CRITICAL) \[[^\]]*\] |\[(?:DEBUG|INFO |WARN |ERROR)\] \S+ \S+ - )?"
    r"(?:(?:DEBUG|INFO|WARNING|ERROR|CRITICAL):[\w.]+:)?"
)
_MESSAGE_MAX = 160


def _line_of(match: re.Match[str], text: str) -> str:
    """The log line that matched, without its timestamp/level prefix, clipped: evidence quoted in a hint."""
    start = text.rfind("\n", 0, match.start()) + 1
    end = text.find("\n", match.end())
    line = text[start : end if end != -1 else len(text)].strip()
    line = _LOG_PREFIX.sub("", line, count=1).strip() or line
    return line if len(line) <= _MESSAGE_MAX else line[: _MESSAGE_MAX - 3] + "..."


_FRAME = re.compile(r'^\s+File "')
_CARETS = re.compile(r"^\s*[\^~]+\s*$")


def condense(lines: Sequence[str]) -> list[str]:
    """Log lines with Python traceback frames folded into one line each run: the exceptions and the messages
    around them are what a person reads; the frames of library code push them out of a short tail."""
    out: list[str] = []
    frames = 0
    in_frame = False
    for line in lines:
        if _FRAME.match(line):
            frames += 1
            in_frame = True
            continue
        # A frame is followed by its source line (more indented) and maybe a caret line.
        if in_frame and (line.startswith("    ") or _CARETS.match(line)):
            continue
        in_frame = False
        if frames:
            out.append(f"  ... ({frames} traceback frame{'s' if frames != 1 else ''})")
            frames = 0
        out.append(line)
    if frames:
        out.append(f"  ... ({frames} traceback frame{'s' if frames != 1 else ''})")
    return out


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
    logs = dict(logs or {})
    init_log = logs.get(STORAGE_INITIALIZER, "")
    serve_log = logs.get(KSERVE_CONTAINER, "")
    uri = storage_uri or "storageUri"
    hints: list[Hint] = []

    def add(hint: Hint) -> None:
        if all(h.key != hint.key for h in hints):
            hints.append(hint)

    # storage-initializer: S3 credentials, missing bucket, empty prefix, unreachable endpoint.
    if m := _first(_S3_CREDENTIALS, init_log):
        add(
            Hint(
                "s3-credentials",
                f"the storage-initializer was refused access to {uri} ({_line_of(m, init_log)})",
                "give the InferenceService S3 credentials: a Secret with AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY and the serving.kserve.io/s3-endpoint (s3-usehttps, s3-region) annotations, "
                "attached to a ServiceAccount that spec.predictor.serviceAccountName names (mar-build render writes "
                "all three); check that the key may read that bucket",
            )
        )
    if m := _first(_S3_NO_BUCKET, init_log):
        add(
            Hint(
                "s3-bucket",
                f"the bucket of {uri} does not exist at the S3 endpoint ({_line_of(m, init_log)})",
                "check the bucket name in storageUri and the serving.kserve.io/s3-endpoint annotation of the S3 Secret "
                "(for MinIO: the in-cluster endpoint), then stage there with mar-build stage",
            )
        )
    if m := _first(_NO_OBJECTS, init_log):
        add(
            Hint(
                "s3-empty",
                f"nothing is stored under {uri} ({_line_of(m, init_log)})",
                "stage the layout there first (mar-build stage LAYOUT URI) and use the storageUri it prints",
            )
        )
    if m := _first(_S3_UNREACHABLE, init_log):
        add(
            Hint(
                "s3-endpoint",
                f"the storage-initializer cannot reach the S3 endpoint ({_line_of(m, init_log)})",
                "check the serving.kserve.io/s3-endpoint annotation (host:port reachable from the cluster) and "
                'serving.kserve.io/s3-usehttps ("0" for a plain-HTTP MinIO)',
            )
        )

    # kserve-container: the storageUri level, the wrapper's mandatory keys, missing archives.
    if m := _first(_LAYOUT_LEVEL, serve_log):
        add(
            Hint(
                "storage-uri-level",
                f"/mnt/models does not hold a layout ({_line_of(m, serve_log)})",
                f"point storageUri at the folder that holds config/config.properties and model-store/ (the URI "
                f"mar-build stage printed), not at model-store/ or a parent folder; now: {uri}",
            )
        )
    if m := _first(_MISSING_KEY, serve_log):
        add(
            Hint(
                "config-key",
                f"config.properties lacks {m.group(1)}, which the KServe wrapper in the image requires",
                "rebuild the layout with mar-build build (it writes inference_address, management_address, "
                "grpc_inference_port, model_store and model_snapshot) and stage it again",
            )
        )
    if m := _first(_MAR_MISSING, serve_log):
        add(
            Hint(
                "mar-missing",
                f"TorchServe could not load an archive named in model_snapshot ({_line_of(m, serve_log)})",
                "stage the whole layout again so that every marName in config.properties is in model-store/",
            )
        )

    # Token authorization (TorchServe >= 0.11.1): the wrapper's readiness poll gets 400 InvalidKeyException.
    token = _first(_TOKEN, serve_log)
    if token is None and _first(_TOKEN_ENFORCED, serve_log) and _first(_WRAPPER_GAVE_UP, serve_log):
        token = _first(_WRAPPER_GAVE_UP, serve_log)
    if token:
        add(
            Hint(
                "token-auth",
                f"TorchServe enforces token authorization and the KServe wrapper sends no token "
                f"({_line_of(token, serve_log)}), so the model never turns ready",
                "set disable_token_authorization=true in config.properties (mar-build build writes it) and stage "
                "again, or add --disable-token-auth to the predictor's args",
            )
        )

    # The model name in the URL is the model_snapshot key.
    if m := _first(_NAME_UNKNOWN, serve_log):
        asked = (m.group(1) or m.group(2) or "").rstrip(".")
        served = _first(_SERVED_NAMES, serve_log)
        names = [n.strip().strip("'\"") for n in served.group(1).split(",")] if served else []
        names = [n for n in names if n]
        where = (
            f"it is served as {', '.join(repr(n) for n in names)}" if names else "its name is its model_snapshot key"
        )
        call = f"/v1/models/{names[0]}:predict" if names else "/v1/models/KEY:predict"
        also = f" (the InferenceService is {isvc_name!r})" if isvc_name and isvc_name == asked else ""
        add(
            Hint(
                "model-name",
                f"a call asked for model {asked!r}, which TorchServe does not serve{also}; {where}",
                f"call {call} (the name in the URL is the key in model_snapshot, not the InferenceService name), "
                "or set name: in mar.yaml to the name you want and rebuild",
                fatal=False,
            )
        )

    if m := _first(_WRAPPER_ASKS_UNKNOWN, serve_log):
        served = _first(_SERVED_NAMES, serve_log)
        add(
            Hint(
                "wrapper-model-name",
                f"the KServe wrapper asks TorchServe for model {m.group(1)!r}, which TorchServe did not register "
                f"({_line_of(m, serve_log)})" + (f"; the wrapper read the names [{served.group(1)}]" if served else ""),
                "the wrapper serves the keys of model_snapshot (and 'model' when it lists none) and TorchServe "
                "registers the same keys unless an archive failed to load: rebuild the layout with mar-build build, "
                "check it with mar-build check, and stage it again",
            )
        )

    # A worker died while loading: usually a package the image lacks.
    modules = [mod for mod in _NO_MODULE.findall(serve_log) if not mod.startswith("ts.torch_handler")]
    died = _first(_WORKER_DIED, serve_log)
    if modules:
        add(
            Hint(
                "missing-module",
                f"the handler imports {modules[0]!r}, which the serving image lacks"
                + (" (TorchServe: Worker died)" if died else ""),
                f"add {modules[0].split('.')[0]} to requirements in mar.yaml and set install_py_dep_per_model=true "
                "(the pod then needs a package index), or serve from an image that has it",
            )
        )
    elif died:
        add(
            Hint(
                "worker-died",
                f"a TorchServe worker died while loading the model ({_line_of(died, serve_log)})",
                "read the MODEL_LOG lines of the kserve-container log above for the handler's error; run "
                "mar-build serve on the same layout to reproduce it locally",
                fatal=False,  # TorchServe restarts dead workers: one death alone does not doom the pod
            )
        )

    # Container states: OOMKilled, image pulls.
    for c in containers:
        if c.oom_killed:
            limit = f" (memory limit {c.memory_limit})" if c.memory_limit else ""
            add(
                Hint(
                    "oom",
                    f"{c.label} was OOMKilled{limit}",
                    "raise the memory limit (spec.predictor.model.resources.limits.memory; kserve.resources in "
                    "mar.yaml), or lower minWorkers/maxWorkers: each TorchServe worker holds its own copy of the model",
                )
            )
        if c.state == "waiting" and c.reason in IMAGE_WAITING:
            tag = c.image.rsplit(":", 1)[1] if ":" in c.image.rsplit("/", 1)[-1] else "latest"
            if "torchserve-kfs" in c.image:
                # KServe appends -gpu to the runtime's default tag for GPU requests, but uses runtimeVersion as
                # given: a GPU predictor with runtimeVersion must name the -gpu tag itself.
                gpu = (
                    f"; {tag} is not a published GPU tag"
                    if tag.endswith("-gpu")
                    else "; with a GPU request, runtimeVersion must name the -gpu tag (e.g. 0.12.0-gpu)"
                )
                fix = (
                    "set spec.predictor.model.runtimeVersion to a published pytorch/torchserve-kfs tag (KServe's "
                    f"default 0.9.0 up to the newest 0.12.0){gpu}"
                )
            else:
                fix = "check the image name and tag, and the registry credentials (imagePullSecrets)"
            add(Hint("image", f"{c.label} cannot pull image {c.image or '?'} ({c.reason})", fix))

    for p in pods:
        if p.unschedulable:
            wants_gpu = "nvidia.com/gpu" in p.unschedulable
            add(
                Hint(
                    "unschedulable",
                    f"pod {p.name} cannot be scheduled ({_clip(p.unschedulable)})",
                    "lower resources.requests, or add nodes with room"
                    + (" and GPUs (nvidia.com/gpu)" if wants_gpu else ""),
                    fatal=False,
                )
            )

    joined_events = "\n".join(events)
    if m := re.search(r'persistentvolumeclaim "([^"]+)" not found', joined_events):
        add(
            Hint(
                "pvc-missing",
                f"the PersistentVolumeClaim {m.group(1)!r} of storageUri does not exist in this namespace",
                "create it (mar-build render writes the PVC manifest) or fix the claim in storageUri pvc://CLAIM/PATH",
            )
        )
    if "Multi-Attach error" in joined_events:
        add(
            Hint(
                "pvc-attached",
                "the PVC is ReadWriteOnce and already attached to another node (often the notebook that staged it)",
                "stop the pod that holds it, or stage to a ReadWriteMany volume or to S3",
                fatal=False,
            )
        )

    if model_failure and re.search(r"NoSupportingRuntime|RuntimeNotRecognized|RuntimeDisabled", model_failure):
        add(
            Hint(
                "runtime",
                f"KServe found no serving runtime for this predictor ({model_failure})",
                "check that the ClusterServingRuntime kserve-torchserve exists and is enabled (kubectl get "
                "clusterservingruntimes) and that modelFormat is pytorch with a protocolVersion it supports",
            )
        )
    return hints


# -- gathering -----------------------------------------------------------------------------------------------------
def _storage_uri(isvc: Mapping[str, Any]) -> str | None:
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    model = predictor.get("model") or predictor.get("pytorch") or {}
    uri = model.get("storageUri") or predictor.get("storageUri")
    return str(uri) if uri else None


def _log_plan(c: ContainerReport) -> bool | None:
    """Which run's log to read: True = previous, False = current, None = none (the container never ran).

    A terminated container's current log is its last run; a waiting one (CrashLoopBackOff) has only a previous run.
    """
    if c.state == "waiting":
        return True if c.restarts > 0 else None
    return False


def collect_pods(cluster: Cluster, name: str, namespace: str) -> list[PodReport]:
    """The InferenceService's pods (label serving.kserve.io/inferenceservice=NAME), newest first."""
    raw = cluster.list_pods(namespace, f"{ISVC_LABEL}={name}")
    reports = [pod_report(p) for p in raw]
    reports.sort(key=lambda p: p.created, reverse=True)
    return reports


def diagnose(
    cluster: Cluster,
    isvc: Mapping[str, Any],
    *,
    pods: Sequence[PodReport] | None = None,
    log_lines: int = LOG_SHOW_LINES,
) -> Diagnosis:
    """Gather conditions, pods, log tails and events of ``isvc`` and match them against the known failures.

    Reading pods, logs or events may be forbidden (a user may create InferenceServices but not read pod logs):
    that becomes a line and an RBAC hint, never an exception. Other API errors propagate as DeployError.
    """
    from .._kube import ApiFailure, rbac_hint

    meta = isvc.get("metadata") or {}
    name, namespace = str(meta.get("name")), str(meta.get("namespace"))
    diag = Diagnosis(name=name, namespace=namespace, conditions=conditions_of(isvc), model_status=model_status_of(isvc))
    rbac: list[Hint] = []

    def forbidden(what: str, exc: ApiFailure) -> None:
        diag.unreadable.append(f"{what}: forbidden ({exc.request.verb} {exc.request.resource})")
        rbac.append(
            Hint(
                f"rbac-{exc.request.resource}",
                f"the diagnosis could not read {what}",
                rbac_hint(exc.request),
                fatal=False,
            )
        )

    if pods is None:
        try:
            pods = collect_pods(cluster, name, namespace)
        except ApiFailure as exc:
            if exc.status != 403:
                raise
            forbidden("the predictor pods", exc)
            pods = []
    diag.pods = list(pods[:MAX_PODS])

    full_logs: dict[str, str] = {}
    for pod in diag.pods:
        for c in pod.containers:
            if c.name in _SIDECARS and c.failing is None:
                continue
            previous = _log_plan(c)
            if previous is None:
                continue
            read = _read_log(cluster, namespace, c, previous, forbidden)
            if read is None:
                continue
            text, previous = read
            lines = condense([ln for ln in text.splitlines() if ln.strip()])
            # A container that did its job (a completed storage-initializer) needs only its last words.
            healthy = (c.state == "terminated" and c.exit_code == 0) or (c.state == "running" and c.ready)
            shown = min(log_lines, HEALTHY_LOG_LINES) if healthy else log_lines
            diag.logs.append(LogTail(pod.name, c.name, previous, tuple(lines[-shown:])))
            # The newest pod's log speaks for the container name (the rules look at one text per container).
            full_logs.setdefault(c.name, text)

    events: list[Mapping[str, Any]] = []
    for obj in [name] + [p.name for p in diag.pods]:
        try:
            events += cluster.list_events(namespace, obj)
        except ApiFailure as exc:
            if exc.status != 403:
                raise
            forbidden("events", exc)
            break
    events.sort(key=_event_time)
    diag.events = [event_line(e) for e in events[-MAX_EVENTS:]]

    failure = ((isvc.get("status") or {}).get("modelStatus") or {}).get("lastFailureInfo") or {}
    diag.hints = (
        find_hints(
            containers=[c for p in diag.pods for c in p.containers],
            logs=full_logs,
            events=diag.events,
            pods=diag.pods,
            storage_uri=_storage_uri(isvc),
            isvc_name=name,
            model_failure=" ".join(str(failure.get(k, "")) for k in ("reason", "message")) if failure else None,
        )
        + rbac
    )
    return diag


def _read_log(
    cluster: Cluster, namespace: str, c: ContainerReport, previous: bool, forbidden: Any
) -> tuple[str, bool] | None:
    """(log text, whether it is the previous run's), or None when there is none or it may not be read."""
    from .._kube import ApiFailure

    for prev in (previous, not previous):  # the other run once, when the first has no log (400/404)
        try:
            return cluster.pod_log(namespace, c.pod, c.name, previous=prev, tail=LOG_SCAN_LINES), prev
        except ApiFailure as exc:
            if exc.status == 403:
                forbidden(f"logs of {c.pod}/{c.name}", exc)
                return None
            if exc.status in (400, 404):
                log.debug("no %s log for %s/%s: %s", "previous" if prev else "current", c.pod, c.name, exc.message)
                continue
            raise
    return None


def blocking_failure(isvc: Mapping[str, Any], pods: Iterable[PodReport]) -> str | None:
    """Why waiting longer is futile (a crash loop, a failed storage-initializer, OOMKilled, an image that cannot be
    pulled, KServe reporting a failed load or an invalid spec), or None."""
    transition = ((isvc.get("status") or {}).get("modelStatus") or {}).get("transitionStatus")
    if transition in ("BlockedByFailedLoad", "InvalidSpec"):
        return f"KServe reports {transition}"
    for pod in pods:
        for c in pod.containers:
            if c.name in _SIDECARS:
                continue
            if why := c.failing:
                return f"{why} in pod {pod.name}"
        if pod.phase == "Failed":
            return f"pod {pod.name} failed"
    return None


def not_ready_error(message: str, diagnosis: Diagnosis) -> DeployError:
    """A DeployError carrying the diagnosis lines and its hints."""
    return DeployError(message, diagnosis=diagnosis.lines(hints=False), hint=diagnosis.hint())
