"""How many CPUs a worker may use, and how many torch threads it runs.

Torch starts one thread per core it sees, and a container sees every core of the node: in a pod limited to 2 CPUs
on a 64-core node, each worker would run 64 threads taking turns on 2 CPUs. So the count comes from the toolkit
(which knows every model of the pod) or, failing that, from the cgroup quota.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

# The toolkit computes the pod-wide threads per worker (the pod's CPUs over the workers of all its models) and
# hands it over under this name: `render` in the InferenceService's predictor env, `serve` in TorchServe's.
THREADS_ENV = "MAR_BUILD_THREADS"
CGROUP = Path("/sys/fs/cgroup")


def available_cpus(cgroup: Path = CGROUP) -> int:
    """CPUs this process may use: its affinity, capped by a cgroup CPU quota (a pod's ``limits.cpu``, rounded up).

    os.cpu_count() sees every core of the node: in a pod limited to 2 CPUs that would mean dozens of threads.
    """
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_cpu_quota(cgroup)
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def _cgroup_cpu_quota(cgroup: Path) -> float | None:
    """The CPU quota in CPUs (``limits.cpu``), or None when there is none or it cannot be read."""
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]  # cgroup v2: "200000 100000" or "max 100000"
    except (OSError, ValueError):
        try:
            quota = (cgroup / "cpu" / "cpu.cfs_quota_us").read_text().strip()  # cgroup v1: -1 when unlimited
            period = (cgroup / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if quota in ("max", "-1"):
        return None
    try:
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


def torch_threads(
    options: Mapping[str, Any],
    max_workers: Any,
    environ: Mapping[str, str] = os.environ,
    cpus: Callable[[], int] | None = None,
) -> int:
    """Torch threads for one worker of this model, the first that is set of:

    1. ``options.threads`` (mar.yaml): the model's owner decided;
    2. ``MAR_BUILD_THREADS`` (the environment): the toolkit's pod-wide answer, the CPUs over the workers of every
       model in the pod;
    3. ``cpus() // max_workers``, ``cpus`` by default ``available_cpus``: this model's own share. The fallback
       exists for a manifest mar-build did not render (hand-written, or by another tool), which sets no
       ``MAR_BUILD_THREADS``: without it each worker would take torch's default, a thread per core of the node.
       It sees only this model's workers, so it matches the pod-wide rule for a layout of one model and
       oversubscribes the CPUs when several models share the pod.

    Raises ValueError when ``options.threads`` or ``MAR_BUILD_THREADS`` is not a positive integer.
    """
    if options.get("threads") is not None:
        return _positive(options["threads"], "options.threads")
    if environ.get(THREADS_ENV):
        return _positive(environ[THREADS_ENV], THREADS_ENV)
    count = cpus() if cpus is not None else available_cpus()
    return max(1, count // max(1, int(max_workers or 1)))


def _positive(value: Any, name: str) -> int:
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if isinstance(value, bool) or count < 1 or str(count) != str(value).strip():
        raise ValueError(f"{name} must be a positive integer (torch threads per worker), not {value!r}")
    return count
