"""The pod room: what each runtime image ships (Python, torch, transformers, kserve, TorchServe), read from upstream,
and what can be tried here the image's way (a venv with its transformers; its torch's file format)."""

from .images import (
    DEFAULT_TAG,
    PYTHON_BASE_IMAGE,
    PYTHON_RUNTIME_TAG,
    TAGS,
    TORCHSERVE_IMAGE,
    ImageFacts,
    image_facts,
    wheel_platforms,
)
from .index import Unavailable, unavailable
from .probe import PROBE_TEXTS, ProbeResult, find_python, image_venv, probe_folder
from .torchfiles import DTYPE_SINCE, MAX_FILE_FORMAT, TORCH_SUFFIXES, TorchFile, read_torch_file

__all__ = [
    "DEFAULT_TAG", "DTYPE_SINCE", "MAX_FILE_FORMAT", "PROBE_TEXTS", "PYTHON_BASE_IMAGE", "PYTHON_RUNTIME_TAG", "TAGS",
    "TORCHSERVE_IMAGE", "TORCH_SUFFIXES", "ImageFacts", "ProbeResult", "TorchFile", "Unavailable", "find_python",
    "image_facts", "image_venv", "probe_folder", "read_torch_file", "unavailable", "wheel_platforms",
]
