"""What TorchServe's and KServe's logs and statuses mean: one table of rules, read by `serve` and `status`."""

from .cluster import (
    KSERVE_CONTAINER,
    Condition,
    Diagnosis,
    PodReport,
    blocking_failure,
    collect_pods,
    conditions_of,
    diagnose,
    find_hints,
    model_status_of,
    not_ready_error,
    pod_summary,
)
from .ts_logs import WorkerLog, log_tail, plain_tail

__all__ = [
    "KSERVE_CONTAINER", "Condition", "Diagnosis", "PodReport", "WorkerLog", "blocking_failure", "collect_pods",
    "conditions_of", "diagnose", "find_hints", "log_tail", "model_status_of", "not_ready_error", "plain_tail",
    "pod_summary",
]
