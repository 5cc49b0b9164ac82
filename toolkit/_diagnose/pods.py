"""A predictor pod as the diagnosis reads it: its phase, whether it can be scheduled, each container's state.

The input is a Pod object as the Kubernetes API returns it (``status.initContainerStatuses``/``containerStatuses``
with ``state`` and ``lastState`` of ``waiting``/``running``/``terminated``, ``status.conditions`` with
``PodScheduled``); the output is frozen reports that the rules and the text lines read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ISVC_LABEL = "serving.kserve.io/inferenceservice"
STORAGE_INITIALIZER = "storage-initializer"
KSERVE_CONTAINER = "kserve-container"
# Sidecars whose logs say nothing about the model unless they are the ones failing.
SIDECARS = frozenset({"istio-proxy", "queue-proxy", "istio-init", "istio-validation", "linkerd-proxy"})

# Waiting reasons that waiting longer does not fix.
FATAL_WAITING = frozenset({
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
})
IMAGE_WAITING = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"})

MAX_LINE = 240


def clip(text: str) -> str:
    """One line of at most MAX_LINE characters (a multi-line message is joined)."""
    text = " ".join(str(text).split()) if "\n" in str(text) else str(text).rstrip()
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 3] + "..."


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
            text += f": {clip(self.message)}"
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "pod": self.pod, "name": self.name, "init": self.init, "state": self.state, "reason": self.reason,
            "message": self.message, "exit_code": self.exit_code, "restarts": self.restarts, "ready": self.ready,
            "last_reason": self.last_reason, "last_exit_code": self.last_exit_code, "image": self.image,
            "memory_limit": self.memory_limit,
        }


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
            out.append(f"  unschedulable: {clip(self.unschedulable)}")
        out += ["  " + c.line() for c in self.containers]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "phase": self.phase, "unschedulable": self.unschedulable, "created": self.created,
            "containers": [c.to_dict() for c in self.containers],
        }


def _state(raw: Mapping[str, Any] | None) -> tuple[str, str, str, int | None]:
    raw = raw or {}
    for key in ("waiting", "running", "terminated"):
        if raw.get(key) is not None:
            body = raw[key] or {}
            code = body.get("exitCode")
            return key, str(body.get("reason") or ""), str(body.get("message") or ""), code
    return "unknown", "", "", None


def _spec_containers(spec: Mapping[str, Any]) -> list[tuple[bool, Mapping[str, Any]]]:
    return [(True, c) for c in spec.get("initContainers") or []] + [(False, c) for c in spec.get("containers") or []]


def _memory_limit(container: Mapping[str, Any]) -> str | None:
    return ((container.get("resources") or {}).get("limits") or {}).get("memory")


def _reported(pod: str, status: Mapping[str, Any], spec: Mapping[str, Any]) -> list[ContainerReport]:
    """The containers the kubelet reports on (init containers first, as they run)."""
    by_name = {str(c.get("name")): c for _, c in _spec_containers(spec)}
    out = []
    for init, key in ((True, "initContainerStatuses"), (False, "containerStatuses")):
        for cs in status.get(key) or []:
            state, reason, message, code = _state(cs.get("state"))
            _, last_reason, _, last_code = _state(cs.get("lastState"))
            name = str(cs.get("name"))
            declared = by_name.get(name) or {}
            out.append(ContainerReport(
                pod=pod, name=name, init=init, state=state, reason=reason, message=message, exit_code=code,
                restarts=int(cs.get("restartCount") or 0), ready=bool(cs.get("ready")), last_reason=last_reason,
                last_exit_code=last_code, image=str(cs.get("image") or declared.get("image") or ""),
                memory_limit=_memory_limit(declared),
            ))
    return out


def _declared(pod: str, spec: Mapping[str, Any]) -> list[ContainerReport]:
    """A pod not scheduled yet has no statuses, but its spec says which containers will run."""
    return [
        ContainerReport(pod=pod, name=str(c.get("name")), init=init, state="waiting", image=str(c.get("image", "")),
                        memory_limit=_memory_limit(c))
        for init, c in _spec_containers(spec)
    ]


def _unschedulable(status: Mapping[str, Any]) -> str | None:
    found = None
    for cond in status.get("conditions") or []:
        if (cond.get("type"), cond.get("status"), cond.get("reason")) == ("PodScheduled", "False", "Unschedulable"):
            found = str(cond.get("message") or "Unschedulable")
    return found


def pod_report(pod: Mapping[str, Any]) -> PodReport:
    """A pod's phase, scheduling trouble and container states (init containers first, as they run)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    name = str(meta.get("name"))
    return PodReport(
        name=name,
        phase=str(status.get("phase") or "Unknown"),
        containers=tuple(_reported(name, status, spec) or _declared(name, spec)),
        unschedulable=_unschedulable(status),
        created=str(meta.get("creationTimestamp") or ""),
    )


def pod_summary(pods: Sequence[PodReport]) -> str:
    """One line for the live view: each pod's containers in their current state."""
    parts = []
    for p in pods:
        cs = ", ".join(
            f"{c.label} {c.state}{' ' + c.reason if c.reason else ''}{' ready' if c.ready else ''}"
            for c in p.containers
            if c.name not in SIDECARS
        )
        parts.append(
            f"pod {p.name} {p.phase}" + (f" [{cs}]" if cs else "") + (" unschedulable" if p.unschedulable else "")
        )
    return "; ".join(parts) if parts else "no predictor pod yet"
