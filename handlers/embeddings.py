"""embeddings: sentence embeddings as sentence-transformers computes them (mean pooling, L2-normalised)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .text import DEFAULT_MAX_LENGTH, TextHandler


class EmbeddingsHandler(TextHandler[torch.Tensor]):
    """AutoModel; the token states averaged over the attention mask, then scaled to unit length.

    Same as sentence-transformers' Pooling(mean) + Normalize (e.g. all-MiniLM-L6-v2). ``options.normalize:
    false`` keeps the raw mean. The default length limit is the model's ``sentence_bert_config.json``
    ``max_seq_length`` when the folder has one.
    """

    def load_model(self, model_path: Path) -> Any:
        from transformers import AutoModel

        self.normalize = self.options.get("normalize", True)
        return AutoModel.from_pretrained(str(model_path), local_files_only=True)

    def default_max_length(self, model_path: Path) -> int:
        config = model_path / "sentence_bert_config.json"
        if config.is_file():
            return int(json.loads(config.read_text(encoding="utf-8")).get("max_seq_length") or DEFAULT_MAX_LENGTH)
        return DEFAULT_MAX_LENGTH

    def inference(self, items: list[str]) -> torch.Tensor:
        encoded = self.tokenize(items)
        states = self.model(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.float().cpu()

    def postprocess(self, outputs: torch.Tensor) -> list[Any]:
        # The rows as tensors: v1 answers them as lists all the same, v2 as FP32 [N, D] (their dtype).
        return list(outputs)
