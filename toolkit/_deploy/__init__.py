"""The deploy room: manifests applied through the Kubernetes API, waited on, diagnosed; status and delete."""

from .apply import DeployEvent, DeployResult, deploy
from .isvc import ComponentStatus, IsvcStatus, TrafficTarget, delete, status
from .manifests import load_manifests

__all__ = [
    "ComponentStatus", "DeployEvent", "DeployResult", "IsvcStatus", "TrafficTarget", "delete", "deploy",
    "load_manifests", "status",
]
