"""`mar-build stage`: the thin adapter prints the plan, the storageUri and, for S3, the Secret reminder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from s3_support import tree

from toolkit._cli import cli
from toolkit._cli.stage import _progress_bar

pytestmark = pytest.mark.slow


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["stage", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_stage_to_s3_prints_the_storage_uri_and_the_secret_reminder(
    layout: Path, bucket: str, s3_endpoint: str
) -> None:
    code, out, _ = run(str(layout), f"s3://{bucket}/bert", "--endpoint-url", s3_endpoint)
    assert code == 0
    assert "uploaded  model-store/bert.mar" in out
    assert f"storageUri: s3://{bucket}/bert" in out
    assert "S3 Secret" in out
    assert f"--s3-endpoint {s3_endpoint.removeprefix('http://')}" in out

    code, out, _ = run(str(layout), f"s3://{bucket}/bert", "--endpoint-url", s3_endpoint, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["storage_uri"] == f"s3://{bucket}/bert"
    assert data["uploaded"] == 0 and data["skipped"] == 3 and data["bytes_uploaded"] == 0


def test_dry_run_prints_the_plan(layout: Path, bucket: str, s3_endpoint: str, s3) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(str(layout), f"s3://{bucket}/bert", "--endpoint-url", s3_endpoint, "--dry-run")
    assert code == 0
    assert "would upload  config/config.properties" in out
    assert "plan for" in out and "nothing written" in out
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_stage_to_a_mounted_pvc(layout: Path, tmp_path: Path) -> None:
    mount = tmp_path / "vol-1"
    mount.mkdir()
    code, out, err = run(str(layout), "pvc://leeway/bert", "--mount", str(mount), "--concurrency", "2")
    assert code == 0, err
    assert "storageUri: pvc://leeway/bert" in out
    assert "S3 Secret" not in out
    assert "not a mount point" in err
    assert {k: v for k, v in tree(mount / "bert").items() if not k.startswith("config/.")} == tree(layout)


def test_errors_are_one_message_with_a_hint(layout: Path, s3_endpoint: str) -> None:
    code, out, err = run(str(layout), "s3://no-such-bucket/bert", "--endpoint-url", s3_endpoint)
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
