"""Layouts made by hand for the image tests: archives with a task in their build info and packaged requirements."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path

HAND_CONFIG = (
    "# written by hand, as teams deploy it today\n"
    "inference_address=http://0.0.0.0:8085\n"
    "management_address=http://0.0.0.0:8081\n"
    "install_py_dep_per_model = true\n"
    "job_queue_size=100\n"
    "model_snapshot={snapshot}\n"
)


def make_layout(root: Path, models: Mapping[str, tuple[str | None, str | None]], config: str = HAND_CONFIG) -> Path:
    """A layout at ``root``: name -> (task in mar_build.json or None for a hand-built archive, requirements.txt)."""
    (root / "config").mkdir(parents=True)
    (root / "model-store").mkdir()
    snapshot = {"name": "startup.cfg", "modelCount": len(models), "models": {
        name: {"1.0": {"defaultVersion": True, "marName": f"{name}.mar", "minWorkers": 1, "maxWorkers": 1,
                       "batchSize": 1, "maxBatchDelay": 5}} for name in models}}
    (root / "config" / "config.properties").write_text(
        config.format(snapshot=json.dumps(snapshot, separators=(",", ":"))), encoding="utf-8")
    for name, (task, requirements) in models.items():
        model = {"modelName": name, "modelVersion": "1.0", "handler": "h.py"}
        if requirements is not None:
            model["requirementsFile"] = "requirements.txt"
        with zipfile.ZipFile(root / "model-store" / f"{name}.mar", "w") as zf:
            zf.writestr("MAR-INF/MANIFEST.json", json.dumps({"runtime": "python", "model": model}))
            zf.writestr("h.py", "# handler\n")
            if task is not None:
                zf.writestr("mar_build.json", json.dumps({"format": 1, "name": name, "task": task}))
            if requirements is not None:
                zf.writestr("requirements.txt", requirements)
    return root
