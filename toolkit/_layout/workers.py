"""The one rule for how many workers a pod runs and how many torch threads each of them gets.

Every model of a layout runs in the same predictor pod, on the CPUs of its ``limits.cpu``. TorchServe starts
``minWorkers`` workers per model from model_snapshot (it goes up to ``maxWorkers`` only when its management API is
asked to scale, which neither KServe nor mar-build does); each worker holds its own copy of the model and runs one
batch at a time. Torch threads beyond the CPUs only take turns on them, so each worker gets the pod's CPUs
divided by the workers of *all* models, at least one. `render` warns with this rule and hands the answer to the
handlers in the pod (``MAR_BUILD_THREADS`` in the predictor's environment); `serve` does the same for the CPUs of
this machine. A handler started without that variable (a manifest mar-build did not render) divides by its own
model's ``maxWorkers``: never more threads than this rule gives for a layout of one model.
"""

from __future__ import annotations

from collections.abc import Iterable

from .._spec import Runtime
from .read import SnapshotEntry

THREADS_ENV = "MAR_BUILD_THREADS"


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def pod_workers(entries: Iterable[SnapshotEntry], *, runtime: Runtime = "torchserve") -> int | None:
    """The workers that run the layout's models: the minWorkers each model starts, summed over the models (None on
    TorchServe when some entry has none: it then starts one worker per CPU or GPU it sees). The python runtime
    serves the first entry of a name only, and starts one worker, in its own process, where minWorkers is missing."""
    total = 0
    seen: set[str] = set()
    for entry in entries:
        if runtime == "python" and entry.name in seen:
            continue
        seen.add(entry.name)
        count = _count(entry.settings.get("minWorkers"))
        if count is None and runtime != "python":
            return None
        total += count or 1
    return total or None


def threads_per_worker(cpus: int, workers: int) -> int:
    """Torch threads for each of ``workers`` workers sharing ``cpus`` CPUs: at least one."""
    return max(1, cpus // max(1, workers))
