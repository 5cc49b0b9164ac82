"""The pod's thread budget: the workers of all models share the CPUs of limits.cpu (toolkit._layout.workers).

render warns when they outnumber the CPUs, and gives the handlers MAR_BUILD_THREADS in the predictor's env.
"""

from __future__ import annotations

import logging

import pytest

from toolkit import KServeSettings, Resources, build
from toolkit._errors import RenderError
from toolkit._render import Manifests, render


@pytest.mark.parametrize(
    ("workers", "models", "limits", "warned"),
    [
        ((3, 3), ["bert"], None, "start 3 worker(s) in all (bert: 3) on limits.cpu 1: they take turns on 1 CPU"),
        ((2, 2), ["a", "b"], {"cpu": "3"}, "start 4 worker(s) in all (a: 2, b: 2) on limits.cpu 3"),
        ((2, 3), ["a", "b"], {"cpu": "2"}, "start 4 worker(s) in all (a: 2, b: 2) on limits.cpu 2"),
        ((1, 2), ["a", "b"], {"cpu": "2"}, None),  # minWorkers: what TorchServe starts (a: 1, b: 1)
        ((1, 5), ["bert"], {"cpu": "2"}, None),  # the hand workflow: 1 worker started, maxWorkers 5
        ((3, 3), ["bert"], {"cpu": "2500m"}, None),  # a 2.5 CPU quota: the handlers round it up to 3
        ((1, 1), ["bert"], None, None),
        ((None, None), ["bert"], None, None),  # TorchServe's default worker count: nothing to compare
    ],
)
def test_more_workers_than_cpus_is_a_warning(layout_factory, caplog, workers, models, limits, warned):
    layout = layout_factory(dict.fromkeys(models), min_workers=workers[0], max_workers=workers[1])
    with caplog.at_level(logging.INFO, logger="toolkit.render"):
        render(layout, name="m", storage_uri="pvc://x", limits=limits)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if warned is None:
        assert not [w for w in warnings if "worker" in w], warnings
    else:
        assert [w for w in warnings if warned in w and "serving.min_workers" in w and "--cpu-limit" in w], warnings


def test_fewer_workers_than_cpus_is_said_at_info(layout_factory, caplog):
    layout = layout_factory({"bert": None}, max_workers=1)
    with caplog.at_level(logging.INFO, logger="toolkit.render"):
        render(layout, name="m", storage_uri="pvc://x", limits={"cpu": "4"})
    [info] = [r for r in caplog.records if "worker" in r.getMessage()]
    assert info.levelno == logging.INFO
    assert "start 1 worker(s) in all (bert: 1) on limits.cpu 4, with 4 torch threads" in info.getMessage()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="toolkit.render"):
        render(layout, name="m", storage_uri="pvc://x", limits={"cpu": "4"}, gpu=1)  # GPU workers: not about CPUs
    assert not [r for r in caplog.records if "worker" in r.getMessage()]


def predictor_env(manifests: Manifests) -> list[dict[str, str]] | None:
    return manifests.documents[-1]["spec"]["predictor"]["model"].get("env")


def test_two_models_share_the_cpus_of_one_pod(tensor_spec, tmp_path, caplog, validate):
    """Each handler divides the CPUs by its own model's workers; two models of 2 workers on 2 CPUs would run
    4 threads on 2 CPUs. render counts all models: a warning, and one thread per worker for the handlers."""
    layout = tmp_path / "layout"
    workers = {"min_workers": 2, "max_workers": 2}
    build(tensor_spec("a", name="first", serving=workers), layout)
    build(tensor_spec("b", name="second", serving=workers), layout)
    with caplog.at_level(logging.WARNING, logger="toolkit.render"):
        manifests = render(layout, name="pair", storage_uri="pvc://models/pair", limits={"cpu": "2"})
    assert predictor_env(manifests) == [{"name": "MAR_BUILD_THREADS", "value": "1"}]
    [warning] = [r.getMessage() for r in caplog.records if "worker" in r.getMessage()]
    assert "start 4 worker(s) in all (first: 2, second: 2) on limits.cpu 2" in warning
    assert "add up to 2 at most" in warning and "--cpu-limit 4" in warning
    validate(manifests.documents)


def test_one_worker_gets_every_cpu(tensor_spec, tmp_path, caplog):
    layout = tmp_path / "layout"
    build(tensor_spec(serving={"min_workers": 1, "max_workers": 1}), layout)
    with caplog.at_level(logging.WARNING, logger="toolkit.render"):
        manifests = render(layout, name="lin", storage_uri="pvc://models/lin", limits={"cpu": "2"})
    assert predictor_env(manifests) == [{"name": "MAR_BUILD_THREADS", "value": "2"}]
    assert not [r for r in caplog.records if "worker" in r.getMessage()]


def test_the_callers_env_comes_first_and_their_thread_count_wins(layout_factory):
    layout = layout_factory({"bert": None}, max_workers=1)
    manifests = render(layout, name="m", storage_uri="pvc://x", limits={"cpu": "4"},
                       env={"LOG_LEVEL": "debug", "RETRIES": 3})
    assert predictor_env(manifests) == [
        {"name": "LOG_LEVEL", "value": "debug"}, {"name": "RETRIES", "value": "3"},
        {"name": "MAR_BUILD_THREADS", "value": "4"},
    ]
    own = render(layout, name="m", storage_uri="pvc://x", limits={"cpu": "4"}, env={"MAR_BUILD_THREADS": "1"})
    assert predictor_env(own) == [{"name": "MAR_BUILD_THREADS", "value": "1"}]


@pytest.mark.parametrize(
    ("make", "limits"),
    [
        (lambda factory: None, {"cpu": "2"}),  # no layout: nothing to count
        (lambda factory: factory({"bert": None}, min_workers=None, max_workers=None), {"cpu": "2"}),  # unknown
        (lambda factory: factory({"bert": None}), {"memory": "2Gi"}),  # no CPU limit
    ],
)
def test_no_thread_count_when_it_is_unknown(layout_factory, make, limits):
    layout = make(layout_factory)
    settings = KServeSettings(resources=Resources(requests={}, limits={}))
    manifests = render(layout, name="m", storage_uri="pvc://x", settings=settings, limits=limits)
    assert predictor_env(manifests) is None


@pytest.mark.parametrize(
    ("env", "message"),
    [({"1ST": "x"}, "env '1ST' is not valid"), ({"A B": "x"}, "not valid"), ({"": "x"}, "not valid"),
     ({"A": None}, "env: A must be a string"), ({"A": ["x"]}, "must be a string")],
)
def test_bad_env(env, message):
    with pytest.raises(RenderError, match=message):
        render(name="m", storage_uri="pvc://x", env=env)


def test_the_python_runtime_gets_the_cpus_over_the_workers_as_torchserve(tensor_spec, tmp_path, caplog):
    """mar-build's runtime starts min_workers worker processes per model as TorchServe starts its workers: 2 workers
    on 4 CPUs get 2 threads each on both runtimes, and the advice about min_workers is the same."""
    layout = tmp_path / "layout"
    build(tensor_spec("a", name="first", serving={"min_workers": 2, "max_workers": 2}), layout)
    with caplog.at_level(logging.INFO, logger="toolkit.render"):
        manifests = render(layout, name="one", storage_uri="pvc://models/one", limits={"cpu": "4"},
                           runtime="python", image="ghcr.io/team/mar-build-runtime:1.0")
    assert predictor_env(manifests) == [{"name": "MAR_BUILD_THREADS", "value": "2"}]
    assert [r for r in caplog.records if "min_workers adding up to 4" in r.getMessage()]
    torchserve = render(layout, name="one", storage_uri="pvc://models/one", limits={"cpu": "4"})
    assert predictor_env(torchserve) == [{"name": "MAR_BUILD_THREADS", "value": "2"}]
