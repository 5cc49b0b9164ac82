"""image-classification: base64 PNG/JPEG instances (or the image bytes of a raw call) -> labels."""

from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path
from typing import Any

import torch

from .base import BadInstance, BaseHandler
from .labels import Classifier, label_names
from .torch_model import load_torch_model

DEFAULT_IMAGE_SIZE = (224, 224)


def image_bytes(instance: Any) -> bytes:
    """The encoded image of an instance: base64 text, ``{"data"|"b64": b64}``, ``{"image_bytes": {"b64": b64}}``
    (TensorFlow-serving style), or the bytes themselves (a raw call). Raises BadInstance.
    """
    if isinstance(instance, (bytes, bytearray)):
        return bytes(instance)
    if isinstance(instance, dict):
        nested = instance.get("image_bytes")
        if isinstance(nested, dict):
            instance = nested.get("b64")
        else:
            instance = instance.get("b64", instance.get("data"))
    if not isinstance(instance, str):
        raise BadInstance(
            'expected a base64 image: a string, {"data": b64}, {"b64": b64} or {"image_bytes": {"b64": b64}}'
        )
    text = instance.split(",", 1)[1] if instance.startswith("data:") else instance  # a data: URL
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadInstance(f"the image is not valid base64: {exc}") from exc


class ImageClassificationHandler(BaseHandler[Any, torch.Tensor]):
    """An image classifier: an eager nn.Module (model file + state_dict) or TorchScript, fed a [N, C, H, W]
    float batch (decoded, converted to RGB or ``grayscale``, resized to ``image_size`` [H, W], scaled to [0, 1],
    normalised with ``mean``/``std`` when given); or a Hugging Face image model folder, whose own image processor
    prepares the batch (an item is then the decoded image, else the tensor). Answers as ``labels.Classifier`` says.
    """

    classifier: Classifier
    v2_datatypes = ("BYTES",)
    v2_rank = 1
    v2_expects = "one base64 PNG/JPEG per image, or its bytes as binary data"

    def load(self, model_path: Path | None) -> None:
        from PIL import Image

        model_path = self.require_model(model_path)
        self.image = Image
        self.hf = model_path.is_dir() and (model_path / "config.json").is_file()
        if self.hf:
            from transformers import AutoImageProcessor, AutoModelForImageClassification

            self.processor = AutoImageProcessor.from_pretrained(str(model_path), local_files_only=True)
            self.model = AutoModelForImageClassification.from_pretrained(str(model_path), local_files_only=True)
            self.model.to(self.device).eval()
            config = self.model.config
            names = label_names(self.class_names, config.id2label, config.num_labels)
            self.mode = "RGB"
        else:
            model_file = self.config.get("model_file")
            self.model = load_torch_model(
                model_path,
                self.model_dir / model_file if model_file else None,
                self.config.get("model_class"),
                self.device,
            )
            names = label_names(self.class_names, None, None)
            self.mode = "L" if self.options.get("grayscale") else "RGB"
            size = self.options.get("image_size") or DEFAULT_IMAGE_SIZE
            height, width = (size, size) if isinstance(size, int) else size
            self.size = (int(width), int(height))  # Pillow counts width first
            channels = len(self.mode)
            self.mean = _per_channel(self.options.get("mean"), channels, "mean")
            self.std = _per_channel(self.options.get("std"), channels, "std")
        self.classifier = Classifier(names, self.options)

    def preprocess_instance(self, instance: Any) -> Any:
        data = image_bytes(instance)
        try:
            image = self.image.open(io.BytesIO(data)).convert(self.mode)
            if self.hf:
                return image
            # Image.Resampling since Pillow 9.1 (2022); the module-level Image.BILINEAR is set at import, unseen by mypy
            image = image.resize(self.size, self.image.Resampling.BILINEAR)
        except Exception as exc:  # any decoder failure is the client's bad image, answered 400
            raise BadInstance(f"cannot decode the image: {exc}") from exc
        width, height = image.size
        pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        tensor = pixels.view(height, width, len(self.mode)).permute(2, 0, 1).float().div_(255)
        if self.mean is not None:
            tensor.sub_(self.mean)
        if self.std is not None:
            tensor.div_(self.std)
        return tensor

    def inference(self, items: list[Any]) -> torch.Tensor:
        if self.hf:
            inputs = self.processor(images=items, return_tensors="pt").to(self.device)
            logits = self.model(**inputs).logits
        else:
            logits = self.model(torch.stack(items).to(self.device))
        return logits.softmax(dim=-1).float().cpu()

    def postprocess(self, outputs: torch.Tensor) -> list[Any]:
        return self.classifier.predictions(outputs)

    def explain(self, items: list[Any]) -> list[Any]:
        return self.classifier.explanations(self.inference(items))


def _per_channel(values: Any, channels: int, name: str) -> torch.Tensor | None:
    if values is None:
        return None
    values = [values] if isinstance(values, (int, float)) else list(values)
    if len(values) not in (1, channels):
        raise ValueError(f"options.{name} needs 1 or {channels} values, got {len(values)}")
    return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1)
