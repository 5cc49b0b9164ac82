"""serve() refuses clearly: ports in use, no Java, a layout that fails check, a model that fails to load."""

from __future__ import annotations

import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_support import copy_layout, free_port, processes_mentioning, replace_snapshot

from toolkit import LayoutError, ServeError
from toolkit._diagnose import KSERVE_CONTAINER, find_hints
from toolkit._serve import serve
from toolkit._serve.processes import java_major


@pytest.fixture
def listening() -> Iterator[int]:
    """A port something listens on (127.0.0.1)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def set_property(layout: Path, key: str, value: str | None) -> None:
    config = layout / "config" / "config.properties"
    lines = [ln for ln in config.read_text().splitlines() if not ln.startswith(f"{key}=")]
    if value is not None:
        lines.insert(0, f"{key}={value}")
    config.write_text("\n".join(lines) + "\n")


def test_wrapper_port_in_use(tensor_layout: Path, listening: int) -> None:
    with pytest.raises(ServeError) as err:
        serve(tensor_layout, port=listening)
    assert f"port {listening} (the wrapper's HTTP port) is in use" in str(err.value)
    assert "--port" in (err.value.hint or "")


def test_torchserve_port_in_use_with_the_configs_ports(tensor_layout: Path, listening: int, tmp_path: Path) -> None:
    layout = copy_layout(tensor_layout, tmp_path / "layout")
    for key in ("inference_address", "management_address"):
        set_property(layout, key, f"http://127.0.0.1:{listening}")
    with pytest.raises(ServeError) as err:
        serve(layout, port=free_port(), ts_ports="config")
    assert f"port {listening} (TorchServe's inference_address in config.properties) is in use" in str(err.value)
    assert "ts_ports='free'" in (err.value.hint or "")


def test_missing_java_says_how_to_install_it(
    tensor_layout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServeError) as err:
        serve(tensor_layout, port=free_port())
    assert "Java is missing" in str(err.value)
    assert "apt-get install openjdk-17-jre-headless" in (err.value.hint or "")


def test_old_java_is_refused(tensor_layout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    java = tmp_path / "bin" / "java"
    java.parent.mkdir()
    java.write_text('#!/bin/sh\necho \'openjdk version "11.0.22" 2024-01-16\' >&2\n')
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(ServeError) as err:
        serve(tensor_layout, port=free_port())
    assert "is Java 11; TorchServe needs Java 17" in str(err.value)


@pytest.mark.parametrize(
    ("output", "major"),
    [('openjdk version "17.0.9" 2023-10-17', 17), ('java version "1.8.0_392"', 8), ('version "21" 2023', 21),
     ("no version here", None)],
)
def test_java_major(output: str, major: int | None) -> None:
    assert java_major(output) == major


def test_a_layout_that_fails_check_is_refused(tensor_layout: Path, tmp_path: Path) -> None:
    layout = copy_layout(tensor_layout, tmp_path / "layout")
    set_property(layout, "disable_token_authorization", None)
    with pytest.raises(LayoutError) as err:
        serve(layout, port=free_port(), workdir=tmp_path / "run")
    assert any("token authorization" in p for p in err.value.problems)
    assert not (tmp_path / "run").exists()  # refused before anything started


def test_not_a_layout(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="is not a layout"):
        serve(tmp_path, port=free_port())
    with pytest.raises(LayoutError, match="is not a folder"):
        serve(tmp_path / "missing", port=free_port())


def test_pvc_sources_read_the_mount(tensor_layout: Path, tmp_path: Path) -> None:
    with pytest.raises(ServeError, match="no mount folder was given"):
        serve("pvc://leeway/models/linear", port=free_port())
    mount = tmp_path / "mnt"
    layout = copy_layout(tensor_layout, mount / "models" / "linear")
    set_property(layout, "disable_token_authorization", None)
    # The layout under the mount is the one checked (and refused here, proving it was read).
    with pytest.raises(LayoutError) as err:
        serve("pvc://leeway/models/linear", mount=mount, port=free_port())
    assert err.value.path == layout
    with pytest.raises(ServeError, match="'..' segment"):
        serve("pvc://leeway/../outside", mount=mount, port=free_port())
    (tmp_path / "outside").mkdir()
    (mount / "escape").symlink_to(tmp_path / "outside")
    with pytest.raises(ServeError, match="leaves the mount folder"):
        serve("pvc://leeway/escape", mount=mount, port=free_port())
    with pytest.raises(ServeError, match="does not exist"):
        serve("pvc://leeway/models/other", mount=mount, port=free_port())


@pytest.mark.slow
def test_a_model_that_fails_to_load_shows_the_workers_traceback(
    tensor_layout: Path, failing_mar: Path, tmp_path: Path
) -> None:
    layout = copy_layout(tensor_layout, tmp_path / "layout")
    replace_snapshot(layout, "broken", failing_mar)
    run = tmp_path / "run"
    with pytest.raises(ServeError) as err:
        serve(layout, port=free_port(), workdir=run, startup_timeout=240)
    message = str(err.value)
    assert "model broken failed to load" in message
    assert "FileNotFoundError: no weights at model/weights.safetensors" in message
    tail = "\n".join(err.value.log_tail)
    assert "failing_handler.py" in tail and "in _open_weights" in tail
    assert processes_mentioning(str(run)) == []


@pytest.mark.slow
def test_a_worker_that_cannot_import_a_module_names_the_fix_status_names(
    tensor_layout: Path, missing_module_mar: Path, tmp_path: Path
) -> None:
    layout = copy_layout(tensor_layout, tmp_path / "layout")
    replace_snapshot(layout, "needy", missing_module_mar)
    run = tmp_path / "run"
    with pytest.raises(ServeError) as err:
        serve(layout, port=free_port(), workdir=run, startup_timeout=240)
    assert "model needy failed to load" in err.value.message
    assert "No module named 'mar_build_absent_package'" in "\n".join(err.value.log_tail)  # the tail is kept
    # What `status` says for the same lines in a pod's kserve-container log (TorchServe's and the worker's):
    pod_log = "".join((run / "logs" / name).read_text() for name in ("ts_log.log", "model_log.log"))
    fatal = [h for h in find_hints(logs={KSERVE_CONTAINER: pod_log}) if h.fatal]
    assert [h.key for h in fatal] == ["missing-module"]
    assert "'mar_build_absent_package'" in fatal[0].problem
    assert fatal[0].text() in (err.value.hint or "")
    assert "add mar_build_absent_package to requirements in mar.yaml" in str(err.value)
    assert processes_mentioning(str(run)) == []


@pytest.mark.slow
def test_torchserve_not_ready_in_time_stops_everything(tensor_layout: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(ServeError, match="did not answer on .* within 0 s"):
        serve(tensor_layout, port=free_port(), workdir=run, startup_timeout=0.2)
    assert processes_mentioning(str(run)) == []
