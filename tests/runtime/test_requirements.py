"""An archive's requirements.txt on the python runtime, as TorchServe handles it (install_py_dep_per_model).

A real wheel (``marbuild_reqdemo``, written here, in no index and not installed in this environment), an archive
packed by torch-model-archiver with ``-r requirements.txt`` whose handler imports it, and pip reaching only the
wheel's folder (PIP_NO_INDEX=1, PIP_FIND_LINKS), as a pod with a mirror would: the runtime installs it once per
unpacked model and answers with it; with the property off it installs nothing and says why the handler cannot
import; a requirement pip cannot find is a clear error quoting pip; a kept workdir does not reinstall; two workers
loading the same model at once install it once; TorchServe answers the same with the same environment.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serve.serve_support import copy_layout, free_port, replace_snapshot

from toolkit import ServeError
from toolkit._build.builder import build
from toolkit._layout import check, set_properties
from toolkit._runtime.requirements import MARKER, model_lock
from toolkit._serve import serve
from toolkit._spec.parse import parse_spec

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "marbuild_reqdemo"
HANDLER = f'''"""A TorchServe function handler that needs {PACKAGE}, which only the archive's requirements bring."""

import json

import {PACKAGE}


def handle(data, context):
    if data is None:  # the load call
        return None
    answers = []
    for row in data:
        body = row.get("body") if row.get("body") is not None else row.get("data")
        if isinstance(body, (bytes, bytearray)):
            body = json.loads(body)
        answers.append(json.dumps({{"predictions": [{PACKAGE}.shout(text) for text in body["instances"]]}}))
    return answers
'''
INSTANCES = ["hello", "requirements"]
ANSWER = {"predictions": ["HELLO!", "REQUIREMENTS!"]}


def _wheel(folder: Path, name: str, version: str, source: str) -> Path:
    """A pure-Python wheel of one package ``name`` whose __init__ is ``source``, written file by file."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": source.encode(),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: mar-build-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    files[f"{dist}/RECORD"] = ("\n".join([*record, f"{dist}/RECORD,,"]) + "\n").encode()
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


def _archive(work: Path, name: str, requirements: str) -> Path:
    """NAME.mar by torch-model-archiver: the handler above and ``requirements`` as its -r file."""
    work.mkdir(parents=True)
    (work / "handler.py").write_text(HANDLER)
    (work / "requirements.txt").write_text(requirements)
    cmd = [str(Path(sys.executable).parent / "torch-model-archiver"), "--model-name", name, "--version", "1.0",
           "--handler", str(work / "handler.py"), "-r", str(work / "requirements.txt"), "--export-path", str(work),
           "--force"]
    subprocess.run(cmd, check=True, capture_output=True)
    return work / f"{name}.mar"


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder holding the wheel, the only place pip may look (PIP_NO_INDEX=1, PIP_FIND_LINKS) for this module."""
    assert importlib.util.find_spec(PACKAGE) is None, f"{PACKAGE} must not be installed here"
    folder = tmp_path_factory.mktemp("wheelhouse")
    _wheel(folder, PACKAGE, "1.0", 'def shout(text):\n    return text.upper() + "!"\n')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PIP_NO_INDEX", "1")
        mp.setenv("PIP_FIND_LINKS", str(folder))
        yield folder


@pytest.fixture(scope="module")
def base_layout(linear: tuple[Path, object], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A layout built by mar-build (its config.properties), whose model is replaced by each test."""
    model, _ = linear
    spec = parse_spec({"name": "linear", "task": "tensor", "model": str(model)}, base=model.parent)
    return build(spec, tmp_path_factory.mktemp("base") / "layout").layout


@pytest.fixture(scope="module")
def demo_mar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _archive(tmp_path_factory.mktemp("demo") / "mar", "reqdemo", f"{PACKAGE}==1.0\n")


def _layout(base: Path, target: Path, name: str, mar: Path, install: bool) -> Path:
    layout = copy_layout(base, target)
    replace_snapshot(layout, name, mar)
    config = layout / "config" / "config.properties"
    config.write_text(set_properties(config.read_text(), {"install_py_dep_per_model": str(install).lower()}))
    return layout


def _predict(url: str, name: str) -> dict[str, object]:
    reply = httpx.post(f"{url}/v1/models/{name}:predict", json={"instances": INSTANCES}, timeout=120)
    assert reply.status_code == 200, reply.text
    answer: dict[str, object] = reply.json()
    return answer


@pytest.mark.slow
def test_installed_once_per_unpacked_model_and_used(
    wheelhouse: Path, base_layout: Path, demo_mar: Path, tmp_path: Path
) -> None:
    layout = _layout(base_layout, tmp_path / "layout", "reqdemo", demo_mar, install=True)
    run = tmp_path / "run"
    model_dir = run / "unpacked" / "reqdemo"
    with serve(layout, port=free_port(), runtime="python", workdir=run, startup_timeout=240) as predictor:
        assert _predict(predictor.url, "reqdemo") == ANSWER
        log = predictor.log_path.read_text()
    assert "model reqdemo: installing requirements.txt (install_py_dep_per_model=true)" in log
    assert f"-m pip install -U -t {model_dir.resolve()} -r" in log  # TorchServe's command, into the model folder
    assert (model_dir / PACKAGE / "__init__.py").is_file()
    marker = model_dir / MARKER
    stamp = json.loads(marker.read_text())
    assert stamp["requirements"] == "requirements.txt" and stamp["python"] == sys.executable
    installed_at = marker.stat().st_mtime_ns

    # The same workdir again (--workdir kept): the unpacked folder and its packages are reused, pip is not run.
    with serve(layout, port=free_port(), runtime="python", workdir=run, startup_timeout=240) as predictor:
        assert _predict(predictor.url, "reqdemo") == ANSWER
        log = predictor.log_path.read_text()
    assert "installing requirements.txt" not in log
    assert "model reqdemo: requirements.txt is installed in" in log and "already" in log
    assert marker.stat().st_mtime_ns == installed_at


@pytest.mark.slow
def test_property_off_installs_nothing_and_the_error_says_why(
    wheelhouse: Path, base_layout: Path, demo_mar: Path, tmp_path: Path
) -> None:
    layout = _layout(base_layout, tmp_path / "layout", "reqdemo", demo_mar, install=False)
    run = tmp_path / "run"
    with pytest.raises(ServeError) as err:
        serve(layout, port=free_port(), runtime="python", workdir=run, startup_timeout=240)
    tail = "\n".join(err.value.log_tail)
    assert f"No module named '{PACKAGE}'" in tail
    assert "the archive's requirements.txt was not installed: install_py_dep_per_model is not true" in tail
    assert "set install_py_dep_per_model=true" in tail and "mar-build image" in tail
    log = (run / "logs" / "runtime.log").read_text()
    [warning] = [line for line in log.splitlines() if "WARNING" in line and "requirements.txt" in line]
    assert "model reqdemo packages requirements.txt but install_py_dep_per_model is not true" in warning
    assert "pip install" not in log
    assert not (run / "unpacked" / "reqdemo" / PACKAGE).exists()


@pytest.mark.slow
def test_a_requirement_pip_cannot_find_is_a_clear_error(
    wheelhouse: Path, base_layout: Path, tmp_path: Path
) -> None:
    mar = _archive(tmp_path / "mar", "reqbad", "marbuild-reqdemo-absent==9.9\n")
    layout = _layout(base_layout, tmp_path / "layout", "reqbad", mar, install=True)
    run = tmp_path / "run"
    with pytest.raises(ServeError) as err:
        serve(layout, port=free_port(), runtime="python", workdir=run, startup_timeout=240)
    tail = "\n".join(err.value.log_tail)
    assert "model reqbad: pip could not install requirements.txt (exit status 1); the model is not loaded" in tail
    # pip's own last lines, then the ways out
    assert "No matching distribution found for marbuild-reqdemo-absent==9.9" in tail
    assert "PIP_FIND_LINKS" in tail and "mar-build image LAYOUT -o DIR --runtime python" in tail
    assert "install_py_dep_per_model=false" in tail
    assert not (run / "unpacked" / "reqbad" / MARKER).exists()  # a failed install is retried at the next start


LOADER = """
import json, logging, sys
from pathlib import Path
from toolkit._layout import read_layout
from toolkit._runtime.loader import load_model
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
layout, root = Path(sys.argv[1]), Path(sys.argv[2])
print("waiting", flush=True)
model = load_model(read_layout(layout).entries[0], layout, root, envelope=None, previous=[])
print(model.entry([{"body": {"instances": ["hi"]}}], model.context)[0], flush=True)
"""


@pytest.mark.slow
def test_two_workers_loading_one_model_at_once_install_it_once(
    wheelhouse: Path, base_layout: Path, demo_mar: Path, tmp_path: Path
) -> None:
    """Two worker processes call load_model() on the same unpack root together: one unpacks and installs, the
    other waits for the model's lock and finds the marker. The test holds the lock until both are at it."""
    layout = _layout(base_layout, tmp_path / "layout", "reqdemo", demo_mar, install=True)
    root = tmp_path / "unpacked"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with model_lock(root, "reqdemo"):
        workers = [subprocess.Popen([sys.executable, "-c", LOADER, str(layout), str(root)], env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
        watchdog = threading.Timer(300, lambda: [w.kill() for w in workers])  # a worker that never gets here
        watchdog.start()
        try:
            assert [w.stdout.readline().strip() for w in workers if w.stdout] == ["waiting", "waiting"]
            assert not (root / "reqdemo").exists()
        except BaseException:
            for worker in workers:
                worker.kill()
            raise
        finally:
            watchdog.cancel()
        time.sleep(0.5)  # both are in load_model() now, waiting for the lock this test holds
    outputs = [w.communicate(timeout=600) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err[-3000:] for _, err in outputs]
    assert [json.loads(out) for out, _ in outputs] == [{"predictions": ["HI!"]}] * 2
    logs = "".join(err for _, err in outputs)
    assert logs.count("model reqdemo: installing requirements.txt") == 1
    assert logs.count("model reqdemo: requirements.txt is installed in") == 1
    assert (root / "reqdemo" / MARKER).is_file()
    assert [p.name for p in root.iterdir() if p.name.endswith(".tmp")] == []  # no unpack left half-done


@pytest.mark.slow
def test_torchserve_installs_the_same_requirements_and_answers_the_same(
    wheelhouse: Path, base_layout: Path, demo_mar: Path, tmp_path: Path
) -> None:
    layout = _layout(base_layout, tmp_path / "layout", "reqdemo", demo_mar, install=True)
    answers = {}
    for runtime in ("torchserve", "python"):
        run = tmp_path / f"run-{runtime}"
        with serve(layout, port=free_port(), runtime=runtime, workdir=run, startup_timeout=300) as predictor:  # type: ignore[arg-type]
            answers[runtime] = _predict(predictor.url, "reqdemo")
    assert answers == {"torchserve": ANSWER, "python": ANSWER}
    # TorchServe installed it too (its own log line), with the same environment: pip reached only the wheelhouse.
    ts_log = (tmp_path / "run-torchserve" / "logs" / "ts_log.log").read_text()
    assert "Installed custom pip packages for model reqdemo" in ts_log


def test_preflight_says_what_each_runtime_does_with_the_property_off(
    base_layout: Path, demo_mar: Path, tmp_path: Path
) -> None:
    off = _layout(base_layout, tmp_path / "off", "reqdemo", demo_mar, install=False)
    config = off / "config" / "config.properties"
    explicit = config.read_text()
    config.write_text("".join(line for line in explicit.splitlines(keepends=True)
                              if not line.startswith("install_py_dep_per_model")))
    # not set (TorchServe's default, false): TorchServe with the stock image fails to import -> an error
    [error] = [p for p in check(off, pod=False).errors if "requirements.txt" in p.message]
    assert "the worker will not install it" in error.message and "is not set" in error.message
    # set false on purpose (what `mar-build image` does for the image it builds): a warning naming the image
    config.write_text(explicit)
    torchserve = check(off, pod=False)
    assert not [p for p in torchserve.errors if "requirements.txt" in p.message]
    [ts_warning] = [p for p in torchserve.warnings if "requirements.txt" in p.message]
    assert "install_py_dep_per_model=false" in ts_warning.message and "--image" in ts_warning.hint
    python = check(off, runtime="python", pod=False)
    assert not [p for p in python.errors if "requirements.txt" in p.message]
    [warning] = [p for p in python.warnings if "requirements.txt" in p.message]
    assert "the python runtime installs nothing (it logs a warning at load)" in warning.message
    assert "mar-build image LAYOUT -o DIR --runtime python" in warning.hint
    assert "pip-installs it once per unpacked model" in warning.hint
    on = _layout(base_layout, tmp_path / "on", "reqdemo", demo_mar, install=True)
    for runtime in ("torchserve", "python"):
        report = check(on, runtime=runtime, pod=False)  # type: ignore[arg-type]
        assert not [p for p in report.problems if "requirements.txt" in p.message], runtime
