"""The serve room: the predictor pod run locally (TorchServe behind KServe's ModelServer)."""

from .._spec import RUNTIMES, Runtime
from .config import local_url
from .events import ServeEvent
from .predictor import LocalPredictor, serve
from .runtime import RuntimePredictor
from .threads import ThreadBudget

__all__ = [
    "RUNTIMES", "LocalPredictor", "Runtime", "RuntimePredictor", "ServeEvent", "ThreadBudget", "local_url", "serve",
]
