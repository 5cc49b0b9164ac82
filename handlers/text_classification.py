"""text-classification: a transformers sequence classifier; instances are texts, answers labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .labels import Classifier, label_names
from .text import TextHandler


class TextClassificationHandler(TextHandler[torch.Tensor]):
    """AutoModelForSequenceClassification over batched tokenisation; answers as ``labels.Classifier`` says."""

    classifier: Classifier

    def load_model(self, model_path: Path) -> Any:
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(str(model_path), local_files_only=True)
        names = label_names(self.class_names, model.config.id2label, model.config.num_labels)
        self.classifier = Classifier(names, self.options)
        self.multi_label = model.config.problem_type == "multi_label_classification"
        return model

    def inference(self, items: list[str]) -> torch.Tensor:
        logits = self.model(**self.tokenize(items)).logits
        # Multi-label models score each class on its own; the rest share one distribution.
        return (logits.sigmoid() if self.multi_label else logits.softmax(dim=-1)).float().cpu()

    def postprocess(self, outputs: torch.Tensor) -> list[Any]:
        return self.classifier.predictions(outputs)

    def explain(self, items: list[str]) -> list[Any]:
        return self.classifier.explanations(self.inference(items))
