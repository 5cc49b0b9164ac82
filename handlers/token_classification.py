"""token-classification: a transformers token classifier; answers the entities found in each text."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, List

import torch

from .labels import label_names
from .text import TextHandler

OUTSIDE = "O"


@dataclass
class _Tagged:
    text: str
    probs: torch.Tensor  # [tokens, labels]
    offsets: list[tuple[int, int]]  # character span of each token in text
    words: list[int | None]  # word index of each token; None for special and padding tokens


# typing.List, not list[...]: a base class is evaluated at import, and the workers may run Python 3.8
class TokenClassificationHandler(TextHandler[List[_Tagged]]):
    """AutoModelForTokenClassification; tokens grouped into entities ("simple" aggregation).

    A prediction is a list of ``{"entity", "score", "word", "start", "end"}``: consecutive tokens with the same
    entity type form one entity (``B-``/``S-`` start a new one, ``I-``/``E-`` continue); a word's first sub-word
    piece takes its other pieces along, in or out of an entity; ``O`` tokens are dropped; the score is the mean
    of the tokens' probabilities; start/end are character offsets into the text. Needs a fast tokenizer (for the
    offsets). Text beyond ``max_length`` tokens is not tagged. A v2 answer is BYTES [N]: each text's list of
    entities as one JSON text (a v2 tensor cannot hold a list of objects, nor a different count per text).
    """

    v2_json_output = True

    def load_model(self, model_path: Path) -> Any:
        from transformers import AutoModelForTokenClassification

        if not self.tokenizer.is_fast:
            raise ValueError(f"token-classification needs a fast tokenizer (tokenizer.json) in {model_path}")
        model = AutoModelForTokenClassification.from_pretrained(str(model_path), local_files_only=True)
        config = model.config
        names = label_names(self.class_names, config.id2label, config.num_labels)
        self.tags = names or [str(config.id2label[i]) for i in range(config.num_labels)]
        return model

    def inference(self, items: list[str]) -> list[_Tagged]:
        encoded = self.tokenize(items, return_offsets_mapping=True)
        offsets = encoded.pop("offset_mapping").tolist()
        probs = self.model(**encoded).logits.softmax(dim=-1).float().cpu()
        return [
            _Tagged(text, probs[i], [tuple(span) for span in offsets[i]], encoded.word_ids(i))
            for i, text in enumerate(items)
        ]

    def postprocess(self, outputs: list[_Tagged]) -> list[Any]:
        return [self._entities(tagged) for tagged in outputs]

    def _entities(self, tagged: _Tagged) -> list[dict[str, Any]]:
        best = tagged.probs.max(dim=-1)
        scores, ids = best.values.tolist(), best.indices.tolist()
        entities: list[dict[str, Any]] = []
        current: dict[str, Any] | None = None
        previous_word = None
        for token, word in enumerate(tagged.words):
            if word is None:
                current, previous_word = None, None
                continue
            prefix, kind = _split_tag(self.tags[ids[token]])
            start, end = tagged.offsets[token]
            same_word = word == previous_word
            previous_word = word
            if same_word:  # a word's first piece decides; its other pieces follow it in or out of an entity
                if current is not None:
                    current["end"] = end
                    current["scores"].append(scores[token])
            elif current is not None and kind == current["entity"] and prefix not in ("B", "S"):
                current["end"] = end
                current["scores"].append(scores[token])
            elif kind == OUTSIDE:
                current = None
            else:
                current = {"entity": kind, "start": start, "end": end, "scores": [scores[token]]}
                entities.append(current)
        return [
            {
                "entity": e["entity"],
                "score": sum(e["scores"]) / len(e["scores"]),
                "word": tagged.text[e["start"] : e["end"]],
                "start": e["start"],
                "end": e["end"],
            }
            for e in entities
        ]


def _split_tag(tag: str) -> tuple[str | None, str]:
    """``B-PER`` -> (``B``, ``PER``); ``O`` and unprefixed tags -> (None, tag)."""
    if len(tag) > 2 and tag[1] == "-" and tag[0] in "BIES":
        return tag[0], tag[2:]
    return None, tag
