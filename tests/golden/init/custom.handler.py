"""Custom handler for the model my-model (written by `mar-build init custom`; yours to edit).

mar-build copies this file into the archive, and its TorchServe entry point serves the one subclass of BaseHandler
defined here. The base class already does the rest, for every request of a server-side batch: it reads the KServe
v1 envelope {"instances": [...]} (or the body of a raw /predictions call, as one instance), answers
{"predictions": [...]}, runs one forward pass over the instances of all requests, answers a bad request 400 on its
own while the others are served, and a failing forward pass 500 with the error.

The example below serves a TorchScript model (mar.yaml `model:` a .pt file from torch.jit.save) that maps rows of
numbers to rows of numbers. Replace the bodies of the hooks with your own; keep their contracts.
Runs inside the TorchServe worker: import torch, your own libraries and the standard library, not the toolkit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import torch

from mar_build_handlers.base import BadInstance, BaseHandler


class MyModelHandler(BaseHandler):
    def load(self, model_path: Optional[Path]) -> None:
        """Load the model, once per worker, before any request.

        model_path: the archive's copy of mar.yaml's `model` (a file or a folder; None when mar.yaml has none:
        require_model() then says so, naming the task).
        Also set by now: self.options (mar.yaml `options`), self.class_names, self.device (cuda:N when TorchServe
        gave this worker a GPU, else cpu), self.model_dir (the extracted archive, with your extra files).
        """
        self.model = torch.jit.load(str(self.require_model(model_path)), map_location=self.device).eval()

    def preprocess_instance(self, instance: Any) -> torch.Tensor:
        """One instance -> the item inference() takes.

        instance: one element of "instances" (any JSON value) for a KServe v1 request; for a raw /predictions call
        the whole body: the parsed JSON, a str (text/* content), or bytes (any other content type).
        Raise BadInstance("why") to answer this instance's request 400 with that message (or
        InvalidRequest("why", status=413) from mar_build_handlers.base for another 4xx/5xx).
        """
        if isinstance(instance, dict):
            instance = instance.get("data")
        if not isinstance(instance, list) or not all(isinstance(x, (int, float)) for x in instance):
            raise BadInstance('expected a list of numbers or {"data": [numbers]}')
        return torch.tensor(instance, dtype=torch.float32)

    def check_request(self, items: List[torch.Tensor]) -> None:
        """Optional: check the items of one request together; raise BadInstance to answer it 400."""
        if len({len(item) for item in items}) > 1:
            raise BadInstance("all instances of a request must have the same length")

    def pass_key(self, item: torch.Tensor) -> Any:
        """Optional: items with different keys never share a forward pass (rows of different lengths cannot be
        stacked); each pass succeeds or fails on its own. The default puts every item in one pass.
        """
        return len(item)

    def inference(self, items: List[torch.Tensor]) -> torch.Tensor:
        """The items of every request in this batch (with one pass_key), in order -> one output per item: a list,
        or a tensor whose first dimension is the batch. Runs under torch.inference_mode(); mar.yaml
        `options.max_internal_batch` caps how many items come at once.
        """
        return self.model(torch.stack(items).to(self.device)).cpu()

    def postprocess(self, outputs: torch.Tensor) -> List[Any]:
        """Outputs of inference() -> one JSON-able prediction per item (lists, numbers, strings, dicts).
        The base class wraps them as {"predictions": [...]} (a raw call gets its one prediction bare).
        The `:explain` verb calls explain(items) instead, which by default answers the outputs of inference().
        """
        return [row.tolist() for row in outputs]
