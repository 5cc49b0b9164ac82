"""Fixtures for the serve tests: real TorchServe, the real kserve wrapper, layouts built by mar-build.

``tiny_model``     a TorchScript nn.Linear(4, 3) saved to disk, and the module itself to compute expected answers
``tensor_layout``  that model built with ``toolkit.build`` (task tensor, batchSize 8)
``echo_mar``       a hand-made archive (torch-model-archiver) whose load waits for a gate file; see fixtures/
``failing_mar``    a hand-made archive whose handler raises at load
``missing_module_mar``  a hand-made archive whose handler imports a package nobody installed
``stack``          one served stack for the session: tensor model + the gated echo model, with what the wrapper
                   answered for echo while it was still loading
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serve_support import FIXTURES, Stack, TinyModel, add_model, archive, copy_layout, free_port

from toolkit._build.builder import build
from toolkit._serve import ServeEvent, serve
from toolkit._spec.parse import parse_spec


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    import torch

    torch.manual_seed(7)
    module = torch.jit.script(torch.nn.Linear(4, 3).eval())
    path = tmp_path_factory.mktemp("tiny") / "linear.pt"
    torch.jit.save(module, str(path))
    return TinyModel(path, module)


@pytest.fixture(scope="session")
def tensor_layout(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A layout built by mar-build: model ``linear`` (task tensor), batchSize 8."""
    spec = parse_spec(
        {"name": "linear", "task": "tensor", "model": str(tiny_model.path),
         "serving": {"batch_size": 8, "max_batch_delay": 100}},
        base=tiny_model.path.parent,
    )
    return build(spec, tmp_path_factory.mktemp("built") / "layout").layout


@pytest.fixture(scope="session")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The file the echo model waits for at load (not created here)."""
    return tmp_path_factory.mktemp("gate") / "open"


@pytest.fixture(scope="session")
def echo_mar(gate: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("echo")
    (work / "gate.json").write_text(json.dumps({"path": str(gate)}))
    return archive(FIXTURES / "echo_handler.py", "echo", work / "out", [work / "gate.json"])


@pytest.fixture(scope="session")
def failing_mar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return archive(FIXTURES / "failing_handler.py", "broken", tmp_path_factory.mktemp("failing"))


@pytest.fixture(scope="session")
def missing_module_mar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return archive(FIXTURES / "missing_module_handler.py", "needy", tmp_path_factory.mktemp("missing-module"))


@pytest.fixture(scope="session")
def stack(tensor_layout: Path, echo_mar: Path, gate: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """serve() on a layout with ``linear`` and the gated ``echo``; the gate opens once the wrapper said 503."""
    root = tmp_path_factory.mktemp("stack")
    layout = copy_layout(tensor_layout, root / "layout")
    add_model(layout, "echo", echo_mar)
    config_before = (layout / "config" / "config.properties").read_bytes()
    events: list[ServeEvent] = []
    while_loading: dict[str, object] = {}
    port = free_port()

    def on_event(event: ServeEvent) -> None:
        events.append(event)
        if event.kind == "model-loading" and event.model == "echo":
            base = f"http://127.0.0.1:{port}"
            echo = httpx.get(f"{base}/v1/models/echo", timeout=10)
            while_loading["status"] = echo.status_code
            while_loading["body"] = echo.text
            while_loading["models"] = httpx.get(f"{base}/v1/models", timeout=10).json()
            gate.touch()

    predictor = serve(layout, port=port, workdir=root / "run", on_event=on_event, startup_timeout=240)
    try:
        yield Stack(predictor, layout, config_before, root / "run", events, while_loading)
    finally:
        predictor.stop()
