"""Helpers for the sample tests: run prepare.py, import it, drive a sample's model through its handler.

``prepare_once(sample)`` (the session fixture ``prepared`` in conftest.py) runs ``python samples/<s>/prepare.py``
in a fresh interpreter, the way a person does, once per session; later tests read the model folder it wrote.
``prepare_module(sample)`` imports a sample's prepare.py for its data helpers (the held-out split, the examples)
under a private name; ``handler_harness()`` is tests/handlers' in-process TorchServe stand-in.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
HARNESS = REPO / "tests" / "handlers" / "handler_support.py"


@dataclass(frozen=True)
class Run:
    """One prepare.py run: its exit status, output and wall time."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float


@dataclass(frozen=True)
class Sample:
    """A prepared sample: its folder, mar.yaml, the model folder and the metrics prepare measured."""

    name: str
    folder: Path
    spec: dict[str, Any]
    model_dir: Path
    metrics: dict[str, Any]
    first_run: Run


def run_prepare(sample: str, *args: str) -> Run:
    """``python samples/<sample>/prepare.py ARGS`` from the repository root; never raises on failure."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(SAMPLES / sample / "prepare.py"), *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - start)


def tree_state(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``folder`` with its size and modification time, to tell whether anything was rewritten."""
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*")) if p.is_file()
    }


_prepared: dict[str, Sample] = {}


def prepare_once(sample: str) -> Sample:
    """Run prepare.py of ``sample`` the first time this process asks, and describe what it wrote."""
    if sample not in _prepared:
        run = run_prepare(sample)
        assert run.returncode == 0, f"prepare.py of {sample} failed:\n{run.stdout}\n{run.stderr}"
        folder = SAMPLES / sample
        model_dir = folder / "model"
        metrics = json.loads((model_dir / "metrics.json").read_text(encoding="utf-8"))
        spec = yaml.safe_load((folder / "mar.yaml").read_text(encoding="utf-8"))
        _prepared[sample] = Sample(sample, folder, spec, model_dir, metrics, run)
    return _prepared[sample]


def prepare_module(sample: str) -> ModuleType:
    """samples/<sample>/prepare.py imported as a module (its main() is not run)."""
    name = f"sample_prepare_{sample.replace('-', '_')}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SAMPLES / sample / "prepare.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def handler_harness() -> ModuleType:
    """tests/handlers/handler_support.py: assembles an extracted-archive folder and drives it as TorchServe does."""
    module = sys.modules.get("handler_support")
    if module is None:
        spec = importlib.util.spec_from_file_location("handler_support", HARNESS)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["handler_support"] = module
        spec.loader.exec_module(module)
    return module


def sample_json(folder: Path, name: str = "sample.json") -> Any:
    return json.loads((folder / name).read_text(encoding="utf-8"))


def common_module() -> ModuleType:
    """samples/_prepare_common.py, imported under the name the prepare scripts use."""
    if str(SAMPLES) not in sys.path:
        sys.path.insert(0, str(SAMPLES))
    import _prepare_common

    return _prepare_common


def leftovers(folder: Path) -> list[str]:
    """Temp or old model folders a prepare run left behind in ``folder`` (there should be none)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".model.") or p.name.startswith(".prepared."))
