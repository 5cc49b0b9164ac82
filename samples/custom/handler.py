"""Custom handler for the model wine: one wine's 13 measurements in, its cultivar and probability out.

mar-build copies this file into the archive; its TorchServe entry point serves the one BaseHandler subclass
defined here. The base class reads the KServe v1 envelope for every request of a server-side batch, runs one
forward pass over all their instances, and answers a bad request 400 on its own while the others are served.

What is custom here is the data around the model: an instance is an object of named measurements
({"alcohol": 13.2, "malic_acid": 1.78, ...}), checked by name (a misspelt or missing feature is the client's
error, not a silent zero) and standardised with the training statistics in model/preprocessing.json; a
prediction is {"class": name, "probability": p}, and an explanation the probability of every class.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from mar_build_handlers.base import BadInstance, BaseHandler
from mar_build_handlers.torch_model import load_torch_model


class WineHandler(BaseHandler):
    def load(self, model_path: Path | None) -> None:
        """model_path is the archive's model/ folder: net.py, weights.pt, preprocessing.json."""
        model_path = self.require_model(model_path)
        prep = json.loads((model_path / "preprocessing.json").read_text(encoding="utf-8"))
        self.features: list[str] = list(prep["features"])
        self.mean = torch.tensor(prep["mean"], dtype=torch.float32)
        self.std = torch.tensor(prep["std"], dtype=torch.float32)
        # The names the weights were trained with, unless mar.yaml renames them (same count required).
        self.names: list[str] = list(self.class_names or prep["classes"])
        if len(self.names) != len(prep["classes"]):
            raise ValueError(f"class_names has {len(self.names)} names, the model {len(prep['classes'])} classes")
        self.model = load_torch_model(model_path / "weights.pt", model_path / "net.py", None, self.device)

    def preprocess_instance(self, instance: Any) -> torch.Tensor:
        """{feature: number} for all 13 features -> the standardised feature vector; BadInstance otherwise."""
        if isinstance(instance, (bytes, bytearray, str)):  # a raw /predictions call with a non-JSON body
            raise BadInstance('expected a JSON object of measurements, e.g. {"alcohol": 13.2, ...}')
        if not isinstance(instance, dict):
            raise BadInstance(f"expected an object of measurements, got {type(instance).__name__}")
        missing = [name for name in self.features if name not in instance]
        unknown = sorted(set(instance) - set(self.features))
        if missing or unknown:
            problems = [f"missing {', '.join(missing)}"] if missing else []
            if unknown:  # most likely a misspelling: say what the names are
                problems.append(f"unknown {', '.join(unknown)} (the features are: {', '.join(self.features)})")
            raise BadInstance("; ".join(problems))
        values = []
        for name in self.features:
            value = instance[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise BadInstance(f"{name} must be a finite number, got {value!r}")
            values.append(float(value))
        return (torch.tensor(values, dtype=torch.float32) - self.mean) / self.std

    def inference(self, items: list[torch.Tensor]) -> torch.Tensor:
        """Standardised rows of every request in the batch -> class probabilities [N, classes]."""
        return self.model(torch.stack(items).to(self.device)).softmax(dim=-1).cpu()

    def postprocess(self, outputs: torch.Tensor) -> list[Any]:
        best = outputs.argmax(dim=1).tolist()
        return [{"class": self.names[i], "probability": float(outputs[n, i])} for n, i in enumerate(best)]

    def explain(self, items: list[torch.Tensor]) -> list[Any]:
        rows = self.inference(items).tolist()
        return [{name: row[i] for i, name in enumerate(self.names)} for row in rows]
