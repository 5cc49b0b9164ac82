"""GET /v2/models/M (and its versioned URL) on both runtimes: the same, true inputs and outputs for each model.

One layout, two models: ``linear`` (the tensor layout fixture: no options.shape, so any sample shape) and
``shaped`` (the same model built with options.shape [4]). Both runtimes serve it at once, one server each for the
module; tritonclient's HTTP client (a v2 client nobody here wrote) reads the metadata, and an infer request built
from nothing but that metadata is answered as the metadata says.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_support import TinyModel, add_model, assert_rows_close, copy_layout, free_port

from toolkit._build.builder import build
from toolkit._layout import read_layout
from toolkit._serve import Runtime, serve
from toolkit._spec.parse import parse_spec

pytestmark = pytest.mark.slow

RUNTIMES: tuple[Runtime, ...] = ("python", "torchserve")
FEATURES = 4  # what the tiny model's nn.Linear(4, 3) takes: the -1 a sample dimension of ``linear`` stands for
EXPECTED = {
    "linear": {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [-1, -1]}],
               "outputs": [{"name": "output-0", "datatype": "FP32", "shape": [-1, -1]}]},
    "shaped": {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [-1, FEATURES]}],
               "outputs": [{"name": "output-0", "datatype": "FP32", "shape": [-1, -1]}]},
}


@pytest.fixture(scope="module")
def servers(tensor_layout: Path, tiny_model: TinyModel,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("v2-metadata")
    layout = copy_layout(tensor_layout, root / "layout")
    spec = parse_spec({"name": "shaped", "task": "tensor", "model": str(tiny_model.path),
                       "options": {"shape": [FEATURES]}}, base=tiny_model.path.parent)
    shaped = build(spec, root / "shaped").layout / "model-store" / "shaped.mar"
    add_model(layout, "shaped", shaped, batch_size=4)
    started: dict[str, Any] = {}
    try:
        for runtime in RUNTIMES:
            started[runtime] = serve(layout, port=free_port(), workdir=root / f"run-{runtime}", startup_timeout=240,
                                     runtime=runtime)
        yield started
    finally:
        for predictor in started.values():
            predictor.stop()


def _client(predictor: Any) -> Any:
    from tritonclient.http import InferenceServerClient

    return InferenceServerClient(url=predictor.url.removeprefix("http://"), network_timeout=120)


def _tensors(metadata: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {key: metadata[key] for key in ("inputs", "outputs")}


def test_both_runtimes_answer_the_same_true_metadata(servers: dict[str, Any], tensor_layout: Path) -> None:
    version = read_layout(tensor_layout).entries[0].version  # the versioned URLs answer as the unversioned
    answers: dict[str, dict[str, Any]] = {}
    for runtime, predictor in servers.items():
        client = _client(predictor)
        try:
            for model in EXPECTED:
                metadata = client.get_model_metadata(model)
                assert metadata["name"] == model
                assert _tensors(metadata) == EXPECTED[model], (runtime, metadata)
                answers[f"{runtime} {model}"] = metadata
                assert client.get_model_metadata(model, model_version=version) == metadata, runtime
                assert client.is_model_ready(model, model_version=version), runtime
        finally:
            client.close()
    for model in EXPECTED:
        assert answers[f"python {model}"] == answers[f"torchserve {model}"]  # name, platform, versions too


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("model", sorted(EXPECTED))
def test_an_infer_built_from_the_metadata_is_answered_as_it_says(servers: dict[str, Any], tiny_model: TinyModel,
                                                                 runtime: Runtime, model: str) -> None:
    import numpy as np
    from tritonclient.http import InferInput, InferRequestedOutput
    from tritonclient.utils import InferenceServerException, triton_to_np_dtype

    client = _client(servers[runtime])
    try:
        metadata = client.get_model_metadata(model)
        [given], [answered] = metadata["inputs"], metadata["outputs"]
        rows = 2
        shape = [rows, *(FEATURES if n == -1 else n for n in given["shape"][1:])]
        data = np.arange(rows * FEATURES, dtype=triton_to_np_dtype(given["datatype"])).reshape(shape) / 7
        sent = InferInput(given["name"], shape, given["datatype"])
        sent.set_data_from_numpy(data.astype(triton_to_np_dtype(given["datatype"])), binary_data=False)
        result = client.infer(model, [sent], outputs=[InferRequestedOutput(answered["name"], binary_data=False)])
        [output] = result.get_response()["outputs"]
        assert output["name"] == answered["name"] and output["datatype"] == answered["datatype"], output
        assert len(output["shape"]) == len(answered["shape"]), output
        assert all(want in (-1, got) for got, want in zip(output["shape"], answered["shape"], strict=True)), output
        assert output["shape"][0] == rows
        assert_rows_close(result.as_numpy(answered["name"]).tolist(), tiny_model.predict(data.tolist()))
        if -1 not in given["shape"][1:]:  # a fixed dimension is checked: another size is refused
            wrong = InferInput(given["name"], [rows, FEATURES + 1], given["datatype"])
            wrong.set_data_from_numpy(np.zeros((rows, FEATURES + 1), dtype=np.float32), binary_data=False)
            with pytest.raises(InferenceServerException, match=re.escape(str(given["shape"]))):
                client.infer(model, [wrong])
    finally:
        client.close()
