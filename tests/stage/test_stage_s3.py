"""Staging to a real S3 endpoint (moto_server on loopback), read back with KServe's storage-initializer code."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from s3_support import MotoServer, free_port, make_layout, start_moto, tree, write_config, write_mar

from toolkit import StagingError
from toolkit._stage import MIN_PART_SIZE, stage
from toolkit._stage.base import referenced_archives

pytestmark = pytest.mark.slow


def objects(s3, bucket: str, prefix: str = "") -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", ()):
            out[obj["Key"]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def test_staged_layout_downloads_intact_with_kserve_storage(
    layout: Path, bucket: str, s3_endpoint: str, download: Callable[[str], Path], s3  # type: ignore[no-untyped-def]
) -> None:
    result = stage(layout, f"s3://{bucket}/team/bert", endpoint_url=s3_endpoint)
    assert result.storage_uri == f"s3://{bucket}/team/bert"
    assert [(f.path, f.action) for f in result.files] == [
        ("model-store/bert.mar", "upload"), ("model-store/gpt.mar", "upload"), ("config/config.properties", "upload"),
    ]
    # What the storage-initializer puts in /mnt/models: the layout itself, config/ and model-store/ at the top.
    assert tree(download(result.storage_uri)) == tree(layout)
    for f in result.files:
        head = s3.head_object(Bucket=bucket, Key=f"team/bert/{f.path}")
        assert head["Metadata"]["sha256"] == hashlib.sha256((layout / f.path).read_bytes()).hexdigest()


def test_restage_unchanged_uploads_nothing(layout: Path, bucket: str, moto: MotoServer) -> None:
    uri = f"s3://{bucket}/bert"
    stage(layout, uri, endpoint_url=moto.url)
    mark = moto.log_offset()
    progress: list[tuple[int, int]] = []
    result = stage(layout, uri, endpoint_url=moto.url, progress=lambda d, t: progress.append((d, t)))
    assert {f.action for f in result.files} == {"skip"}
    assert result.bytes_uploaded == 0 and result.deleted == []
    calls = moto.requests_since(mark)
    assert any(c.startswith("HEAD ") for c in calls), "the server's log shows the calls"
    assert [c for c in calls if not c.startswith(("GET ", "HEAD "))] == [], "a re-stage only reads"
    assert len(calls) <= 3 + len(result.files), calls  # two listings, one multipart listing, a HEAD per file
    assert progress in ([], [(0, 0)])


def test_one_changed_archive_alone_is_uploaded(
    layout: Path, bucket: str, moto: MotoServer, download: Callable[[str], Path]
) -> None:
    uri = f"s3://{bucket}/bert"
    stage(layout, uri, endpoint_url=moto.url)
    write_mar(layout / "model-store" / "gpt.mar", "gpt", payload=os.urandom(300_000))  # same size, new bytes
    mark = moto.log_offset()
    result = stage(layout, uri, endpoint_url=moto.url)
    assert [(f.path, f.action, f.reason) for f in result.files] == [
        ("model-store/bert.mar", "skip", "unchanged"),
        ("model-store/gpt.mar", "upload", "changed"),
        ("config/config.properties", "skip", "unchanged"),
    ]
    writes = [c for c in moto.requests_since(mark) if not c.startswith(("GET ", "HEAD "))]
    assert writes == [f"PUT /{bucket}/bert/model-store/gpt.mar"]
    assert tree(download(uri)) == tree(layout)


def test_a_large_archive_goes_up_in_parts_and_keeps_its_checksum(
    tmp_path: Path, bucket: str, s3_endpoint: str, s3, download: Callable[[str], Path]  # type: ignore[no-untyped-def]
) -> None:
    layout = make_layout(tmp_path / "big", {"big": os.urandom(25 * 1024 * 1024)})
    seen: list[tuple[int, int]] = []
    result = stage(layout, f"s3://{bucket}/big", endpoint_url=s3_endpoint, part_size=MIN_PART_SIZE,
                   concurrency=4, progress=lambda d, t: seen.append((d, t)))
    head = s3.head_object(Bucket=bucket, Key="big/model-store/big.mar")
    local = (layout / "model-store" / "big.mar").read_bytes()
    parts = -(-len(local) // MIN_PART_SIZE)
    assert parts == 6
    # A multipart ETag is the MD5 of the parts' MD5s, suffixed with the number of parts.
    assert head["ETag"].strip('"').endswith(f"-{parts}")
    assert head["Metadata"]["sha256"] == hashlib.sha256(local).hexdigest()
    assert tree(download(result.storage_uri)) == tree(layout)
    assert seen[-1] == (result.bytes_uploaded, result.bytes_uploaded)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert len(seen) > 2


class Interrupt(Exception):
    pass


def test_an_interrupted_upload_leaves_the_old_tree_readable_and_a_rerun_finishes(
    tmp_path: Path, bucket: str, s3_endpoint: str, s3, download: Callable[[str], Path]  # type: ignore[no-untyped-def]
) -> None:
    uri = f"s3://{bucket}/m"
    bert = os.urandom(1000)
    old = make_layout(tmp_path / "old", {"bert": bert})
    stage(old, uri, endpoint_url=s3_endpoint)
    new = make_layout(tmp_path / "new", {"bert": bert, "gpt": os.urandom(20 * 1024 * 1024)})

    def interrupt(done: int, total: int) -> None:
        if done > 0:
            raise Interrupt()

    with pytest.raises(Interrupt):
        stage(new, uri, endpoint_url=s3_endpoint, part_size=MIN_PART_SIZE, concurrency=2, progress=interrupt)

    there = objects(s3, bucket, "m/")
    assert there["m/config/config.properties"] == (old / "config/config.properties").read_bytes()
    names = referenced_archives(there["m/config/config.properties"].decode())
    assert names == {"bert.mar"}  # an empty set would make the check below pass on anything
    for name in names:
        assert there[f"m/model-store/{name}"] == (old / "model-store" / name).read_bytes(), (
            "the config there names only archives that are there, as they were")
    assert "m/model-store/gpt.mar" not in there
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == [], "cancelled parts are aborted"
    assert tree(download(uri)) == tree(old)

    result = stage(new, uri, endpoint_url=s3_endpoint, part_size=MIN_PART_SIZE)
    assert "model-store/gpt.mar" in [f.path for f in result.uploaded]
    assert tree(download(uri)) == tree(new)


def test_multipart_uploads_left_open_by_a_killed_run_are_aborted(
    layout: Path, bucket: str, s3_endpoint: str, s3  # type: ignore[no-untyped-def]
) -> None:
    # What a SIGKILLed run leaves: a multipart upload begun, a part sent, never completed nor aborted.
    upload = s3.create_multipart_upload(Bucket=bucket, Key="bert/model-store/gpt.mar")
    s3.upload_part(Bucket=bucket, Key="bert/model-store/gpt.mar", UploadId=upload["UploadId"], PartNumber=1,
                   Body=b"x" * MIN_PART_SIZE)
    other = s3.create_multipart_upload(Bucket=bucket, Key="elsewhere/data.bin")  # not ours: left alone

    planned = stage(layout, f"s3://{bucket}/bert", endpoint_url=s3_endpoint, dry_run=True)
    assert planned.aborted_uploads == ["bert/model-store/gpt.mar"]
    result = stage(layout, f"s3://{bucket}/bert", endpoint_url=s3_endpoint)
    assert result.aborted_uploads == ["bert/model-store/gpt.mar"]
    left = [(u["Key"], u["UploadId"]) for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    assert left == [("elsewhere/data.bin", other["UploadId"])]


def test_archives_the_new_config_drops_are_deleted_after_it(
    layout: Path, bucket: str, s3_endpoint: str, s3, download: Callable[[str], Path]  # type: ignore[no-untyped-def]
) -> None:
    uri = f"s3://{bucket}/bert"
    stage(layout, uri, endpoint_url=s3_endpoint)
    s3.put_object(Bucket=bucket, Key="bert/model-store/mine.mar", Body=b"the user's")  # no marker, never named
    s3.put_object(Bucket=bucket, Key="bert/model-store/orphan.mar", Body=b"x",  # a killed run's upload
                  Metadata={"sha256": "0" * 64, "staged-by": "mar-build"})
    s3.put_object(Bucket=bucket, Key="bert/README.md", Body=b"notes")

    (layout / "model-store" / "gpt.mar").unlink()
    write_config(layout, {"bert": "1.0"})
    result = stage(layout, uri, endpoint_url=s3_endpoint)

    assert [(f.path, f.reason) for f in result.deleted] == [
        ("model-store/gpt.mar", "no longer in config.properties"),
        ("model-store/orphan.mar", "staged by mar-build, not in the new config.properties"),
    ]
    assert sorted(objects(s3, bucket)) == [
        "bert/README.md", "bert/config/config.properties", "bert/model-store/bert.mar", "bert/model-store/mine.mar",
    ]
    assert any("mine.mar" in w and "left in place" in w for w in result.warnings)
    assert any("README.md" in w and "downloads them" in w for w in result.warnings)
    got = tree(download(uri))
    assert {k: v for k, v in got.items() if k in tree(layout)} == tree(layout)


def test_dry_run_writes_nothing(layout: Path, bucket: str, moto: MotoServer, s3) -> None:  # type: ignore[no-untyped-def]
    mark = moto.log_offset()
    result = stage(layout, f"s3://{bucket}/bert", endpoint_url=moto.url, dry_run=True)
    assert result.dry_run
    assert [(f.path, f.action, f.reason) for f in result.files] == [
        ("model-store/bert.mar", "upload", "new"), ("model-store/gpt.mar", "upload", "new"),
        ("config/config.properties", "upload", "new"),
    ]
    assert result.bytes_uploaded == sum(len(v) for v in tree(layout).values())
    assert [c for c in moto.requests_since(mark) if not c.startswith(("GET ", "HEAD "))] == []
    assert objects(s3, bucket) == {}


def test_a_sibling_prefix_is_flagged_because_kserve_downloads_it_too(
    layout: Path, bucket: str, s3_endpoint: str, s3, download: Callable[[str], Path]  # type: ignore[no-untyped-def]
) -> None:
    s3.put_object(Bucket=bucket, Key="bert-large/config/config.properties", Body=b"other model")
    result = stage(layout, f"s3://{bucket}/bert", endpoint_url=s3_endpoint)
    assert any(f"s3://{bucket}/bert-large/" in w for w in result.warnings)
    # The warning is about real behaviour of the storage-initializer's code:
    assert (download(result.storage_uri) / "-large" / "config" / "config.properties").read_bytes() == b"other model"


def test_endpoint_from_the_environment(
    layout: Path, bucket: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, s3  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    stage(layout, f"s3://{bucket}/bert")
    assert "bert/config/config.properties" in objects(s3, bucket)


def test_credentials_from_a_profile(
    layout: Path, bucket: str, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text("[staging]\naws_access_key_id = profile-key\naws_secret_access_key = profile-secret\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    result = stage(layout, f"s3://{bucket}/bert", endpoint_url=s3_endpoint, profile="staging")
    assert len(result.uploaded) == 3
    with pytest.raises(StagingError, match="profile 'nope' is not configured"):
        stage(layout, f"s3://{bucket}/bert", endpoint_url=s3_endpoint, profile="nope")


def test_no_credentials(layout: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookup on a laptop
    with pytest.raises(StagingError, match="no S3 credentials found") as info:
        stage(layout, "s3://models/bert", endpoint_url=s3_endpoint)
    assert "AWS_ACCESS_KEY_ID" in (info.value.hint or "")


def test_a_missing_bucket_says_how_to_create_it(layout: Path, s3_endpoint: str) -> None:
    with pytest.raises(StagingError, match="NoSuchBucket") as info:
        stage(layout, "s3://no-such-bucket/bert", endpoint_url=s3_endpoint)
    assert info.value.hint is not None
    assert f"aws s3 mb s3://no-such-bucket --endpoint-url {s3_endpoint}" in info.value.hint


def test_an_unreachable_endpoint_names_it(layout: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(StagingError, match=f"cannot reach {endpoint}") as info:
        stage(layout, "s3://models/bert", endpoint_url=endpoint)
    assert "--s3-endpoint" in (info.value.hint or "")


@pytest.mark.parametrize("uri", ["s3://{bucket}\n/bert", "s3://{bucket}/bert\n"])
def test_a_uri_with_a_newline_never_reaches_the_endpoint(
    layout: Path, bucket: str, moto: MotoServer, s3, uri: str  # type: ignore[no-untyped-def]
) -> None:
    """The bucket "NAME\n" was once accepted and the layout went up (to where no pod would look)."""
    mark = moto.log_offset()
    with pytest.raises(StagingError, match="whitespace or a control character"):
        stage(layout, uri.format(bucket=bucket), endpoint_url=moto.url)
    assert moto.requests_since(mark) == []
    assert objects(s3, bucket) == {}


def test_an_endpoint_without_scheme(layout: Path) -> None:
    with pytest.raises(StagingError, match="has no http:// or https://"):
        stage(layout, "s3://models/bert", endpoint_url="minio:9000")


# --------------------------------------------------------------------------------------------------------------
# Credentials checked by the endpoint: a second moto_server that enforces IAM authentication.


@pytest.fixture(scope="module")
def strict_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A moto_server that checks signatures and IAM policies after its first 6 requests, which set it up."""
    log = tmp_path_factory.mktemp("strict") / "moto.log"
    server = start_moto(log, env={"INITIAL_NO_AUTH_ACTION_COUNT": "6"})
    try:
        admin = {"endpoint_url": server.url, "region_name": "us-east-1"}
        iam = boto3.client("iam", **admin)
        iam.create_user(UserName="stager")  # 1
        key = iam.create_access_key(UserName="stager")["AccessKey"]  # 2
        iam.put_user_policy(  # 3
            UserName="stager", PolicyName="s3",
            PolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}',
        )
        iam.create_user(UserName="nobody")  # 4
        nobody = iam.create_access_key(UserName="nobody")["AccessKey"]  # 5: no policy, so no permission
        boto3.client("s3", **admin).create_bucket(Bucket="models")  # 6
        yield {"url": server.url, "key": key["AccessKeyId"], "secret": key["SecretAccessKey"],
               "nobody_key": nobody["AccessKeyId"], "nobody_secret": nobody["SecretAccessKey"]}
    finally:
        server.stop()


def _with_keys(monkeypatch: pytest.MonkeyPatch, key: str, secret: str) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)


def test_right_credentials_on_an_endpoint_that_checks_them(
    layout: Path, strict_s3: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_keys(monkeypatch, strict_s3["key"], strict_s3["secret"])
    result = stage(layout, "s3://models/bert", endpoint_url=strict_s3["url"])
    assert len(result.uploaded) == 3


@pytest.mark.parametrize(
    ("which", "code", "hint"),
    [
        ("unknown key", "InvalidAccessKeyId", "AWS_ACCESS_KEY_ID"),
        ("wrong secret", "SignatureDoesNotMatch", "AWS_SECRET_ACCESS_KEY"),
        ("no permission", "AccessDenied", "s3:PutObject"),
    ],
)
def test_wrong_credentials_give_the_s3_error_code_and_never_the_secret(
    layout: Path, strict_s3: dict[str, str], monkeypatch: pytest.MonkeyPatch, which: str, code: str, hint: str
) -> None:
    key, secret = {
        "unknown key": ("AKIAUNKNOWNKEY000000", "some-secret-value-1234"),
        "wrong secret": (strict_s3["key"], "wrong-secret-value-5678"),
        "no permission": (strict_s3["nobody_key"], strict_s3["nobody_secret"]),
    }[which]
    _with_keys(monkeypatch, key, secret)
    with pytest.raises(StagingError, match=code) as info:
        stage(layout, "s3://models/bert", endpoint_url=strict_s3["url"])
    assert hint in (info.value.hint or "")
    assert secret not in str(info.value)
