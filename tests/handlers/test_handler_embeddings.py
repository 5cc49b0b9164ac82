"""embeddings: mean pooling over the attention mask, L2-normalised, as sentence-transformers defines it.

Checked with the real all-MiniLM-L6-v2 weights against sentence-transformers itself and against the definition
computed by hand (one sentence at a time, so no padding: the plain mean of the token states).
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from handler_support import raw, tensor, v1, v2

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A monkey is playing drums.",
]
LONG = " ".join(["the embedding of a very long document is cut at the model's maximum sequence length"] * 30)


@functools.cache
def _model(folder: Path):
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    return tokenizer, AutoModel.from_pretrained(str(folder), local_files_only=True).eval()


def by_hand(folder: Path, texts: list[str], max_length: int) -> torch.Tensor:
    tokenizer, model = _model(folder)
    rows = []
    with torch.inference_mode():
        for text in texts:
            states = model(**tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt"))
            mean = states.last_hidden_state[0].mean(dim=0)
            rows.append(mean / mean.norm())
    return torch.stack(rows)


@pytest.fixture(scope="module")
def minilm_served(minilm, tmp_path_factory):
    from handler_support import assemble, load

    threads = torch.get_num_threads()
    served = load(assemble(tmp_path_factory.mktemp("minilm") / "archive", "embeddings", minilm, link_model=True))
    yield served
    torch.set_num_threads(threads)


def test_minilm_embeddings_match_sentence_transformers_and_the_definition(minilm_served, minilm):
    from sentence_transformers import SentenceTransformer

    texts = [*SENTENCES, LONG]
    answers = minilm_served.batch(v1(texts[:2]), v1([{"data": texts[2]}]), raw(texts[3], "text/plain"), v1(texts[4:]))
    assert [a.status for a in answers] == [200] * 4
    got = torch.tensor(
        [
            *answers[0].body["predictions"],
            *answers[1].body["predictions"],
            answers[2].body,
            *answers[3].body["predictions"],
        ]
    )
    assert got.shape == (5, 384)
    expected = SentenceTransformer(str(minilm), device="cpu").encode(texts, convert_to_tensor=True)
    assert torch.allclose(got, expected.cpu(), atol=1e-5)
    # sentence_bert_config.json says max_seq_length 256: the long text is cut there, as sentence-transformers does.
    assert torch.allclose(got, by_hand(minilm, texts, max_length=256), atol=1e-5)
    assert not torch.allclose(got[4], by_hand(minilm, [LONG], max_length=128)[0], atol=1e-3)
    similarity = got @ got.T
    assert similarity[0, 1] > 0.6 > similarity[0, 3]


def test_minilm_answers_bad_requests_400_and_keeps_the_good_ones(minilm_served):
    answers = minilm_served.batch(v1([["a list"]]), v1(SENTENCES[:1]), v1({"data": "x"}))
    assert [a.status for a in answers] == [400, 200, 400]
    assert len(answers[1].body["predictions"][0]) == 384


def test_tiny_model_pools_over_the_mask_in_a_padded_batch(archive, tiny_bert):
    folder = tiny_bert("base")
    served = archive("embeddings", folder)
    answers = served.batch(v1(SENTENCES), v1([LONG]))
    got = torch.tensor(answers[0].body["predictions"] + answers[1].body["predictions"])
    assert torch.allclose(got, by_hand(folder, [*SENTENCES, LONG], max_length=128), atol=1e-5)
    assert torch.allclose(got.norm(dim=1), torch.ones(5), atol=1e-5)


def test_normalize_false_keeps_the_raw_mean(archive, tiny_bert):
    folder = tiny_bert("base")
    served = archive("embeddings", folder, options={"normalize": False})
    [vector] = served.one(v1(SENTENCES[:1])).body["predictions"]
    assert abs(torch.tensor(vector).norm().item() - 1) > 1e-3
    unit = by_hand(folder, SENTENCES[:1], max_length=128)[0]
    assert torch.allclose(torch.tensor(vector) / torch.tensor(vector).norm(), unit, atol=1e-5)


def test_v2_answers_fp32_n_by_d_with_the_v1_values_in_one_forward_pass(minilm_served):
    answers = minilm_served.batch(
        v2([tensor("text", [2], "BYTES", SENTENCES[:2])], id="e1"),
        v1(SENTENCES[2:]),
        v2([tensor("text", [2], "FP32", [1.0, 2.0])]),
    )
    assert [a.status for a in answers] == [200, 200, 400]
    body = answers[0].body
    assert {k: body[k] for k in ("model_name", "model_version", "id")} == {
        "model_name": "m", "model_version": "1.0", "id": "e1"
    }  # fmt: skip
    [out] = body["outputs"]
    assert (out["name"], out["shape"], out["datatype"]) == ("output-0", [2, 384], "FP32")
    [v1_rows] = [minilm_served.one(v1(SENTENCES[:2])).body["predictions"]]
    assert out["data"] == [x for row in v1_rows for x in row]  # the same values as v1, row-major
    assert answers[2].body == {
        "error": "input 'text': datatype FP32, expected BYTES (one UTF-8 string per text)"
    }  # fmt: skip
