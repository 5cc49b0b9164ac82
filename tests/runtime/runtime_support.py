"""What the python runtime's tests share: the served runtime with its module, a hand-built stock-handler archive
and its layout, and serve() on the python runtime."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from serve.serve_support import add_model, free_port

from toolkit._layout import set_properties
from toolkit._serve import RuntimePredictor, serve

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@dataclass
class Served:
    predictor: RuntimePredictor
    module: object  # the TorchScript module both models serve

    def expected(self, instances: list[list[float]]) -> list[list[float]]:
        import torch

        with torch.no_grad():
            return self.module(torch.tensor(instances, dtype=torch.float32)).tolist()  # type: ignore[operator,no-any-return]


def stock_archive(model: Path, export: Path) -> Path:
    """stock.mar, built with torch-model-archiver itself: the stock handler and the TorchScript file."""
    export.mkdir(parents=True, exist_ok=True)
    cmd = [str(Path(sys.executable).parent / "torch-model-archiver"), "--model-name", "stock", "--version", "2.0",
           "--serialized-file", str(model), "--handler", str(FIXTURES / "stock_linear_handler.py"),
           "--export-path", str(export), "--force"]
    subprocess.run(cmd, check=True, capture_output=True)
    return export / "stock.mar"


def add_stock(layout: Path, name: str, mar: Path, batch_size: int) -> None:
    add_model(layout, name, mar, batch_size=batch_size, version="2.0")
    # The stock handler needs the stock envelope: env config on, TS_SERVICE_ENVELOPE=kserve (as KServe sets).
    config = layout / "config" / "config.properties"
    config.write_text(set_properties(config.read_text(), {"enable_envvars_config": "true"}))


def bare_layout(work: Path) -> Path:
    """WORK/layout: a hand-written config.properties and an empty model store (add_model puts archives in)."""
    layout = work / "layout"
    (layout / "model-store").mkdir(parents=True)
    (layout / "config").mkdir()
    (layout / "config" / "config.properties").write_text(
        "inference_address=http://0.0.0.0:8085\nmanagement_address=http://0.0.0.0:8085\n"
        "grpc_inference_port=7070\nmodel_store=/mnt/models/model-store\nenable_envvars_config=false\n"
        'model_snapshot={"name":"startup.cfg","modelCount":0,"models":{}}\n'
    )
    return layout


def stock_layout(work: Path, model: Path, *, batch_size: int) -> Path:
    """WORK/layout: the hand-built archive ``stock`` (torch-model-archiver, stock BaseHandler) alone, env config on."""
    layout = bare_layout(work)
    add_stock(layout, "stock", stock_archive(model, work / "mar"), batch_size=batch_size)
    return layout


def serve_python(layout: Path, run: Path) -> RuntimePredictor:
    predictor = serve(layout, port=free_port(), runtime="python", workdir=run, startup_timeout=180)
    assert isinstance(predictor, RuntimePredictor)
    return predictor
