"""The `init custom` scaffold: it renders, compiles, and serves as written (batching and errors from the base)."""

from __future__ import annotations

import pytest
import torch
from handler_support import raw, v1

from toolkit._templating import render_template


@pytest.fixture(scope="module")
def scaffold() -> str:
    return render_template("custom_handler.py.jinja", name="my-model", class_name="MyModelHandler")


def test_the_scaffold_compiles_and_names_the_class(scaffold: str):
    compile(scaffold, "handler.py", "exec")
    assert "class MyModelHandler(BaseHandler):" in scaffold
    assert "from mar_build_handlers.base import BadInstance, BaseHandler" in scaffold
    assert "my-model" in scaffold


def test_the_scaffold_serves_a_torchscript_model_as_written(archive, scaffold: str, tmp_path):
    torch.manual_seed(11)
    linear = torch.nn.Linear(3, 2).eval()
    path = tmp_path / "linear.pt"
    torch.jit.script(linear).save(str(path))
    served = archive("custom", path, custom_handler=scaffold)
    answers = served.batch(
        v1([[1, 2, 3], {"data": [4, 5, 6]}]),
        v1([[1, 2], [1, 2, 3]]),
        v1(["x"]),
        raw([7, 8, 9]),
        v1([[1, 2]]),
        v1([[0, 0, 1]], explain=True),
    )
    assert [a.status for a in answers] == [200, 400, 400, 200, 500, 200]
    assert answers[1].body == {"error": "all instances of a request must have the same length"}
    assert answers[2].body == {"error": 'instance 0: expected a list of numbers or {"data": [numbers]}'}
    with torch.inference_mode():
        expected = linear(torch.tensor([[1.0, 2, 3], [4, 5, 6], [7, 8, 9], [0, 0, 1]])).tolist()
    assert answers[0].body["predictions"] == [pytest.approx(expected[0]), pytest.approx(expected[1])]
    assert answers[3].body == pytest.approx(expected[2])
    assert answers[5].body["explanations"] == [pytest.approx(expected[3])]
