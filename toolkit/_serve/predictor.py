"""serve(): run a layout locally exactly as KServe's predictor pod runs it.

The pod starts TorchServe with the kserve-torchserve runtime's arguments and, in front of it, the image's kserve
wrapper on port 8080. Locally the same two processes run (``processes.py``):

    TorchServe   torchserve --start --foreground --ncs --model-store=LAYOUT/model-store \
                            --ts-config=RUN/config.properties
    the wrapper  python -m toolkit._serve.wrapper --config RUN/config.properties --http-port PORT  (kserve ModelServer)

TorchServe runs on a copy of config.properties whose ports are free loopback ports, unless ``ts_ports="config"``
(``config.py``): the pod's 8085/8082/7070/7071 would clash between instances. The user's layout is never written to.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .._diagnose import log_tail, plain_tail
from .._errors import ServeError
from .._events import OnEvent
from .._layout import MODEL_STORE, Layout, check, read_layout, set_properties
from .._spec import RUNTIMES, Runtime
from .config import (
    address_port,
    check_config_ports,
    check_port,
    config_addresses,
    free_port_config,
    local_paths,
    url_host,
)
from .events import ServeEvent, emitter
from .processes import (
    WRAPPERS,
    Wrapper,
    check_java,
    find_torchserve,
    start_torchserve,
    start_wrapper,
    stop_process,
    torchserve_env,
)
from .readiness import Startup, torchserve_ready, wait_models, wait_torchserve, wait_wrapper
from .run import RunFolder, open_run_folder
from .running import Running, Watched
from .runtime import RuntimePredictor, serve_python
from .source import archive_versions, resolve_source
from .threads import ThreadBudget, thread_budget

TsPorts = Literal["free", "config"]


class LocalPredictor(Running):
    """A running local predictor: TorchServe and the kserve wrapper in front of it.

    ``url`` is the wrapper (what the pod serves on 8080); ``torchserve_url`` TorchServe's inference address;
    ``metrics_url`` its Prometheus endpoint; ``models`` the ready model names; ``log_path`` TorchServe's log;
    ``layout`` the folder served (for an s3:// source, the download, removed at stop); ``ports`` every port it
    listens on; ``threads`` the handlers' thread budget. Use it as a context manager, or call ``stop()``;
    ``wait()`` blocks until it stops.
    """

    runtime = "torchserve"

    def __init__(
        self, *, url: str, addresses: dict[str, str], models: list[str], layout: Path, run: RunFolder,
        torchserve: subprocess.Popen[bytes], wrapper: subprocess.Popen[bytes], cleanup: list[Path],
        ports: dict[str, int | None], threads: ThreadBudget,
    ) -> None:
        self.torchserve_url = addresses["inference"]
        self.management_url = addresses["management"]
        self.metrics_url = addresses["metrics"] + "/metrics"
        self._torchserve = torchserve
        self._wrapper = wrapper
        watched = [  # the wrapper stops first: it is in front
            Watched("TorchServe", "TorchServe", torchserve, lambda: log_tail(self.log_path)),
            Watched("the kserve wrapper", "wrapper", wrapper, lambda: plain_tail(self.wrapper_log_path)),
        ]
        super().__init__(url=url, models=models, layout=layout, run=run, cleanup=cleanup, ports=ports,
                         threads=threads, watched=watched)

    @property
    def log_path(self) -> Path:
        return self._run.log("ts_log.log")

    @property
    def wrapper_log_path(self) -> Path:
        return self._run.log("wrapper.log")

    @property
    def pids(self) -> dict[str, int]:
        """Process (and process group) ids of what this predictor started: ``torchserve`` and ``wrapper``."""
        return {"torchserve": self._torchserve.pid, "wrapper": self._wrapper.pid}

    def to_dict(self) -> dict[str, Any]:
        """The endpoints, ports, process ids, paths and thread budget, JSON-able (``mar-build serve --json``)."""
        return {
            "runtime": self.runtime, "url": self.url, "models": list(self.models),
            "predict": {m: self.predict_url(m) for m in self.models}, "torchserve_url": self.torchserve_url,
            "management_url": self.management_url,
            "metrics_url": self.metrics_url, "ports": dict(self.ports), "pids": self.pids, "running": self.running,
            "log_path": str(self.log_path), "wrapper_log_path": str(self.wrapper_log_path),
            "model_log_path": str(self._run.log("model_log.log")), "run_dir": str(self.run_dir),
            "layout": str(self.layout), "threads": self.threads.to_dict(),
        }


@dataclass(frozen=True)
class _Request:
    """serve()'s arguments, as one value for the steps of a start."""

    source: str | Path
    port: int
    host: str
    grpc_port: int | None
    ts_ports: TsPorts
    workdir: str | Path | None
    mount: str | Path | None
    startup_timeout: float
    runtime: Runtime = "torchserve"
    metrics_port: int | None = None
    wrapper: Wrapper = "ours"


def serve(
    source: str | Path,
    *,
    port: int = 8080,
    host: str = "127.0.0.1",
    grpc_port: int | None = None,
    ts_ports: TsPorts = "free",
    workdir: str | Path | None = None,
    mount: str | Path | None = None,
    startup_timeout: float = 300.0,
    torchserve: str | Path | None = None,
    runtime: Runtime = "torchserve",
    on_event: OnEvent[ServeEvent] | None = None,
    metrics_port: int | None = None,
    wrapper: Wrapper = "ours",
) -> LocalPredictor | RuntimePredictor:
    """Start TorchServe and the kserve wrapper on a layout, as the predictor pod does; return when every model is ready.

    ``runtime="python"`` serves the same layout with mar-build's own runtime instead (kserve's ModelServer, each
    model's handler in minWorkers worker processes or, for one worker, in the same process; no Java; see
    toolkit/_runtime): a RuntimePredictor with the same API. ``ts_ports`` and ``torchserve`` concern TorchServe only.

    ``source`` is a layout folder, an ``s3://BUCKET/PREFIX`` URI (downloaded with kserve_storage, as the
    storage-initializer does; AWS_ENDPOINT_URL and the AWS_* credentials apply) or ``pvc://CLAIM/PATH`` with
    ``mount`` the folder where the claim is mounted. ``port``/``host``: the wrapper's HTTP address (the pod's 8080);
    ``grpc_port`` turns on kserve's gRPC v2 server (the wrapper's, or the python runtime's). ``ts_ports="free"``
    moves TorchServe's ports to free loopback ports in a run copy of config.properties; ``"config"`` keeps the
    file's ports. ``workdir`` keeps the run folder (config copy, logs) instead of a temporary one removed at stop.
    ``torchserve`` is the `torchserve` script to run (e.g. from a venv with the TorchServe release of the pod's
    image, 0.9.0); default: the one beside this Python.
    ``metrics_port``: where the Prometheus metrics are served (``predictor.metrics_url``): TorchServe's metrics API
    (default a free port), or the python runtime's own listener (default its HTTP port's ``/metrics``).
    ``wrapper="image"`` answers as the wrapper of the stock pytorch/torchserve-kfs image does (every error of
    TorchServe a 500, ``"ready": "True"`` before any worker is; see toolkit/_serve/stock.py); serve() still returns
    only once TorchServe has a READY worker for every model. ``on_event`` receives ServeEvents. TorchServe's
    handlers get MAR_BUILD_THREADS (this machine's CPUs divided by the workers of all models) unless the environment
    sets it.

    Raises LayoutError when the layout fails `check`, ServeError for missing Java, a port in use, a model that fails
    to load or TorchServe not ready within ``startup_timeout`` seconds (with the log lines that explain it and the
    fixes the diagnosis rules name for them).
    """
    emit = emitter(on_event)
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    python = runtime == "python"
    if wrapper not in WRAPPERS:
        raise ValueError(f"wrapper must be one of {', '.join(WRAPPERS)}, not {wrapper!r}")
    if python and wrapper != "ours":
        raise ServeError("the python runtime has no wrapper in front of it", hint="leave out wrapper (--wrapper)")
    exe = ""
    if not python:
        check_java()
        exe = find_torchserve(torchserve)
    check_port(host, port, "the runtime's HTTP port" if python else "the wrapper's HTTP port",
               "pass another port (--port)")
    if grpc_port is not None:
        check_port(host, grpc_port, "the runtime's gRPC port" if python else "the wrapper's gRPC port",
                   "pass another port (--grpc-port)")
    if metrics_port is not None:
        _check_metrics_port(metrics_port, host if python else "127.0.0.1", (port, grpc_port),
                            "free" if python else ts_ports)
    request = _Request(source, port, host, grpc_port, ts_ports, workdir, mount, startup_timeout, runtime,
                       metrics_port, wrapper)
    cleanup: list[Path] = []
    processes: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        if python:
            return _start_python(request, cleanup, processes, emit)
        return _start(request, exe, cleanup, processes, emit)
    except BaseException:
        # Nothing half-started survives a failure or a Ctrl-C during startup.
        for what, proc in reversed(processes):
            stop_process(proc, what)
        for path in cleanup:
            shutil.rmtree(path, ignore_errors=True)
        raise


def _start(
    request: _Request, exe: str, cleanup: list[Path], processes: list[tuple[str, subprocess.Popen[bytes]]],
    emit: OnEvent[ServeEvent],
) -> LocalPredictor:
    layout = resolve_source(request.source, request.mount, cleanup, emit)
    info = _checked_layout(layout, emit)
    versions = archive_versions(info.entries, layout)
    run = open_run_folder(request.workdir, cleanup)
    addresses = _write_run_config(run, info, request, emit)
    budget = thread_budget(info.entries)
    emit(budget.event())

    startup = Startup(run, time.monotonic(), request.startup_timeout)
    ts_process = start_torchserve(exe, layout, run.config, run.path, torchserve_env(run.path, budget.env()))
    processes.append(("TorchServe", ts_process))
    # The wrapper starts beside TorchServe, not after it: importing kserve takes seconds, and its readiness
    # poller simply waits for TorchServe's management API to answer.
    url = f"http://{url_host(request.host)}:{request.port}"
    wrapper = start_wrapper(run.config, run.path, request.host, request.port, request.grpc_port, ts_process.pid,
                            wrapper=request.wrapper, model_store=layout / MODEL_STORE)
    processes.append(("wrapper", wrapper))
    wait_torchserve(ts_process, addresses["management"], startup)
    seconds = startup.elapsed
    emit(ServeEvent("torchserve-started", f"torchserve started in {seconds:.1f} s", seconds=seconds))
    wait_wrapper(wrapper, url, startup)
    emit(ServeEvent("wrapper-started", f"kserve wrapper listening on {url}", details={"url": url}))

    names = info.model_names()
    watched = [("TorchServe", ts_process, "ts_log.log"), ("the kserve wrapper", wrapper, "wrapper.log")]
    if request.wrapper == "image":  # it says ready before TorchServe is: ask TorchServe
        wait_models(names, versions, addresses["management"], watched, startup, emit, ready=torchserve_ready)
    else:
        wait_models(names, versions, url, watched, startup, emit)
    ports = {"http": request.port, "grpc": request.grpc_port}
    ports |= {f"torchserve_{k}": address_port(v) for k, v in addresses.items()}
    return LocalPredictor(
        url=url, addresses=dict(addresses), models=names, layout=layout, run=run, torchserve=ts_process,
        wrapper=wrapper, cleanup=cleanup, ports=ports, threads=budget,
    )


def _start_python(
    request: _Request, cleanup: list[Path], processes: list[tuple[str, subprocess.Popen[bytes]]],
    emit: OnEvent[ServeEvent],
) -> RuntimePredictor:
    layout = resolve_source(request.source, request.mount, cleanup, emit)
    info = _checked_layout(layout, emit, "python")
    versions = archive_versions(info.entries, layout)
    run = open_run_folder(request.workdir, cleanup)
    budget = thread_budget(info.entries, runtime="python")
    emit(budget.event())
    url = f"http://{url_host(request.host)}:{request.port}"
    predictor = serve_python(
        info, run, host=request.host, port=request.port, url=url, budget=budget,
        startup_timeout=request.startup_timeout, versions=versions, cleanup=cleanup, processes=processes, emit=emit,
        metrics_port=request.metrics_port, grpc_port=request.grpc_port,
    )
    return predictor


def _check_metrics_port(metrics_port: int, host: str, taken: tuple[int | None, ...], ts_ports: TsPorts) -> None:
    if ts_ports == "config":
        raise ServeError("metrics_port moves TorchServe's metrics port, and ts_ports='config' keeps the file's ports",
                         hint="leave out one of them (--metrics-port, --ts-ports config)")
    if metrics_port in taken:
        raise ServeError(f"port {metrics_port} is both the metrics port and another port of this serve",
                         hint="pass a port of its own to --metrics-port")
    check_port(host, metrics_port, "the metrics port", "pass another port (--metrics-port)")


def _checked_layout(layout: Path, emit: OnEvent[ServeEvent], runtime: Runtime = "torchserve") -> Layout:
    """The layout, read, once `check` finds no error in it (its warnings become events)."""
    report = check(layout, runtime=runtime, pod=False)  # a local serve is not the pod
    report.raise_for_errors()
    for problem in report.warnings:
        emit(ServeEvent("warning", f"warning: {problem.message}"))
    return read_layout(layout)


def _write_run_config(run: RunFolder, info: Layout, request: _Request, emit: OnEvent[ServeEvent]) -> dict[str, str]:
    """Write the run copy of config.properties; return TorchServe's API URLs (inference, management, metrics)."""
    if request.ts_ports == "free":
        avoid = [request.port] + ([request.grpc_port] if request.grpc_port else [])
        text, addresses, remapped = free_port_config(info.config_text, info.properties, info.path, avoid=avoid,
                                                     metrics_port=request.metrics_port)
        emit(ServeEvent("ports", "TorchServe ports: " + ", ".join(remapped), details={"remapped": remapped}))
    elif request.ts_ports == "config":
        text = set_properties(info.config_text, local_paths(info.properties, info.path))
        addresses = config_addresses(info.properties)
        check_config_ports(info.properties)
    else:
        raise ValueError(f"ts_ports must be 'free' or 'config', not {request.ts_ports!r}")
    run.config.write_text(text, encoding="utf-8")
    return dict(addresses)
