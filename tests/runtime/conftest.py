"""Fixtures for the python runtime's tests: a mar-build layout (task tensor), a hand-built archive with a stock
TorchServe handler, and the runtime serving both (``toolkit.serve(..., runtime="python")``) for the module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from runtime_support import Served, serve_python, stock_layout

from toolkit._build.builder import build
from toolkit._spec.parse import parse_spec


@pytest.fixture(scope="module")
def linear(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A TorchScript nn.Linear(4, 3) on disk, and the module."""
    import torch

    torch.manual_seed(11)
    module = torch.jit.script(torch.nn.Linear(4, 3).eval())
    path = tmp_path_factory.mktemp("linear") / "linear.pt"
    torch.jit.save(module, str(path))
    return path, module


@pytest.fixture(scope="module")
def served(linear: tuple[Path, object], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A mar-build layout (model ``linear``, task tensor, batchSize 8) on the python runtime."""
    model, module = linear
    work = tmp_path_factory.mktemp("runtime")
    spec = parse_spec({"name": "linear", "task": "tensor", "model": str(model),
                       "serving": {"batch_size": 8, "max_batch_delay": 50}}, base=model.parent)
    layout = build(spec, work / "layout").layout
    with serve_python(layout, work / "run") as predictor:
        yield Served(predictor, module)


@pytest.fixture(scope="module")
def stock_served(linear: tuple[Path, object], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A layout of one hand-built archive (``stock``, a stock BaseHandler subclass) with env config on, so the
    stock kserve envelope wraps it, as TorchServe does in the pod."""
    model, module = linear
    work = tmp_path_factory.mktemp("stock")
    with serve_python(stock_layout(work, model, batch_size=8), work / "run") as predictor:
        yield Served(predictor, module)
