"""The stage room's seam: destinations import base.py (and the toolkit's shared modules), never each other or
staging.py, so a new destination (oci.py) plugs in beside them without a circle of imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import toolkit._stage as stage_room

ROOM = Path(stage_room.__file__).resolve().parent
DESTINATIONS = ("pvc.py", "s3.py", "oci.py")
# A destination too large for one module keeps its helpers beside it as _<scheme>_*.py (oci.py: _oci_image.py,
# _oci_registry.py); they too import only base.py and one another.
HELPERS = {"oci.py": ("_oci_image", "_oci_registry")}
# The one-home modules at the top of toolkit/ (no room of their own); a Destination's type comes from base.py,
# and mypy checks that every destination returned by staging._destination satisfies it.
SHARED = {"_errors", "_events", "_files", "_names", "_registries", "_uri"}


def _relative_imports(path: Path) -> list[tuple[int, str]]:
    """(level, module) of every ``from .X import`` / ``from ..X import`` in a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(node.level, node.module or "") for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level > 0]


@pytest.mark.parametrize("module", DESTINATIONS)
def test_a_destination_imports_only_the_base_of_its_room(module: str) -> None:
    imports = _relative_imports(ROOM / module)
    inside = sorted({name for level, name in imports if level == 1})
    assert inside == sorted(["base", *HELPERS.get(module, ())])
    outside = sorted({name for level, name in imports if level == 2})
    assert set(outside) <= SHARED, f"a destination reaches the toolkit's shared modules only, not {outside}"


@pytest.mark.parametrize("helper", [h for helpers in HELPERS.values() for h in helpers])
def test_a_destination_helper_imports_only_base_and_its_siblings(helper: str) -> None:
    imports = _relative_imports(ROOM / f"{helper}.py")
    siblings = {h for helpers in HELPERS.values() if helper in helpers for h in helpers}
    assert {name for level, name in imports if level == 1} <= {"base"} | siblings
    assert {name for level, name in imports if level == 2} <= SHARED
    assert sorted(p.stem for p in ROOM.glob("_*.py") if p.stem != "__init__") == sorted(
        h for helpers in HELPERS.values() for h in helpers), "every helper module is listed in HELPERS"


def test_base_imports_no_module_of_its_room() -> None:
    assert [name for level, name in _relative_imports(ROOM / "base.py") if level == 1] == []


def test_staging_chooses_among_the_destinations() -> None:
    inside = {name for level, name in _relative_imports(ROOM / "staging.py") if level == 1}
    assert {"base", "pvc", "s3", "oci"} <= inside


def test_byte_progress_is_the_one_callback_type_of_the_toolkit() -> None:
    from toolkit import _events
    from toolkit._build import archive, builder
    from toolkit._stage import base, staging

    for module in (archive, builder, base, staging, stage_room):
        assert module.Progress is _events.Progress, module.__name__
