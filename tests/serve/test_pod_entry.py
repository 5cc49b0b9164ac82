"""The pod's entrypoint (toolkit._serve.pod) reads the kserve-torchserve runtime's args as KServe passes them.

The whole entrypoint runs against TorchServe 0.9.0 in tests/compat/test_lockdown_090.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from toolkit._serve.pod import DEFAULT_CONFIG, option_value, torchserve_command, wrapper_command

REPO = Path(__file__).resolve().parents[2]
RUNTIME_ARGS = ["torchserve", "--start", "--model-store=/mnt/models/model-store",
                "--ts-config=/mnt/models/config/config.properties"]  # the ServingRuntime's, as KServe passes them


def test_the_runtimes_args_stay_in_the_foreground() -> None:
    assert torchserve_command(RUNTIME_ARGS) == [*RUNTIME_ARGS, "--foreground"]
    assert torchserve_command([*RUNTIME_ARGS, "--foreground"]) == [*RUNTIME_ARGS, "--foreground"]
    assert torchserve_command([])[-2:] == [f"--ts-config={DEFAULT_CONFIG}", "--foreground"]


def test_the_config_is_found_in_either_spelling_and_isvc_args_come_last() -> None:
    assert option_value(RUNTIME_ARGS, "--ts-config") == DEFAULT_CONFIG
    assert option_value(["torchserve", "--ts-config", "/a", "--ts-config=/b"], "--ts-config") == "/b"
    assert option_value(["torchserve", "--start"], "--ts-config") is None


def test_the_wrapper_listens_on_every_interface_in_the_pod() -> None:
    command = wrapper_command(DEFAULT_CONFIG, 8080, 8081)
    assert command[1:3] == ["-m", "toolkit._serve.wrapper"]
    assert command[3:] == ["--config", DEFAULT_CONFIG, "--http-port", "8080", "--host", "0.0.0.0",
                           "--grpc-port", "8081"]


def test_a_missing_config_is_named_before_anything_starts(tmp_path: Path) -> None:
    missing = tmp_path / "config" / "config.properties"
    command = [sys.executable, "-m", "toolkit._serve.pod", "torchserve", "--start", f"--ts-config={missing}"]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert f"{missing} is missing: the storageUri must point at the folder" in proc.stderr
