"""The pod's thread budget: every model's workers share the CPUs of ``limits.cpu``.

The rule is ``toolkit._layout.workers``: the workers of all models together (``pod_workers``), and the torch threads
each gets (``threads_per_worker``). render warns when the workers outnumber the CPUs and hands the answer to the
handlers in ``MAR_BUILD_THREADS``: without it, each handler divides the CPUs by its own model's workers only, and
two models in one pod run twice as many threads as there are CPUs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from .._layout import THREADS_ENV, SnapshotEntry, pod_workers, threads_per_worker
from .._spec import Runtime
from .resources import cpu_count

log = logging.getLogger("toolkit.render")


def thread_budget(
    entries: Sequence[SnapshotEntry], cpu_limit: str | None, *, gpus: int, runtime: Runtime = "torchserve"
) -> int | None:
    """Torch threads for each worker of the pod, or None when the count is unknown (no layout, no CPU limit, a
    model whose snapshot entry gives no worker counts). Logs a warning when the workers outnumber the CPUs."""
    if not entries or cpu_limit is None:
        return None
    workers = pod_workers(entries, runtime=runtime)
    if workers is None:
        return None
    cpus = cpu_count(cpu_limit)
    threads = threads_per_worker(cpus, workers)
    # GPU workers wait on the device, not on the CPUs.
    if not gpus:
        _advise(entries, workers, cpus, cpu_limit, threads, runtime)
    return threads


def _advise(entries: Sequence[SnapshotEntry], workers: int, cpus: int, cpu_limit: str, threads: int,
            runtime: Runtime) -> None:
    each = ", ".join(f"{e.name}: {pod_workers([e], runtime=runtime)}" for e in entries)
    if workers > cpus:
        log.warning(
            "the layout's models start %d worker(s) in all (%s) on limits.cpu %s: they take turns on %d CPU(s), "
            "with %d torch thread(s) each (%s), and each holds its own copy of the model within the memory limit; "
            "lower serving.min_workers so that the models' workers add up to %d at most, and rebuild, or raise "
            "the CPU limit (--cpu-limit %d)",
            workers, each, cpu_limit, cpus, threads, THREADS_ENV, cpus, workers,
        )
    elif workers < cpus:
        # A valid choice (more threads per worker), said at -v: on 2 CPUs one single-threaded worker per CPU
        # served 1.2-1.5 x one worker with both threads (benchmarks/defaults.py).
        log.info(
            "the layout's models start %d worker(s) in all (%s) on limits.cpu %s, with %d torch threads each: "
            "one single-threaded worker per CPU (serving.min_workers adding up to %d) usually "
            "serves more under load, if the memory limit holds that many copies of the model",
            workers, each, cpu_limit, threads, cpus,
        )


def predictor_env(env: Mapping[str, str], threads: int | None) -> list[tuple[str, str]]:
    """The predictor container's environment: the caller's variables in their order, then MAR_BUILD_THREADS
    unless the caller set it (theirs wins: a deliberate choice, e.g. for a model that wants fewer threads)."""
    pairs = list(env.items())
    if threads is not None and THREADS_ENV not in env:
        pairs.append((THREADS_ENV, str(threads)))
    return pairs
