"""The client room: KServe v1 calls through the ingress gateway (Host header, auth, retries), sync and async."""

from .auth import AUTHSERVICE_COOKIE
from .client import AsyncClient, Client
from .instances import instances_from_json

__all__ = ["AUTHSERVICE_COOKIE", "AsyncClient", "Client", "instances_from_json"]
