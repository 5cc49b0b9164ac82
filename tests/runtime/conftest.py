"""Fixtures for the python runtime's tests: a mar-build layout (task tensor), a hand-built archive with a stock
TorchServe handler, and the runtime serving both (``toolkit.serve(..., runtime="python")``) for the module."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from serve.serve_support import add_model

from toolkit._build.builder import build
from toolkit._layout import set_properties
from toolkit._serve import RuntimePredictor, serve
from toolkit._spec.parse import parse_spec

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    predictor: RuntimePredictor
    module: object  # the TorchScript module both models serve

    def expected(self, instances: list[list[float]]) -> list[list[float]]:
        import torch

        with torch.no_grad():
            return self.module(torch.tensor(instances, dtype=torch.float32)).tolist()  # type: ignore[operator,no-any-return]


def _stock_archive(model: Path, export: Path) -> Path:
    """stock.mar, built with torch-model-archiver itself: the stock handler and the TorchScript file."""
    export.mkdir(parents=True, exist_ok=True)
    cmd = [str(Path(sys.executable).parent / "torch-model-archiver"), "--model-name", "stock", "--version", "2.0",
           "--serialized-file", str(model), "--handler", str(FIXTURES / "stock_linear_handler.py"),
           "--export-path", str(export), "--force"]
    subprocess.run(cmd, check=True, capture_output=True)
    return export / "stock.mar"


def _add(layout: Path, name: str, mar: Path, batch_size: int) -> None:
    add_model(layout, name, mar, batch_size=batch_size, version="2.0")
    # The stock handler needs the stock envelope: env config on, TS_SERVICE_ENVELOPE=kserve (as KServe sets).
    config = layout / "config" / "config.properties"
    config.write_text(set_properties(config.read_text(), {"enable_envvars_config": "true"}))


def stock_layout(work: Path, model: Path, *, batch_size: int) -> Path:
    """WORK/layout: the hand-built archive ``stock`` (torch-model-archiver, stock BaseHandler) alone, env config on."""
    layout = work / "layout"
    (layout / "model-store").mkdir(parents=True)
    (layout / "config").mkdir()
    (layout / "config" / "config.properties").write_text(
        "inference_address=http://0.0.0.0:8085\nmanagement_address=http://0.0.0.0:8085\n"
        "grpc_inference_port=7070\nmodel_store=/mnt/models/model-store\nenable_envvars_config=false\n"
        'model_snapshot={"name":"startup.cfg","modelCount":0,"models":{}}\n'
    )
    _add(layout, "stock", _stock_archive(model, work / "mar"), batch_size=batch_size)
    return layout


@pytest.fixture(scope="module")
def linear(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A TorchScript nn.Linear(4, 3) on disk, and the module."""
    import torch

    torch.manual_seed(11)
    module = torch.jit.script(torch.nn.Linear(4, 3).eval())
    path = tmp_path_factory.mktemp("linear") / "linear.pt"
    torch.jit.save(module, str(path))
    return path, module


def _serve(layout: Path, run: Path) -> RuntimePredictor:
    predictor = serve(layout, port=free_port(), runtime="python", workdir=run, startup_timeout=180)
    assert isinstance(predictor, RuntimePredictor)
    return predictor


@pytest.fixture(scope="module")
def served(linear: tuple[Path, object], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A mar-build layout (model ``linear``, task tensor, batchSize 8) on the python runtime."""
    model, module = linear
    work = tmp_path_factory.mktemp("runtime")
    spec = parse_spec({"name": "linear", "task": "tensor", "model": str(model),
                       "serving": {"batch_size": 8, "max_batch_delay": 50}}, base=model.parent)
    layout = build(spec, work / "layout").layout
    with _serve(layout, work / "run") as predictor:
        yield Served(predictor, module)


@pytest.fixture(scope="module")
def stock_served(linear: tuple[Path, object], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A layout of one hand-built archive (``stock``, a stock BaseHandler subclass) with env config on, so the
    stock kserve envelope wraps it, as TorchServe does in the pod."""
    model, module = linear
    work = tmp_path_factory.mktemp("stock")
    with _serve(stock_layout(work, model, batch_size=8), work / "run") as predictor:
        yield Served(predictor, module)
