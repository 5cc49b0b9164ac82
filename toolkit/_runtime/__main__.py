"""``python -m toolkit._runtime --layout DIR --http-port N [--host H] [--grpc-port N]``: serve a layout with the
python runtime (``--grpc-port``: KServe's gRPC v2 too, on the same host; see toolkit/_grpc_v2.py).

The worker processes of every model of minWorkers > 1 start first (toolkit/_runtime/workers.py), so that their
imports and loads run while this process imports kserve (about 3 s). The server then listens; every model of
model_snapshot is registered and answers 503 (not ready) until it is loaded, which happens in a thread beside the
server, one model after another (a model of one worker in this process, one of several in its workers). A model
that fails to load ends the process with status 1 after logging its traceback (TorchServe's pod never becomes
ready either; here whoever started us reads why in our log). ``--parent-pid``: exit when that process is gone (a
killed notebook kernel must not leave the runtime behind).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._layout import THREADS_ENV, TS_DEFAULT_MAX_REQUEST, Layout, read_layout, truthy
from .._metrics import declare_layout_metrics
from .batcher import Batcher
from .envelope import check_envelope
from .loader import LoadedModel, Settings, load_model, unpack
from .workers import InProcess, Lane, WorkerProcess, WorkerSpec, set_threads, start_workers, wait_ready

if TYPE_CHECKING:
    from .server import RuntimeModel

log = logging.getLogger("toolkit.runtime")


def envelope_of(properties: dict[str, str], environ: dict[str, str]) -> str | None:
    """The service envelope TorchServe would use: TS_SERVICE_ENVELOPE where env config is on, else the file's."""
    envelope = properties.get("service_envelope") or None
    if truthy(properties.get("enable_envvars_config")):
        envelope = environ.get("TS_SERVICE_ENVELOPE") or envelope
    return envelope


def _threads_per_worker() -> int | None:
    value = os.environ.get(THREADS_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def _kserve() -> Any:
    """kserve's model_server, imported (about 3 s: it brings pandas and the Kubernetes client) once the worker
    processes are on their way. It parses sys.argv at import: it sees only what we mean (the /docs page on)."""
    argv, sys.argv = sys.argv, [sys.argv[0], "--enable_docs_url", "true"]
    try:
        import kserve.model_server as model_server
    finally:
        sys.argv = argv
    return model_server


def start_pools(info: Layout, unpack_root: Path, envelope: str | None) -> dict[str, list[WorkerProcess]]:
    """The worker processes of every model of minWorkers > 1, started at once (each unpacked here first): their
    imports and loads run while this process imports kserve. The first entry of a name is the one served."""
    pools: dict[str, list[WorkerProcess]] = {}
    for entry in info.entries:
        settings = Settings.of(entry)
        if entry.name in pools or settings.min_workers <= 1:
            continue
        unpack(entry.archive(info.path), unpack_root / entry.name)  # once, before its workers start
        spec = WorkerSpec(info.path, entry.name, unpack_root, envelope, settings.response_timeout_s)
        pools[entry.name] = start_workers(spec, settings.min_workers)
    return pools


def load_all(info: Layout, models: list[RuntimeModel], unpack_root: Path, envelope: str | None,
             queue_size: int, pools: dict[str, list[WorkerProcess]]) -> None:
    """Load every model (from this thread), attaching each as it is ready; exit the process on a failure.

    A model with one worker is loaded here, in the server's process; one with minWorkers > 1 is loaded by its
    worker processes (``pools``, started already), in parallel (toolkit/_runtime/workers.py)."""
    by_name = {m.name: m for m in models}
    loaded: list[LoadedModel] = []
    seen: set[str] = set()
    try:
        for entry in info.entries:
            if entry.name in seen:
                continue  # TorchServe serves one version per name here too: the first listed
            seen.add(entry.name)
            started = time.monotonic()
            settings = Settings.of(entry)
            lanes: list[Lane]
            if entry.name in pools:
                lanes = list(wait_ready(pools[entry.name]))
            else:
                if not loaded:
                    set_threads()
                model = load_model(entry, info.path, unpack_root, envelope=envelope, previous=loaded,
                                   properties=info.properties)
                loaded.append(model)
                lanes = [InProcess(model)]
            by_name[entry.name].attach(Batcher(entry.name, settings, lanes, queue_size, _threads_per_worker()))
            log.info("model %s is ready (%d worker%s, loaded in %.1f s)", entry.name, len(lanes),
                     "s" if len(lanes) > 1 else "", time.monotonic() - started)
    except BaseException:
        log.error("loading the models failed:\n%s", traceback.format_exc())
        logging.shutdown()
        os._exit(1)


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    log.warning("parent process %d is gone: stopping", parent_pid)
    os._exit(1)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m toolkit._runtime", description=__doc__.split("\n")[0])
    parser.add_argument("--layout", type=Path, required=True, help="the layout folder (config/, model-store/)")
    parser.add_argument("--http-port", type=int, default=8080)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--grpc-port", type=int, default=None, help="KServe's gRPC v2 on this port (off when omitted)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the archives are unpacked (kept)")
    parser.add_argument("--access-log", action="store_true", help="log every request (uvicorn's access log)")
    parser.add_argument("--parent-pid", type=int, default=None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # kserve's v1 routes answer through fastapi's ORJSONResponse, which FastAPI now calls deprecated at every first
    # request: a line in every user's log about code that is not theirs.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    args.layout = args.layout.resolve()
    info = read_layout(args.layout)
    declare_layout_metrics(info.properties, info.path)
    archives: dict[str, Path] = {}  # each name's archive: the first entry of a name is the one served
    for entry in info.entries:
        archives.setdefault(entry.name, entry.archive(info.path))
    names = list(archives)
    if not names:
        raise SystemExit(f"{info.config_path}: model_snapshot lists no models")
    envelope = envelope_of(info.properties, dict(os.environ))
    queue_size = int(info.properties.get("job_queue_size", "100") or 100)
    unpack_root = args.workdir or Path(tempfile.mkdtemp(prefix="mar-build-runtime-"))
    log.info("python runtime: models %s from %s, envelope %s", names, args.layout, envelope or "none")
    if envelope:
        check_envelope(envelope)  # a name TorchServe has no envelope for fails here, before any model loads
    pools = start_pools(info, unpack_root, envelope)
    _model_server = _kserve()
    from .._grpc_v2 import V2GRPCServer
    from .server import RuntimeModel, RuntimeRESTServer

    models = [RuntimeModel(name, archives[name]) for name in names]
    RuntimeRESTServer.host = args.host
    size = info.properties.get("max_request_size", "").strip()
    RuntimeRESTServer.max_request_size = int(size) if size.isdigit() else TS_DEFAULT_MAX_REQUEST
    _model_server.RESTServer = RuntimeRESTServer  # the class ModelServer.start() instantiates
    V2GRPCServer.host = args.host
    V2GRPCServer.max_request_size = RuntimeRESTServer.max_request_size  # TorchServe's gRPC limit too
    _model_server.GRPCServer = V2GRPCServer  # likewise, when --grpc-port turns it on
    server = _model_server.ModelServer(http_port=args.http_port, grpc_port=args.grpc_port or 0,
                                       enable_grpc=args.grpc_port is not None, workers=1,
                                       enable_latency_logging=False, enable_docs_url=True)
    for model in models:
        server.register_model(model)
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)
    if not args.access_log:
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    threading.Thread(target=load_all, args=(info, models, unpack_root, envelope, queue_size, pools),
                     name="load-models", daemon=True).start()
    if args.parent_pid is not None:
        threading.Thread(target=_watch_parent, args=(args.parent_pid,), daemon=True).start()
    try:
        # start([]): every model is registered already, ready or not (kserve's "one must be ready" rule would
        # refuse to start while they load).
        server.start([])
    finally:
        if args.workdir is None:
            shutil.rmtree(unpack_root, ignore_errors=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    main()
