"""The grammar of the MLflow model URIs a spec may name as its model (no mlflow import here).

    models:/NAME/VERSION   a registered model's version (a whole number)
    models:/NAME@ALIAS     the version an alias points at, resolved when the build runs
    runs:/RUN_ID/PATH      an MLflow model logged in a run, at PATH among the run's artifacts
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .._errors import SpecError

SCHEMES = ("models:/", "runs:/")
FORMS = "models:/NAME/VERSION, models:/NAME@ALIAS or runs:/RUN_ID/PATH"
_VERSION = re.compile(r"[1-9][0-9]*")
_ALIAS = re.compile(r"[A-Za-z0-9_-]+")
_RUN_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class ModelUri:
    """A parsed MLflow model URI: a registered model by version or alias, or a run's artifact path."""

    uri: str
    kind: Literal["version", "alias", "run"]
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The URI and its parts that are set (what the archive records of what was asked)."""
        fields = ("uri", "kind", "name", "version", "alias", "run_id", "path")
        return {f: getattr(self, f) for f in fields if getattr(self, f) is not None}


def is_model_uri(value: object) -> bool:
    """True for a string naming an MLflow model (models:/ or runs:/), whatever its remaining parts."""
    return isinstance(value, str) and value.startswith(SCHEMES)


def parse_model_uri(uri: str, *, key: str = "model", path: Path | None = None) -> ModelUri:
    """Split an MLflow model URI into its parts; raise SpecError naming the accepted forms otherwise."""
    if uri.startswith("runs:/"):
        run_id, _, artifact = uri[len("runs:/"):].partition("/")
        artifact = artifact.strip("/")
        if not _RUN_ID.fullmatch(run_id) or not artifact:
            raise _bad(uri, key, path, "runs:/ takes a 32-hex-digit run id and the model's artifact path, "
                                 "e.g. runs:/0123456789abcdef0123456789abcdef/model")
        return ModelUri(uri, "run", run_id=run_id, path=artifact)
    if not uri.startswith("models:/"):
        raise _bad(uri, key, path, f"use one of {FORMS}")
    body = uri[len("models:/"):]
    if "@" in body:
        name, _, alias = body.rpartition("@")
        if not name or "/" in name or not _ALIAS.fullmatch(alias):
            raise _bad(uri, key, path, "models:/NAME@ALIAS, the alias made of letters, digits, '_' and '-'")
        return ModelUri(uri, "alias", name=name, alias=alias)
    name, _, version = body.rpartition("/")
    if not name or "/" in name or not _VERSION.fullmatch(version):
        hint = "models:/NAME/VERSION takes a version number"
        if version and not _VERSION.fullmatch(version):
            hint += f"; for a stage or alias such as {version!r} write models:/{name or 'NAME'}@{version.lower()}"
        raise _bad(uri, key, path, hint)
    return ModelUri(uri, "version", name=name, version=version)


def _bad(uri: str, key: str, path: Path | None, hint: str) -> SpecError:
    return SpecError(f"{uri!r} is not an MLflow model URI mar-build can resolve", path=path, key=key, hint=hint)
