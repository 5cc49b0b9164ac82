"""serve()'s progress as typed events, for a callback (``OnEvent[ServeEvent]``) to render."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .._events import OnEvent

log = logging.getLogger("toolkit.serve")

EventKind = Literal[
    "download", "warning", "ports", "threads", "torchserve-started", "wrapper-started", "runtime-started",
    "model-loading", "model-ready",
]


@dataclass(frozen=True)
class ServeEvent:
    """One step of serve()'s progress; ``str(event)`` is the line to show. ``details`` holds the step's values
    (the remapped ports, the thread budget) for a machine."""

    kind: EventKind
    message: str
    model: str | None = None
    seconds: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "model": self.model, "seconds": self.seconds,
                "details": dict(self.details)}


def emitter(on_event: OnEvent[ServeEvent] | None) -> OnEvent[ServeEvent]:
    """A callback that logs each event and hands it to ``on_event``."""

    def emit(event: ServeEvent) -> None:
        log.info("%s", event.message)
        if on_event is not None:
            on_event(event)

    return emit
