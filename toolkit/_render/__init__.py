"""The render room: a layout -> the InferenceService and what it needs (Secret, ServiceAccount, PVC, ServingRuntime).

renderer (the orchestration: render()), checks (value checks), resources (requests, limits, quantities), threads
(the pod's thread budget), s3 (S3Credentials and the Secret), pvc, runtimes (which runtime serves, and the
ServingRuntime render brings), facts (what a layout says, and the preflight render runs), monitoring (PodMonitor,
ServiceMonitor, the dashboard ConfigMap, the PrometheusRule), manifests (the result: Manifests, Endpoint).
"""

from .._spec import DEPLOYMENT_MODES
from .checks import check_storage_uri
from .manifests import Endpoint, Manifests
from .monitoring import MONITORS, Dashboard, layout_dashboard
from .pvc import ACCESS_MODES, PvcRequest
from .renderer import SCALE_METRICS, render
from .resources import parse_quantity
from .runtimes import RUNTIMES
from .s3 import S3Credentials

__all__ = [
    "ACCESS_MODES", "DEPLOYMENT_MODES", "MONITORS", "RUNTIMES", "SCALE_METRICS", "Dashboard", "Endpoint", "Manifests",
    "PvcRequest", "S3Credentials", "check_storage_uri", "layout_dashboard", "parse_quantity", "render",
]
