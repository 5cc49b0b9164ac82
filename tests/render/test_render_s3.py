"""S3 access: the Secret and ServiceAccount render writes, its checks, and S3Credentials.from_env/from_options
(the S3 policy behind the CLI's --s3-* options)."""

from __future__ import annotations

import pytest

from toolkit._errors import RenderError
from toolkit._render import S3Credentials, render

FAKE_KEY_ID = "AKIAFAKEFAKEFAKE0001"
FAKE_SECRET = "fake/secret+key=NOT-REAL-0123456789abcd"


def test_s3_needs_keys_or_anonymous():
    with pytest.raises(RenderError, match="needs keys") as info:
        render(name="m", storage_uri="s3://models/p", s3=S3Credentials(endpoint="http://minio:9000"))
    assert "--s3-secret-file" in (info.value.hint or "")


def test_s3_settings_need_an_s3_uri():
    with pytest.raises(RenderError, match="S3 credentials were given"):
        render(name="m", storage_uri="pvc://x", s3=S3Credentials(anonymous=True))


@pytest.mark.parametrize(
    ("s3", "message"),
    [
        (S3Credentials(endpoint="http://minio:9000/path", anonymous=True), "not a host"),
        (S3Credentials(endpoint="https://minio:9000", use_https=False, anonymous=True), "contradicts"),
        (S3Credentials(endpoint="minio:99999", anonymous=True), "out of range"),
        (S3Credentials(region="us east", anonymous=True), "region"),
        (S3Credentials(anonymous=True, access_key_id="x", secret_access_key="y"), "anonymous and also"),
        (S3Credentials(access_key_id="ok", secret_access_key="has space"), "AWS_SECRET_ACCESS_KEY"),
        (S3Credentials(access_key_id="ok"), "AWS_SECRET_ACCESS_KEY is empty"),
    ],
)
def test_bad_s3_settings(s3, message):
    with pytest.raises(RenderError, match=message) as info:
        render(name="m", storage_uri="s3://models/p", s3=s3)
    for value in ("has space", "ok"):
        assert value not in str(info.value)  # never a key in a message


def test_s3_from_env_reads_the_keys_and_names_what_is_missing():
    s3 = S3Credentials.from_env(environ={"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "key"}, region="r1")
    assert (s3.access_key_id, s3.secret_access_key, s3.region) == ("id", "key", "r1")
    with pytest.raises(RenderError, match="AWS_SECRET_ACCESS_KEY is not set"):
        S3Credentials.from_env(environ={"AWS_ACCESS_KEY_ID": "id"})


# --------------------------------------------------------------------------------------------------------------
# S3Credentials.from_options: the S3 policy the CLI's --s3-* options ask for


def test_from_options_without_s3_options_is_none():
    assert S3Credentials.from_options() is None
    assert S3Credentials.from_options(verify_ssl=None, anonymous=False, keys_from_env=False) is None


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"anonymous": True}, S3Credentials(anonymous=True)),
        ({"endpoint": "http://minio:9000"}, S3Credentials(endpoint="http://minio:9000")),
        ({"region": "eu-west-1", "anonymous": True}, S3Credentials(region="eu-west-1", anonymous=True)),
        ({"verify_ssl": False}, S3Credentials(verify_ssl=False)),
    ],
)
def test_from_options_without_keys(options, expected, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_KEY_ID)  # never read unless asked for
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    s3 = S3Credentials.from_options(**options)
    assert s3 == expected and not s3.has_keys


def test_from_options_reads_the_keys_from_the_environment_when_asked(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    s3 = S3Credentials.from_options(endpoint="http://minio:9000", region="us-east-1", verify_ssl=False,
                                    keys_from_env=True)
    assert s3 == S3Credentials(endpoint="http://minio:9000", region="us-east-1", verify_ssl=False,
                               access_key_id=FAKE_KEY_ID, secret_access_key=FAKE_SECRET)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(RenderError, match="AWS_SECRET_ACCESS_KEY is not set"):
        S3Credentials.from_options(keys_from_env=True)


def test_from_options_anonymous_with_keys_is_an_error(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    with pytest.raises(RenderError, match="--s3-anonymous needs no keys") as info:
        S3Credentials.from_options(anonymous=True, keys_from_env=True)
    assert info.value.hint and "--s3-secret-file" in info.value.hint
