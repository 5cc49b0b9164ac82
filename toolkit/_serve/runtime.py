"""serve(..., runtime="python"): the layout served by mar-build's own runtime, no Java.

    python -m toolkit._runtime --layout LAYOUT --http-port PORT --host HOST --workdir RUN/unpacked [--grpc-port N]

The process is kserve's ModelServer with each model's handler in it, or in its worker processes where minWorkers > 1
(toolkit/_runtime); they are in its process group, stopped with it. Readiness is waited for as
for TorchServe's stack: ``GET /`` answers, then ``GET /v1/models/M`` is 200 for every model; the process exiting
first (a handler that fails to load) is a ServeError quoting its log. With a gRPC port the runtime also serves
KServe's gRPC v2 (GRPCInferenceService) there, on the same host (toolkit/_grpc_v2.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .._diagnose import plain_tail
from .._events import OnEvent
from .._layout import Layout
from .._metrics import METRICS_PORT_ENV
from .._runtime import MODULE
from .config import url_host
from .events import ServeEvent
from .processes import wrapper_env
from .readiness import Startup, wait_models, wait_wrapper
from .run import RunFolder
from .running import Running, Watched
from .threads import ThreadBudget

LOG = "runtime.log"


class RuntimePredictor(Running):
    """A running python runtime: the same API as LocalPredictor (``url``, ``models``, ``predict_url``, ``stop``,
    ``wait``, a context manager); ``metrics_url`` is the runtime's own ``/metrics`` (on its HTTP port, or on the
    metrics port when one was given), ``log_path`` its log."""

    runtime = "python"

    def __init__(self, *, url: str, models: list[str], layout: Path, run: RunFolder,
                 process: subprocess.Popen[bytes], cleanup: list[Path], ports: dict[str, int | None],
                 threads: ThreadBudget, metrics_url: str | None = None) -> None:
        self.metrics_url = metrics_url or f"{url}/metrics"
        self._process = process
        watched = [Watched("the python runtime", "python runtime", process, lambda: plain_tail(self.log_path))]
        super().__init__(url=url, models=models, layout=layout, run=run, cleanup=cleanup, ports=ports,
                         threads=threads, watched=watched)

    @property
    def log_path(self) -> Path:
        return self._run.log(LOG)

    @property
    def pids(self) -> dict[str, int]:
        return {"runtime": self._process.pid}

    def to_dict(self) -> dict[str, Any]:
        """The endpoints, ports, process id, paths and thread budget, JSON-able (``mar-build serve --json``)."""
        return {
            "runtime": self.runtime, "url": self.url, "models": list(self.models),
            "predict": {m: self.predict_url(m) for m in self.models}, "metrics_url": self.metrics_url,
            "ports": dict(self.ports), "pids": self.pids, "running": self.running, "log_path": str(self.log_path),
            "run_dir": str(self.run_dir), "layout": str(self.layout), "threads": self.threads.to_dict(),
        }


def start_runtime(layout: Path, run: RunFolder, host: str, port: int, env: dict[str, str],
                  grpc_port: int | None = None) -> subprocess.Popen[bytes]:
    """``python -m toolkit._runtime`` on the layout, in its own session, logging to RUN/logs/runtime.log; gRPC v2
    on ``grpc_port`` when given."""
    cmd = [sys.executable, "-m", MODULE, "--layout", str(layout), "--http-port", str(port), "--host", host,
           "--workdir", str(run.path / "unpacked"), "--parent-pid", str(os.getpid())]
    cmd += [] if grpc_port is None else ["--grpc-port", str(grpc_port)]
    with open(run.log(LOG), "ab") as out:
        return subprocess.Popen(cmd, cwd=run.path, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def runtime_env(run: RunFolder, extra: dict[str, str]) -> dict[str, str]:
    """The runtime's environment: ours with this toolkit importable, its own temp folder, the thread budget, the
    v1 envelope KServe sets (it matters only where the layout turns env config on), no model hub."""
    env = {**wrapper_env(), "TMPDIR": str(run.path / "tmp"), "TS_SERVICE_ENVELOPE": "kserve", **extra}
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def serve_python(
    info: Layout, run: RunFolder, *, host: str, port: int, url: str, budget: ThreadBudget, startup_timeout: float,
    versions: dict[str, str | None], cleanup: list[Path], processes: list[tuple[str, subprocess.Popen[bytes]]],
    emit: OnEvent[ServeEvent], metrics_port: int | None = None, grpc_port: int | None = None,
) -> RuntimePredictor:
    """Start the python runtime on a checked layout and return once every model answers ready; ``metrics_port``
    gives its metrics a listener of their own (MAR_BUILD_METRICS_PORT), as TorchServe has one; ``grpc_port`` turns
    on its gRPC v2 server."""
    startup = Startup(run, time.monotonic(), startup_timeout)
    extra = budget.env() | ({METRICS_PORT_ENV: str(metrics_port)} if metrics_port is not None else {})
    process = start_runtime(info.path, run, host, port, runtime_env(run, extra), grpc_port)
    processes.append(("python runtime", process))
    wait_wrapper(process, url, startup, log_name=LOG, what="the python runtime")
    emit(ServeEvent("runtime-started", f"python runtime listening on {url}", details={"url": url}))
    names = info.model_names()
    wait_models(names, versions, url, [("the python runtime", process, LOG)], startup, emit)
    metrics_url = None if metrics_port is None else f"http://{url_host(host)}:{metrics_port}/metrics"
    return RuntimePredictor(url=url, models=names, layout=info.path, run=run, process=process, cleanup=cleanup,
                            ports={"http": port, "grpc": grpc_port, "metrics": metrics_port}, threads=budget,
                            metrics_url=metrics_url)
