"""What every OCI registry client here shares: where the docker/podman credentials live, and which registries are
spoken to over plain http. Staging pushes with these (toolkit/_stage/_oci_registry.py); serve pulls with them, as
KServe's oci+fetch storage-initializer would with the same config mounted."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path


def auth_files() -> list[Path]:
    """The docker/podman auth files, in the order they are read."""
    files = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    docker = os.environ.get("DOCKER_CONFIG")
    files.append(Path(docker) / "config.json" if docker else Path.home() / ".docker" / "config.json")
    if os.environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")  # podman login's default
    return files


def is_loopback(registry: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (with or without a port): plain http is allowed there."""
    host = registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry
    host = host.strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
