"""Why an InferenceService is not ready, said in a few lines instead of a dump.

The facts come from the cluster (the InferenceService's conditions and model status, the predictor pods' container
states, their last log lines, recent events); the hints come from the rules of ``rules.py``, run over those facts.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._errors import DeployError
from .facts import Facts, Hint
from .pods import ISVC_LABEL, SIDECARS, ContainerReport, PodReport, clip, pod_report
from .rules import hints_of

if TYPE_CHECKING:
    from .._kube import ApiFailure, Cluster

log = logging.getLogger("toolkit.deploy")

LOG_SCAN_LINES = 200  # read this much for the rules (the wrapper names its models early in the log) ...
LOG_SHOW_LINES = 20  # ... and show this much
HEALTHY_LOG_LINES = 5
MAX_PODS = 3
MAX_EVENTS = 10


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

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "status": self.status, "reason": self.reason, "message": self.message}


@dataclass(frozen=True)
class LogTail:
    pod: str
    container: str
    previous: bool
    lines: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"pod": self.pod, "container": self.container, "previous": self.previous, "lines": list(self.lines)}


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
                out += ["    | " + clip(line) for line in tail.lines]
        if self.events:
            out.append("events:")
            out += ["  " + e for e in self.events]
        out += [f"could not read {u}" for u in self.unreadable]
        if hints and self.hints:
            out.append("hints:")
            out += ["  - " + h.text() for h in self.hints]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "namespace": self.namespace, "conditions": [c.to_dict() for c in self.conditions],
            "model_status": self.model_status, "pods": [p.to_dict() for p in self.pods],
            "logs": [t.to_dict() for t in self.logs], "events": list(self.events),
            "unreadable": list(self.unreadable), "hints": [h.to_dict() for h in self.hints],
        }

    def hint(self) -> str | None:
        """The hints as one string for DeployError(hint=...), one per line."""
        if not self.hints:
            return None
        return "\n        ".join(h.text() for h in self.hints)


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


def event_line(ev: Mapping[str, Any]) -> str:
    obj = ev.get("involvedObject") or ev.get("regarding") or {}
    count = int(ev.get("count") or (ev.get("series") or {}).get("count") or 1)
    text = (
        f"{ev.get('type', 'Normal')} {ev.get('reason', '')} {str(obj.get('kind', '')).lower()}/{obj.get('name', '')}: "
    )
    text += clip(str(ev.get("message") or ev.get("note") or ""))
    return text + (f" (x{count})" if count > 1 else "")


def _event_time(ev: Mapping[str, Any]) -> str:
    return str(
        ev.get("lastTimestamp") or ev.get("eventTime") or (ev.get("metadata") or {}).get("creationTimestamp") or ""
    )


_FRAME = re.compile(r'^\s+File "')
_CARETS = re.compile(r"\s*[\^~]+\s*")


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
        if in_frame and (line.startswith("    ") or _CARETS.fullmatch(line)):
            continue
        in_frame = False
        if frames:
            out.append(f"  ... ({frames} traceback frame{'s' if frames != 1 else ''})")
            frames = 0
        out.append(line)
    if frames:
        out.append(f"  ... ({frames} traceback frame{'s' if frames != 1 else ''})")
    return out


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


Forbidden = Callable[[str, "ApiFailure"], None]
"""forbidden(what, failure): note that ``what`` could not be read (a 403) instead of raising."""


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
            Hint(f"rbac-{exc.request.resource}", f"the diagnosis could not read {what}", rbac_hint(exc.request),
                 fatal=False)
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
    full_logs = _read_logs(cluster, diag, log_lines, forbidden)
    diag.events = _read_events(cluster, diag, forbidden)
    failure = ((isvc.get("status") or {}).get("modelStatus") or {}).get("lastFailureInfo") or {}
    facts = Facts(
        logs=full_logs,
        containers=tuple(c for p in diag.pods for c in p.containers),
        pods=tuple(diag.pods),
        events=tuple(diag.events),
        storage_uri=_storage_uri(isvc),
        isvc_name=name,
        model_failure=" ".join(str(failure.get(k, "")) for k in ("reason", "message")) if failure else None,
    )
    diag.hints = hints_of(facts) + rbac
    return diag


def _read_logs(cluster: Cluster, diag: Diagnosis, log_lines: int, forbidden: Forbidden) -> dict[str, str]:
    """Append each container's log tail to ``diag.logs``; return the full text by container name for the rules."""
    full_logs: dict[str, str] = {}
    for pod in diag.pods:
        for c in pod.containers:
            if c.name in SIDECARS and c.failing is None:
                continue
            previous = _log_plan(c)
            if previous is None:
                continue
            read = _read_log(cluster, diag.namespace, c, previous, forbidden)
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
    return full_logs


def _read_events(cluster: Cluster, diag: Diagnosis, forbidden: Forbidden) -> list[str]:
    """The last MAX_EVENTS events of the InferenceService and its pods, oldest first, as lines."""
    from .._kube import ApiFailure

    events: list[Mapping[str, Any]] = []
    for obj in [diag.name] + [p.name for p in diag.pods]:
        try:
            events += cluster.list_events(diag.namespace, obj)
        except ApiFailure as exc:
            if exc.status != 403:
                raise
            forbidden("events", exc)
            break
    events.sort(key=_event_time)
    return [event_line(e) for e in events[-MAX_EVENTS:]]


def _read_log(
    cluster: Cluster, namespace: str, c: ContainerReport, previous: bool, forbidden: Forbidden
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
            if c.name in SIDECARS:
                continue
            if why := c.failing:
                return f"{why} in pod {pod.name}"
        if pod.phase == "Failed":
            return f"pod {pod.name} failed"
    return None


def not_ready_error(message: str, diagnosis: Diagnosis) -> DeployError:
    """A DeployError carrying the diagnosis lines and its hints."""
    return DeployError(message, diagnosis=diagnosis.lines(hints=False), hint=diagnosis.hint())
