"""The image room: the build context (Dockerfile, pinned requirements, mar-build itself) of a runtime's image."""

from .bases import DEFAULT_BASE, Base, ImageError, choose_base
from .context import RUNTIMES, TORCHSERVE_ENTRY_MODULE, ImageContext, dockerfile, image
from .resolve import Resolution, resolve_requirements

__all__ = [
    "DEFAULT_BASE", "RUNTIMES", "TORCHSERVE_ENTRY_MODULE", "Base", "ImageContext", "ImageError", "Resolution",
    "choose_base", "dockerfile", "image", "resolve_requirements",
]
