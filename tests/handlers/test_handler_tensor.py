"""tensor: nested lists -> one batch tensor, for an eager nn.Module (+ state_dict) or a TorchScript file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from handler_support import model_source, raw, tensor, v1, v2

NET = """
import torch
from torch import nn


class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x):
        return self.linear(x)
"""


@pytest.fixture(scope="module")
def regressor(tmp_path_factory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("regressor")
    module = model_source(folder / "net.py", NET)
    torch.manual_seed(7)
    net = module.Regressor().eval()
    torch.save(net.state_dict(), folder / "state.pth")

    class Summary(torch.nn.Module):  # takes rows of any length
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.stack([x.sum(dim=1), x.amax(dim=1)], dim=1)

    torch.jit.script(Summary()).save(str(folder / "summary.pt"))
    return {"folder": folder, "net": net}


ROWS = [[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 2.0, 0.0], [3.0, 3.0, 3.0, 3.0]]


def expected_rows(net, rows) -> list[list[float]]:
    with torch.inference_mode():
        return [net(torch.tensor([row])).squeeze(0).tolist() for row in rows]


def test_eager_model_with_mixed_good_and_bad_requests(archive, regressor):
    folder = regressor["folder"]
    served = archive("tensor", folder / "state.pth", model_file=folder / "net.py")
    answers = served.batch(
        v1(ROWS[:2]),
        v1([[1, 2], [1, 2, 3, 4]]),
        v1([[1, "x", 3, 4]]),
        raw(ROWS[2]),
        v1([[[1, 2], [3]]]),
        v1([{"data": ROWS[0]}]),
        v1(["1,2,3,4"]),
    )
    assert [a.status for a in answers] == [200, 400, 400, 200, 400, 200, 400]
    assert answers[1].body == {"error": "the instances differ in shape: [(2,), (4,)]; one request is one batch"}
    assert answers[2].body["error"].startswith("instance 0: not a rectangular nested list of numbers")
    assert answers[4].body["error"].startswith("instance 0: not a rectangular nested list of numbers")
    assert answers[6].body["error"] == (
        'instance 0: expected a nested list of numbers or {"data": nested list}, got str'
    )
    got = [*answers[0].body["predictions"], answers[3].body, *answers[5].body["predictions"]]
    for row, expected in zip(got, expected_rows(regressor["net"], [*ROWS, ROWS[0]]), strict=True):
        assert row == pytest.approx(expected, abs=1e-6)


def test_a_wrongly_shaped_request_fails_alone_and_a_declared_shape_makes_it_400(archive, regressor):
    folder = regressor["folder"]
    served = archive("tensor", folder / "state.pth", model_file=folder / "net.py")
    # Before any pass has succeeded, torch's words say a layer refused the instances' shape: 400 all the same.
    [first] = served.batch(v1([[1.0, 2.0, 3.0]]))
    assert first.status == 400, first.body
    assert first.body["error"].startswith("instances of shape [3] do not fit the model (")
    assert "mat1 and mat2 shapes cannot be multiplied" in first.body["error"]
    # Once shape [4] has been served, a pass of shape [3] failing is the client's: 400, alone in its batch.
    answers = served.batch(v1(ROWS[:1]), v1([[1.0, 2.0, 3.0]]))
    assert [a.status for a in answers] == [200, 400]
    message = answers[1].body["error"]
    assert message.startswith("instances of shape [3] do not fit the model, which has served shape(s) [[4]]")
    assert "mat1 and mat2 shapes cannot be multiplied" in message and "options.shape" in message
    served = archive("tensor", folder / "state.pth", model_file=folder / "net.py", options={"shape": [4]})
    answers = served.batch(v1(ROWS[:1]), v1([[1.0, 2.0, 3.0]]))
    assert [a.status for a in answers] == [200, 400]
    assert answers[1].body == {"error": "instance 0: expected shape [4], got [3]"}


def test_argmax_output_with_and_without_class_names(archive, regressor):
    folder = regressor["folder"]
    best = [max(range(3), key=row.__getitem__) for row in expected_rows(regressor["net"], ROWS)]
    keywords = {"model_file": folder / "net.py", "options": {"output": "argmax"}}
    served = archive("tensor", folder / "state.pth", **keywords)
    assert served.one(v1(ROWS)).body == {"predictions": best}
    served = archive("tensor", folder / "state.pth", class_names=["a", "b", "c"], **keywords)
    assert served.one(v1(ROWS)).body == {"predictions": [["a", "b", "c"][i] for i in best]}


def test_torchscript_rows_of_different_lengths_from_different_requests(archive, regressor):
    served = archive("tensor", regressor["folder"] / "summary.pt", options={"dtype": "int64"})
    answers = served.batch(v1([[1, 2, 3], [4, 5, 6]]), v1([[1, 2, 3, 4, 5]]), raw([7, 8]), v1([[0.5, 1]]))
    assert [a.body for a in answers] == [
        {"predictions": [[6, 3], [15, 6]]},
        {"predictions": [[15, 5]]},
        [15, 8],
        {"predictions": [[1, 1]]},  # int64 as asked: 0.5 -> 0
    ]


def test_bad_options_and_models_fail_the_load_with_the_reason(archive, regressor, tmp_path: Path):
    folder = regressor["folder"]
    with pytest.raises(ValueError, match="options.dtype 'float99' is not a torch dtype"):
        archive("tensor", folder / "summary.pt", options={"dtype": "float99"})
    with pytest.raises(ValueError, match="options.output must be one of"):
        archive("tensor", folder / "summary.pt", options={"output": "probabilities"})
    pickled = tmp_path / "whole.pt"
    torch.save(torch.nn.Linear(4, 3), pickled)  # the whole module object, not its state_dict
    with pytest.raises(ValueError, match="is not a state_dict torch can load safely"):
        archive("tensor", pickled, model_file=folder / "net.py")
    with pytest.raises(ValueError, match="defines no nn.Module named 'Missing'"):
        archive("tensor", folder / "state.pth", model_file=folder / "net.py", model_class="Missing")


def test_v2_tensors_are_the_batch_flat_or_nested_their_datatype_checked_against_the_models(archive, regressor):
    folder = regressor["folder"]
    served = archive("tensor", folder / "state.pth", model_file=folder / "net.py", options={"shape": [4]})
    flat = [x for row in ROWS for x in row]
    answers = served.batch(
        v2([tensor("x", [3, 4], "FP32", flat)], id="flat"),
        v2([tensor("x", [2, 4], "FP64", ROWS[:2])]),
        v2([tensor("x", [1, 4], "INT64", [[1, 2, 3, 4]])]),
        v1(ROWS[2:]),
        v2([tensor("x", [2, 2], "FP32", flat[:4])]),
        v2([tensor("x", [1, 4], "BOOL", [True, False, True, False])]),
        v2([tensor("x", [4], "FP32", flat[:4])]),
    )
    assert [a.status for a in answers] == [200, 200, 200, 200, 400, 400, 400]
    expected = expected_rows(regressor["net"], [*ROWS, [1.0, 2.0, 3.0, 4.0]])
    [out] = answers[0].body["outputs"]
    assert (out["shape"], out["datatype"], answers[0].body["id"]) == ([3, 3], "FP32", "flat")
    assert out["data"] == pytest.approx([x for row in expected[:3] for x in row], abs=1e-6)
    assert answers[1].body["outputs"][0]["data"] == pytest.approx([x for row in expected[:2] for x in row], abs=1e-6)
    assert answers[2].body["outputs"][0]["data"] == pytest.approx(expected[3], abs=1e-5)
    assert answers[3].body["predictions"][0] == pytest.approx(expected[2], abs=1e-6)
    assert [a.body["error"] for a in answers[4:]] == [
        "input 'x': shape [2, 2], expected [-1, 4] (N samples of [4])",
        "input 'x': datatype BOOL, expected UINT8 or UINT16 or UINT32 or UINT64 or INT8 or INT16 or INT32 or INT64 "
        "or FP16 or FP32 or FP64 (the model takes torch.float32)",
        "input 'x': shape [4], expected [-1, 4] (N samples of [4])",
    ]


def test_v2_integer_models_take_integer_datatypes_and_answer_their_dtype(archive, regressor):
    served = archive("tensor", regressor["folder"] / "summary.pt", options={"dtype": "int64"})
    good, bad = served.batch(
        v2([tensor("x", [2, 3], "INT32", [1, 2, 3, 4, 5, 6])]), v2([tensor("x", [1, 1], "FP32", [0.5])])
    )
    assert good.body["outputs"] == [{"name": "output-0", "shape": [2, 2], "datatype": "INT64", "data": [6, 3, 15, 6]}]
    assert bad.body["error"].startswith("input 'x': datatype FP32, expected UINT8 or")
