"""Reading TorchServe's logs: the WARN/ERROR lines that explain a failure, and which model's worker died and why.

TorchServe writes ts_log.log (the frontend) and model_log.log (every worker's stdout/stderr, one thread name per
worker: W-9000-MODEL_VERSION); serve() quotes these in its errors instead of leaving users to dig, and runs the
cluster's rules over them (``run_hints``): what a pod's kserve-container log means, the same files mean locally.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .facts import Hint
from .pods import KSERVE_CONTAINER
from .rules import find_hints

LOG_TAIL = 25
RULE_SCAN_LINES = 400  # the last lines of each log file the rules read (a run's startup fits; a long run's tail)

# 2026-11-22T20:52:15,904 [INFO ] W-9000-bad_1.0-stdout MODEL_LOG - Traceback (most recent call last):
_LINE = re.compile(r"\d{4}-\d\d-\d\dT[\d:,.]+ \[(?P<level>\w+)\s*\] (?P<thread>\S+) (?P<logger>\S+) - (?P<msg>.*)")
_NOISE = (
    "Your torchserve instance can access any URL",
    "worker pid is not available yet",
    "sun.reflect.Reflection.getCallerClass",
)


def read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def plain_tail(path: Path, count: int = LOG_TAIL) -> list[str]:
    return [line for line in read_lines(path) if line.strip()][-count:]


def run_hints(paths: Sequence[Path]) -> list[Hint]:
    """The fatal hints the rules find in a local run's log files (TorchServe's console, ts_log.log, model_log.log,
    the wrapper's log), read together as the pod's kserve-container log, which holds the same lines.

    Only fatal hints: the others (a worker that died, which TorchServe retries; a client that asked for an unknown
    model name) do not explain why a run could not start.
    """
    text = "\n".join("\n".join(read_lines(path)[-RULE_SCAN_LINES:]) for path in paths)
    return [hint for hint in find_hints(logs={KSERVE_CONTAINER: text}) if hint.fatal]


def log_tail(path: Path, count: int = LOG_TAIL) -> list[str]:
    """The WARN/ERROR lines of a TorchServe log (with the first line of a Java exception after each), deduplicated."""
    picked: list[str] = []
    last_entry = None
    keep_next = False
    for line in read_lines(path):
        match = _LINE.fullmatch(line)
        if match is None:
            if keep_next and line.strip() and not line.startswith("\t"):
                picked.append("  " + line.strip())
                keep_next = False
            continue
        keep_next = False
        if match.group("level") in ("WARN", "ERROR") and not any(n in line for n in _NOISE):
            entry = f"{match.group('level')} {match.group('logger')}: {match.group('msg')}"
            if entry != last_entry:  # TorchServe's log4j config writes many records twice in a row
                picked.append(entry)
                keep_next = True
            last_entry = entry
    return picked[-count:]


@dataclass
class _Worker:
    model: str
    lines: list[str] = field(default_factory=list)
    died_at: float | None = None  # when we first read "Backend worker process died" in this worker's life


# The traceback that explains a death can follow the "died" line (an exception escaping the worker) or precede it
# ("Failed to load model ..."); give the worker's output this long to reach the log before explaining.
_SETTLE_S = 1.0


class WorkerLog:
    """Follows model_log.log and tells which model's worker died while loading, with its own log lines."""

    def __init__(self, path: Path, names: Sequence[str], versions: dict[str, str | None]) -> None:
        self.path = path
        self.offset = 0
        self.partial = ""
        # Longest first, so that model "a_b" is not taken for model "a" at version "b_..."
        self.prefixes = sorted(
            ((f"{n}_{versions[n]}" if versions.get(n) else f"{n}_", n) for n in names), key=lambda p: -len(p[0])
        )
        self.workers: dict[str, _Worker] = {}

    def _model_of(self, thread: str) -> str | None:
        match = re.fullmatch(r"W-\d+-(.+)", thread)
        if match is None:
            return None
        rest = match.group(1)
        for prefix, name in self.prefixes:
            if rest == prefix or (prefix.endswith("_") and rest.startswith(prefix)):
                return name
        return None

    def _read(self) -> None:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                f.seek(self.offset)
                chunk = f.read()
                self.offset = f.tell()
        except OSError:
            return
        lines = (self.partial + chunk).split("\n")
        self.partial = lines.pop()
        for line in lines:
            match = _LINE.fullmatch(line)
            if match is None:
                continue
            thread = re.sub(r"-(stdout|stderr)$", "", match.group("thread"))
            model = self._model_of(thread)
            if model is None:
                continue
            worker = self.workers.setdefault(thread, _Worker(model))
            msg = match.group("msg")
            if msg.startswith("s_name_part0="):  # the first line of a (re)started worker
                worker.lines.clear()
                worker.died_at = None
            if msg.startswith("Backend worker process died") and worker.died_at is None:
                worker.died_at = time.monotonic()
            worker.lines.append(msg)
            del worker.lines[:-1000]

    def failure(self, pending: Sequence[str]) -> tuple[str, list[str]] | None:
        """(model, the lines that explain it) for the first worker of a pending model that died, or None."""
        self._read()
        for worker in self.workers.values():
            if worker.model in pending and worker.died_at is not None:
                if time.monotonic() - worker.died_at < _SETTLE_S:
                    continue
                return worker.model, explain_death(worker.lines)
        return None

    def recent(self, pending: Sequence[str], count: int = LOG_TAIL) -> list[str]:
        self._read()
        lines: list[str] = []
        for worker in self.workers.values():
            if worker.model in pending:
                lines += worker.lines[-count:]
        return lines[-count:]


def explain_death(lines: list[str]) -> list[str]:
    """The lines of a worker's life that say why it died.

    "Failed to load model ..." and the traceback after it, when the handler's load raised and TorchServe caught it;
    else the traceback after "Backend worker process died" (the exception that ended the worker); else the tail.
    """
    died = next((i for i, ln in enumerate(lines) if ln.startswith("Backend worker process died")), len(lines))
    failed = next((i for i, ln in enumerate(lines[:died]) if ln.startswith("Failed to load model")), None)
    if failed is not None:
        picked = lines[failed:died]
    else:
        after = next((i for i in range(died, len(lines)) if lines[i].startswith("Traceback")), None)
        picked = lines[after:] if after is not None else lines[-LOG_TAIL:]
    return [ln for ln in picked if ln.strip()][-60:]
