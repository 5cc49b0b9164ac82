"""Every sample answers identically through both runtimes, v1 and v2: TorchServe behind KServe's wrapper, and the python
runtime (``serve(..., runtime="python")``), on the same layout built by mar-build; a malformed request gets the
same status and error from both. The CLI offers ``--runtime``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from serve_support import free_port

from toolkit._build.builder import build
from toolkit._cli import cli
from toolkit._serve import RuntimePredictor, serve

# The samples' cases (what each is asked, the right answers) live with the integration tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from integration_support import CASES, SAMPLE_FOLDERS, SAMPLES, Case  # noqa: E402

pytestmark = pytest.mark.slow


def _prepare(folder: str) -> None:
    proc = subprocess.run([sys.executable, str(SAMPLES / folder / "prepare.py")], capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def _v2_body(instances: list[Any]) -> dict[str, Any]:
    """The case's instances as one v2 input: numbers as FP32 [N, ...]; anything else as BYTES [N], each instance
    its text, its "data" (a text, an image's base64), or its JSON (a custom handler's record)."""
    if all(isinstance(i, list) for i in instances):
        shape = [len(instances)]
        row: Any = instances[0]
        while isinstance(row, list):
            shape.append(len(row))
            row = row[0]
        return {"inputs": [{"name": "input-0", "shape": shape, "datatype": "FP32", "data": instances}]}

    def text(i: Any) -> str:
        if isinstance(i, str):
            return i
        return i["data"] if isinstance(i, dict) and isinstance(i.get("data"), str) else json.dumps(i)

    data = [text(i) for i in instances]
    return {"inputs": [{"name": "input-0", "shape": [len(data)], "datatype": "BYTES", "data": data}]}


def _ask(url: str, name: str, case: Case) -> list[tuple[int, Any]]:
    answers = []
    malformed = {"instances": [{"no such key": True}]}
    for body in ({"instances": case.instances}, {"instances": case.instances[:1]}, malformed):
        reply = httpx.post(f"{url}/v1/models/{name}:predict", json=body, timeout=120)
        answers.append((reply.status_code, reply.json()))
    # v2 (Open Inference Protocol): the same instances, and a tensor with no data
    for body in (_v2_body(case.instances), {"inputs": [{"name": "input-0", "shape": [1], "datatype": "BYTES"}]}):
        reply = httpx.post(f"{url}/v2/models/{name}/infer", json=body, timeout=120)
        answers.append((reply.status_code, reply.json()))
    return answers


@pytest.fixture(scope="module", params=SAMPLE_FOLDERS)
def both(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Case, list[Any], list[Any]]]:
    folder: str = request.param
    _prepare(folder)
    case = CASES[folder]()
    layout = build(SAMPLES / folder, tmp_path_factory.mktemp(folder) / "layout",
                   overrides={"serving.batch_size": 8, "serving.max_batch_delay": 50}).layout
    answers = {}
    for runtime in ("torchserve", "python"):
        with serve(layout, port=free_port(), runtime=runtime, startup_timeout=300) as predictor:  # type: ignore[arg-type]
            assert isinstance(predictor, RuntimePredictor) == (runtime == "python")
            answers[runtime] = _ask(predictor.url, case.name, case)
    yield case, answers["torchserve"], answers["python"]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-4, abs=1e-5)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def test_both_runtimes_answer_the_same(both: tuple[Case, list[Any], list[Any]]) -> None:
    case, torchserve, python = both
    status, body = python[0]
    assert status == 200, body
    case.check(body["predictions"])
    assert [s for s, _ in torchserve] == [s for s, _ in python]
    assert python[1][0] == 200 and 400 <= python[2][0] < 500, python
    if case.folder != "custom":  # its handler takes JSON records, which a v2 tensor does not carry (both: 400)
        assert python[3][0] == 200 and len(python[3][1]["outputs"][0]["data"]) >= len(case.instances), python[3]
    assert python[4][0] == 400 and 'missing "data"' in python[4][1]["error"], python[4]
    for (_, ts_body), (_, py_body) in zip(torchserve, python, strict=True):
        assert _same(ts_body, py_body), (ts_body, py_body)


def test_cli_serve_has_a_runtime_option() -> None:
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0
    assert "--runtime [torchserve|python]" in result.output
