"""What TorchServe's and KServe's logs and statuses mean: one table of rules, read by `serve` and `status`."""

from .cluster import (
    Condition,
    Diagnosis,
    LogTail,
    blocking_failure,
    collect_pods,
    condense,
    conditions_of,
    diagnose,
    event_line,
    model_status_of,
    not_ready_error,
)
from .facts import Facts, Hint
from .pods import KSERVE_CONTAINER, STORAGE_INITIALIZER, ContainerReport, PodReport, pod_report, pod_summary
from .rules import RULES, Rule, find_hints, hints_of
from .ts_logs import WorkerLog, explain_death, log_tail, plain_tail, run_hints

__all__ = [
    "KSERVE_CONTAINER", "RULES", "STORAGE_INITIALIZER", "Condition", "ContainerReport", "Diagnosis", "Facts", "Hint",
    "LogTail", "PodReport", "Rule", "WorkerLog", "blocking_failure", "collect_pods", "condense", "conditions_of",
    "diagnose", "event_line", "explain_death", "find_hints", "hints_of", "log_tail", "model_status_of",
    "not_ready_error", "plain_tail", "pod_report", "pod_summary", "run_hints",
]
