"""The PersistentVolumeClaim that holds a layout staged to ``pvc://CLAIM/PATH``."""

from __future__ import annotations

from dataclasses import dataclass

from .._errors import RenderError
from .._names import dns1123_subdomain_problem
from .._templating import render_template
from .checks import check_name
from .resources import parse_quantity

ACCESS_MODES = ("ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany", "ReadWriteOncePod")


@dataclass(frozen=True)
class PvcRequest:
    """A PersistentVolumeClaim to create; its name defaults to the claim in ``pvc://CLAIM/PATH``."""

    size: str
    storage_class: str | None = None
    access_mode: str = "ReadWriteOnce"
    name: str | None = None


def render_pvc(
    pvc: PvcRequest, scheme: str, claim: str, uri: str, namespace: str | None, labels: list[tuple[str, str]]
) -> str:
    """The claim's manifest text; RenderError unless it is the claim the storage URI reads, with valid values."""
    if scheme != "pvc":
        raise RenderError(
            f"a PVC was asked for but the storage URI is {uri!r}",
            hint="a PVC serves pvc://CLAIM/PATH storage URIs; drop the PVC options or fix --storage-uri",
        )
    name = pvc.name or claim
    if name != claim:
        raise RenderError(
            f"the PVC is named {name!r} but the storage URI reads claim {claim!r}", hint="use the same name"
        )
    try:
        size = parse_quantity(pvc.size)
    except RenderError as exc:
        raise RenderError(f"PVC size: {exc.message}", hint="e.g. 10Gi") from exc
    if size <= 0:
        raise RenderError(f"PVC size must be more than 0, got {pvc.size!r}", hint="e.g. 10Gi")
    if pvc.access_mode not in ACCESS_MODES:
        raise RenderError(f"PVC access mode {pvc.access_mode!r} is not one of {', '.join(ACCESS_MODES)}")
    if pvc.storage_class is not None:
        check_name(pvc.storage_class, dns1123_subdomain_problem, "storage class")
    return render_template(
        "pvc.yaml.jinja", name=name, namespace=namespace, labels=labels, size=pvc.size,
        access_mode=pvc.access_mode, storage_class=pvc.storage_class,
    )
