"""Helpers for the pipeline tests: kfp.local set up for one test, and a stand-in cluster whose "controller" really
runs the predictor.

``ControllerStandIn`` is the deploy tests' stand-in API server (tests/deploy/k8s_support.py) plus what KServe's
controller and the predictor pod would do: when an InferenceService is applied, it serves the InferenceService's
storageUri with `mar-build serve` (the python runtime, downloading from S3 as the storage-initializer does), and the
InferenceService reads not ready until that predictor answers, then ready with the predictor's loopback URL as its
address. So a pipeline's deploy step waits for a real predictor, and its smoke predict step calls it.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from deploy.k8s_support import Recorded, StandInApiServer, cond, ready_status
from stage.s3_support import free_port

# kfp.local warns for an image without "python" in its name (our images are mar-build's): a warning, not an error.
IMAGE_WARNING = "You may be attemping to run a task that uses custom or non-Python base image"
IMAGE = "ghcr.io/team/mar-build:1.0"


# W and b make every output an exact float32, so the predictions compare with ==.
WEIGHT = [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]
BIAS = [0.0, 0.5]
INSTANCES = [[1.0, 2.0, 3.0], [3.0, 1.0, 2.0]]


def linear_model(folder: Path, name: str | None = "lin") -> Path:
    """A TorchScript nn.Linear and the mar.yaml that packages it: what a training step leaves behind."""
    import torch

    folder.mkdir(parents=True)
    layer = torch.nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(WEIGHT))
        layer.bias.copy_(torch.tensor(BIAS))
    torch.jit.script(layer).save(str(folder / "model.pt"))
    if name is not None:  # None: the weights alone, as a training step may leave them
        spec = {"name": name, "version": "1.0", "task": "tensor", "model": "model.pt"}
        (folder / "mar.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    return folder


@contextmanager
def local_runs(pipeline_root: Path) -> Iterator[None]:
    """kfp.local with the subprocess runner in this Python (no venv: the components import this checkout's toolkit)."""
    from kfp import local

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=IMAGE_WARNING, category=RuntimeWarning)
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root),
                   workspace_root=str(pipeline_root / "workspace"), raise_on_error=True)
        yield


def _storage_uri(obj: Any) -> str | None:
    if isinstance(obj, dict):
        if isinstance(obj.get("storageUri"), str):
            return str(obj["storageUri"])
        found = (_storage_uri(v) for v in obj.values())
        return next((f for f in found if f), None)
    return None


class ControllerStandIn(StandInApiServer):
    """The stand-in API server with a controller that serves each applied InferenceService's storageUri locally."""

    def __init__(self, startup_timeout: float = 300) -> None:
        super().__init__()
        self.startup_timeout = startup_timeout
        self.predictor: Any = None
        self.served_uri: str | None = None
        self.error: BaseException | None = None
        self._starter: threading.Thread | None = None

    def _apply(self, rec: Recorded, plural: str, namespace: str, name: str, kind: str) -> tuple[int, Any, str]:
        answer = super()._apply(rec, plural, namespace, name, kind)
        if plural == "inferenceservices" and answer[0] in (200, 201) and self._starter is None:
            self.served_uri = _storage_uri(answer[1].get("spec"))
            self._starter = threading.Thread(target=self._start_predictor, name="controller", daemon=True)
            self._starter.start()
        return answer

    def _start_predictor(self) -> None:
        import toolkit

        try:
            assert self.served_uri, "the InferenceService has no storageUri"
            self.predictor = toolkit.serve(self.served_uri, port=free_port(), runtime="python",
                                           startup_timeout=self.startup_timeout)
        except BaseException as exc:  # shown by the test; the InferenceService stays not ready
            self.error = exc

    def _isvc(self, rec: Recorded, namespace: str, name: str | None) -> tuple[int, Any, str]:
        code, obj, ctype = super()._isvc(rec, namespace, name)
        if rec.method != "GET" or name is None or code != 200:
            return code, obj, ctype
        generation = int(obj["metadata"].get("generation", 1))
        if self.predictor is not None:
            status = ready_status(name, namespace)
            status["address"] = {"url": self.predictor.url}
        else:
            reason = "PredictorFailed" if self.error is not None else "RevisionMissing"
            status = {"conditions": [cond("PredictorReady", "False", reason), cond("Ready", "False", reason)]}
        return code, dict(obj, status=status | {"observedGeneration": generation}), ctype

    def stop(self) -> None:
        if self._starter is not None:
            self._starter.join(timeout=self.startup_timeout)
        if self.predictor is not None:
            self.predictor.stop()
        super().stop()
