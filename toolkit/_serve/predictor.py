"""serve(): run a layout locally exactly as KServe's predictor pod runs it.

The pod (FACTS.md, "The predictor pod") starts TorchServe with the runtime's arguments and, in front of it, a
kserve wrapper on port 8080. Locally the same two processes run:

    TorchServe   torchserve --start --foreground --ncs --model-store=LAYOUT/model-store \
                            --ts-config=RUN/config.properties
    the wrapper  python -m toolkit._serve.wrapper --config RUN/config.properties --http-port PORT  (kserve ModelServer)

Each in its own session (process group), so that stopping kills all it started (Java frontend and Python
workers included) and a Ctrl-C in a terminal reaches only us, who stop the wrapper first, then TorchServe.
TorchServe gets its own TMPDIR (its PID file lives there), its own log folder and, unless ``ts_ports="config"``,
a copy of config.properties whose ports are free loopback ports: the pod's 8085/8082/7070/7071 would clash
between instances. The user's layout is never written to.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx

from .._diagnose import WorkerLog, log_tail, plain_tail
from .._errors import ArchiveError, LayoutError, ServeError
from .._layout import CONFIG_RELPATH, MODEL_STORE, check, read_archive, read_layout, set_properties
from .._uri import StorageUri, parse_storage_uri
from . import initializer

log = logging.getLogger("toolkit.serve")

JAVA_MAJOR = 17
JAVA_HINT = (
    "install Java 17: `apt-get install openjdk-17-jre-headless` (Debian/Ubuntu; `brew install openjdk@17` on "
    "macOS), or point JAVA_HOME at a Java 17+ installation"
)
# TorchServe's defaults when config.properties does not set the key (ConfigManager).
TS_ADDRESS_DEFAULTS = {
    "inference_address": "http://127.0.0.1:8080",
    "management_address": "http://127.0.0.1:8081",
    "metrics_address": "http://127.0.0.1:8082",
}
TS_GRPC_DEFAULTS = {"grpc_inference_port": 7070, "grpc_management_port": 7071}
STOP_GRACE_S = 15.0
POLL_S = 0.25

TsPorts = Literal["free", "config"]
EventKind = Literal[
    "download", "warning", "ports", "torchserve-started", "wrapper-started", "model-loading", "model-ready"
]


@dataclass(frozen=True)
class ServeEvent:
    """One step of serve()'s progress, for a callback to render; ``str(event)`` is the line to show."""

    kind: EventKind
    message: str
    model: str | None = None
    seconds: float | None = None

    def __str__(self) -> str:
        return self.message


OnEvent = Callable[[ServeEvent], None]


# --------------------------------------------------------------------------------------------------------------
# The handle


class LocalPredictor:
    """A running local predictor: TorchServe and the kserve wrapper in front of it.

    ``url`` is the wrapper (what the pod serves on 8080); ``torchserve_url`` TorchServe's inference address;
    ``metrics_url`` its Prometheus endpoint; ``models`` the ready model names; ``log_path`` TorchServe's log;
    ``layout`` the folder served (for an s3:// source, the download, removed at stop).
    Use it as a context manager, or call ``stop()``; ``wait()`` blocks until it stops.
    """

    def __init__(
        self,
        *,
        url: str,
        torchserve_url: str,
        management_url: str,
        metrics_url: str,
        models: list[str],
        layout: Path,
        run_dir: Path,
        torchserve: subprocess.Popen[bytes],
        wrapper: subprocess.Popen[bytes],
        cleanup: list[Path],
    ) -> None:
        self.url = url
        self.torchserve_url = torchserve_url
        self.management_url = management_url
        self.metrics_url = metrics_url
        self.models = models
        self.layout = layout
        self.run_dir = run_dir
        self._torchserve = torchserve
        self._wrapper = wrapper
        self._cleanup = cleanup
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        _LIVE.add(self)

    @property
    def log_path(self) -> Path:
        return self.run_dir / "logs" / "ts_log.log"

    @property
    def wrapper_log_path(self) -> Path:
        return self.run_dir / "logs" / "wrapper.log"

    @property
    def pids(self) -> dict[str, int]:
        """Process (and process group) ids of what this predictor started: ``torchserve`` and ``wrapper``."""
        return {"torchserve": self._torchserve.pid, "wrapper": self._wrapper.pid}

    def process_ids(self) -> list[int]:
        """Every live process it runs: TorchServe (launcher, Java frontend, Python workers) and the wrapper."""
        ids: list[int] = []
        for proc in (self._torchserve, self._wrapper):
            ids += group_members(proc.pid) or ([proc.pid] if proc.poll() is None else [])
        return ids

    @property
    def running(self) -> bool:
        return not self._stopped.is_set() and self._torchserve.poll() is None and self._wrapper.poll() is None

    def predict_url(self, model: str) -> str:
        return f"{self.url}/v1/models/{model}:predict"

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stop() is called (True) or ``timeout`` seconds pass (False).

        Raises ServeError, after stopping the rest, when TorchServe or the wrapper exits on its own.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stopped.wait(POLL_S):
            for name, proc, logfile in (
                ("TorchServe", self._torchserve, self.log_path),
                ("the kserve wrapper", self._wrapper, self.wrapper_log_path),
            ):
                if proc.poll() is not None:
                    tail = log_tail(logfile) if name == "TorchServe" else plain_tail(logfile)
                    self.stop()
                    raise ServeError(f"{name} exited with status {proc.returncode}", log_tail=tail)
            if deadline is not None and time.monotonic() >= deadline:
                return False
        return True

    def stop(self) -> None:
        """Stop the wrapper, then TorchServe (TERM to each process group, KILL after a grace period). Idempotent."""
        with self._lock:
            if self._stopped.is_set():
                return
            _stop_process(self._wrapper, "wrapper")
            _stop_process(self._torchserve, "TorchServe")
            for path in self._cleanup:
                shutil.rmtree(path, ignore_errors=True)
            self._stopped.set()
            _LIVE.discard(self)

    def __enter__(self) -> LocalPredictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LocalPredictor {state} {self.url} models={self.models}>"


# A notebook kernel that exits normally stops what it started. Strong references: a handle dropped without
# stop() must still be found here (the wrapper's watchdog covers a kernel that is killed).
_LIVE: set[LocalPredictor] = set()


@atexit.register
def _stop_all() -> None:
    for predictor in list(_LIVE):
        with contextlib.suppress(Exception):
            predictor.stop()


# --------------------------------------------------------------------------------------------------------------
# serve()


def serve(
    source: str | Path,
    *,
    port: int = 8080,
    host: str = "127.0.0.1",
    grpc_port: int | None = None,
    ts_ports: TsPorts = "free",
    workdir: str | Path | None = None,
    mount: str | Path | None = None,
    startup_timeout: float = 300.0,
    torchserve: str | Path | None = None,
    on_event: OnEvent | None = None,
) -> LocalPredictor:
    """Start TorchServe and the kserve wrapper on a layout, as the predictor pod does; return when every model is ready.

    ``source`` is a layout folder, an ``s3://BUCKET/PREFIX`` URI (downloaded with kserve_storage, as the
    storage-initializer does; AWS_ENDPOINT_URL and the AWS_* credentials apply) or ``pvc://CLAIM/PATH`` with
    ``mount`` the folder where the claim is mounted. ``port``/``host``: the wrapper's HTTP address (the pod's 8080);
    ``grpc_port`` turns on kserve's gRPC server. ``ts_ports="free"`` moves TorchServe's ports to free loopback ports
    in a run copy of config.properties; ``"config"`` keeps the file's ports. ``workdir`` keeps the run folder (config
    copy, logs) instead of a temporary one removed at stop. ``torchserve`` is the `torchserve` script to run
    (e.g. from a venv with the TorchServe release of the pod's image, 0.9.0); default: the one beside this Python.
    ``on_event`` receives ServeEvents.

    Raises LayoutError when the layout fails `check`, ServeError for missing Java, a port in use, a model that fails
    to load or TorchServe not ready within ``startup_timeout`` seconds (with the log lines that explain it).
    """
    emit = _emitter(on_event)
    _check_java()
    torchserve_exe = _find_torchserve(torchserve)
    _check_port(host, port, "the wrapper's HTTP port", "pass another port (--port)")
    if grpc_port is not None:
        _check_port(host, grpc_port, "the wrapper's gRPC port", "pass another port (--grpc-port)")

    cleanup: list[Path] = []
    processes: list[subprocess.Popen[bytes]] = []
    try:
        layout = _resolve_source(source, mount, cleanup, emit)
        report = check(layout)
        report.raise_for_errors()
        for problem in report.warnings:
            emit(ServeEvent("warning", f"warning: {problem.message}"))
        info = read_layout(layout)
        versions = _archive_versions(info.entries, layout)

        if workdir is None:
            run_dir = Path(tempfile.mkdtemp(prefix="mar-build-serve-"))
            cleanup.append(run_dir)
        else:
            run_dir = Path(workdir).resolve()
            _reuse_workdir(run_dir)
        for sub in ("logs", "tmp"):
            (run_dir / sub).mkdir(exist_ok=True)
        run = _Run(run_dir, kept=workdir is not None)

        if ts_ports == "free":
            run_config, addresses, remapped = _free_port_config(
                info.config_text, info.properties, layout, avoid=[port] + ([grpc_port] if grpc_port else [])
            )
            emit(ServeEvent("ports", "TorchServe ports: " + ", ".join(remapped)))
        elif ts_ports == "config":
            run_config = info.config_text
            addresses = _config_addresses(info.properties)
            _check_config_ports(info.properties)
        else:
            raise ValueError(f"ts_ports must be 'free' or 'config', not {ts_ports!r}")
        config_path = run_dir / "config.properties"
        config_path.write_text(run_config, encoding="utf-8")

        started = time.monotonic()
        ts_process = _start_torchserve(torchserve_exe, layout, config_path, run_dir)
        processes.append(ts_process)
        # The wrapper starts beside TorchServe, not after it: importing kserve takes seconds, and its readiness
        # poller simply waits for TorchServe's management API to answer.
        url = f"http://{_url_host(host)}:{port}"
        wrapper = _start_wrapper(config_path, run_dir, host, port, grpc_port, ts_process.pid)
        processes.append(wrapper)
        _wait_torchserve(ts_process, addresses["management"], run, started, startup_timeout)
        seconds = time.monotonic() - started
        emit(ServeEvent("torchserve-started", f"torchserve started in {seconds:.1f} s", seconds=seconds))
        _wait_wrapper(wrapper, url, run, started, startup_timeout)
        emit(ServeEvent("wrapper-started", f"kserve wrapper listening on {url}"))

        names = info.model_names()
        _wait_models(names, versions, url, ts_process, wrapper, run, started, startup_timeout, emit)
        return LocalPredictor(
            url=url,
            torchserve_url=addresses["inference"],
            management_url=addresses["management"],
            metrics_url=addresses["metrics"] + "/metrics",
            models=names,
            layout=layout,
            run_dir=run_dir,
            torchserve=ts_process,
            wrapper=wrapper,
            cleanup=cleanup,
        )
    except BaseException:
        # Nothing half-started survives a failure or a Ctrl-C during startup.
        for proc in reversed(processes):
            _stop_process(proc, "wrapper" if proc is not processes[0] else "TorchServe")
        for path in cleanup:
            shutil.rmtree(path, ignore_errors=True)
        raise


def _reuse_workdir(run_dir: Path) -> None:
    """Make a caller's run folder ready: refuse one a running TorchServe uses, else drop a previous run's logs/tmp."""
    pid_file = run_dir / "tmp" / ".model_server.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        cmdline = b""
    if b"org.pytorch.serve.ModelServer" in cmdline:
        raise ServeError(
            f"{run_dir} is the run folder of a TorchServe that is still running (pid {pid})",
            hint="stop that one first (Ctrl-C in its terminal, or predictor.stop()), or pass another workdir",
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    # Old logs would be read as this run's (a worker that died last time is not dying now).
    for sub in ("logs", "tmp"):
        shutil.rmtree(run_dir / sub, ignore_errors=True)


def _emitter(on_event: OnEvent | None) -> OnEvent:
    def emit(event: ServeEvent) -> None:
        log.info("%s", event.message)
        if on_event is not None:
            on_event(event)

    return emit


# --------------------------------------------------------------------------------------------------------------
# Prerequisites


def _check_java() -> None:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).is_file():
        where = f"JAVA_HOME={java_home} has no bin/java" if java_home else "no `java` on PATH"
        raise ServeError(f"Java is missing ({where}): TorchServe's frontend is a Java 17 program", hint=JAVA_HINT)
    try:
        proc = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServeError(f"`{java} -version` failed: {exc}", hint=JAVA_HINT) from exc
    text = proc.stderr + proc.stdout
    major = java_major(text)
    if proc.returncode != 0 or major is None:
        raise ServeError(f"`{java} -version` did not report a version", log_tail=text.splitlines()[-5:], hint=JAVA_HINT)
    if major < JAVA_MAJOR:
        raise ServeError(f"{java} is Java {major}; TorchServe needs Java {JAVA_MAJOR} or newer", hint=JAVA_HINT)


def java_major(version_output: str) -> int | None:
    """The major version in ``java -version`` output: 'version "17.0.9"' -> 17, 'version "1.8.0_392"' -> 8."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def _find_torchserve(given: str | Path | None = None) -> str:
    if given is not None:
        path = Path(given)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ServeError(f"{path} is not an executable torchserve script",
                             hint="pass the `torchserve` from the bin/ folder of the environment that has it")
        return str(path)
    # The script next to this interpreter first: its workers then run in the same environment as the toolkit.
    beside = Path(sys.executable).parent / "torchserve"
    exe = str(beside) if beside.is_file() else shutil.which("torchserve")
    if exe is None:
        raise ServeError("torchserve is not installed", hint="pip install 'mar-build[serve]'")
    return exe


def _check_port(host: str, port: int, what: str, fix: str) -> None:
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


def _free_ports(count: int, avoid: Sequence[int] = ()) -> list[int]:
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


# --------------------------------------------------------------------------------------------------------------
# Source: a layout folder, s3://, pvc://


def _resolve_source(source: str | Path, mount: str | Path | None, cleanup: list[Path], emit: OnEvent) -> Path:
    text = str(source)
    if "://" in text:
        uri = parse_storage_uri(text, error=ServeError)
        return _pvc_path(uri, mount) if uri.scheme == "pvc" else _download(uri.uri, cleanup, emit)
    path = Path(source).resolve()
    if not path.is_dir():
        raise LayoutError(
            f"{path} is not a folder", path=path,
            hint="pass a layout folder (mar-build build -o DIR), an s3:// URI, or pvc://CLAIM/PATH with --mount DIR",
        )
    return path


def _pvc_path(uri: StorageUri, mount: str | Path | None) -> Path:
    if mount is None:
        raise ServeError(
            f"{uri}: a PVC is read where it is mounted, and no mount folder was given",
            hint=f"mount claim {uri.root!r} (or copy its contents) and pass mount=DIR (--mount DIR)",
        )
    root = Path(mount).resolve()
    path = (root / uri.path).resolve()
    if not path.is_relative_to(root):  # a symlink inside the claim that points out of it
        raise ServeError(f"{uri}: path {uri.path!r} leaves the mount folder {root}", hint="use a path inside the claim")
    if not path.is_dir():
        raise ServeError(f"{uri}: {path} does not exist", hint=f"is claim {uri.root!r} mounted at {root}?")
    return path


def _download(uri: str, cleanup: list[Path], emit: OnEvent) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="mar-build-models-"))
    cleanup.append(tmp)
    # The storage-initializer copies the *contents* of storageUri into /mnt/models; so do we, into a stand-in.
    target = tmp / "models"
    started = time.monotonic()
    try:
        initializer.download(uri, target)
    except ModuleNotFoundError as exc:
        raise ServeError("serving from a URI needs kserve-storage", hint="pip install 'mar-build[serve]'") from exc
    except initializer.DownloadFailed as exc:  # kserve_storage raises bare Exception/RuntimeError for everything
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        raise ServeError(
            f"could not download {uri}: {exc}", log_tail=exc.lines,
            hint=(f"AWS_ENDPOINT_URL={endpoint}; " if endpoint else "set AWS_ENDPOINT_URL for a non-AWS endpoint; ")
            + "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and that the prefix holds config/ and model-store/",
        ) from exc
    emit(ServeEvent("download", f"downloaded {uri} in {time.monotonic() - started:.1f} s",
                    seconds=time.monotonic() - started))
    if not (target / CONFIG_RELPATH).is_file():
        found = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())[:10]
        raise LayoutError(
            f"{uri} holds no {CONFIG_RELPATH.as_posix()} (found: {', '.join(found) or 'nothing'})", path=target,
            hint="storageUri must point at the folder that holds config/ and model-store/ (mar-build stage)",
        )
    return target


def _archive_versions(entries: Sequence[Any], layout: Path) -> dict[str, str | None]:
    # TorchServe names a worker thread W-PORT-NAME_VERSION with the archive's version (not the snapshot key's).
    versions: dict[str, str | None] = {}
    for entry in entries:
        try:
            versions[entry.name] = read_archive(layout / MODEL_STORE / str(entry.mar_name)).version
        except ArchiveError:
            versions[entry.name] = None
    return versions


# --------------------------------------------------------------------------------------------------------------
# Ports and the run copy of config.properties


def _config_addresses(props: dict[str, str]) -> dict[str, str]:
    def url(key: str) -> str:
        return _local_url(props.get(key, TS_ADDRESS_DEFAULTS[key]))

    return {"inference": url("inference_address"), "management": url("management_address"),
            "metrics": url("metrics_address")}


def _local_url(address: str) -> str:
    parts = urlsplit(address if "//" in address else "http://" + address)
    host = parts.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return urlunsplit((parts.scheme or "http", f"{_url_host(host)}:{parts.port}", "", "", ""))


def _url_host(host: str) -> str:
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"[{host}]" if ":" in host else host


def _config_ports(props: dict[str, str]) -> list[tuple[str, str, int]]:
    """(key, bind host, port) of every port TorchServe will listen on with this config."""
    ports = []
    for key, default in TS_ADDRESS_DEFAULTS.items():
        parts = urlsplit(props.get(key, default))
        if parts.port is not None:
            ports.append((key, parts.hostname or "0.0.0.0", parts.port))
    for key, default_port in TS_GRPC_DEFAULTS.items():
        try:
            ports.append((key, "127.0.0.1", int(props.get(key, default_port))))
        except ValueError:
            continue
    return ports


def _check_config_ports(props: dict[str, str]) -> None:
    seen: set[int] = set()
    for key, host, port in _config_ports(props):
        if port in seen:
            continue
        seen.add(port)
        _check_port(host, port, f"TorchServe's {key} in config.properties",
                    "serve with free ports instead (ts_ports='free', --ts-ports free)")


def _free_port_config(
    text: str, props: dict[str, str], layout: Path, avoid: Sequence[int]
) -> tuple[str, dict[str, str], list[str]]:
    """config.properties with TorchServe's ports moved to free loopback ports and model_store at the layout."""
    keys = _config_ports(props)
    by_port: dict[int, int] = {}
    fresh = iter(_free_ports(len({port for _, _, port in keys}), avoid))
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
    addresses = {
        "inference": values["inference_address"],
        "management": values["management_address"],
        "metrics": values["metrics_address"],
    }
    note = "set by mar-build serve (a run copy; the layout's file is unchanged)"
    return set_properties(text, values, comment=note), addresses, remapped


# --------------------------------------------------------------------------------------------------------------
# Processes


def _open_log(path: Path) -> IO[bytes]:
    return open(path, "ab")  # noqa: SIM115 - handed to Popen, closed right after


def _start_torchserve(exe: str, layout: Path, config: Path, run_dir: Path) -> subprocess.Popen[bytes]:
    tmp = run_dir / "tmp"
    env = {
        **os.environ,
        # The PID file (tempfile.gettempdir()) and the extracted archives (java.io.tmpdir from TEMP) of this
        # instance stay in its own folder, so instances do not refuse each other.
        "TMPDIR": str(tmp),
        "TEMP": str(tmp),
        "LOG_LOCATION": str(run_dir / "logs"),
        "METRICS_LOCATION": str(run_dir / "logs"),
        # The runtime sets it for v1 (the serviceEnvelope label); TorchServe honours it only with
        # enable_envvars_config=true, as in the pod.
        "TS_SERVICE_ENVELOPE": "kserve",
    }
    # The archive must carry everything; a worker that reaches a hub here would hide a packaging bug.
    env.setdefault("HF_HUB_OFFLINE", "1")
    cmd = [exe, "--start", "--foreground", "--ncs", f"--model-store={layout / MODEL_STORE}", f"--ts-config={config}"]
    log.info("starting %s", " ".join(cmd))
    with _open_log(run_dir / "logs" / "torchserve-console.log") as out:
        return subprocess.Popen(cmd, cwd=run_dir, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _start_wrapper(
    config: Path, run_dir: Path, host: str, port: int, grpc_port: int | None, torchserve_pgid: int
) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "toolkit._serve.wrapper", "--config", str(config), "--http-port", str(port),
           "--host", host, "--parent-pid", str(os.getpid()), "--torchserve-pgid", str(torchserve_pgid)]
    if grpc_port is not None:
        cmd += ["--grpc-port", str(grpc_port)]
    # The wrapper imports this package: make it importable however we were started (a checkout, a notebook).
    package_root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    with _open_log(run_dir / "logs" / "wrapper.log") as out:
        return subprocess.Popen(cmd, cwd=run_dir, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def group_members(pgid: int) -> list[int] | None:
    """Live (non-zombie) processes in a process group, from /proc; None where there is no /proc (macOS)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    members = []
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # after "pid (comm)": state ppid pgrp ...
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return sorted(members)


def _group_alive(pgid: int) -> bool:
    members = group_members(pgid)
    if members is not None:
        return bool(members)
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _stop_process(proc: subprocess.Popen[bytes], what: str, grace: float = STOP_GRACE_S) -> None:
    """TERM the process group we started, wait for all of it to exit, KILL what is left after ``grace`` seconds."""
    pgid = proc.pid  # start_new_session=True: the leader's pid is the group id
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    started = time.monotonic()
    deadline = started + grace
    while time.monotonic() < deadline:
        proc.poll()  # reap our child, or its zombie keeps the group alive
        if proc.returncode is not None and not _group_alive(pgid):
            log.debug("%s stopped in %.1f s", what, time.monotonic() - started)
            return
        time.sleep(0.1)
    log.warning("%s did not stop within %.0f s: killing process group %d", what, grace, pgid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


@dataclass(frozen=True)
class _Run:
    """The run folder: config copy, logs/, tmp/; ``kept`` when the caller gave it (workdir), else removed at stop."""

    path: Path
    kept: bool

    def log(self, name: str) -> Path:
        return self.path / "logs" / name

    def where(self, name: str) -> str:
        if self.kept:
            return f"the full log is {self.log(name)}"
        return "pass workdir= (--workdir DIR) to keep TorchServe's logs after it stops"


def _wait_torchserve(proc: subprocess.Popen[bytes], management: str, run: _Run, started: float, timeout: float) -> None:
    with httpx.Client(timeout=2.0) as client:
        while True:
            if proc.poll() is not None:
                raise ServeError(
                    f"TorchServe exited with status {proc.returncode} before it answered on {management}",
                    log_tail=log_tail(run.log("ts_log.log")) or plain_tail(run.log("torchserve-console.log")),
                    hint=run.where("ts_log.log"),
                )
            try:
                if client.get(f"{management}/models").status_code < 500:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() - started > timeout:
                raise ServeError(
                    f"TorchServe did not answer on {management} within {timeout:.0f} s",
                    log_tail=log_tail(run.log("ts_log.log")),
                    hint="raise startup_timeout (--timeout) on a slow machine; " + run.where("ts_log.log"),
                )
            time.sleep(POLL_S)


def _wait_wrapper(proc: subprocess.Popen[bytes], url: str, run: _Run, started: float, timeout: float) -> None:
    with httpx.Client(timeout=2.0) as client:
        while True:
            if proc.poll() is not None:
                tail = plain_tail(run.log("wrapper.log"))
                in_use = any("address already in use" in line.lower() for line in tail)
                raise ServeError(
                    f"the kserve wrapper exited with status {proc.returncode} before it answered on {url}"
                    + (" (its port is in use)" if in_use else ""),
                    log_tail=tail,
                    hint="pass another port (--port)" if in_use else "pip install 'mar-build[serve]' (kserve)",
                )
            try:
                if client.get(url + "/").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() - started > timeout:
                raise ServeError(f"the kserve wrapper did not answer on {url} within {timeout:.0f} s",
                                 log_tail=plain_tail(run.log("wrapper.log")))
            time.sleep(POLL_S)


def _wait_models(
    names: list[str],
    versions: dict[str, str | None],
    url: str,
    torchserve: subprocess.Popen[bytes],
    wrapper: subprocess.Popen[bytes],
    run: _Run,
    started: float,
    timeout: float,
    emit: OnEvent,
) -> None:
    """Wait until the wrapper answers 200 for every model; fail on the first worker that dies while loading."""
    workers = WorkerLog(run.log("model_log.log"), names, versions)
    pending = list(names)
    for name in pending:
        emit(ServeEvent("model-loading", f"model {name}: loading", model=name))
    with httpx.Client(timeout=5.0) as client:
        while pending:
            for name in list(pending):
                try:
                    ready = client.get(f"{url}/v1/models/{name}").status_code == 200
                except httpx.TransportError:
                    ready = False
                if ready:
                    pending.remove(name)
                    seconds = time.monotonic() - started
                    emit(ServeEvent("model-ready", f"model {name}: ready in {seconds:.1f} s", model=name,
                                    seconds=seconds))
            if not pending:
                return
            failure = workers.failure(pending)
            if failure is not None:
                name, lines = failure
                last = next((ln for ln in reversed(lines) if ln.strip() and not ln.startswith(" ")), "")
                raise ServeError(
                    f"model {name} failed to load: its TorchServe worker died" + (f" ({last.strip()})" if last else ""),
                    log_tail=lines,
                    hint="fix the handler or the model files (the traceback above is the worker's); "
                    + run.where("model_log.log"),
                )
            for what, proc, logfile, tail_of in (
                ("TorchServe", torchserve, "ts_log.log", log_tail),
                ("the kserve wrapper", wrapper, "wrapper.log", plain_tail),
            ):
                if proc.poll() is not None:
                    raise ServeError(f"{what} exited with status {proc.returncode} while models were loading",
                                     log_tail=tail_of(run.log(logfile)), hint=run.where(logfile))
            if time.monotonic() - started > timeout:
                raise ServeError(
                    f"model(s) {', '.join(pending)} not ready within {timeout:.0f} s",
                    log_tail=workers.recent(pending) or log_tail(run.log("ts_log.log")),
                    hint="raise startup_timeout (--timeout) for a large model on a slow machine; "
                    + run.where("model_log.log"),
                )
            time.sleep(POLL_S)
