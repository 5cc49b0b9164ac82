"""The servers the serving benchmarks compare, each started on free loopback ports and stopped by us.

- ours:  the text sample built by mar-build and run by ``toolkit.serve`` (kserve wrapper + TorchServe + handlers);
- stock: the same model archived by torch-model-archiver with a user-style handler (stock_handler.py), TorchServe's
         kserve envelope and batchSize 1, behind the same wrapper started by the same ``toolkit.serve``;
- bento: BentoML 1.4 with adaptive batching (bento_service.py) from its own venv, benchmarks/results/.venv-bentoml;
- python: the same layout as ours, served by ``toolkit.serve(..., runtime="python")`` (kserve's ModelServer and the
          batcher in one process, the handler in minWorkers worker processes, or in the same process for one; no Java).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._common import BENCH, ROOT, Started, free_port, tree_cpu_seconds, wait_http
from ._model import sample_settings
from .texts import SAMPLE

MODEL_NAME = "intent"
# Inside results/ (ignored by the root .gitignore, which is what hatchling reads): a venv anywhere else under the
# repository would land in the sdist, torch and all.
BENTO_VENV = BENCH / "results" / ".venv-bentoml"
BENTOML_REQUIREMENT = "bentoml>=1.4,<1.5"


@dataclass
class Stack:
    """A running server: where to POST, and the process ids whose CPU counts as the server's."""

    name: str
    url: str
    pids: list[int]
    run_dir: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)
    roles: dict[str, int] = field(default_factory=dict)  # part -> process group leader, e.g. wrapper, torchserve
    runtime: str = "torchserve"  # "python": the runtime process is the worker (no TorchServe under it)

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each part: the wrapper, TorchServe's frontend (Java), its workers."""
        if not self.roles:
            return {self.name: sum(tree_cpu_seconds(p) for p in self.pids)}
        out = {}
        for role, pid in self.roles.items():
            out[role] = tree_cpu_seconds(pid)
        if "torchserve" in out:
            worker = sum(_own_cpu(p) for p in worker_processes(self))
            out["frontend"] = out.pop("torchserve") - worker
            out["worker"] = worker
        elif self.runtime == "python" and "runtime" in out:  # its worker processes, where the model has several
            workers = [p for p in worker_processes(self) if p.pid not in self.pids]
            if workers:
                worker = sum(_own_cpu(p) for p in workers)
                out["runtime"] -= worker
                out["worker"] = worker
        return out


def ensure_sample() -> None:
    """Fine-tune the text sample when its model folder is missing (prepare.py skips work already done)."""
    if not (SAMPLE / "model" / "config.json").is_file():
        print("preparing the text sample (fine-tunes MiniLM once, a few minutes) ...", flush=True)
        subprocess.run([sys.executable, str(SAMPLE / "prepare.py")], check=True)


# ---- ours ------------------------------------------------------------------------------------------------------
def build_ours(layout: Path, *, batch_size: int | None = None, max_batch_delay: int | None = None,
               workers: int | None = None) -> Path:
    """The text sample's layout, with serving settings overridden where given."""
    from toolkit import build

    overrides: dict[str, Any] = {}
    if batch_size is not None:
        overrides["serving.batch_size"] = batch_size
    if max_batch_delay is not None:
        overrides["serving.max_batch_delay"] = max_batch_delay
    if workers is not None:
        overrides["serving.min_workers"] = workers
        overrides["serving.max_workers"] = workers
    shutil.rmtree(layout, ignore_errors=True)
    return build(SAMPLE, layout, overrides=overrides).layout


@contextlib.contextmanager
def ours(layout: Path, run_dir: Path, *, env: dict[str, str] | None = None) -> Iterator[Stack]:
    from toolkit import serve

    with _environ(env or {}), serve(layout, port=free_port(), workdir=run_dir) as predictor:
        yield Stack("ours", predictor.predict_url(MODEL_NAME), _predictor_pids(predictor), run_dir,
                    {"metrics_url": predictor.metrics_url, "log": str(predictor.log_path)}, dict(predictor.pids))


@contextlib.contextmanager
def python(layout: Path, run_dir: Path, *, env: dict[str, str] | None = None) -> Iterator[Stack]:
    """The same layout served by the python runtime: its server process, with the model's worker processes under it
    (or the model in the server's own process, where it has one worker)."""
    from toolkit import serve

    with _environ(env or {}), serve(layout, port=free_port(), workdir=run_dir, runtime="python") as predictor:
        yield Stack("python", predictor.predict_url(MODEL_NAME), _predictor_pids(predictor), run_dir,
                    {"metrics_url": predictor.metrics_url, "log": str(predictor.log_path)}, dict(predictor.pids),
                    runtime="python")


def _predictor_pids(predictor: Any) -> list[int]:
    return list(predictor.pids.values())


def _own_cpu(process: Any) -> float:
    import psutil

    with contextlib.suppress(psutil.NoSuchProcess):
        t = process.cpu_times()
        return float(t.user + t.system)
    return 0.0


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ---- stock -----------------------------------------------------------------------------------------------------
STOCK_CONFIG = """\
inference_address=http://0.0.0.0:8085
management_address=http://0.0.0.0:8085
metrics_address=http://0.0.0.0:8082
grpc_inference_port=7070
grpc_management_port=7071
enable_envvars_config=true
disable_token_authorization=true
metrics_mode=prometheus
model_store=/mnt/models/model-store
model_snapshot={snapshot}
"""


def build_stock(layout: Path) -> Path:
    """A hand-made layout as users write it: torch-model-archiver (default format), envelope on, batchSize 1."""
    model_dir, _, _ = sample_settings()
    shutil.rmtree(layout, ignore_errors=True)
    store = layout / "model-store"
    store.mkdir(parents=True)
    extra = [str(p) for p in sorted(model_dir.iterdir()) if p.is_file() and p.name != "model.safetensors"]
    archiver = Path(sys.executable).parent / "torch-model-archiver"
    subprocess.run(
        [str(archiver), "--model-name", MODEL_NAME, "--version", "1.0", "--handler", str(BENCH / "stock_handler.py"),
         "--serialized-file", str(model_dir / "model.safetensors"), "--extra-files", ",".join(extra),
         "--export-path", str(store), "--force"],
        check=True,
    )
    snapshot = {"name": "startup.cfg", "modelCount": 1, "models": {MODEL_NAME: {"1.0": {
        "defaultVersion": True, "marName": f"{MODEL_NAME}.mar", "minWorkers": 1, "maxWorkers": 1,
        "batchSize": 1, "maxBatchDelay": 5000, "responseTimeout": 120}}}}
    (layout / "config").mkdir()
    (layout / "config" / "config.properties").write_text(
        STOCK_CONFIG.format(snapshot=json.dumps(snapshot, separators=(",", ":"))), encoding="utf-8")
    return layout


@contextlib.contextmanager
def stock(layout: Path, run_dir: Path) -> Iterator[Stack]:
    # serve() sets TS_SERVICE_ENVELOPE=kserve as the runtime does; enable_envvars_config=true lets it through.
    with ours(layout, run_dir) as stack:
        stack.name = "stock"
        yield stack


# ---- BentoML ---------------------------------------------------------------------------------------------------
def ensure_bento_venv() -> Path:
    """benchmarks/results/.venv-bentoml with torch (CPU, pinned first), BentoML 1.4 and our transformers version."""
    python = BENTO_VENV / "bin" / "python"
    if python.is_file() and subprocess.run([str(python), "-c", "import bentoml, transformers"],
                                           capture_output=True).returncode == 0:
        return BENTO_VENV
    print(f"creating {BENTO_VENV.relative_to(ROOT)} (BentoML is a benchmark-only dependency) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(BENTO_VENV)], check=True)
    pip = [str(BENTO_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    transformers = importlib.metadata.version("transformers")
    # torch first and pinned: the CPU build; an unpinned torch (a dependency of nothing here) could pull CUDA
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, BENTOML_REQUIREMENT, f"transformers=={transformers}"], check=True)
    return BENTO_VENV


def bento_version() -> str:
    out = subprocess.run([str(BENTO_VENV / "bin" / "python"), "-c", "import bentoml; print(bentoml.__version__)"],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip()


@contextlib.contextmanager
def bento(run_dir: Path, *, max_batch: int = 64) -> Iterator[Stack]:
    venv = ensure_bento_venv()
    model_dir, _, max_length = sample_settings()
    port = free_port()
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "BENCH_MODEL_DIR": str(model_dir),
        "BENCH_MAX_LENGTH": str(max_length),
        "BENCH_MAX_BATCH": str(max_batch),
        "BENCH_THREADS": str(len(os.sched_getaffinity(0))),
        "BENTOML_HOME": str(run_dir / "bentoml-home"),
        "BENTOML_DO_NOT_TRACK": "true",
        "HF_HUB_OFFLINE": "1",
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("VIRTUAL_ENV", None)
    # python -m bentoml, not bin/bentoml: a venv's scripts carry its absolute path, so a moved venv still works
    server = Started([str(venv / "bin" / "python"), "-m", "bentoml", "serve", "bento_service:IntentClassifier",
                      "--host", "127.0.0.1", "--port", str(port)],
                     log=run_dir / "bentoml.log", env=env, cwd=BENCH)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout=300, proc=server)
        yield Stack("bento", f"http://127.0.0.1:{port}/predict", [server.pid], run_dir,
                    {"version": bento_version(), "max_batch_size": max_batch})
    finally:
        server.stop()


# ---- the worker process ----------------------------------------------------------------------------------------
def worker_processes(stack: Stack) -> list[Any]:
    """The processes that hold a model under ``stack``: TorchServe's Python workers (model_service_worker.py); the
    python runtime's worker processes (toolkit._runtime.workers), or its one process where the model has one worker."""
    import psutil

    marker = "toolkit._runtime.workers" if stack.runtime == "python" else "model_service_worker"
    found = []
    for pid in stack.pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            for p in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    if any(marker in part for part in p.cmdline()):
                        found.append(p)
    if not found and stack.runtime == "python":
        with contextlib.suppress(psutil.NoSuchProcess):
            return [psutil.Process(pid) for pid in stack.pids]
    return found


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (the peak resident set) of ``pid`` in MiB."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


_LOADED = re.compile(r"MODEL_LOG - .*[Hh]andler loaded")  # ours: "TextClassificationHandler loaded", stock too
_RUNTIME_LOADED = re.compile(r"toolkit\.runtime[^:]*: model \S+ \(version .*\) loaded from ")  # loader.py's line


def model_loads(log_dir: Path, runtime: str = "torchserve") -> int:
    """How many times a handler logged "loaded" (once per worker start) in TorchServe's model log, or how many
    times the python runtime's loader logged a model loaded in runtime.log."""
    if runtime == "python":
        path = log_dir / "runtime.log"
        if not path.is_file():
            return 0
        return sum(1 for line in path.read_text(errors="replace").splitlines() if _RUNTIME_LOADED.search(line))
    path = log_dir / "model_log.log"
    if not path.is_file():
        return 0
    # TorchServe's log4j setup may write a line twice; count distinct lines
    return len({line for line in path.read_text(errors="replace").splitlines() if _LOADED.search(line)})
