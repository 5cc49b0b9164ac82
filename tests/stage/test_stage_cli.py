"""`mar-build stage`: the thin adapter prints the plan, the storageUri and, for S3, the Secret reminder."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from s3_support import tree

import toolkit._cli.stage as stage_cli
from toolkit._cli import cli
from toolkit._cli.stage import _progress_bar
from toolkit._render import S3Credentials, render
from toolkit._stage import StagedFile, StageResult


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["stage", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.slow
def test_stage_to_s3_prints_the_storage_uri_and_the_secret_reminder(
    layout: Path, bucket: str, s3_endpoint: str
) -> None:
    code, out, _ = run(str(layout), f"s3://{bucket}/bert", "--s3-endpoint", s3_endpoint)
    assert code == 0
    assert "uploaded  model-store/bert.mar" in out
    assert f"storageUri: s3://{bucket}/bert" in out
    assert "S3 Secret" in out
    assert f"--s3-endpoint {s3_endpoint} " in out

    code, out, _ = run(str(layout), f"s3://{bucket}/bert", "--s3-endpoint", s3_endpoint, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["storage_uri"] == f"s3://{bucket}/bert"
    assert data["uploaded"] == 0 and data["skipped"] == 3 and data["bytes_uploaded"] == 0


@pytest.mark.slow
def test_dry_run_prints_the_plan(layout: Path, bucket: str, s3_endpoint: str, s3) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(str(layout), f"s3://{bucket}/bert", "--s3-endpoint", s3_endpoint, "--dry-run")
    assert code == 0
    assert "would upload  config/config.properties" in out
    assert "plan for" in out and "nothing written" in out
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


@pytest.mark.slow
def test_stage_to_a_mounted_pvc(layout: Path, tmp_path: Path) -> None:
    mount = tmp_path / "vol-1"
    mount.mkdir()
    code, out, err = run(str(layout), "pvc://leeway/bert", "--mount", str(mount), "--concurrency", "2")
    assert code == 0, err
    assert "storageUri: pvc://leeway/bert" in out
    assert "S3 Secret" not in out
    assert "not a mount point" in err
    assert {k: v for k, v in tree(mount / "bert").items() if not k.startswith("config/.")} == tree(layout)


@pytest.mark.slow
def test_errors_are_one_message_with_a_hint(layout: Path, s3_endpoint: str) -> None:
    code, out, err = run(str(layout), "s3://no-such-bucket/bert", "--s3-endpoint", s3_endpoint)
    assert code == 1
    assert "error: staging to s3://no-such-bucket/bert failed while reading the bucket: NoSuchBucket" in err
    assert "hint: create it with `aws s3 mb s3://no-such-bucket" in err
    assert "Traceback" not in out + err

    code, _, err = run(str(layout), "pvc://leeway/../x", "--mount", str(layout))
    assert code == 1 and "'..' segment" in err


def test_the_progress_bar_follows_the_callback(capsys: pytest.CaptureFixture[str]) -> None:
    with _progress_bar(enabled=True) as progress:
        assert progress is not None
        progress(0, 10 * 1024)
        progress(10 * 1024, 10 * 1024)
    with _progress_bar(enabled=False) as progress:
        assert progress is None


def _staged(monkeypatch: pytest.MonkeyPatch, **fields: Any) -> list[dict[str, Any]]:
    """stage() answers with a StageResult made of ``fields``; returns the list its calls are recorded in."""
    calls: list[dict[str, Any]] = []

    def fake_stage(layout: Any, uri: str, **kwargs: Any) -> StageResult:
        calls.append({"uri": uri, **kwargs})
        files = [StagedFile("model-store/bert.mar", "upload", 2048, "new"),
                 StagedFile("config/config.properties", "upload", 512, "new")]
        return StageResult(storage_uri=uri, destination=uri, files=files, **fields)

    monkeypatch.setattr(stage_cli, "stage", fake_stage)
    return calls


def _suggested_render(out: str) -> list[str]:
    command = re.search(r"(mar-build render .*?) \(", out)
    assert command, out
    return shlex.split(command.group(1))[2:]


def test_the_s3_note_is_a_render_command_that_works_for_an_http_endpoint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The note used to drop the scheme (--s3-endpoint minio:9000), which render reads as https: the Secret then
    said s3-usehttps 1 and the storage-initializer could not reach an http MinIO. It also left out the keys, which
    render refuses. The suggested endpoint must render a Secret for http."""
    _staged(monkeypatch, endpoint_url="http://minio-service.kubeflow:9000")
    code, out, _ = run(str(tmp_path), "s3://models/bert", "--s3-endpoint", "http://minio-service.kubeflow:9000")
    assert code == 0
    args = _suggested_render(out)
    endpoint = args[args.index("--s3-endpoint") + 1]
    assert endpoint == "http://minio-service.kubeflow:9000"
    assert "--s3-secret-file" in args
    s3 = S3Credentials(endpoint=endpoint, access_key_id="k", secret_access_key="s")
    manifests = render(None, name="m", storage_uri="s3://models/bert", s3=s3)
    assert manifests.secret is not None
    [secret] = manifests.secret.documents
    assert secret["metadata"]["annotations"]["serving.kserve.io/s3-usehttps"] == "0"


def test_the_s3_note_for_aws_names_no_endpoint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _staged(monkeypatch, endpoint_url=None)
    code, out, _ = run(str(tmp_path), "s3://models/bert")
    assert code == 0
    args = _suggested_render(out)
    assert "--s3-endpoint" not in args and "HOST:PORT" not in out
    assert args[args.index("--storage-uri") + 1] == "s3://models/bert"


def test_no_s3_note_for_a_pvc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _staged(monkeypatch)
    code, out, _ = run(str(tmp_path), "pvc://leeway/bert", "--mount", str(tmp_path))
    assert code == 0 and "S3 Secret" not in out and "storageUri: pvc://leeway/bert" in out


def test_the_s3_options_reach_stage(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = _staged(monkeypatch, endpoint_url="http://minio:9000")
    code, out, _ = run(str(tmp_path), "s3://models/bert", "--s3-endpoint", "http://minio:9000", "--s3-region",
                       "eu-west-1", "--profile", "team", "--json")
    assert code == 0
    assert (calls[0]["endpoint_url"], calls[0]["region"], calls[0]["profile"]) == (
        "http://minio:9000", "eu-west-1", "team")
    data = json.loads(out)
    assert data["storage_uri"] == "s3://models/bert" and data["uploaded"] == 2
