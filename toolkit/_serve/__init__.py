"""The serve room: the predictor pod run locally (TorchServe behind KServe's ModelServer)."""

from .config import local_url
from .events import ServeEvent
from .predictor import LocalPredictor, serve
from .threads import ThreadBudget

__all__ = ["LocalPredictor", "ServeEvent", "ThreadBudget", "local_url", "serve"]
