"""`mar-build serve` as a user runs it: Ctrl-C and SIGTERM stop it cleanly, s3:// sources, clear errors."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from serve_support import ServeProcess, TinyModel, assert_rows_close, copy_layout, free_port, processes_mentioning

from toolkit import LayoutError
from toolkit._cli import cli
from toolkit._serve import serve

REPO = Path(__file__).resolve().parents[2]


def set_ports(layout: Path) -> dict[str, int]:
    """Give the layout's config its own free ports (the exact pod config, on ports nobody else uses)."""
    ports = {"inference": free_port(), "metrics": free_port(), "grpc": free_port(), "grpc_management": free_port()}
    config = layout / "config" / "config.properties"
    text = config.read_text()
    for old, new in (("127.0.0.1:8085", f"127.0.0.1:{ports['inference']}"),
                     ("0.0.0.0:8082", f"127.0.0.1:{ports['metrics']}"),
                     ("grpc_inference_port=7070", f"grpc_inference_port={ports['grpc']}"),
                     ("grpc_management_port=7071", f"grpc_management_port={ports['grpc_management']}")):
        assert old in text
        text = text.replace(old, new)
    config.write_text(text)
    return ports


def _sigint_ignored_and_blocked() -> None:
    # what a parent can hand down through exec: a background job's ignored SIGINT, a thread's blocked mask
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


@pytest.mark.slow
def test_ctrl_c_works_even_when_sigint_was_ignored_and_blocked_by_the_parent(
    tensor_layout: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    serving = ServeProcess([str(tensor_layout), "--port", str(free_port()), "--workdir", str(run)],
                           preexec=_sigint_ignored_and_blocked)
    try:
        serving.wait_for(lambda line: "Press Ctrl-C" in line)
        serving.proc.send_signal(signal.SIGINT)
        output = serving.output_until_exit(timeout=60)
    finally:
        if serving.proc.poll() is None:
            serving.proc.kill()
    assert serving.proc.returncode == 0, output
    assert "stopping" in output and output.rstrip().endswith("stopped")
    assert processes_mentioning(str(run)) == []


@pytest.mark.slow
def test_ctrl_c_stops_everything_and_leaves_no_process(
    tensor_layout: Path, tiny_model: TinyModel, tmp_path: Path
) -> None:
    layout = copy_layout(tensor_layout, tmp_path / "layout")
    ports = set_ports(layout)
    port, run = free_port(), tmp_path / "run"
    serving = ServeProcess([str(layout), "--port", str(port), "--ts-ports", "config", "--workdir", str(run)])
    try:
        serving.wait_for(lambda line: "Press Ctrl-C" in line)
        assert any(f"http://127.0.0.1:{port}/v1/models/linear:predict" in line for line in serving.seen)
        instances = [[1.0, 2.0, 3.0, 4.0]]
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/models/linear:predict", json={"instances": instances})
        assert_rows_close(answer.json()["predictions"], tiny_model.predict(instances))
        # --ts-ports config: TorchServe listens exactly where config.properties says
        direct = httpx.post(f"http://127.0.0.1:{ports['inference']}/v1/models/linear:predict",
                            json={"instances": instances})
        assert direct.status_code == 200
        started = [line for line in processes_mentioning(str(run)) if "toolkit serve" not in line]
        assert any("org.pytorch.serve.ModelServer" in line for line in started)  # the Java frontend
        assert any("toolkit._serve.wrapper" in line for line in started)
        assert any("model_service_worker" in line for line in started)  # a Python worker
    finally:
        serving.stop_hard()
    output = serving.output_until_exit()
    assert serving.proc.returncode == 0, output
    assert "stopping" in output and output.rstrip().endswith("stopped")
    assert processes_mentioning(str(run)) == []


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from stage.s3_support import start_moto

    server = start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield server.url
    finally:
        server.stop()


def s3_environment(endpoint: str, home: Path) -> dict[str, str]:
    """What KServe gives the storage-initializer for an S3 Secret, with dummy credentials (no ~/.aws)."""
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "S3_USE_HTTPS": "0", "S3_VERIFY_SSL": "0",
            "AWS_CONFIG_FILE": str(home / "config"), "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials")}


def upload(layout: Path, endpoint: str, bucket: str, prefix: str, env: dict[str, str]) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    s3.create_bucket(Bucket=bucket)
    for path in sorted(layout.rglob("*")):
        if path.is_file():
            s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(layout).as_posix()}")


@pytest.mark.slow
def test_serve_from_s3_then_sigterm(
    tensor_layout: Path, tiny_model: TinyModel, moto: str, tmp_path: Path
) -> None:
    env = s3_environment(moto, tmp_path)
    upload(tensor_layout, moto, "models", "team/linear", env)
    port, run = free_port(), tmp_path / "run"
    serving = ServeProcess(["s3://models/team/linear", "--port", str(port), "--json", "--workdir", str(run)], env)
    try:
        info = json.loads(serving.wait_for(lambda line: line.startswith("{")))
        assert info["models"] == ["linear"]
        downloaded = Path(info["layout"])
        assert (downloaded / "config" / "config.properties").read_bytes() == \
            (tensor_layout / "config" / "config.properties").read_bytes()
        instances = [[0.5, -1.0, 2.0, 0.0], [3.0, 3.0, 3.0, 3.0]]
        answer = httpx.post(info["predict"]["linear"], json={"instances": instances})
        assert_rows_close(answer.json()["predictions"], tiny_model.predict(instances))
        serving.proc.send_signal(signal.SIGTERM)
        output = serving.output_until_exit()
    finally:
        serving.stop_hard()
    assert serving.proc.returncode == 0, output
    assert output.rstrip().endswith("stopped")
    assert processes_mentioning(str(run)) == []
    assert not downloaded.exists()  # the /mnt/models stand-in is removed at stop


def test_an_s3_prefix_without_a_layout_is_refused(
    tensor_layout: Path, moto: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = s3_environment(moto, tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    upload(tensor_layout / "model-store", moto, "loose", "only-archives", env)
    with pytest.raises(LayoutError) as err:
        serve("s3://loose/only-archives", port=free_port())
    assert "holds no config/config.properties" in str(err.value)
    assert "linear.mar" in str(err.value)


def test_cli_reports_errors_without_a_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["serve", str(tmp_path / "nowhere"), "--port", str(free_port())])
    assert result.exit_code == 1
    assert "error:" in result.output and "is not a folder" in result.output
    assert "Traceback" not in result.output


def test_a_serve_that_fails_puts_the_signal_handlers_back(tmp_path: Path) -> None:
    """serve takes SIGINT and SIGTERM for its stop button; run inside a longer-lived process (this one), it used to
    leave SIGTERM raising KeyboardInterrupt after it failed to start."""
    stop_signals = (signal.SIGINT, signal.SIGTERM)
    before = {signum: signal.getsignal(signum) for signum in stop_signals}
    result = CliRunner().invoke(cli, ["serve", str(tmp_path / "nowhere"), "--port", str(free_port())])
    assert result.exit_code == 1
    assert {signum: signal.getsignal(signum) for signum in stop_signals} == before


class _StandInPredictor:
    """What serve() returns, without TorchServe: Ctrl-C arrives while the command waits."""

    url = "http://127.0.0.1:8080"
    models = ["linear"]
    stopped = False

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "models": self.models}

    def wait(self) -> None:
        raise KeyboardInterrupt

    def stop(self) -> None:
        self.stopped = True


def test_json_startup_line_then_ctrl_c(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import toolkit._cli.serve as serve_cli

    predictor = _StandInPredictor()
    calls: list[dict[str, Any]] = []

    def fake_serve(source: str, **kwargs: Any) -> _StandInPredictor:
        calls.append(kwargs)
        return predictor

    monkeypatch.setattr(serve_cli, "serve", fake_serve)
    result = CliRunner().invoke(cli, ["serve", str(tmp_path), "--json", "--startup-timeout", "12"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ['{"url": "http://127.0.0.1:8080", "models": ["linear"]}']
    assert result.stderr.splitlines()[-2:] == ["stopping ...", "stopped"]
    assert predictor.stopped and calls[0]["startup_timeout"] == 12.0


def test_the_stock_wrappers_answers_need_torchserve(tensor_layout: Path) -> None:
    result = CliRunner().invoke(cli, ["serve", str(tensor_layout), "--runtime", "python", "--wrapper", "image"])
    assert result.exit_code == 1
    assert "the python runtime has no wrapper in front of it" in result.output


@pytest.mark.slow
def test_serve_python_runtime_with_workers_and_grpc_then_ctrl_c(
    tensor_layout: Path, tiny_model: TinyModel, tmp_path: Path
) -> None:
    """`mar-build serve --runtime python --grpc-port P --json` with minWorkers 2: the JSON says the runtime and the
    gRPC port, REST and KServe's gRPC client both answer, and Ctrl-C leaves no process (the workers included)."""
    import asyncio

    from kserve import InferenceGRPCClient

    layout = copy_layout(tensor_layout, tmp_path / "layout")
    config = layout / "config" / "config.properties"
    config.write_text(config.read_text().replace('"minWorkers":1,"maxWorkers":1', '"minWorkers":2,"maxWorkers":2'))
    port, grpc_port, run = free_port(), free_port(), tmp_path / "run"
    serving = ServeProcess([str(layout), "--runtime", "python", "--port", str(port), "--grpc-port", str(grpc_port),
                            "--json", "--workdir", str(run)])
    try:
        info = json.loads(serving.wait_for(lambda line: line.startswith("{")))
        assert (info["runtime"], info["ports"]["grpc"]) == ("python", grpc_port)
        workers = [p for p in processes_mentioning(str(run)) if "toolkit._runtime.workers" in p]
        assert len(workers) == 2, workers  # the model's two worker processes
        instances = [[0.5, -1.0, 2.0, 0.0], [3.0, 3.0, 3.0, 3.0]]
        answer = httpx.post(info["predict"]["linear"], json={"instances": instances})
        assert_rows_close(answer.json()["predictions"], tiny_model.predict(instances))

        async def ready() -> bool:
            async with InferenceGRPCClient(f"127.0.0.1:{grpc_port}", retries=0, timeout=60) as client:
                return bool(await client.is_model_ready("linear"))

        assert asyncio.run(ready()) is True
        serving.proc.send_signal(signal.SIGINT)
        output = serving.output_until_exit()
    finally:
        serving.stop_hard()
    assert serving.proc.returncode == 0, output
    assert processes_mentioning(str(run)) == []
