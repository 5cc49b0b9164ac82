"""The stage room: a layout copied to where the predictor pod reads it (pvc://, s3://, oci://).

base.py is the seam (the Destination protocol and the types and rules every destination shares); pvc.py,
s3.py and oci.py implement it (oci.py with its own helpers _oci_image.py, the image's bytes, and
_oci_registry.py, the registry client); staging.py parses the URI, checks the layout and chooses the destination.
"""

from .base import (
    DEFAULT_CONCURRENCY,
    MIN_PART_SIZE,
    Destination,
    LocalFile,
    Progress,
    StagedFile,
    StageResult,
    human_size,
)
from .staging import layout_paths, parse_storage_uri, stage

__all__ = [
    "DEFAULT_CONCURRENCY", "MIN_PART_SIZE", "Destination", "LocalFile", "Progress", "StageResult", "StagedFile",
    "human_size", "layout_paths", "parse_storage_uri", "stage",
]
