"""The predictor pod's entrypoint in an image mar-build builds: TorchServe, and mar-build's wrapper in front of it.

The stock image's entrypoint (dockerd-entrypoint.sh) runs the runtime's args (``torchserve --start ...``), then its
own kserve wrapper, then ``tail -f /dev/null``: a TorchServe that dies leaves a pod that looks alive. This one runs
the same args with ``--foreground`` and the wrapper beside it, and exits when either exits, so that Kubernetes
restarts the container::

    ENTRYPOINT ["python", "-m", "toolkit._serve.pod"]
    # args from the kserve-torchserve ServingRuntime (ISVC args are appended):
    #   torchserve --start --model-store=/mnt/models/model-store --ts-config=/mnt/models/config/config.properties

The wrapper listens on 0.0.0.0:8080 (HTTP) and 8081 (gRPC) as the stock one does and reads TorchServe's addresses
from the ``--ts-config`` file (inference and management on 127.0.0.1 in a mar-build layout). SIGTERM (the pod
stopping) stops the wrapper first, then TorchServe. Environment: ``MAR_BUILD_HTTP_PORT``, ``MAR_BUILD_GRPC_PORT``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .processes import stop_process

DEFAULT_CONFIG = "/mnt/models/config/config.properties"


def option_value(args: Sequence[str], name: str) -> str | None:
    """The value of ``--name=V`` or ``--name V`` in ``args`` (the last one given), else None."""
    value = None
    for i, arg in enumerate(args):
        if arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
        elif arg == name and i + 1 < len(args):
            value = args[i + 1]
    return value


def torchserve_command(args: Sequence[str]) -> list[str]:
    """The runtime's args as a command that stays in the foreground (``torchserve --start`` alone daemonizes)."""
    command = list(args) or ["torchserve", "--start", f"--ts-config={DEFAULT_CONFIG}"]
    return command if "--foreground" in command else [*command, "--foreground"]


def wrapper_command(config: str, http_port: int, grpc_port: int | None) -> list[str]:
    command = [sys.executable, "-m", "toolkit._serve.wrapper", "--config", config, "--http-port", str(http_port),
               "--host", "0.0.0.0"]
    return command + ([] if grpc_port is None else ["--grpc-port", str(grpc_port)])


def run(args: Sequence[str], environ: dict[str, str] | None = None) -> int:
    """Start TorchServe (``args``) and the wrapper; return the exit status once one of them exits or SIGTERM comes."""
    environ = dict(os.environ if environ is None else environ)
    config = option_value(args, "--ts-config") or DEFAULT_CONFIG
    if not Path(config).is_file():
        print(f"mar-build pod: {config} is missing: the storageUri must point at the folder that holds "
              "config/config.properties and model-store/", file=sys.stderr)
        return 2
    http_port = int(environ.get("MAR_BUILD_HTTP_PORT", "8080"))
    grpc = environ.get("MAR_BUILD_GRPC_PORT", "8081")
    # Each in its own process group: stop_process stops all a process started (TorchServe's Java and workers).
    torchserve = subprocess.Popen(torchserve_command(args), env=environ, start_new_session=True)
    wrapper = subprocess.Popen(wrapper_command(config, http_port, int(grpc) if grpc else None), env=environ,
                               start_new_session=True)
    stopping = False

    def stop(signum: int, _: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping and torchserve.poll() is None and wrapper.poll() is None:
        time.sleep(0.5)
    exited = [what for what, proc in (("TorchServe", torchserve), ("the wrapper", wrapper)) if proc.poll() is not None]
    stop_process(wrapper, "wrapper")
    stop_process(torchserve, "TorchServe")
    if stopping:
        return 0
    print(f"mar-build pod: {' and '.join(exited)} exited: stopping the pod", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
