"""What a running local predictor is, whichever runtime serves it: its processes, watched and stopped, its run
folder and the folders to remove at stop. LocalPredictor (TorchServe + the wrapper) and RuntimePredictor (the
python runtime) add their own addresses and logs on top."""

from __future__ import annotations

import atexit
import contextlib
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .processes import group_members, stop_process
from .readiness import POLL_S
from .run import RunFolder
from .threads import ThreadBudget

R = TypeVar("R", bound="Running")


@dataclass(frozen=True)
class Watched:
    """One process a predictor started: ``name`` for messages, ``label`` for stop's log, ``tail`` its last log
    lines (for the error when it exits on its own)."""

    name: str
    label: str
    process: subprocess.Popen[bytes]
    tail: Callable[[], list[str]]


class Running:
    """The processes of a predictor (``watched`` in the order they are checked; stopped in reverse), a context
    manager; ``wait()`` blocks until stop() or until one of them exits on its own (ServeError)."""

    def __init__(
        self, *, url: str, models: list[str], layout: Path, run: RunFolder, cleanup: list[Path],
        ports: dict[str, int | None], threads: ThreadBudget, watched: list[Watched],
    ) -> None:
        self.url = url
        self.models = models
        self.layout = layout
        self.run_dir = run.path
        self.ports = ports
        self.threads = threads
        self._run = run
        self._cleanup = cleanup
        self._watched = watched
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        _LIVE.add(self)

    def predict_url(self, model: str) -> str:
        return f"{self.url}/v1/models/{model}:predict"

    def process_ids(self) -> list[int]:
        """Every live process it runs, children included (TorchServe's Java frontend and workers, say)."""
        ids: list[int] = []
        for w in self._watched:
            ids += group_members(w.process.pid) or ([w.process.pid] if w.process.poll() is None else [])
        return ids

    @property
    def running(self) -> bool:
        return not self._stopped.is_set() and all(w.process.poll() is None for w in self._watched)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stop() is called (True) or ``timeout`` seconds pass (False).

        Raises ServeError, after stopping the rest, when one of its processes exits on its own.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        # Polled with sleep, not Event.wait(POLL_S): a Ctrl-C that lands inside Event.wait's lock handling can surface
        # as "RuntimeError: release unlocked lock" instead of KeyboardInterrupt (seen in the SIGINT test, rarely).
        while not self._stopped.is_set():
            time.sleep(POLL_S)
            if self._stopped.is_set():
                break
            for w in self._watched:
                if w.process.poll() is not None:
                    error = self._run.error(f"{w.name} exited with status {w.process.returncode}", log_tail=w.tail())
                    self.stop()
                    raise error
            if deadline is not None and time.monotonic() >= deadline:
                return False
        return True

    def stop(self) -> None:
        """Stop its processes, the last started first (TERM to each process group, KILL after a grace period),
        and remove its temporary folders. Idempotent."""
        with self._lock:
            if self._stopped.is_set():
                return
            for w in reversed(self._watched):
                stop_process(w.process, w.label)
            for path in self._cleanup:
                shutil.rmtree(path, ignore_errors=True)
            self._stopped.set()
            _LIVE.discard(self)

    def __enter__(self: R) -> R:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {state} {self.url} models={self.models}>"


# A notebook kernel that exits normally stops what it started. Strong references: a handle dropped without
# stop() must still be found here (the wrapper's and the runtime's parent watchdogs cover a kernel that is killed).
_LIVE: set[Running] = set()


@atexit.register
def _stop_all() -> None:
    for predictor in list(_LIVE):
        with contextlib.suppress(Exception):
            predictor.stop()
