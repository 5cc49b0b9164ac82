"""What the rules read (``Facts``) and what they say (``Hint``).

The facts are the same whether they come from a cluster (``status``: the InferenceService, its pods, their logs and
events) or from a local run (``serve``: TorchServe's and the wrapper's log files, read as the kserve-container's log,
which in the pod is the console output of both).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .pods import KSERVE_CONTAINER, STORAGE_INITIALIZER, ContainerReport, PodReport


@dataclass(frozen=True)
class Hint:
    """One recognised failure: what is wrong (``problem``), what to do (``fix``), and whether waiting is futile."""

    key: str
    problem: str
    fix: str
    fatal: bool = True

    def text(self) -> str:
        return f"{self.problem}: {self.fix}"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "problem": self.problem, "fix": self.fix, "fatal": self.fatal}


@dataclass(frozen=True)
class Facts:
    """Everything a rule may read. ``logs`` maps a container name (storage-initializer, kserve-container) to its
    log text; ``events`` are event lines (``event_line``); ``model_failure`` is status.modelStatus.lastFailureInfo's
    reason and message."""

    logs: Mapping[str, str] = field(default_factory=dict)
    containers: Sequence[ContainerReport] = ()
    pods: Sequence[PodReport] = ()
    events: Sequence[str] = ()
    storage_uri: str | None = None
    isvc_name: str | None = None
    model_failure: str | None = None

    @property
    def init_log(self) -> str:
        return self.logs.get(STORAGE_INITIALIZER, "")

    @property
    def serve_log(self) -> str:
        return self.logs.get(KSERVE_CONTAINER, "")

    @property
    def uri(self) -> str:
        """The storage URI as a hint names it."""
        return self.storage_uri or "storageUri"


# The prefixes the components put before a message: kserve_storage's "2026-01-01 00:00:00.000 PID logger LEVEL
# [file:func():line] ", TorchServe's "2026-01-01T00:00:00,000 [INFO ] thread logger - ", Python's "INFO:root:".
_LOG_PREFIX = re.compile(
    r"^(?:\d{4}-\d\d-\d\d[T ][\d:.,]+\s+)?"
    r"(?:\d+ \S+ (?:DEBUG|INFO|WARNING|ERROR|CRITICAL) \[[^\]]*\] |\[(?:DEBUG|INFO |WARN |ERROR)\] \S+ \S+ - )?"
    r"(?:(?:DEBUG|INFO|WARNING|ERROR|CRITICAL):[\w.]+:)?"
)
_MESSAGE_MAX = 160


def line_of(match: re.Match[str], text: str) -> str:
    """The log line that matched, without its timestamp/level prefix, clipped: evidence quoted in a hint."""
    start = text.rfind("\n", 0, match.start()) + 1
    end = text.find("\n", match.end())
    line = text[start : end if end != -1 else len(text)].strip()
    line = _LOG_PREFIX.sub("", line, count=1).strip() or line
    return line if len(line) <= _MESSAGE_MAX else line[: _MESSAGE_MAX - 3] + "..."
