"""The text sample's model in this process: the reference answers and the raw batched-forward limit."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

import yaml

from .texts import SAMPLE

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _sample_spec() -> dict[str, Any]:
    return yaml.safe_load((SAMPLE / "mar.yaml").read_text(encoding="utf-8"))


def sample_settings() -> tuple[Path, list[str], int]:
    """(model folder, class names, max_length) of the text sample, as its mar.yaml says."""
    spec = _sample_spec()
    model = SAMPLE / spec["model"]
    if not (model / "config.json").is_file():
        raise SystemExit(f"{model} is missing: run `python samples/text-classification/prepare.py` first")
    return model, list(spec["class_names"]), int(spec.get("options", {}).get("max_length", 64))


def sample_workers() -> int:
    """The text sample's serving.max_workers (its mar.yaml; 1 when unset, the spec's default)."""
    return int((_sample_spec().get("serving") or {}).get("max_workers", 1))


class RawModel:
    """Tokenizer + AutoModelForSequenceClassification, loaded as the handler loads them."""

    def __init__(self, threads: int | None = None) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        self.torch = torch
        torch.set_num_threads(threads or os.cpu_count() or 1)
        path, self.class_names, self.max_length = sample_settings()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModelForSequenceClassification.from_pretrained(str(path), local_files_only=True).eval()

    def probs(self, texts: list[str]) -> Any:
        with self.torch.inference_mode():
            enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="pt")
            return self.model(**enc).logits.softmax(dim=-1)

    def reference(self, texts: list[str]) -> list[tuple[str, float]]:
        """Each text alone (no padding): (label, margin between the two best probabilities)."""
        # One thread: single short texts gain little from two, and on a busy machine two threads wait on each other.
        threads = self.torch.get_num_threads()
        self.torch.set_num_threads(1)
        try:
            out = []
            for text in texts:
                top = self.probs([text])[0].topk(2)
                out.append((self.class_names[int(top.indices[0])], float(top.values[0] - top.values[1])))
            return out
        finally:
            self.torch.set_num_threads(threads)

    def batched(self, texts: list[str], batch_size: int, seconds: float) -> dict[str, Any]:
        """Tokenise + forward batches of ``batch_size`` rotating over ``texts`` for about ``seconds``."""
        self.probs(texts[:batch_size])  # warm-up: first-call allocations
        times: list[float] = []
        done, start, i = 0, time.perf_counter(), 0
        while time.perf_counter() - start < seconds or len(times) < 3:
            batch = [texts[(i + k) % len(texts)] for k in range(batch_size)]
            i += batch_size
            t0 = time.perf_counter()
            self.probs(batch)
            times.append(time.perf_counter() - t0)
            done += batch_size
        elapsed = time.perf_counter() - start
        return {
            "batch_size": batch_size,
            "texts": done,
            "seconds": round(elapsed, 3),
            "throughput": round(done / elapsed, 1),
            "batch_ms_p50": round(1000 * statistics.median(times), 2),
            "batch_ms_max": round(1000 * max(times), 2),
        }
