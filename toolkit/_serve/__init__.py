"""The serve room: the predictor pod run locally (TorchServe behind KServe's ModelServer)."""

from .predictor import LocalPredictor, ServeEvent, serve

__all__ = ["LocalPredictor", "ServeEvent", "serve"]
