"""Layouts made by hand in tmp_path, and the validators every rendered manifest goes through.

A layout here is what KServe's storageUri points at: config/config.properties with a one-line model_snapshot and
model-store/NAME.mar, a zip with MAR-INF/MANIFEST.json and (for archives "built by mar-build") mar_build.json
holding the KServe section of mar.yaml. Nothing here depends on the real build pipeline.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from schema_support import validate_all

from toolkit import KServeSettings


def make_layout(
    root: Path,
    models: Mapping[str, KServeSettings | dict[str, Any] | None],
    *,
    metrics_port: int = 8082,
    metrics_mode: bool = True,
    min_workers: int | None = 1,
    max_workers: int | None = 5,
) -> Path:
    """Write a layout at ``root`` serving ``models``: name -> the archive's KServe settings (None: hand-built).

    The hand workflow's values (a hand-written config.properties as teams deploy it today): version 1.0, 1-5
    workers, batch size 1, 5000 ms delay, 120 s timeout (``min_workers``/``max_workers`` None leave the key out).
    """
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "model-store").mkdir(exist_ok=True)
    snapshot = {
        "name": "startup.cfg",
        "modelCount": len(models),
        "models": {
            name: {"1.0": {k: v for k, v in {
                "defaultVersion": True, "marName": f"{name}.mar", "minWorkers": min_workers,
                "maxWorkers": max_workers, "batchSize": 1, "maxBatchDelay": 5000, "responseTimeout": 120,
            }.items() if v is not None}}
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
    """The hand workflow: one hand-built archive, model_snapshot key `bert` (PVC `leeway`, InferenceService
    `torchserve` in `kubeflow-user-example-com`)."""
    return layout_factory({"bert": None})


@pytest.fixture
def validate() -> Callable[[list[dict[str, Any]]], None]:
    """validate(documents): the CRD schemas in tests/schemas for custom resources, kubernetes-validate for the rest."""
    return validate_all
