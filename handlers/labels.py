"""Class labels and the classification answer shared by the text- and image-classification handlers.

Each of those handlers holds a ``Classifier`` (set at load, when the names are known) and hands it the class
probabilities of ``inference``: ``postprocess`` answers ``classifier.predictions(probs)``, ``explain``
``classifier.explanations(probs)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

OUTPUTS = ("label", "scores")
_GENERIC = re.compile(r"LABEL_\d+")


def label_names(
    class_names: list[str] | None, id2label: Mapping[Any, str] | None, count: int | None
) -> list[str] | None:
    """Names for class ids: ``class_names`` (checked against ``count`` when known), else a model config's
    ``id2label`` unless it is the generic ``LABEL_n``, else None (answers are the bare ids). Raises ValueError.
    """
    if class_names:
        if count is not None and len(class_names) != count:
            raise ValueError(f"class_names has {len(class_names)} names but the model has {count} classes")
        return list(class_names)
    if id2label:
        # transformers keys id2label by int; a config.json read some other way may key it by str
        found = [id2label.get(i, id2label.get(str(i))) for i in range(len(id2label))]
        names = [name for name in found if isinstance(name, str)]
        if len(names) == len(found) and not all(_GENERIC.fullmatch(name) for name in names):
            return names
    return None


class Classifier:
    """Turns rows of class probabilities into answers, as the options ask.

    Default: the label (name, or the int id when there are no names); ``output: scores``: ``{"label", "score",
    "scores": {label: p}}``; ``top_k`` > 1: a list of ``{"label", "score"}``, best first.
    """

    def __init__(self, names: list[str] | None, options: Mapping[str, Any]) -> None:
        self.names = names
        self.top_k = int(options.get("top_k") or 1)
        self.output = options.get("output") or "label"
        if self.output not in OUTPUTS:
            raise ValueError(f"options.output must be one of {OUTPUTS}, not {self.output!r}")
        if self.top_k < 1:
            raise ValueError(f"options.top_k must be >= 1, not {self.top_k}")

    def label(self, index: int) -> str | int:
        return self.names[index] if self.names else index

    def predictions(self, probs: torch.Tensor) -> list[Any]:
        """``probs`` [N, C] -> N answers."""
        self._check(probs)
        rows = probs.tolist()
        if self.top_k > 1:
            orders = probs.topk(min(self.top_k, probs.shape[1]), dim=1).indices.tolist()
            return [[{"label": self.label(i), "score": rows[n][i]} for i in order] for n, order in enumerate(orders)]
        best = probs.argmax(dim=1).tolist()
        if self.output == "label":
            return [self.label(i) for i in best]
        return [
            {"label": self.label(best[n]), "score": row[best[n]], "scores": self._scores(row)}
            for n, row in enumerate(rows)
        ]

    def explanations(self, probs: torch.Tensor) -> list[dict[str, float]]:
        """``probs`` [N, C] -> N dicts {label: probability} (JSON keys are strings)."""
        self._check(probs)
        return [self._scores(row) for row in probs.tolist()]

    def _scores(self, row: list[float]) -> dict[str, float]:
        return {str(self.label(i)): p for i, p in enumerate(row)}

    def _check(self, probs: torch.Tensor) -> None:
        if probs.dim() != 2:
            raise ValueError(f"expected class scores of shape [batch, classes], got {list(probs.shape)}")
        if self.names and probs.shape[1] != len(self.names):
            raise ValueError(f"the model gives {probs.shape[1]} class scores but there are {len(self.names)} names")
