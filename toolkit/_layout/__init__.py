"""The layout room: reading layouts and archives (by mar-build or by hand), `check` and `inspect`."""

from .preflight import CheckReport, Problem, check
from .read import (
    BUILD_INFO,
    CONFIG_RELPATH,
    MANIFEST,
    MODEL_STORE,
    ArchiveInfo,
    Layout,
    SnapshotEntry,
    parse_properties,
    read_archive,
    read_layout,
)
from .summary import Inspection, ModelSummary, inspect

__all__ = [
    "BUILD_INFO", "CONFIG_RELPATH", "MANIFEST", "MODEL_STORE", "ArchiveInfo", "CheckReport", "Inspection", "Layout",
    "ModelSummary", "Problem", "SnapshotEntry", "check", "inspect", "parse_properties", "read_archive", "read_layout",
]
