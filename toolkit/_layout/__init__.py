"""The layout room: reading layouts and archives (by mar-build or by hand), `check` and `inspect`."""

from .preflight import TS_DEFAULT_MAX_REQUEST, CheckReport, Problem, check
from .properties import find_entry, parse_properties, set_properties, truthy
from .read import (
    BUILD_INFO,
    CONFIG_RELPATH,
    MANIFEST,
    MODEL_STORE,
    ArchiveInfo,
    Layout,
    SnapshotEntry,
    parse_snapshot,
    read_archive,
    read_layout,
)
from .summary import Inspection, ModelSummary, inspect
from .workers import THREADS_ENV, pod_workers, threads_per_worker

__all__ = [
    "BUILD_INFO", "CONFIG_RELPATH", "MANIFEST", "MODEL_STORE", "THREADS_ENV", "TS_DEFAULT_MAX_REQUEST", "ArchiveInfo",
    "CheckReport", "Inspection", "Layout", "ModelSummary", "Problem", "SnapshotEntry", "check", "find_entry", "inspect",
    "parse_properties", "parse_snapshot", "pod_workers", "read_archive", "read_layout", "set_properties",
    "threads_per_worker", "truthy",
]
