"""Waiting for a starting predictor: TorchServe's management API, the wrapper's HTTP port, then every model.

Each wait fails fast with what explains it: a process that exited (its log tail), a worker that died while loading
(its own traceback), or the deadline; the run's errors add the fixes the diagnosis rules recognise in its logs.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from .._diagnose import WorkerLog, log_tail, plain_tail
from .._events import OnEvent
from .events import ServeEvent
from .run import RunFolder

POLL_S = 0.25
log = logging.getLogger("toolkit.wrapper")


class Polled(Protocol):
    """A wrapper's model as the readiness poller sees it (wrapper.TorchServeModel)."""

    name: str
    management_url: str
    ready: bool


def worker_ready(description: Any) -> bool:
    """True when TorchServe's describe-model answer has a READY worker in its first version (as the pod reads it)."""
    if not isinstance(description, list) or not description or not isinstance(description[0], dict):
        return False
    workers = description[0].get("workers") or []
    return any(isinstance(w, dict) and w.get("status") == "READY" for w in workers)


def torchserve_ready(client: httpx.Client, management_url: str, name: str) -> bool:
    """True when TorchServe's management API reports a READY worker for model ``name``."""
    try:
        response = client.get(f"{management_url}/models/{name}")
        return response.status_code == 200 and worker_ready(response.json())
    except (httpx.HTTPError, ValueError):
        return False


def poll_readiness(models: Sequence[Polled], interval: float, stop: threading.Event) -> None:
    """Mark each model ready once TorchServe reports a READY worker for it (the wrapper runs it in a thread)."""
    pending = list(models)
    with httpx.Client(timeout=5.0) as client:
        while pending and not stop.is_set():
            for model in list(pending):
                if torchserve_ready(client, model.management_url, model.name):
                    model.ready = True
                    pending.remove(model)
                    log.info("model %s is ready", model.name)
            stop.wait(interval)


@dataclass(frozen=True)
class Startup:
    """One startup's run folder and clock: ``timeout`` seconds from ``started`` (time.monotonic())."""

    run: RunFolder
    started: float
    timeout: float

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def late(self) -> bool:
        return self.elapsed > self.timeout


def wait_torchserve(proc: subprocess.Popen[bytes], management: str, startup: Startup) -> None:
    """Return once TorchServe's management API answers; raise ServeError if it exits or the deadline passes."""
    run = startup.run
    with httpx.Client(timeout=2.0) as client:
        while True:
            if proc.poll() is not None:
                raise run.error(
                    f"TorchServe exited with status {proc.returncode} before it answered on {management}",
                    log_tail=log_tail(run.log("ts_log.log")) or plain_tail(run.log("torchserve-console.log")),
                    hint=run.where("ts_log.log"),
                )
            try:
                if client.get(f"{management}/models").status_code < 500:
                    return
            except httpx.TransportError:
                pass
            if startup.late:
                raise run.error(
                    f"TorchServe did not answer on {management} within {startup.timeout:.0f} s",
                    log_tail=log_tail(run.log("ts_log.log")),
                    hint="raise startup_timeout (--timeout) on a slow machine; " + run.where("ts_log.log"),
                )
            time.sleep(POLL_S)


def wait_wrapper(
    proc: subprocess.Popen[bytes], url: str, startup: Startup, *, log_name: str = "wrapper.log",
    what: str = "the kserve wrapper",
) -> None:
    """Return once ``what`` (the wrapper, or the python runtime) answers ``GET /``; raise ServeError if it exits
    or the deadline passes, quoting ``log_name``."""
    run = startup.run
    with httpx.Client(timeout=2.0) as client:
        while True:
            if proc.poll() is not None:
                tail = plain_tail(run.log(log_name))
                in_use = any("address already in use" in line.lower() for line in tail)
                raise run.error(
                    f"{what} exited with status {proc.returncode} before it answered on {url}"
                    + (" (its port is in use)" if in_use else ""),
                    log_tail=tail,
                    hint="pass another port (--port)" if in_use else "pip install 'mar-build[serve]' (kserve)",
                )
            try:
                if client.get(url + "/").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if startup.late:
                raise run.error(f"{what} did not answer on {url} within {startup.timeout:.0f} s",
                                log_tail=plain_tail(run.log(log_name)))
            time.sleep(POLL_S)


def wrapper_ready(client: httpx.Client, url: str, name: str) -> bool:
    """True when the wrapper at ``url`` answers 200 to ``GET /v1/models/NAME`` (the v1 model-ready call)."""
    try:
        return client.get(f"{url}/v1/models/{name}").status_code == 200
    except httpx.TransportError:
        return False


ReadyProbe = Callable[[httpx.Client, str, str], bool]
"""(client, url, model name) -> ready: wrapper_ready on the wrapper's URL, or torchserve_ready on TorchServe's
management URL (for the stock wrapper's answers, which say ready before any worker is)."""


def wait_models(
    names: Sequence[str],
    versions: dict[str, str | None],
    url: str,
    processes: Sequence[tuple[str, subprocess.Popen[bytes], str]],
    startup: Startup,
    emit: OnEvent[ServeEvent],
    ready: ReadyProbe = wrapper_ready,
) -> None:
    """Wait until ``ready`` (default: the wrapper answers 200 at ``url``) for every model; fail on the first worker
    that dies while loading.

    ``processes`` are (what, process, log file name) of TorchServe and the wrapper: either exiting fails the wait.
    """
    workers = WorkerLog(startup.run.log("model_log.log"), names, versions)
    pending = list(names)
    for name in pending:
        emit(ServeEvent("model-loading", f"model {name}: loading", model=name))
    with httpx.Client(timeout=5.0) as client:
        while pending:
            for name in [n for n in pending if ready(client, url, n)]:
                pending.remove(name)
                seconds = startup.elapsed
                emit(ServeEvent("model-ready", f"model {name}: ready in {seconds:.1f} s", model=name, seconds=seconds))
            if pending:
                _raise_for_failure(workers, pending, processes, startup)
                time.sleep(POLL_S)


def _raise_for_failure(
    workers: WorkerLog,
    pending: list[str],
    processes: Sequence[tuple[str, subprocess.Popen[bytes], str]],
    startup: Startup,
) -> None:
    """Raise ServeError for a dead worker of a pending model, an exited process, or the deadline; else return."""
    run = startup.run
    failure = workers.failure(pending)
    if failure is not None:
        name, lines = failure
        last = next((ln for ln in reversed(lines) if ln.strip() and not ln.startswith(" ")), "")
        raise run.error(
            f"model {name} failed to load: its TorchServe worker died" + (f" ({last.strip()})" if last else ""),
            log_tail=lines,
            hint="fix the handler or the model files (the traceback above is the worker's); "
            + run.where("model_log.log"),
        )
    for what, proc, logfile in processes:
        if proc.poll() is not None:
            tail = log_tail(run.log(logfile)) if logfile == "ts_log.log" else plain_tail(run.log(logfile))
            raise run.error(f"{what} exited with status {proc.returncode} while models were loading",
                            log_tail=tail, hint=run.where(logfile))
    if startup.late:
        raise run.error(
            f"model(s) {', '.join(pending)} not ready within {startup.timeout:.0f} s",
            log_tail=workers.recent(pending) or log_tail(run.log("ts_log.log")),
            hint="raise startup_timeout (--timeout) for a large model on a slow machine; "
            + run.where("model_log.log"),
        )
