"""The source room: a model named by an MLflow URI (models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN/PATH),
downloaded with the MLflow client and made into what build() takes from a folder.

Only ``resolve`` touches mlflow (imported when it runs); the URI grammar is light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .uri import FORMS, ModelUri, is_model_uri, parse_model_uri

if TYPE_CHECKING:
    from .registry import Resolved


def resolve(uri: str | ModelUri, workdir: Path) -> Resolved:
    """Download the model ``uri`` names under ``workdir`` and make it servable (see registry.resolve)."""
    from .registry import resolve as _resolve

    return _resolve(uri, workdir)


__all__ = ["FORMS", "ModelUri", "is_model_uri", "parse_model_uri", "resolve"]
