"""A model's workers, as TorchServe runs them: ``minWorkers`` of them, each with the model loaded once.

A model with one worker (minWorkers 1, or none given) runs in the server's own process (``InProcess``): no
copy of a request crosses a process. A model with more runs in that many worker processes (``WorkerProcess``), as
TorchServe gives each worker a process of its own: the server process reads and answers HTTP and batches, every
worker runs its batches in parallel with the others (one Python interpreter each: tokenising and the handler's own
Python code do not share a GIL), with ``MAR_BUILD_THREADS`` torch threads (the rule divides the CPUs by the workers
of all models).

A worker process is ``python -m toolkit._runtime.workers --fd N ...``: it loads the model (toolkit/_runtime/loader.py,
from the folder the server unpacked), says ``("ready", pid)`` or ``("failed", traceback)`` on the socket it was
given, then answers each batch (a list of handling.Request) with its Answers and the handler metrics it recorded,
which the server process replays into its registry (one /metrics for all workers). It exits when the socket closes:
the server is gone, however it ended. A worker that dies while serving (killed, out of memory) answers its batch 503
and is started again, as TorchServe restarts a worker; its model's other workers serve meanwhile.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Protocol

from .._layout import THREADS_ENV, read_layout
from .._metrics import declare_layout_metrics, drain_handler_metrics, record_handler_metrics, replay_handler_metrics
from .envelope import run_enveloped
from .handling import Answer, Request, run_batch
from .loader import LoadedModel, load_model

log = logging.getLogger("toolkit.runtime")

WORKER_MODULE = "toolkit._runtime.workers"


class WorkerFailed(RuntimeError):
    """A worker process could not load its model (the message is its traceback) or ended before it was ready."""


class Lane(Protocol):
    """One worker of a model, as the batcher uses it: one batch at a time, from one thread."""

    label: str
    broken: bool

    def run(self, requests: list[Request], threads: int | None = None) -> list[Answer]: ...

    def restart(self) -> None: ...

    def close(self) -> None: ...


def set_threads() -> None:
    """torch's threads from MAR_BUILD_THREADS (the stock handlers never set them; ours read it themselves)."""
    value = os.environ.get(THREADS_ENV, "")
    if value.isdigit() and int(value) > 0:
        import torch

        torch.set_num_threads(int(value))


def run_model(model: LoadedModel, requests: list[Request]) -> list[Answer]:
    """One batch through the model's handler, with its service envelope where it has one."""
    return (run_enveloped if model.envelope else run_batch)(model, requests)


class InProcess:
    """The model's one worker, in the server's process."""

    broken = False

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.label = f"model {model.name}'s worker (in process)"

    def run(self, requests: list[Request], threads: int | None = None) -> list[Answer]:
        return run_model(self.model, requests)

    def restart(self) -> None:
        return None

    def close(self) -> None:
        return None


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process loads: model ``model`` of the layout, unpacked under ``unpack_root``."""

    layout: Path
    model: str
    unpack_root: Path
    envelope: str | None
    response_timeout_s: float = 120.0  # a worker that has not answered a batch by then is stopped and started again


class WorkerProcess:
    """One worker process of a model (started at once; ``wait_ready`` waits for its model to load)."""

    def __init__(self, spec: WorkerSpec, index: int) -> None:
        self.spec = spec
        self.index = index
        self.label = f"model {spec.model}'s worker {index}"
        self.broken = False
        self.process, self._conn = self._start()

    def _start(self) -> tuple[subprocess.Popen[bytes], Connection]:
        ours, theirs = socket.socketpair()
        cmd = [sys.executable, "-m", WORKER_MODULE, "--fd", str(theirs.fileno()), "--layout", str(self.spec.layout),
               "--model", self.spec.model, "--unpack-root", str(self.spec.unpack_root), "--index", str(self.index)]
        if self.spec.envelope:
            cmd += ["--envelope", self.spec.envelope]
        # stdout and stderr are the server's: the worker's log lines land in the same log.
        process = subprocess.Popen(cmd, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        theirs.close()
        return process, Connection(ours.detach())

    def wait_ready(self) -> None:
        """Block until the worker has loaded its model; WorkerFailed with its traceback when it could not."""
        try:
            kind, detail = self._conn.recv()
        except (EOFError, OSError):
            code = self.process.wait()
            raise WorkerFailed(f"{self.label} ended with status {code} before its model was loaded "
                               "(its log lines above say why)") from None
        if kind != "ready":
            self.process.wait()
            raise WorkerFailed(f"{self.label} could not load the model:\n{detail}")
        log.info("%s is ready (process %s)", self.label, detail)

    def run(self, requests: list[Request], threads: int | None = None) -> list[Answer]:
        timeout = self.spec.response_timeout_s
        try:
            self._conn.send((requests, threads))
            if not self._conn.poll(timeout):  # as TorchServe, a worker that does not answer is restarted
                log.error("%s did not answer a batch of %d within %g s (responseTimeout): stopping it and "
                          "starting it again", self.label, len(requests), timeout)
                self.broken = True
                self.process.kill()
                return [Answer.error(504, f"the worker did not answer within {timeout:g} s (the model's "
                                          "responseTimeout); it is being started again")] * len(requests)
            answers, metrics = self._conn.recv()
        except (EOFError, OSError):
            self.broken = True
            code = self._exit_status()
            log.error("%s died while running a batch of %d (status %s): starting it again", self.label,
                      len(requests), code)
            return [Answer.error(503, f"the worker running this request died (status {code}); it is being "
                                      "started again")] * len(requests)
        replay_handler_metrics(metrics)
        return list(answers)

    def _exit_status(self) -> int | None:
        try:
            return self.process.wait(timeout=2)  # its socket may close a moment before it is reaped
        except subprocess.TimeoutExpired:
            return None

    def restart(self) -> None:
        self.close()
        self.process, self._conn = self._start()
        self.wait_ready()
        self.broken = False

    def close(self) -> None:
        self._conn.close()  # the worker reads EOF and exits
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_workers(spec: WorkerSpec, count: int) -> list[WorkerProcess]:
    """``count`` worker processes of one model, started (they load in parallel; ``wait_ready`` waits for them)."""
    return [WorkerProcess(spec, index) for index in range(count)]


def wait_ready(workers: list[WorkerProcess]) -> list[WorkerProcess]:
    """``workers`` once every one has loaded its model; on a failure, all of them stopped and WorkerFailed."""
    try:
        for worker in workers:
            worker.wait_ready()
    except BaseException:
        for worker in workers:
            worker.close()
        raise
    return workers


def _use_threads(threads: int) -> None:
    torch = sys.modules.get("torch")
    if torch is not None and threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _serve(conn: Connection, model: LoadedModel) -> None:
    while True:
        try:
            requests, threads = conn.recv()
        except (EOFError, OSError):
            return  # the server is gone
        if threads is not None:
            _use_threads(threads)
        try:
            answers = run_model(model, requests)
        except Exception:  # a bug here, not in the handler (run_batch catches those): answer, keep serving
            log.exception("model %s: running a batch failed", model.name)
            answers = [Answer.error(500, "the runtime failed to run the batch")] * len(requests)
        conn.send((answers, drain_handler_metrics()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {WORKER_MODULE}")
    parser.add_argument("--fd", type=int, required=True, help="the socket to the server process")
    parser.add_argument("--layout", type=Path, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--unpack-root", type=Path, required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--envelope", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s %(levelname)s %(name)s [worker {args.model}/{args.index}]: %(message)s")
    conn = Connection(args.fd)
    try:
        info = read_layout(args.layout)
        entry = next(e for e in info.entries if e.name == args.model)
        declare_layout_metrics(info.properties, info.path)
        record_handler_metrics()  # the server process exports them: every worker's, in one /metrics
        set_threads()
        model = load_model(entry, args.layout, args.unpack_root, envelope=args.envelope, previous=[],
                           properties=info.properties, worker=args.index)
    except BaseException:
        conn.send(("failed", traceback.format_exc()))
        return 1
    conn.send(("ready", os.getpid()))
    _serve(conn, model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
