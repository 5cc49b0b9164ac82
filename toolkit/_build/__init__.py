"""The build room: a ModelSpec -> a .mar and its model_snapshot entry, merged into a layout folder."""

from .builder import BuildResult, build, build_many, check_model_files

__all__ = ["BuildResult", "build", "build_many", "check_model_files"]
