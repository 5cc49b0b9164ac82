"""Why the handler refused a request, as mar_build_bad_requests_total counts it: one batch through the python
runtime's loader and context (the handler code TorchServe runs), bodies as the worker hands them over."""

from __future__ import annotations

import pytest

from toolkit._layout import read_layout
from toolkit._metrics import names

NAME = "reasons"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> object:
    import torch

    from toolkit._build.builder import build
    from toolkit._runtime.loader import load_model
    from toolkit._spec.parse import parse_spec

    root = tmp_path_factory.mktemp("reasons")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(root / "linear.pt"))
    spec = parse_spec({"name": NAME, "task": "tensor", "model": str(root / "linear.pt"),
                       "serving": {"batch_size": 8}}, base=root)
    layout = build(spec, root / "layout").layout
    return load_model(read_layout(layout).entries[0], layout, root / "unpacked", envelope=None, previous=[])


def _value(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    from toolkit._metrics.registry import HOST

    value = REGISTRY.get_sample_value(name, {"model_name": NAME, "model_version": "1.0", "Hostname": HOST, **labels})
    return value or 0.0


def test_each_refused_request_is_counted_under_its_reason_and_the_good_ones_by_status(model: object) -> None:
    from toolkit._runtime.handling import Request, run_batch

    bodies = [
        ({"instances": [[1.0, 2.0]]}, "application/json"),
        ({"instances": [[3.0, 4.0], [5.0, 6.0]]}, "application/json"),
        (b'{"instances": [1, ', "application/json"),  # JSON that does not parse: body
        ({"instances": []}, "application/json"),  # envelope
        ({"instances": [["a", "b"]]}, "application/json"),  # instance
        ({"instances": [[1.0, 2.0], [1.0]]}, "application/json"),  # rows of different shapes: request
        ({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0]}]}, "application/json"),  # v2
    ]
    before = {r: _value(names.BAD_REQUESTS, reason=r) for r in names.BAD_REQUEST_REASONS}
    ok_before = _value(names.REQUESTS, status="200")
    requests = [Request(body, content_type) for body, content_type in bodies]
    answers = run_batch(model, requests)  # type: ignore[arg-type]
    assert [a.status for a in answers] == [200, 200, 400, 400, 400, 400, 400], [a.body for a in answers]
    counted = {r: _value(names.BAD_REQUESTS, reason=r) - before[r] for r in names.BAD_REQUEST_REASONS}
    assert counted == {"body": 1, "envelope": 1, "instance": 1, "request": 1, "v2": 1, "pass": 0}
    assert _value(names.REQUESTS, status="200") - ok_before == 2
    assert _value(names.REQUESTS, status="400") >= 5
    assert _value(names.BATCH_REQUESTS + "_sum") >= 7
