"""OCI staging without a registry: the image's layers, references, credentials and the registry client's
logins and refusals against stand-ins (httpx.MockTransport; a fake credential helper)."""

from __future__ import annotations

import json
import os
import stat
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from oci_support import write_auth_file

from toolkit import StagingError
from toolkit._stage._oci_image import LayerDigests, hash_layer, layer_head
from toolkit._stage._oci_registry import Registry, find_credentials
from toolkit._stage.base import LocalFile, sha256_file
from toolkit._uri import parse_image_ref

pytestmark = pytest.mark.usefixtures("auth_files")


def test_a_credential_helper_is_asked(tmp_path: Path, auth_files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helper = tmp_path / "bin" / "docker-credential-fake"
    helper.parent.mkdir()
    helper.write_text('#!/bin/sh\nread host\necho "{\\"Username\\": \\"bob\\", \\"Secret\\": \\"tok-$host\\"}"\n')
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{helper.parent}{os.pathsep}{os.environ['PATH']}")
    (auth_files / "config.json").write_text(json.dumps({"credHelpers": {"reg.example.com": "fake"}}))
    found, tried = find_credentials("reg.example.com")
    assert found is not None and (found.username, found.password) == ("bob", "tok-reg.example.com")
    assert "tok-" not in repr(found) and tried == [str(auth_files / "config.json")]
    assert find_credentials("other.example.com")[0] is None


def test_a_bearer_challenge_gets_a_token_for_the_repositories(auth_files: Path) -> None:
    """Registries with a token service (Docker Hub, ghcr.io, Harbor...): the token is fetched once, up front."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "auth.example.com":
            assert request.headers["authorization"].startswith("Basic ")
            return httpx.Response(200, json={"token": "tok-123"})
        if request.headers.get("authorization") != "Bearer tok-123":
            return httpx.Response(401, headers={"www-authenticate":
                                                'Bearer realm="https://auth.example.com/token",service="reg"'})
        return httpx.Response(200, headers={"docker-content-digest": "sha256:" + "a" * 64})

    write_auth_file(auth_files / "config.json", "https://reg.example.com", "bob", "pw")
    registry = Registry("reg.example.com", plain_http=False, uri="oci://x", transport=httpx.MockTransport(handler))
    registry.login({"team/bert": "pull,push", "base/busybox": "pull"})
    assert registry.tag_digest("team/bert", "v1") == "sha256:" + "a" * 64
    token_request = next(r for r in seen if r.url.host == "auth.example.com")
    assert token_request.url.params.get_list("scope") == ["repository:team/bert:pull,push",
                                                          "repository:base/busybox:pull"]
    assert token_request.url.params["service"] == "reg"
    assert seen[0].url.scheme == "https"


def test_refusals_carry_the_registry_error_code_and_a_hint() -> None:
    answers = {
        "/v2/team/bert/manifests/v1": httpx.Response(403, json={"errors": [{"code": "DENIED", "message": "no"}]}),
    }
    registry = Registry("reg.example.com", plain_http=False, uri="oci://x",
                        transport=httpx.MockTransport(lambda r: answers.get(r.url.path, httpx.Response(200))))
    with pytest.raises(StagingError) as caught:
        registry.put_manifest("team/bert", "v1", b"{}", "application/json")
    assert "HTTP 403 DENIED (no)" in caught.value.message
    assert "may not push" in str(caught.value.hint)


def test_parse_image_ref_takes_references_apart() -> None:
    digest = "sha256:" + "a" * 64
    ref = parse_image_ref(f"oci://ghcr.io/team/sub/bert:v1.2@{digest}")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == ("ghcr.io", "team/sub/bert", "v1.2", digest)
    assert str(parse_image_ref("localhost:5000/bert")) == "localhost:5000/bert"


# ---- the layers -----------------------------------------------------------------------------------------------


def _local(path: Path, relpath: str) -> LocalFile:
    return LocalFile(relpath, path, path.stat().st_size, sha256_file(path))


def test_a_layer_depends_on_path_and_content_only(tmp_path: Path) -> None:
    path = tmp_path / "a.mar"
    path.write_bytes(os.urandom(5000))
    first = hash_layer(_local(path, "model-store/a.mar"))
    os.utime(path, (1, 1))
    path.chmod(0o600)
    assert hash_layer(_local(path, "model-store/a.mar")) == first
    data = b"".join(first.stream())
    assert len(data) == first.size and len(data) % 512 == 0
    (tmp_path / "layer.tar").write_bytes(data)
    with tarfile.open(tmp_path / "layer.tar") as tar:
        members: list[Any] = [(m.name, m.mode, m.mtime, m.uid) for m in tar]
    assert members == [("models", 0o755, 0, 0), ("models/model-store", 0o755, 0, 0),
                       ("models/model-store/a.mar", 0o644, 0, 0)]
    assert len(layer_head("model-store/" + "x" * 200 + ".mar", 10)) > 3 * 512, "a long name gets a PAX header"


def test_remembered_layer_digests_read_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.mar"
    path.write_bytes(os.urandom(5000))
    file = _local(path, "model-store/a.mar")
    cache = LayerDigests(tmp_path / "layers.json")
    layer = cache.layer(file)
    cache.save()
    import toolkit._stage._oci_image as image

    monkeypatch.setattr(image, "hash_layer", lambda f: pytest.fail("read the file again"))
    assert LayerDigests(tmp_path / "layers.json").layer(file) == layer
    assert (tmp_path / "layers.json").stat().st_mode & 0o777 == 0o600
