"""The render room: a layout -> the InferenceService and what it needs (Secret, ServiceAccount, PVC)."""

from .renderer import (
    ACCESS_MODES,
    DEPLOYMENT_MODES,
    SCALE_METRICS,
    Endpoint,
    Manifests,
    PvcRequest,
    S3Credentials,
    render,
)

__all__ = [
    "ACCESS_MODES", "DEPLOYMENT_MODES", "SCALE_METRICS", "Endpoint", "Manifests", "PvcRequest", "S3Credentials",
    "render",
]
