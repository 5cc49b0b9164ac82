"""The deploy room: manifests applied through the Kubernetes API, waited on, diagnosed; status and delete."""

from .apply import DeployEvent, DeployResult, IsvcStatus, delete, deploy, load_manifests, status

__all__ = ["DeployEvent", "DeployResult", "IsvcStatus", "delete", "deploy", "load_manifests", "status"]
