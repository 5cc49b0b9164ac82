"""The two processes of a local predictor: TorchServe and the kserve wrapper; what they need, how they start and
stop.

Each runs in its own session (process group), so that stopping kills all it started (Java frontend and Python
workers included) and a Ctrl-C in a terminal reaches only us, who stop the wrapper first, then TorchServe.
TorchServe gets its own TMPDIR (its PID file lives there) and its own log folder, so instances do not clash.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Literal

from .._errors import ServeError
from .._layout import MODEL_STORE

log = logging.getLogger("toolkit.serve")

JAVA_MAJOR = 17
JAVA_HINT = (
    "install Java 17: `apt-get install openjdk-17-jre-headless` (Debian/Ubuntu; `brew install openjdk@17` on "
    "macOS), or point JAVA_HOME at a Java 17+ installation"
)
STOP_GRACE_S = 15.0

# Which answers the wrapper in front of TorchServe gives: mar-build's (statuses passed through, ready when a worker
# is), or those of the stock pytorch/torchserve-kfs image's wrapper (stock.py).
Wrapper = Literal["ours", "image"]
WRAPPERS: tuple[Wrapper, ...] = ("ours", "image")


# -- prerequisites ----------------------------------------------------------------------------------------------
def check_java() -> None:
    """Raise ServeError (with how to install it) unless a Java 17+ is at JAVA_HOME or on PATH."""
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


def find_torchserve(given: str | Path | None = None) -> str:
    """The `torchserve` script to run: ``given``, else the one beside this Python, else the one on PATH."""
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


# -- starting ---------------------------------------------------------------------------------------------------
def _open_log(path: Path) -> IO[bytes]:
    return open(path, "ab")  # noqa: SIM115 - handed to Popen, closed right after


def torchserve_env(run_dir: Path, extra: Mapping[str, str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """TorchServe's environment: ``environ`` (default os.environ) with its own temp and log folders, the v1
    envelope as in the pod, then ``extra`` (the handlers' thread budget)."""
    tmp = run_dir / "tmp"
    env = {
        **(os.environ if environ is None else environ),
        # The PID file (tempfile.gettempdir()) and the extracted archives (java.io.tmpdir from TEMP) of this
        # instance stay in its own folder, so instances do not refuse each other.
        "TMPDIR": str(tmp),
        "TEMP": str(tmp),
        "LOG_LOCATION": str(run_dir / "logs"),
        "METRICS_LOCATION": str(run_dir / "logs"),
        # The runtime sets it for v1 (the serviceEnvelope label); TorchServe honours it only with
        # enable_envvars_config=true, as in the pod.
        "TS_SERVICE_ENVELOPE": "kserve",
        **extra,
    }
    # The archive must carry everything; a worker that reaches a hub here would hide a packaging bug.
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def start_torchserve(
    exe: str, layout: Path, config: Path, run_dir: Path, env: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    """``torchserve --start --foreground --ncs`` on the layout's model store with the run's config, as the pod."""
    cmd = [exe, "--start", "--foreground", "--ncs", f"--model-store={layout / MODEL_STORE}", f"--ts-config={config}"]
    log.info("starting %s", " ".join(cmd))
    with _open_log(run_dir / "logs" / "torchserve-console.log") as out:
        return subprocess.Popen(cmd, cwd=run_dir, env=dict(env), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def start_wrapper(
    config: Path, run_dir: Path, host: str, port: int, grpc_port: int | None, torchserve_pgid: int,
    *, wrapper: Wrapper = "ours", model_store: Path | None = None,
) -> subprocess.Popen[bytes]:
    """``python -m toolkit._serve.wrapper`` (kserve's ModelServer) in front of TorchServe, logging to wrapper.log;
    ``wrapper="image"`` answers as the stock image's wrapper, which looks for archives in ``model_store``."""
    if wrapper not in WRAPPERS:
        raise ValueError(f"wrapper must be one of {', '.join(WRAPPERS)}, not {wrapper!r}")
    cmd = [sys.executable, "-m", "toolkit._serve.wrapper", "--config", str(config), "--http-port", str(port),
           "--host", host, "--parent-pid", str(os.getpid()), "--torchserve-pgid", str(torchserve_pgid),
           "--answers", wrapper]
    if grpc_port is not None:
        cmd += ["--grpc-port", str(grpc_port)]
    if model_store is not None:
        cmd += ["--model-store", str(model_store)]
    with _open_log(run_dir / "logs" / "wrapper.log") as out:
        return subprocess.Popen(cmd, cwd=run_dir, env=wrapper_env(), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def wrapper_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The wrapper's environment: ``environ`` (default os.environ) with the folder that holds this ``toolkit``
    package first on PYTHONPATH, so the wrapper imports it however we were started (a checkout, a notebook)."""
    environ = os.environ if environ is None else environ
    package_root = str(Path(__file__).resolve().parents[2])  # toolkit/_serve/processes.py -> the folder of toolkit/
    return {**environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, environ.get("PYTHONPATH")]))}


# -- stopping ---------------------------------------------------------------------------------------------------
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


def terminate_group(pgid: int, grace: float) -> None:
    """TERM a process group that is not our child (the wrapper stopping TorchServe), KILL it after ``grace`` s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _group_alive(pgid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def stop_process(proc: subprocess.Popen[bytes], what: str, grace: float = STOP_GRACE_S) -> None:
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
