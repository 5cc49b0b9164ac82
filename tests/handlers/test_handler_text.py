"""text-classification and token-classification on tiny random-weight BERTs with MiniLM's tokenizer.

Expected answers come from the same weights run one text at a time (no padding), so a batched, padded forward pass
that mixed up masks, order or truncation would not match.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from handler_support import handler_module, raw, tensor, v1, v2

TOKEN_TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
TEXTS = [
    "Hello World!",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "I loved this film",
    "terrible, slow and far too long; I walked out before the end",
]


def reference(folder: Path, texts: list[str], head: str = "sequence", max_length: int = 128) -> list[torch.Tensor]:
    """Per-text probabilities (sequence: [labels]; token: [tokens, labels]), one text at a time, unpadded."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    auto = AutoModelForSequenceClassification if head == "sequence" else AutoModelForTokenClassification
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = auto.from_pretrained(str(folder), local_files_only=True).eval()
    with torch.inference_mode():
        return [
            model(**tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")).logits[0].softmax(-1)
            for text in texts
        ]


def test_a_model_without_names_answers_the_bare_class_id_like_the_hand_workflow(archive, tiny_bert):
    folder = tiny_bert("sequence", num_labels=5)
    served = archive("text-classification", folder)
    answer = served.one(v1([{"data": "Hello World!"}]))
    expected = int(reference(folder, ["Hello World!"])[0].argmax())
    assert (answer.status, answer.body) == (200, {"predictions": [expected]})


def test_a_mixed_batch_answers_each_good_request_in_order_and_each_bad_one_400(archive, tiny_bert):
    folder = tiny_bert("sequence", num_labels=3)
    served = archive("text-classification", folder, class_names=["neg", "neu", "pos"], options={"output": "scores"})
    probs = reference(folder, TEXTS)
    answers = served.batch(
        v1([{"data": TEXTS[0]}, TEXTS[1]]),
        v1([{"data": 5}]),
        raw(TEXTS[2], "text/plain"),
        v1(["ok", 12]),
        raw(b"\xff\xfe not utf-8"),
        v1([{"text": TEXTS[3]}]),
        v1([{"data": "a", "text": "b"}]),
    )
    assert [a.status for a in answers] == [200, 400, 200, 400, 400, 200, 400]
    assert answers[1].body == {"error": 'instance 0: expected a string, {"data": string} or {"text": string}, got int'}
    assert answers[3].body["error"].startswith("instance 1: expected a string")
    assert answers[4].body["error"].startswith("the text is not UTF-8")
    assert answers[6].body["error"] == (
        'instance 0: expected a string, {"data": string} or {"text": string}, got an object with keys '
        "['data', 'text']"
    )
    got = [*answers[0].body["predictions"], answers[2].body, answers[5].body["predictions"][0]]
    for prediction, expected in zip(got, probs, strict=True):
        names = ["neg", "neu", "pos"]
        assert prediction["label"] == names[int(expected.argmax())]
        assert prediction["score"] == pytest.approx(float(expected.max()), abs=1e-5)
        assert list(prediction["scores"]) == names
        assert list(prediction["scores"].values()) == pytest.approx(expected.tolist(), abs=1e-5)


def test_explain_answers_the_scores_per_instance(archive, tiny_bert):
    folder = tiny_bert("sequence", num_labels=3)
    served = archive("text-classification", folder)
    probs = reference(folder, TEXTS[:2])
    answers = served.batch(v1(TEXTS[:2], explain=True), v1(TEXTS[:1]))
    explanations = answers[0].body["explanations"]
    assert [list(e) for e in explanations] == [["0", "1", "2"]] * 2
    for explanation, expected in zip(explanations, probs, strict=True):
        assert list(explanation.values()) == pytest.approx(expected.tolist(), abs=1e-5)
    assert answers[1].body == {"predictions": [int(probs[0].argmax())]}


def test_labels_come_from_class_names_then_the_models_own_names(archive, tiny_bert):
    names = {0: "sad", 1: "happy"}
    folder = tiny_bert("sequence", num_labels=2, id2label=names, label2id={v: k for k, v in names.items()})
    expected = [int(p.argmax()) for p in reference(folder, TEXTS)]
    own = archive("text-classification", folder).one(v1(TEXTS)).body["predictions"]
    assert own == [names[i] for i in expected]
    given = archive("text-classification", folder, class_names=["N", "P"]).one(v1(TEXTS)).body["predictions"]
    assert given == [["N", "P"][i] for i in expected]
    with pytest.raises(ValueError, match="class_names has 3 names but the model has 2 classes"):
        archive("text-classification", folder, class_names=["a", "b", "c"])


def test_label_names_are_class_names_then_the_models_own_never_generic_or_incomplete_ones():
    label_names = handler_module("labels").label_names
    assert label_names(["a", "b"], {0: "x", 1: "y"}, 2) == ["a", "b"]
    assert label_names(None, {0: "x", 1: "y"}, 2) == ["x", "y"]
    assert label_names(None, {"0": "x", "1": "y"}, 2) == ["x", "y"]  # a config.json read as plain JSON
    assert label_names(None, {0: "LABEL_0", 1: "LABEL_1"}, 2) is None  # transformers' placeholders: bare ids
    assert label_names(None, {0: "x", 2: "y"}, 2) is None  # no name for class 1
    assert label_names(None, None, None) is None


def test_top_k_answers_the_best_labels_with_scores(archive, tiny_bert):
    folder = tiny_bert("sequence", num_labels=3)
    served = archive("text-classification", folder, class_names=["a", "b", "c"], options={"top_k": 2})
    expected = reference(folder, TEXTS[:1])[0]
    order = expected.argsort(descending=True)[:2].tolist()
    [prediction] = served.one(v1(TEXTS[:1])).body["predictions"]
    assert [p["label"] for p in prediction] == [["a", "b", "c"][i] for i in order]
    assert [p["score"] for p in prediction] == pytest.approx([float(expected[i]) for i in order], abs=1e-5)


def test_max_length_truncates_like_the_tokenizer(archive, tiny_bert):
    folder = tiny_bert("sequence", num_labels=3)
    served = archive("text-classification", folder, options={"max_length": 8, "output": "scores"})
    expected = reference(folder, TEXTS[1:2], max_length=8)[0]
    prediction = served.one(v1(TEXTS[1:2])).body["predictions"][0]
    assert list(prediction["scores"].values()) == pytest.approx(expected.tolist(), abs=1e-5)


def test_a_multi_label_model_scores_each_class_with_a_sigmoid(archive, tiny_bert):
    folder = tiny_bert("sequence", num_labels=3, problem_type="multi_label_classification")
    served = archive("text-classification", folder)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    with torch.inference_mode():
        expected = model(**tokenizer(TEXTS[0], return_tensors="pt")).logits[0].sigmoid()
    [scores] = served.one(v1(TEXTS[:1], explain=True)).body["explanations"]
    assert list(scores.values()) == pytest.approx(expected.tolist(), abs=1e-5)


@pytest.fixture
def token_model(tiny_bert) -> Path:
    return tiny_bert(
        "token",
        num_labels=len(TOKEN_TAGS),
        id2label=dict(enumerate(TOKEN_TAGS)),
        label2id={t: i for i, t in enumerate(TOKEN_TAGS)},
    )


def _tagged(text: str, spans: list[tuple[int, int] | None], words: list[int | None], tags: list[str], scores):
    probs = torch.zeros(len(tags), len(TOKEN_TAGS))
    for token, (tag, score) in enumerate(zip(tags, scores, strict=True)):
        probs[token, TOKEN_TAGS.index(tag)] = score
    offsets = [span or (0, 0) for span in spans]
    return SimpleNamespace(text=text, probs=probs, offsets=offsets, words=words)


def test_token_classification_groups_b_i_tags_and_keeps_sub_words_in_their_word(archive, token_model):
    entities = archive("token-classification", token_model).service._entities
    text = "Ann Lee visited Paris and Rome"
    # [CLS] ann lee visited par ##is and rome [SEP] [PAD]
    spans = [None, (0, 3), (4, 7), (8, 15), (16, 19), (19, 21), (22, 25), (26, 30), None, None]
    words = [None, 0, 1, 2, 3, 3, 4, 5, None, None]
    scores = [0.5, 0.9, 0.7, 0.8, 0.6, 0.4, 0.9, 0.75, 0.5, 0.5]
    tags = ["O", "B-PER", "I-PER", "O", "B-LOC", "B-LOC", "O", "I-LOC", "B-PER", "B-PER"]
    assert entities(_tagged(text, spans, words, tags, scores)) == [
        {"entity": "PER", "score": pytest.approx(0.8), "word": "Ann Lee", "start": 0, "end": 7},
        {"entity": "LOC", "score": pytest.approx(0.5), "word": "Paris", "start": 16, "end": 21},
        {"entity": "LOC", "score": pytest.approx(0.75), "word": "Rome", "start": 26, "end": 30},
    ]
    tags = ["O", "B-PER", "B-PER", "O", "O", "I-PER", "O", "O", "O", "O"]
    assert [e["word"] for e in entities(_tagged(text, spans, words, tags, scores))] == ["Ann", "Lee"]


def test_entities_cover_exactly_the_tokens_the_model_tags(archive, token_model):
    from transformers import AutoTokenizer

    served = archive("token-classification", token_model)
    probs = reference(token_model, TEXTS, head="token")
    tokenizer = AutoTokenizer.from_pretrained(str(token_model))
    answers = served.batch(v1(TEXTS[:2]), v1([{"data": 3}]), raw(TEXTS[2], "text/plain"), v1(TEXTS[3:]))
    assert [a.status for a in answers] == [200, 400, 200, 200]
    predictions = [*answers[0].body["predictions"], answers[2].body, *answers[3].body["predictions"]]
    tagged_somewhere = False
    for text, prediction, token_probs in zip(TEXTS, predictions, probs, strict=True):
        encoding = tokenizer(text, return_offsets_mapping=True)
        tags = [TOKEN_TAGS[i] for i in token_probs.argmax(-1).tolist()]
        covered = set()
        for entity in prediction:
            assert entity["word"] == text[entity["start"] : entity["end"]]
            inside = [
                t
                for t, (s, e) in enumerate(encoding["offset_mapping"])
                if encoding.word_ids()[t] is not None and s >= entity["start"] and e <= entity["end"]
            ]
            assert inside and not covered & set(inside)
            covered |= set(inside)
            assert entity["score"] == pytest.approx(
                sum(float(token_probs[t].max()) for t in inside) / len(inside), abs=1e-5
            )
            # the entity's first token names its type; its other tokens are the same type or pieces of a word
            assert tags[inside[0]] != "O" and tags[inside[0]][2:] == entity["entity"]
        word_ids = encoding.word_ids()
        firsts = {t for t, w in enumerate(word_ids) if w is not None and (t == 0 or word_ids[t - 1] != w)}
        tagged = {t for t in firsts if tags[t] != "O"}
        assert tagged <= covered
        tagged_somewhere |= bool(tagged)
    assert tagged_somewhere, "the random model tagged nothing: the check above proved nothing"


def test_v2_text_classification_answers_the_v1_labels_as_bytes_and_refuses_other_inputs(archive, tiny_bert):
    folder = tiny_bert("sequence", num_labels=3)
    names = ["neg", "neu", "pos"]
    served = archive("text-classification", folder, class_names=names)
    answers = served.batch(
        v2([tensor("text", [3], "BYTES", TEXTS[:3])], id="t"),
        v1(TEXTS[3:]),
        v2([tensor("text", [2, 1], "BYTES", TEXTS[:2])]),
        v2([tensor("text", [1], "INT64", [4])]),
        v2([tensor("text", [1], "BYTES", [5])]),
    )
    assert [a.status for a in answers] == [200, 200, 400, 400, 400]
    expected = [names[int(p.argmax())] for p in reference(folder, TEXTS)]
    assert answers[0].body == {
        "model_name": "m",
        "model_version": "1.0",
        "id": "t",
        "outputs": [{"name": "output-0", "shape": [3], "datatype": "BYTES", "data": expected[:3]}],
    }
    assert answers[1].body == {"predictions": expected[3:]}
    assert [a.body["error"] for a in answers[2:]] == [
        "input 'text': shape [2, 1], expected [N] (one UTF-8 string per text)",
        "input 'text': datatype INT64, expected BYTES (one UTF-8 string per text)",
        "input 'text': datatype BYTES takes strings, data[0] is 5",
    ]
    bare = archive("text-classification", tiny_bert("sequence", num_labels=5))  # no names: the class ids
    [out] = bare.one(v2([tensor("t", [2], "BYTES", TEXTS[:2])])).body["outputs"]
    assert (out["datatype"], out["data"]) == ("INT64", bare.one(v1(TEXTS[:2])).body["predictions"])
    scored = archive("text-classification", folder, class_names=names, options={"output": "scores"})
    [out] = scored.one(v2([tensor("t", [1], "BYTES", TEXTS[:1])])).body["outputs"]
    assert out["datatype"] == "BYTES" and json.loads(out["data"][0]) == scored.one(v1(TEXTS[:1])).body["predictions"][0]


def test_v2_token_classification_answers_each_texts_entities_as_one_json_text(archive, token_model):
    served = archive("token-classification", token_model)
    [got, same] = served.batch(v2([tensor("text", [3], "BYTES", TEXTS[:3])]), v1(TEXTS[:3]))
    [out] = got.body["outputs"]
    assert (out["name"], out["shape"], out["datatype"]) == ("output-0", [3], "BYTES")
    assert [json.loads(text) for text in out["data"]] == same.body["predictions"]
