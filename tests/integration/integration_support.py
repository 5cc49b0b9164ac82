"""What each sample is asked, and what the right answers are (from the sample's own files or its model in-process).

Each samples/<folder> has mar.yaml and prepare.py (which writes model/). The right answers:

text-classification  held-out rows of data.csv; the answers prepare.py's in-process model gave for them
                     (model/metrics.json ``held_out_predictions``, in data.csv's held-out order)
embeddings           eval.csv's questions; embeddings computed here with transformers from model/ (mean pooling,
                     L2-normalised): the served vectors must point the same way
image-classification sample.json's instances and expected.json's ``labels``
custom               sample.json's instances (wines) and expected.json's ``classes``; a prediction is
                     {"class": name, "probability": p}
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from toolkit._serve.predictor import LocalPredictor

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
SAMPLE_FOLDERS = ("text-classification", "embeddings", "image-classification", "custom")
SESSION = "MTY4NzUzOTk5OXxOd3dBTkVFMVRqSlFUMUpU"  # what a browser's authservice_session cookie looks like


@dataclass
class Case:
    folder: str
    name: str  # the model name (URL name)
    host: str  # NAME.NAMESPACE.example.com of its InferenceService
    instances: list[Any]
    expected: list[Any]
    same: Callable[[Any, Any], bool]  # served answer, right answer

    def check(self, served: list[Any], instances: list[Any] | None = None) -> None:
        """Assert ``served`` answers ``instances`` (default: all of the case's) rightly, in order."""
        expected = self.expected_for(instances) if instances is not None else self.expected
        assert len(served) == len(expected), (len(served), len(expected))
        wrong = [(i, s, e) for i, (s, e) in enumerate(zip(served, expected, strict=True)) if not self.same(s, e)]
        assert not wrong, f"{self.folder}: {len(wrong)} wrong answer(s), first (index, served, expected): {wrong[0]}"

    def expected_for(self, instances: list[Any]) -> list[Any]:
        by_position = {json.dumps(i, sort_keys=True): e for i, e in zip(self.instances, self.expected, strict=True)}
        return [by_position[json.dumps(i, sort_keys=True)] for i in instances]

    def cycled(self, count: int) -> list[Any]:
        return [self.instances[i % len(self.instances)] for i in range(count)]


def spec(folder: str) -> dict[str, Any]:
    return yaml.safe_load((SAMPLES / folder / "mar.yaml").read_text(encoding="utf-8"))


def _host(raw: dict[str, Any]) -> str:
    kserve = raw.get("kserve") or {}
    return f"{kserve.get('name') or raw['name']}.{kserve.get('namespace') or 'default'}.example.com"


def equal(served: Any, expected: Any) -> bool:
    return bool(served == expected)


def same_direction(served: Any, expected: list[float]) -> bool:
    """Two embeddings of the same length with cosine >= 0.999 (both are L2-normalised)."""
    if not isinstance(served, list) or len(served) != len(expected):
        return False
    dot = sum(a * b for a, b in zip(served, expected, strict=True))
    norm = math.sqrt(sum(a * a for a in served))
    return abs(norm - 1.0) < 1e-3 and dot >= 0.999


def text_classification() -> Case:
    folder = SAMPLES / "text-classification"
    with (folder / "data.csv").open(encoding="utf-8", newline="") as f:
        held_out = [row["text"] for row in csv.DictReader(f) if row["split"] == "held-out"]
    answers = json.loads((folder / "model" / "metrics.json").read_text())["held_out_predictions"]
    assert len(answers) == len(held_out)
    picks = list(range(0, len(held_out), 7))  # every class, 18 texts
    # Both instance forms the handler reads: a bare string and {"data": string}.
    instances: list[Any] = [held_out[i] if n % 2 else {"data": held_out[i]} for n, i in enumerate(picks)]
    raw = spec("text-classification")
    return Case("text-classification", raw["name"], _host(raw), instances, [answers[i] for i in picks], equal)


def embeddings() -> Case:
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = SAMPLES / "embeddings"
    with (folder / "eval.csv").open(encoding="utf-8", newline="") as f:
        queries = [row["query"] for row in csv.DictReader(f)]
    raw = spec("embeddings")
    max_length = int((raw.get("options") or {}).get("max_length", 256))
    tokenizer = AutoTokenizer.from_pretrained(str(folder / "model"), local_files_only=True)
    model = AutoModel.from_pretrained(str(folder / "model"), local_files_only=True).eval()
    with torch.inference_mode():
        encoded = tokenizer(queries, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        states = model(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        expected = torch.nn.functional.normalize(pooled, p=2, dim=1).tolist()
    return Case("embeddings", raw["name"], _host(raw), list(queries), expected, same_direction)


def _sample_files(folder: str, key: str, same: Callable[[Any, Any], bool]) -> Case:
    path = SAMPLES / folder
    instances = json.loads((path / "sample.json").read_text())["instances"]
    expected = json.loads((path / "expected.json").read_text())[key]
    raw = spec(folder)
    return Case(folder, raw["name"], _host(raw), instances, expected, same)


def image_classification() -> Case:
    return _sample_files("image-classification", "labels", equal)


def right_class(served: Any, expected: str) -> bool:
    """The custom handler's answer: {"class": name, "probability": p}."""
    return (isinstance(served, dict) and served.get("class") == expected
            and isinstance(served.get("probability"), float) and 0.0 <= served["probability"] <= 1.0)


def custom() -> Case:
    return _sample_files("custom", "classes", right_class)


CASES: dict[str, Callable[[], Case]] = {
    "text-classification": text_classification,
    "embeddings": embeddings,
    "image-classification": image_classification,
    "custom": custom,
}


@dataclass
class Served:
    """One sample's running stack."""

    case: Case
    predictor: LocalPredictor
    layout: Path
