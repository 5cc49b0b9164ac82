"""The predictor's resources: requests and limits merged key by key, quantities checked, GPUs added."""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from .. import _names
from .._errors import RenderError
from .._names import label_key_problem
from .._spec import Resources

GPU_RESOURCE = "nvidia.com/gpu"


def parse_quantity(text: str) -> Decimal:
    """The value of a Kubernetes resource quantity ("500m", "0.5Gi", "2", "1e3"); RenderError when it is not one."""
    try:
        return _names.parse_quantity(text)
    except ValueError as exc:
        raise RenderError(str(exc), hint=_names.QUANTITY_HINT) from exc


def cpu_count(quantity: str) -> int:
    """The CPUs a ``limits.cpu`` quantity gives a pod's processes: rounded up, at least one.

    The handlers count a CFS quota (2500m is a quota of 2.5 CPUs) the same way, so both sides agree on the number.
    """
    return max(1, math.ceil(parse_quantity(quantity)))


def _resources(base: Mapping[str, str], extra: Mapping[str, Any] | None, what: str) -> dict[str, str]:
    merged: dict[str, str] = {}
    for source in (base, extra or {}):
        if not isinstance(source, Mapping):
            raise RenderError(f"resources.{what} must be a mapping, got {type(source).__name__}")
        for key, value in source.items():
            problem = label_key_problem(key)
            if problem is not None:
                raise RenderError(f"resources.{what}: {key!r} is not a resource name: {problem}")
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise RenderError(f"resources.{what}.{key} must be a quantity string, got {value!r}")
            text = value if isinstance(value, str) else str(value)
            try:
                parse_quantity(text)
            except RenderError as exc:
                raise RenderError(f"resources.{what}.{key}: {exc.message}", hint=exc.hint) from exc
            merged[key] = text
    return merged


def resolve_resources(
    base: Resources, requests: Mapping[str, Any] | None, limits: Mapping[str, Any] | None, gpus: int
) -> tuple[dict[str, str], dict[str, str]]:
    """(requests, limits): the defaults with the overrides merged key by key, GPUs added, quantities checked."""
    res_requests = _resources(base.requests, requests, "requests")
    res_limits = _resources(base.limits, limits, "limits")
    if gpus:
        for what, table in (("limits", res_limits), ("requests", res_requests)):
            if table.get(GPU_RESOURCE, str(gpus)) != str(gpus):
                raise RenderError(
                    f"{what}.{GPU_RESOURCE} is {table[GPU_RESOURCE]!r} but gpu is {gpus}",
                    hint="set the GPU count in one place (--gpu N)",
                )
            table[GPU_RESOURCE] = str(gpus)
    _check_requests_within_limits(res_requests, res_limits)
    return res_requests, res_limits


def _check_requests_within_limits(requests: Mapping[str, str], limits: Mapping[str, str]) -> None:
    for key, request in requests.items():
        limit = limits.get(key)
        if limit is None:
            continue
        if parse_quantity(request) > parse_quantity(limit):
            raise RenderError(
                f"requests.{key} ({request}) is more than limits.{key} ({limit}): Kubernetes rejects such a pod",
                hint=f"raise the limit or lower the request (--{key}-request/--{key}-limit); unless mar.yaml's "
                "kserve.resources says otherwise both default to 1 CPU and 2Gi, the runtime's defaults",
            )
        if "/" in key and "kubernetes.io/" not in key and parse_quantity(request) != parse_quantity(limit):
            raise RenderError(
                f"requests.{key} ({request}) differs from limits.{key} ({limit}): extended resources cannot be "
                "overcommitted", hint="set them equal",
            )


def ordered(table: Mapping[str, str]) -> list[tuple[str, str]]:
    """cpu, memory and ephemeral-storage first (as people write them), then the rest by name: stable text."""
    first = ("cpu", "memory", "ephemeral-storage")
    return sorted(table.items(), key=lambda kv: (first.index(kv[0]) if kv[0] in first else len(first), kv[0]))
