"""The stock baseline's handler: a sequence classifier written the way TorchServe users write one today.

A ``BaseHandler`` subclass (as in TorchServe's Hugging Face examples): tokenizer and model loaded in
``initialize``, ``preprocess`` reads ``data``/``body`` of each row, one forward pass, labels out. Archived with
torch-model-archiver and served with TorchServe's own ``kserve`` envelope (enable_envvars_config=true, env
TS_SERVICE_ENVELOPE=kserve) at batchSize 1, which is what the envelope needs (FACTS.md). Benchmark-only code.
"""

import logging
import os

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from ts.torch_handler.base_handler import BaseHandler

logger = logging.getLogger(__name__)
MAX_LENGTH = 64


class SequenceClassifier(BaseHandler):
    def initialize(self, context):
        model_dir = context.system_properties.get("model_dir")
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir, local_files_only=True)
        self.model.eval()
        self.initialized = True
        logger.info("stock handler loaded %s (pid %d)", model_dir, os.getpid())

    def preprocess(self, data):
        texts = []
        for row in data:
            text = row.get("data") or row.get("body")
            if isinstance(text, (bytes, bytearray)):
                text = text.decode("utf-8")
            texts.append(text)
        return self.tokenizer(texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")

    def inference(self, inputs):
        with torch.no_grad():
            return self.model(**inputs).logits

    def postprocess(self, logits):
        return [self.model.config.id2label[i] for i in logits.argmax(dim=-1).tolist()]
