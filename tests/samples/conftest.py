"""Run each sample's prepare.py once per session, into the real samples/<s>/model (its stamp makes reruns instant)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from samples_support import Sample, prepare_once


@pytest.fixture(scope="session")
def prepared() -> Callable[[str], Sample]:
    """prepared(sample) -> Sample, running prepare.py the first time a session asks for that sample."""
    return prepare_once


@pytest.fixture(scope="module")
def sample(prepared: Callable[[str], Sample], request: pytest.FixtureRequest) -> Sample:
    """The sample the test module names in its ``SAMPLE``, prepared."""
    return prepared(request.module.SAMPLE)
