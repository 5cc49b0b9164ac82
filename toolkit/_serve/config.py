"""TorchServe's addresses and ports, and the run copy of config.properties that moves them to free loopback ports.

An address in config.properties (``inference_address=http://0.0.0.0:8085``) is where TorchServe *binds*;
``local_url`` turns it into a URL a client on this machine can call. Where an address names no port, TorchServe
listens on its connector's default (pytorch/serve frontend/server/src/main/java/org/pytorch/serve/util/Connector.java,
``parse``: inference 80 or 443 with https, management 8081 or 8444, metrics 8082 or 8445).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from .._errors import ServeError
from .._layout import MODEL_STORE, TS_DEFAULT_MAX_REQUEST, parse_properties, parse_snapshot, set_properties
from .._metrics import METRICS_CONFIG_KEY, layout_metrics_file
from .._v2_metadata import V2Signature, archive_v2_signature

Connector = Literal["inference", "management", "metrics"]

# TorchServe's defaults when config.properties does not set the key (ConfigManager).
TS_ADDRESS_DEFAULTS = {
    "inference_address": "http://127.0.0.1:8080",
    "management_address": "http://127.0.0.1:8081",
    "metrics_address": "http://127.0.0.1:8082",
}
TS_GRPC_DEFAULTS = {"grpc_inference_port": 7070, "grpc_management_port": 7071}
_CONNECTOR_OF_KEY: dict[str, Connector] = {
    "inference_address": "inference", "management_address": "management", "metrics_address": "metrics",
}
# Connector.parse: the port of an address that names none, (http, https).
_DEFAULT_PORTS: dict[Connector, tuple[int, int]] = {
    "inference": (80, 443), "management": (8081, 8444), "metrics": (8082, 8445),
}


def url_host(host: str) -> str:
    """A bind host as the host part of a URL: 0.0.0.0 (all interfaces) is called at loopback, IPv6 in brackets."""
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"[{host}]" if ":" in host else host


def address_port(address: str, connector: Connector = "inference") -> int:
    """The port TorchServe listens on for ``address``: the one it names, else the connector's default."""
    parts = urlsplit(address if "//" in address else "http://" + address)
    if parts.port is not None:
        return parts.port
    plain, tls = _DEFAULT_PORTS[connector]
    return tls if parts.scheme == "https" else plain


def local_url(address: str, connector: Connector = "inference") -> str:
    """An address TorchServe binds (``http://0.0.0.0:8085``) as a URL a client on this machine can call
    (``http://127.0.0.1:8085``); an address without a port gets the port TorchServe listens on for it."""
    parts = urlsplit(address if "//" in address else "http://" + address)
    netloc = f"{url_host(parts.hostname or '')}:{address_port(address, connector)}"
    return urlunsplit((parts.scheme or "http", netloc, "", "", ""))


def config_addresses(props: Mapping[str, str]) -> dict[str, str]:
    """The URLs of TorchServe's inference, management and metrics APIs with this config, as called from here."""
    return {
        connector: local_url(props.get(key, TS_ADDRESS_DEFAULTS[key]), connector)
        for key, connector in _CONNECTOR_OF_KEY.items()
    }


def config_ports(props: Mapping[str, str]) -> list[tuple[str, str, int]]:
    """(key, bind host, port) of every port TorchServe will listen on with this config."""
    ports = []
    for key, default in TS_ADDRESS_DEFAULTS.items():
        address = props.get(key, default)
        host = urlsplit(address if "//" in address else "http://" + address).hostname or "0.0.0.0"
        ports.append((key, host, address_port(address, _CONNECTOR_OF_KEY[key])))
    for key, default_port in TS_GRPC_DEFAULTS.items():
        try:
            ports.append((key, "127.0.0.1", int(props.get(key, default_port))))
        except ValueError:
            continue
    return ports


def check_config_ports(props: Mapping[str, str]) -> None:
    """Raise ServeError when a port of this config is taken (serving with the config's own ports)."""
    seen: set[int] = set()
    for key, host, port in config_ports(props):
        if port in seen:
            continue
        seen.add(port)
        check_port(host, port, f"TorchServe's {key} in config.properties",
                   "serve with free ports instead (ts_ports='free', --ts-ports free)")


def free_port_config(
    text: str, props: Mapping[str, str], layout: Path, avoid: Sequence[int], metrics_port: int | None = None
) -> tuple[str, dict[str, str], list[str]]:
    """config.properties with TorchServe's ports moved to free loopback ports (the metrics API to ``metrics_port``
    when given), model_store and metrics_config at the layout: (the text, the API URLs, one "key old -> new" line
    per port)."""
    keys = config_ports(props)
    by_port: dict[int, int] = {}
    if metrics_port is not None:
        by_port[address_port(props.get("metrics_address", TS_ADDRESS_DEFAULTS["metrics_address"]), "metrics")] = (
            metrics_port
        )
    fresh = iter(free_ports(len({port for _, _, port in keys}), [*avoid, *([metrics_port] if metrics_port else [])]))
    values: dict[str, str] = {}
    remapped: list[str] = []
    for key, _, port in keys:
        if port not in by_port:  # inference and management may share one port; keep them sharing
            by_port[port] = next(fresh)
        new = by_port[port]
        if key in TS_ADDRESS_DEFAULTS:
            scheme = urlsplit(props.get(key, TS_ADDRESS_DEFAULTS[key])).scheme or "http"
            values[key] = f"{scheme}://127.0.0.1:{new}"
        else:
            values[key] = str(new)
        remapped.append(f"{key} {port} -> {new}")
    for key in ("grpc_inference_address", "grpc_management_address"):
        if key in props:
            values[key] = "127.0.0.1"
    values["model_store"] = str(layout / MODEL_STORE)
    values |= local_paths(props, layout)
    addresses: dict[str, str] = {connector: values[key] for key, connector in _CONNECTOR_OF_KEY.items()}
    note = "set by mar-build serve (a run copy; the layout's file is unchanged)"
    return set_properties(text, values, comment=note), addresses, remapped


def local_paths(props: Mapping[str, str], layout: Path) -> dict[str, str]:
    """The run copy's metrics_config: the pod's /mnt/models/config/metrics.yaml as the layout's own file (TorchServe
    takes the key from no flag, and a missing file costs every metric). Empty when the key names no layout file."""
    path = layout_metrics_file(props, layout)
    return {} if path is None else {METRICS_CONFIG_KEY: str(path)}


def check_port(host: str, port: int, what: str, fix: str) -> None:
    """Raise ServeError naming ``what`` and ``fix`` when something listens on host:port."""
    if not port_free(host, port):
        raise ServeError(
            f"port {port} ({what}) is in use on {host}",
            hint=f"{fix}, or stop what listens there (`ss -ltnp 'sport = :{port}'` shows it)",
        )


def port_free(host: str, port: int) -> bool:
    """True when a server could listen on host:port now (an active listener makes it False; TIME_WAIT does not)."""
    bind_host = "" if host in ("0.0.0.0", "") else host
    family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((bind_host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_ports(count: int, avoid: Sequence[int] = ()) -> list[int]:
    """``count`` distinct free loopback ports, none of ``avoid``."""
    # Held open together so that the same port is not handed out twice; ``avoid`` are ports we are about to bind
    # ourselves (the wrapper's), which the kernel may hand out again while nobody listens on them yet.
    sockets: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
            if port not in avoid:
                ports.append(port)
        return ports
    finally:
        for s in sockets:
            s.close()


def read_wrapper_config(path: Path) -> tuple[list[str], str, str]:
    """(model names, inference URL, management URL) from config.properties, as the pod's wrapper reads them."""
    props = parse_properties(path.read_text(encoding="utf-8"))
    _, entries = parse_snapshot(props.get("model_snapshot"), [])
    names = list(dict.fromkeys(e.name for e in entries))
    # TorchServe's defaults where the keys are missing, as the pod's wrapper (and TorchServe's ConfigManager) use.
    addresses = config_addresses(props)
    return names, addresses["inference"], addresses["management"]


def read_max_request_size(path: Path) -> int:
    """The largest request body TorchServe takes (max_request_size), which the wrapper enforces in front of it."""
    value = parse_properties(path.read_text(encoding="utf-8")).get("max_request_size", "")
    return int(value) if value.strip().isdigit() else TS_DEFAULT_MAX_REQUEST


def read_v2_signatures(path: Path, model_store: Path | None = None) -> dict[str, V2Signature]:
    """What each model answers at GET /v2/models/M, from its archive in the model store (given, else the config's
    ``model_store``, else the layout's model-store/ beside config/), the first snapshot version of a name."""
    props = parse_properties(path.read_text(encoding="utf-8"))
    store = model_store or Path(props.get("model_store") or path.parent.parent / MODEL_STORE)
    _, entries = parse_snapshot(props.get("model_snapshot"), [])
    signatures: dict[str, V2Signature] = {}
    for entry in entries:
        if entry.name not in signatures:
            signatures[entry.name] = archive_v2_signature(store / (entry.mar_name or f"{entry.name}.mar"))
    return signatures
