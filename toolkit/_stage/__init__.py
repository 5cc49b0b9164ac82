"""The stage room: a layout copied to where the predictor pod reads it (pvc://, s3://)."""

from .staging import DEFAULT_CONCURRENCY, MIN_PART_SIZE, Progress, StageResult, human_size, stage

__all__ = ["DEFAULT_CONCURRENCY", "MIN_PART_SIZE", "Progress", "StageResult", "human_size", "stage"]
