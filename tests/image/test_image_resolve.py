"""Every pin of a generated requirements.txt resolves for the image's Python and platform, with pip's own resolver
against the real package index (no install: ``pip install --dry-run --report``). One resolution per runtime: each
costs tens of seconds of network time (measured here: 60-75 s on a shared machine)."""

from __future__ import annotations

import time

import pytest
from image_support import make_layout

from toolkit._image import choose_base, image, resolve_requirements

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("runtime", "models"), [
    ("torchserve", {"intent": ("text-classification", "transformers==5.23.0\nscikit-learn>=1.4\n")}),
    ("python", {"digits": ("image-classification", None), "tensor": ("tensor", "numpy>=1.24\n")}),
])
def test_the_requirements_resolve_for_the_base_against_the_index(tmp_path, runtime, models):
    context = image(make_layout(tmp_path / "layout", models), tmp_path / "ctx", runtime=runtime)
    started = time.monotonic()
    resolution = resolve_requirements(context.requirements_file, choose_base(None), isolated=True)
    print(f"{runtime}: {len(resolution.packages)} packages resolved in {time.monotonic() - started:.1f} s")
    resolved = {name.lower().replace("_", "-"): version for name, version in resolution.packages.items()}
    for line in context.requirements:  # every exact pin is what pip picked
        name, _, version = line.partition("==")
        if version:
            assert resolved[name.lower()] == version, line
    assert ("torchserve" in resolved) == (runtime == "torchserve") and "kserve" in resolved
    if runtime == "torchserve":
        assert "scikit-learn" in resolved and resolved["transformers"] == "5.23.0"
    else:
        assert "pillow" in resolved and "numpy" in resolved
