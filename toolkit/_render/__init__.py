"""The render room: a layout -> the InferenceService and what it needs (Secret, ServiceAccount, PVC, ServingRuntime).

renderer (the orchestration: render()), checks (value checks), resources (requests, limits, quantities), threads
(the pod's thread budget), s3 (S3Credentials and the Secret), pvc, runtimes (which runtime serves, and the
ServingRuntime render brings), facts (what a layout says), manifests (the result: Manifests, Endpoint).
"""

from .._spec import DEPLOYMENT_MODES
from .checks import check_storage_uri
from .manifests import Endpoint, Manifests
from .pvc import ACCESS_MODES, PvcRequest
from .renderer import SCALE_METRICS, render
from .resources import parse_quantity
from .runtimes import RUNTIMES
from .s3 import S3Credentials

__all__ = [
    "ACCESS_MODES", "DEPLOYMENT_MODES", "RUNTIMES", "SCALE_METRICS", "Endpoint", "Manifests", "PvcRequest",
    "S3Credentials", "check_storage_uri", "parse_quantity", "render",
]
