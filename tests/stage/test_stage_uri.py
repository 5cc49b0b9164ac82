"""Storage URIs and what stage accepts from a layout, before any destination is touched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from s3_support import make_layout, write_config, write_mar

from toolkit import LayoutError, StagingError
from toolkit._stage import layout_paths, parse_storage_uri, stage
from toolkit._stage.base import is_archive_name, referenced_archives, sha256_file
from toolkit._uri import StorageUri


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://models/bert", StorageUri("s3", "models", "bert")),
        ("s3://models/team/bert/", StorageUri("s3", "models", "team/bert")),
        ("s3://models", StorageUri("s3", "models", "")),
        ("pvc://leeway", StorageUri("pvc", "leeway", "")),
        ("pvc://leeway/bert/v1", StorageUri("pvc", "leeway", "bert/v1")),
    ],
)
def test_parse_storage_uri(uri: str, expected: StorageUri) -> None:
    target = parse_storage_uri(uri)
    assert target == expected
    assert target.uri == uri.rstrip("/")


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("gs://models/bert", "not a storage URI"),
        ("/home/jovyan/vol-1/bert", "not a storage URI"),
        ("s3://Models/bert", "not a valid S3 bucket name"),
        ("s3://ab/bert", "not a valid S3 bucket name"),
        ("pvc://Leeway_1/bert", "not a valid PersistentVolumeClaim name"),
        ("pvc://leeway/../etc", "'..' segment"),
        ("pvc://leeway/a/../../etc", "'..' segment"),
        ("pvc://leeway//etc", "empty, '.' or '..' segment"),
        ("s3://models/a//b", "empty, '.' or '..' segment"),
        ("s3://models/./b", "empty, '.' or '..' segment"),
        ("s3://models/a\\b", "backslash"),
        ("pvc://leeway/a\nb", "control character"),
        ("pvc://leeway\n/bert", "control character"),
        ("s3://models\n/bert", "control character"),
        ("s3://models/bert\n", "control character"),
    ],
)
def test_bad_storage_uri_is_named(uri: str, says: str) -> None:
    with pytest.raises(StagingError) as info:
        parse_storage_uri(uri)
    assert says in info.value.message
    assert info.value.hint


@pytest.mark.parametrize("uri", ["pvc://leeway\n/bert", "pvc://leeway/bert\n", "pvc://leeway\r/bert"])
def test_a_claim_with_a_newline_is_refused_and_nothing_is_written(uri: str, tmp_path: Path) -> None:
    """A newline in the URI (read from a file, a shell variable) was once accepted: the claim "leeway\n" and
    files written under MOUNT/bert. The pod would mount another claim, or none."""
    layout = make_layout(tmp_path / "l", {"bert": b"1"})
    mount = tmp_path / "vol-1"
    mount.mkdir()
    with pytest.raises(StagingError, match="whitespace or a control character") as info:
        stage(layout, uri, mount=mount)
    assert info.value.hint and "newline" in info.value.hint
    assert list(mount.rglob("*")) == []


def test_a_bucket_with_a_newline_is_refused_before_any_s3_client_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    boto3 = pytest.importorskip("boto3")  # the s3 extra; the refusal itself needs no boto3
    made: list[object] = []

    def no_session(*args: object, **kwargs: object) -> None:
        made.append(args)
        raise AssertionError("a boto3 session was made for a URI that should have been refused")

    monkeypatch.setattr(boto3.session.Session, "__init__", no_session)
    monkeypatch.setattr(boto3.session.Session, "client", no_session)
    layout = make_layout(tmp_path / "l", {"bert": b"1"})
    with pytest.raises(StagingError, match="whitespace or a control character"):
        stage(layout, "s3://models\n/bert", endpoint_url="http://127.0.0.1:9")
    assert made == []


@pytest.mark.parametrize(
    ("name", "plain"),
    [("bert.mar", True), ("bert-model.v2.mar", True), ("bert.mar\n", False), ("a/bert.mar", False),
     ("a\\bert.mar", False), (".mar", False), ("bert.mar.zip", False), ("bert\x00.mar", False)],
)
def test_a_marname_must_be_a_plain_archive_name(name: str, plain: bool) -> None:
    assert is_archive_name(name) is plain


def test_layout_paths_are_the_named_archives_then_config(tmp_path: Path) -> None:
    layout = make_layout(tmp_path / "l", {"bert": b"1", "gpt": b"2"})
    write_mar(layout / "model-store" / "old.mar", "old")  # in model-store, named by no snapshot entry
    paths, warnings = layout_paths(layout)
    assert [rel for rel, _ in paths] == ["model-store/bert.mar", "model-store/gpt.mar", "config/config.properties"]
    assert any("not staged" in w and "old.mar" in w for w in warnings)


def test_a_layout_that_fails_check_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    layout = make_layout(tmp_path / "l", {"bert": b"1"})
    config = layout / "config" / "config.properties"
    config.write_text(config.read_text().replace("disable_token_authorization=true\n", ""))
    mount = tmp_path / "mnt"
    mount.mkdir()
    with pytest.raises(LayoutError, match="token authorization"):
        stage(layout, "pvc://leeway/bert", mount=mount)
    assert list(mount.iterdir()) == []


def test_a_config_naming_a_missing_archive_is_refused(tmp_path: Path) -> None:
    layout = make_layout(tmp_path / "l", {"bert": b"1"})
    write_config(layout, {"bert": "1.0", "gpt": "1.0"})
    with pytest.raises(LayoutError, match="gpt.mar is not in model-store"):
        layout_paths(layout)


def test_not_a_layout(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="not a layout"):
        stage(tmp_path, "pvc://leeway", mount=tmp_path)


def test_options_of_the_other_scheme_are_refused(tmp_path: Path) -> None:
    layout = make_layout(tmp_path / "l", {"bert": b"1"})
    with pytest.raises(StagingError, match="--mount applies to pvc://"):
        stage(layout, "s3://models/bert", mount=tmp_path)
    with pytest.raises(StagingError, match="s3:// URIs only"):
        stage(layout, "pvc://leeway/bert", mount=tmp_path, endpoint_url="http://127.0.0.1:9000")
    with pytest.raises(StagingError, match="below S3's minimum"):
        stage(layout, "s3://models/bert", part_size=1024)


def test_referenced_archives_reads_model_snapshot(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"bert": "1.0", "gpt": "2"})
    assert referenced_archives(config.read_text()) == {"bert.mar", "gpt.mar"}
    assert referenced_archives("model_snapshot={not json\n") == set()
    assert referenced_archives("inference_address=http://0.0.0.0:8085\n") == set()


def test_hashing_is_of_the_content(tmp_path: Path) -> None:
    import hashlib

    data = os.urandom(3 * 1024 * 1024 + 17)  # more than one read block, not a multiple of it
    path = tmp_path / "f"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def _hash_or_fail(path: Path) -> str:
    raise AssertionError(f"{path} was hashed again")


def test_the_hash_cache_remembers_files_that_did_not_change(tmp_path: Path) -> None:
    from toolkit._stage.hashcache import HashCache
    old = tmp_path / "old.mar"
    old.write_bytes(b"a" * 1000)
    hour_ago = old.stat().st_mtime_ns - 3600 * 10**9
    os.utime(old, ns=(hour_ago, hour_ago))
    cache = HashCache(tmp_path / "cache" / "sha256.json")
    digest = cache.digest(old, sha256_file)
    assert cache.digest(old, _hash_or_fail) == digest
    cache.save()
    assert HashCache(tmp_path / "cache" / "sha256.json").digest(old, _hash_or_fail) == digest

    # Rewritten in place, same size, mtime put back: the ctime still tells.
    old.write_bytes(b"b" * 1000)
    os.utime(old, ns=(hour_ago, hour_ago))
    assert cache.digest(old, sha256_file) == sha256_file(old) != digest


def test_the_hash_cache_distrusts_a_file_modified_just_before_hashing(tmp_path: Path) -> None:
    from toolkit._stage.hashcache import HashCache
    fresh = tmp_path / "fresh.mar"
    fresh.write_bytes(b"a" * 1000)  # mtime is now: a same-size rewrite within the same tick could keep it
    cache = HashCache(tmp_path / "sha256.json")
    cache.digest(fresh, sha256_file)
    calls: list[Path] = []
    cache.digest(fresh, lambda p: calls.append(p) or sha256_file(p))
    assert calls == [fresh]


def test_the_hash_cache_survives_a_broken_cache_file(tmp_path: Path) -> None:
    from toolkit._stage.hashcache import HashCache
    (tmp_path / "sha256.json").write_text("{not json")
    f = tmp_path / "f"
    f.write_bytes(b"x")
    cache = HashCache(tmp_path / "sha256.json")
    assert cache.digest(f, sha256_file) == sha256_file(f)
    cache.save()
    assert "files" in (tmp_path / "sha256.json").read_text()
