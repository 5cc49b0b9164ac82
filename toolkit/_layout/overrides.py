"""Serving settings TorchServe silently drops: a model-config.yaml inside an archive that disagrees with
model_snapshot, and minWorkers above maxWorkers.

TorchServe's precedence is config.properties < the archive's model-config.yaml < the management API
(pytorch/serve#2209): where the archive's file and model_snapshot both set workers or batching, one of them is void
and nothing says so (#2365, #1955 for batchSize). minWorkers > maxWorkers is taken without a word (#2038).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import yaml

from .read import SnapshotEntry
from .report import CheckReport, to_int

SERVING_KEYS = ("minWorkers", "maxWorkers", "batchSize", "maxBatchDelay", "responseTimeout")


def archive_model_config(mar: Path) -> tuple[str, dict[str, Any]] | None:
    """(member name, its settings) of the model-config.yaml an archive carries (MANIFEST's configFile); None when
    it has none or it cannot be read."""
    try:
        with zipfile.ZipFile(mar) as zf:
            manifest = json.loads(zf.read("MAR-INF/MANIFEST.json"))
            member = manifest.get("model", {}).get("configFile")
            if not isinstance(member, str) or member not in zf.namelist():
                return None
            loaded = yaml.safe_load(zf.read(member))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, yaml.YAMLError):
        return None
    return (member, loaded) if isinstance(loaded, dict) else None


def check_overrides(entries: list[tuple[SnapshotEntry, Path]], report: CheckReport) -> None:
    """For each model_snapshot entry (with its archive): workers in order, and no model-config.yaml that voids it."""
    for entry, mar in entries:
        _check_workers(f"model {entry.name!r}: model_snapshot", entry.settings, report)
        found = archive_model_config(mar)
        if found is None:
            continue
        member, config = found
        _check_workers(f"model {entry.name!r}: {mar.name}'s {member}", config, report)
        differ = [k for k in SERVING_KEYS if k in config and k in entry.settings
                  and to_int(config[k], -1) != to_int(entry.settings[k], -2)]
        for key in differ:
            report._warn(
                f"model {entry.name!r}: {key} is {entry.settings[key]} in model_snapshot but {config[key]} in the "
                f"archive's {member}; TorchServe reads the archive's file over config.properties "
                "(pytorch/serve#2209), so one of the two is silently void",
                f"give {key} one value: drop it from {member} (rebuild the archive) or set it to {config[key]} in "
                "model_snapshot",
            )


def _check_workers(where: str, settings: dict[str, Any], report: CheckReport) -> None:
    low, high = to_int(settings.get("minWorkers"), -1), to_int(settings.get("maxWorkers"), -1)
    if low >= 0 and high >= 0 and low > high:
        report._error(
            f"{where} has minWorkers {low} > maxWorkers {high}: TorchServe takes it without a word and the "
            "worker count is not what either says (pytorch/serve#2038)",
            f"set maxWorkers to at least {low} (or minWorkers to at most {high})",
        )
