"""The peer baseline: BentoML 1.4 serving the text sample's model with adaptive batching.

Runs only inside benchmarks/results/.venv-bentoml (created by benchmarks/serving.py; BentoML is never a
dependency of the project). Started as ``python -m bentoml serve bento_service:IntentClassifier`` from this
folder, with:

    BENCH_MODEL_DIR   the sample's model folder (samples/text-classification/model)
    BENCH_MAX_LENGTH  truncation, as the sample's mar.yaml (64)
    BENCH_MAX_BATCH   adaptive batching's max_batch_size (64: the largest batch the benchmark's load can form)
    BENCH_THREADS     torch threads (the cores the machine has, as our handler picks for one worker)

A request is ``{"texts": ["one text"]}``, the answer ``["label"]``: single-instance requests that BentoML's
dispatcher merges into batches, the same load our server gets as ``{"instances": [{"data": "one text"}]}``.
"""

from __future__ import annotations

import os

import bentoml
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

MODEL_DIR = os.environ["BENCH_MODEL_DIR"]
MAX_LENGTH = int(os.environ.get("BENCH_MAX_LENGTH", "64"))
MAX_BATCH = int(os.environ.get("BENCH_MAX_BATCH", "64"))
THREADS = int(os.environ.get("BENCH_THREADS", str(os.cpu_count() or 1)))


@bentoml.service(workers=1, traffic={"timeout": 120})
class IntentClassifier:
    def __init__(self) -> None:
        torch.set_num_threads(THREADS)
        self.tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR, local_files_only=True)
        self.model = AutoModelForSequenceClassification.from_pretrained(MODEL_DIR, local_files_only=True).eval()
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH, max_latency_ms=60000)
    def predict(self, texts: list[str]) -> list[str]:
        with torch.inference_mode():
            enc = self.tokenizer(texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
            best = self.model(**enc).logits.argmax(dim=-1).tolist()
        return [self.labels[i] for i in best]
