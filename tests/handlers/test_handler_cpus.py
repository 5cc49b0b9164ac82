"""handlers/cpus.py: the CPUs a worker may use (affinity and cgroup quota) and the torch threads it runs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from handler_support import StandInContext, assemble, handler_module

cpus = handler_module("cpus")
base = handler_module("base")


class NoModel(base.BaseHandler):
    """The least a handler can be: initialize() does everything but load a model."""

    def load(self, model_path: Path | None) -> None:
        pass


@pytest.fixture
def initialized(tmp_path: Path) -> Iterator[Any]:
    """initialized(**assemble_keywords) -> the torch threads BaseHandler.initialize set, with a stand-in context."""
    before = torch.get_num_threads()
    count = 0

    def make(**keywords: Any) -> int:
        nonlocal count
        count += 1
        context = StandInContext(assemble(tmp_path / f"archive{count}", "custom", **keywords), batch_size=8)
        NoModel().initialize(context)
        return torch.get_num_threads()

    yield make
    torch.set_num_threads(before)


def test_threads_come_from_options_then_the_toolkits_budget_then_this_models_share(initialized, monkeypatch):
    monkeypatch.setattr(cpus, "available_cpus", lambda: 12)
    monkeypatch.delenv(cpus.THREADS_ENV, raising=False)
    assert initialized(max_workers=3) == 4  # no budget handed over: 12 CPUs over this model's 3 workers
    assert initialized(max_workers=64) == 1  # at least one
    monkeypatch.setenv(cpus.THREADS_ENV, "2")  # the pod-wide budget: every model's workers counted
    assert initialized(max_workers=3) == 2
    assert initialized(max_workers=3, options={"threads": 5}) == 5  # the model's owner decided


def test_a_worker_refuses_a_thread_budget_it_cannot_use_and_names_it(initialized, monkeypatch):
    # torch alone would say "set_num_threads expects a positive integer", naming neither the variable nor the value
    monkeypatch.setenv(cpus.THREADS_ENV, "0")
    with pytest.raises(ValueError, match="MAR_BUILD_THREADS must be a positive integer"):
        initialized()


@pytest.mark.parametrize(
    ("options", "environ", "message"),
    [
        ({}, {"MAR_BUILD_THREADS": "auto"}, "MAR_BUILD_THREADS must be a positive integer .* not 'auto'"),
        ({}, {"MAR_BUILD_THREADS": "0"}, "MAR_BUILD_THREADS must be a positive integer"),
        ({"threads": 0}, {}, "options.threads must be a positive integer .* not 0"),
        ({"threads": 1.5}, {"MAR_BUILD_THREADS": "2"}, "options.threads must be a positive integer"),
    ],
)
def test_a_thread_count_that_is_not_a_positive_integer_is_named(options, environ, message):
    with pytest.raises(ValueError, match=message):
        cpus.torch_threads(options, 1, environ=environ, cpus=lambda: 4)


def test_an_empty_budget_falls_back_to_this_models_share():
    assert cpus.torch_threads({}, 2, environ={"MAR_BUILD_THREADS": ""}, cpus=lambda: 8) == 4
    assert cpus.torch_threads({}, None, environ={}, cpus=lambda: 8) == 8


def test_available_cpus_is_capped_by_the_cgroup_quota(tmp_path: Path):
    affinity = len(os.sched_getaffinity(0))
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("50000 100000\n")  # limits.cpu 0.5
    assert cpus.available_cpus(v2) == 1
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cpus.available_cpus(v2) == affinity
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("150000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpus.available_cpus(v1) == min(affinity, 2)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cpus.available_cpus(v1) == affinity
    assert cpus.available_cpus(tmp_path / "none") == affinity

