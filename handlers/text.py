"""What the Hugging Face text handlers share: text instances, the tokenizer, batched tokenisation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import BadInstance, BaseHandler, Outputs

DEFAULT_MAX_LENGTH = 128
TEXT_KEYS = ("data", "text")


def text_of(instance: Any) -> str:
    """A text instance: a string, ``{"data": str}`` / ``{"text": str}``, or UTF-8 bytes (a raw call)."""
    if isinstance(instance, dict):
        keys = [key for key in TEXT_KEYS if key in instance]
        if len(keys) == 1:
            instance = instance[keys[0]]
    if isinstance(instance, (bytes, bytearray)):
        try:
            return bytes(instance).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadInstance(f"the text is not UTF-8: {exc}") from exc
    if not isinstance(instance, str):
        raise BadInstance(f'expected a string, {{"data": string}} or {{"text": string}}, got {_describe(instance)}')
    return instance


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return f"an object with keys {sorted(value)}"
    return type(value).__name__


class TextHandler(BaseHandler[str, Outputs]):
    """Base of the text tasks: loads the tokenizer, takes text instances, tokenises a batch at once."""

    max_length: int
    v2_datatypes = ("BYTES",)
    v2_rank = 1
    v2_expects = "one UTF-8 string per text"

    def load(self, model_path: Path | None) -> None:
        from transformers import AutoTokenizer

        model_path = self.require_model(model_path)
        self.max_length = int(self.options.get("max_length") or self.default_max_length(model_path))
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)
        self.model = self.load_model(model_path).to(self.device).eval()

    def default_max_length(self, model_path: Path) -> int:
        return DEFAULT_MAX_LENGTH

    def load_model(self, model_path: Path) -> Any:
        """The task's transformers model from the folder (subclasses pick the Auto class)."""
        raise NotImplementedError

    def preprocess_instance(self, instance: Any) -> str:
        return text_of(instance)

    def tokenize(self, texts: list[str], **kwargs: Any) -> Any:
        """One padded, truncated batch as tensors on the model's device."""
        encoded = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt", **kwargs
        )
        return encoded.to(self.device)
