"""Layouts made by hand in tmp_path, and the validators every rendered manifest goes through.

A layout here is what KServe's storageUri points at: config/config.properties with a one-line model_snapshot and
model-store/NAME.mar, a zip with MAR-INF/MANIFEST.json and (for archives "built by mar-build") mar_build.json
holding the KServe section of mar.yaml. Nothing here depends on the real build pipeline.
"""

from __future__ import annotations

import copy
import json
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import asdict
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from toolkit import KServeSettings

REPO = Path(__file__).resolve().parents[2]
CRD = REPO.parent / "shared" / "schemas" / "kserve" / "serving.kserve.io_inferenceservices.yaml"
# kubernetes-validate ships schemas for 1.25 .. 1.37: check the core kinds against the oldest and the newest,
# strict (unknown fields are errors), so a manifest works on every cluster in between.
K8S_VERSIONS = ("1.25.0", "1.37.0")


def make_layout(
    root: Path,
    models: Mapping[str, KServeSettings | dict[str, Any] | None],
    *,
    metrics_port: int = 8082,
    metrics_mode: bool = True,
    min_workers: int | None = 1,
) -> Path:
    """Write a layout at ``root`` serving ``models``: name -> the archive's KServe settings (None: hand-built).

    The DESIGN.md hand workflow's values: version 1.0, 1-5 workers, batch size 1, 5000 ms delay, 120 s timeout
    (``min_workers`` None leaves minWorkers out).
    """
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "model-store").mkdir(exist_ok=True)
    snapshot = {
        "name": "startup.cfg",
        "modelCount": len(models),
        "models": {
            name: {"1.0": {"defaultVersion": True, "marName": f"{name}.mar", "minWorkers": min_workers,
                           "maxWorkers": 5, "batchSize": 1, "maxBatchDelay": 5000, "responseTimeout": 120}}
            for name in models
        },
    }
    lines = [
        "inference_address=http://0.0.0.0:8085",
        "management_address=http://0.0.0.0:8081",
        f"metrics_address=http://0.0.0.0:{metrics_port}",
        "grpc_inference_port=7070",
        "grpc_management_port=7071",
        *(["metrics_mode=prometheus"] if metrics_mode else []),
        "number_of_netty_threads=4",
        "job_queue_size=100",
        "model_store=/mnt/models/model-store",
        "model_snapshot=" + json.dumps(snapshot, separators=(",", ":")),
    ]
    (root / "config" / "config.properties").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for name, kserve in models.items():
        manifest = {"runtime": "python", "model": {"modelName": name, "modelVersion": "1.0", "handler": "h.py"}}
        with zipfile.ZipFile(root / "model-store" / f"{name}.mar", "w") as zf:
            zf.writestr("MAR-INF/MANIFEST.json", json.dumps(manifest))
            zf.writestr("h.py", "# handler\n")
            if kserve is not None:
                raw = asdict(kserve) if isinstance(kserve, KServeSettings) else kserve
                zf.writestr("mar_build.json", json.dumps({"format": 1, "name": name, "kserve": raw}))
    return root


@pytest.fixture
def layout_factory(tmp_path: Path) -> Callable[..., Path]:
    """layout_factory(models, folder="layout", **options) -> a layout folder in tmp_path (see make_layout)."""

    def make(models: Mapping[str, Any], folder: str = "layout", **options: Any) -> Path:
        return make_layout(tmp_path / folder, models, **options)

    return make


@pytest.fixture
def hand_layout(layout_factory: Callable[..., Path]) -> Path:
    """The DESIGN.md example: one hand-built archive, model_snapshot key `bert`."""
    return layout_factory({"bert": None})


# --------------------------------------------------------------------------------------------------------------
# Validators


def _closed(schema: Any) -> Any:
    """The CRD schema with unknown fields made errors (the API server would silently prune them)."""
    if isinstance(schema, dict):
        out = {k: _closed(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


@cache
def _isvc_validator() -> Any:
    import jsonschema

    # 2 MB of YAML: the C loader reads it in about 2 s, the pure-Python one in 12.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load(CRD.read_text(encoding="utf-8"), Loader=loader)
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")
    schema = _closed(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    return jsonschema.Draft7Validator(schema)


def validate_document(document: dict[str, Any]) -> None:
    """Validate one manifest: the InferenceService against the CRD, core kinds with kubernetes-validate."""
    if document["kind"] == "InferenceService":
        if not CRD.is_file():
            pytest.skip(f"KServe CRD schema not found at {CRD} (../shared/schemas/kserve is absent)")
        errors = sorted(_isvc_validator().iter_errors(document), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors)
        return
    import kubernetes_validate

    for version in K8S_VERSIONS:
        kubernetes_validate.validate(document, version, strict=True)


def validate_all(documents: list[dict[str, Any]]) -> None:
    for document in documents:
        validate_document(document)


@pytest.fixture
def validate() -> Callable[[list[dict[str, Any]]], None]:
    """validate(documents): the CRD schema for the InferenceService, kubernetes-validate for the rest."""
    return validate_all
