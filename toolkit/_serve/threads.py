"""The handlers' torch threads on this machine: the pod's rule (toolkit._layout.workers) with this machine's CPUs.

In the pod, `render` hands the handlers MAR_BUILD_THREADS = the pod's CPUs divided by the workers of all its models;
locally serve() does the same with the CPUs this process may run on, so that a layout of several models does not
start more torch threads than there are CPUs (each handler alone would divide by its own model's workers only).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .._layout import THREADS_ENV, SnapshotEntry, pod_workers, threads_per_worker
from .._spec import Runtime
from .events import ServeEvent

Source = Literal["rule", "environment", "handlers"]


def local_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, which a container's cpuset or taskset narrows)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # macOS has no affinity mask


@dataclass(frozen=True)
class ThreadBudget:
    """Threads per worker for the handlers: ``threads`` (None: each handler decides), from ``source``: the rule
    over ``cpus`` and ``workers``, the caller's own MAR_BUILD_THREADS, or nothing to divide by ("handlers")."""

    threads: int | None
    cpus: int
    workers: int | None
    source: Source
    given: str | None = None  # the caller's MAR_BUILD_THREADS, as set

    def env(self) -> dict[str, str]:
        """What TorchServe's environment gets (nothing when the caller's value already passes through)."""
        return {THREADS_ENV: str(self.threads)} if self.source == "rule" else {}

    def event(self) -> ServeEvent:
        if self.source == "rule":
            message = (f"torch threads per worker: {self.threads} ({self.cpus} CPUs / {self.workers} workers of "
                       f"all models; {THREADS_ENV}={self.threads})")
        elif self.source == "environment":
            message = f"torch threads per worker: {THREADS_ENV}={self.given} from the environment"
        else:
            message = ("torch threads per worker: each handler chooses its own (some model of model_snapshot gives "
                       "no worker count to divide this machine's CPUs by)")
        return ServeEvent("threads", message, details=self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {"threads": self.threads, "cpus": self.cpus, "workers": self.workers, "source": self.source,
                "env": THREADS_ENV}


def thread_budget(
    entries: Iterable[SnapshotEntry], environ: Mapping[str, str] | None = None, cpus: int | None = None,
    *, runtime: Runtime = "torchserve",
) -> ThreadBudget:
    """The thread budget of a layout's models on ``cpus`` (default: this machine's), unless ``environ`` (default
    os.environ) already sets MAR_BUILD_THREADS: the caller's choice wins, as a pod's env would."""
    environ = os.environ if environ is None else environ
    cpus = cpus or local_cpus()
    workers = pod_workers(entries, runtime=runtime)
    given = environ.get(THREADS_ENV)
    if given:
        return ThreadBudget(int(given) if given.isdigit() else None, cpus, workers, "environment", given)
    if workers is None:
        return ThreadBudget(None, cpus, None, "handlers")
    return ThreadBudget(threads_per_worker(cpus, workers), cpus, workers, "rule")
