"""Staging into an OCI image on a real registry (docker-registry on loopback), read back with KServe's oci+fetch
code (kserve_storage.Storage.download) and with plain distribution-API reads."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from oci_support import (
    BUSYBOX,
    TEST_PASSWORD,
    TEST_USER,
    OciRegistry,
    image_tree,
    kserve_fetch,
    push_busybox_base,
    write_auth_file,
)
from s3_support import free_port, make_layout, tree, write_mar

from toolkit import StagingError
from toolkit._registries import is_loopback
from toolkit._stage import stage

pytestmark = pytest.mark.usefixtures("auth_files")

WRITES = ("PUT ", "POST ", "PATCH ", "DELETE ")


class Stop(Exception):
    """What a progress callback raises to interrupt a stage (Ctrl-C, a closed notebook)."""


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    return make_layout(tmp_path / "layout", {"bert": os.urandom(200_000), "gpt": os.urandom(300_000)})


def fixed_layout(folder: Path) -> Path:
    return make_layout(folder, {"bert": b"b" * 70_000, "gpt": b"g" * 50_000})


def writes_since(registry: OciRegistry, mark: int) -> list[str]:
    return [r for r in registry.requests_since(mark) if r.startswith(WRITES)]


# ---- the round trip -------------------------------------------------------------------------------------------


def test_staged_image_fetches_intact_with_kserve_storage(
    layout: Path, oci_registry: OciRegistry, tmp_path: Path
) -> None:
    ref = f"{oci_registry.host}/team/bert:v1"
    result = stage(layout, f"oci://{ref}")
    assert result.storage_uri == f"oci://{ref}"
    assert [(f.path, f.action) for f in result.files] == [
        ("model-store/bert.mar", "upload"), ("model-store/gpt.mar", "upload"), ("config/config.properties", "upload"),
    ]
    digest = oci_registry.tag_digest("team/bert", "v1")
    assert result.destination == f"{ref}@{digest}"
    # What the storage-initializer puts in /mnt/models: the layout itself, config/ and model-store/ at the top.
    assert tree(kserve_fetch(ref, tmp_path / "mnt-models")) == tree(layout)
    manifest = oci_registry.manifest("team/bert", "v1")
    assert [layer["annotations"]["io.mar-build.path"] for layer in manifest["layers"]] == [
        "model-store/bert.mar", "model-store/gpt.mar", "config/config.properties"]
    assert any("files only" in w for w in result.warnings)
    assert json.loads(json.dumps(result.to_dict()))["bytes_uploaded"] == sum(f.size for f in result.files)


def test_restage_unchanged_pushes_nothing(layout: Path, oci_registry: OciRegistry) -> None:
    uri = f"oci://{oci_registry.host}/team/same:v1"
    first = stage(layout, uri)
    mark = oci_registry.log_offset()
    progress: list[tuple[int, int]] = []
    again = stage(layout, uri, progress=lambda done, total: progress.append((done, total)))
    assert {f.action for f in again.files} == {"skip"} and again.bytes_uploaded == 0
    assert writes_since(oci_registry, mark) == [], "an unchanged layout sends no blob and no manifest"
    assert again.destination == first.destination, "the same layout gives the same image digest"
    assert progress in ([], [(0, 0)])


def test_one_changed_archive_alone_is_pushed(layout: Path, oci_registry: OciRegistry, tmp_path: Path) -> None:
    ref = f"{oci_registry.host}/team/changed:v1"
    stage(layout, f"oci://{ref}")
    write_mar(layout / "model-store" / "gpt.mar", "gpt", payload=os.urandom(300_000))  # same size, new bytes
    mark = oci_registry.log_offset()
    result = stage(layout, f"oci://{ref}")
    assert [(f.path, f.action) for f in result.files] == [
        ("model-store/bert.mar", "skip"), ("model-store/gpt.mar", "upload"), ("config/config.properties", "skip")]
    writes = writes_since(oci_registry, mark)
    puts = [w for w in writes if w.startswith("PUT ")]
    # one layer, the new image config, then the manifest: the tag moves last
    assert len(puts) == 3 and puts[-1] == "PUT /v2/team/changed/manifests/v1", writes
    assert tree(kserve_fetch(ref, tmp_path / "mnt")) == tree(layout)


def test_manifest_and_config_match_the_golden_files(tmp_path: Path, oci_registry: OciRegistry, golden) -> None:  # type: ignore[no-untyped-def]
    layout = fixed_layout(tmp_path / "fixed")
    first = stage(layout, f"oci://{oci_registry.host}/golden/a:v1")
    second = stage(fixed_layout(tmp_path / "copy"), f"oci://{oci_registry.host}/golden/b:v1")
    assert first.destination.split("@")[1] == second.destination.split("@")[1], "same layout, same digest"
    manifest = oci_registry.manifest("golden/a", "v1")
    config = json.loads(oci_registry.blob("golden/a", manifest["config"]["digest"]))
    names: dict[str, str] = {}

    def mask(text: str) -> str:
        # The archives' bytes depend on zipfile; the structure around them is what is compared.
        return re.sub(r"sha256:[0-9a-f]{64}", lambda m: names.setdefault(m[0], f"sha256:<{len(names) + 1}>"), text)

    golden("stage/oci-manifest.json", mask(json.dumps(manifest, indent=1, sort_keys=True)) + "\n")
    golden("stage/oci-config.json", mask(json.dumps(config, indent=1, sort_keys=True)) + "\n")


# ---- atomicity ------------------------------------------------------------------------------------------------


def test_an_interrupted_stage_leaves_the_tag_on_the_previous_image(
    layout: Path, oci_registry: OciRegistry, tmp_path: Path
) -> None:
    ref = f"{oci_registry.host}/team/atomic:v1"
    stage(layout, f"oci://{ref}")
    before = oci_registry.tag_digest("team/atomic", "v1")
    old_tree = tree(layout)
    for name in ("bert", "gpt"):
        write_mar(layout / "model-store" / f"{name}.mar", name, payload=os.urandom(400_000))
    seen: list[int] = []

    def interrupt(done: int, total: int) -> None:
        seen.append(done)
        if done > 0:
            raise Stop()

    with pytest.raises(Stop):
        stage(layout, f"oci://{ref}", progress=interrupt)
    assert seen and seen[-1] > 0
    assert oci_registry.tag_digest("team/atomic", "v1") == before
    assert tree(kserve_fetch(ref, tmp_path / "old")) == old_tree
    # the next run finishes the job and moves the tag
    stage(layout, f"oci://{ref}")
    assert tree(kserve_fetch(ref, tmp_path / "new")) == tree(layout)


def test_an_interrupted_first_stage_leaves_no_tag(layout: Path, oci_registry: OciRegistry) -> None:
    def interrupt(done: int, total: int) -> None:
        if done > 0:
            raise Stop()

    with pytest.raises(Stop):
        stage(layout, f"oci://{oci_registry.host}/team/never:v1", progress=interrupt)
    assert oci_registry.tag_digest("team/never", "v1") is None


def test_a_registry_that_stops_midway_leaves_the_tag_on_the_previous_image(
    layout: Path, own_registry: OciRegistry
) -> None:
    uri = f"oci://{own_registry.host}/team/crash:v1"
    stage(layout, uri)
    before = own_registry.tag_digest("team/crash", "v1")
    write_mar(layout / "model-store" / "gpt.mar", "gpt", payload=os.urandom(2_000_000))

    def crash(done: int, total: int) -> None:
        if done > 0:
            own_registry.stop()

    with pytest.raises(StagingError) as caught:
        stage(layout, uri, progress=crash)
    assert f"cannot reach {own_registry.host}" in caught.value.message
    assert "the tag still points at the previous image" in str(caught.value.hint)
    own_registry.start()  # same storage, another port
    assert own_registry.tag_digest("team/crash", "v1") == before


def test_a_manifest_naming_a_lost_layer_is_refused_with_a_hint(layout: Path, oci_registry: OciRegistry) -> None:
    stage(layout, f"oci://{oci_registry.host}/team/lost:a")
    bert = oci_registry.manifest("team/lost", "a")["layers"][0]["digest"]

    def lose_a_layer(done: int, total: int) -> None:
        # between the layer checks and the manifest: as a garbage collection would
        with oci_registry.client() as http:
            http.delete(f"/v2/team/lost/blobs/{bert}")

    with pytest.raises(StagingError) as caught:
        stage(layout, f"oci://{oci_registry.host}/team/lost:b", progress=lose_a_layer)
    assert "MANIFEST_BLOB_UNKNOWN" in caught.value.message
    assert "run stage again" in str(caught.value.hint)
    assert oci_registry.tag_digest("team/lost", "b") is None


# ---- base images (modelcar) -----------------------------------------------------------------------------------


def test_a_base_image_is_stacked_under_the_layout(layout: Path, oci_registry: OciRegistry, tmp_path: Path) -> None:
    base = push_busybox_base(oci_registry, "base/busybox", "1")
    base_layer = oci_registry.manifest("base/busybox", "1")["layers"][0]["digest"]
    mark = oci_registry.log_offset()
    ref = f"{oci_registry.host}/team/modelcar:v1"
    result = stage(layout, f"oci://{ref}", oci_base=base)
    assert not any("files only" in w for w in result.warnings)
    calls = oci_registry.requests_since(mark)
    assert any(c.startswith("POST /v2/team/modelcar/blobs/uploads/?") and "mount=" in c for c in calls), calls
    assert not any(base_layer in c for c in calls if c.startswith("PUT ")), "a base layer is mounted, not copied"
    manifest = oci_registry.manifest("team/modelcar", "v1")
    config = json.loads(oci_registry.blob("team/modelcar", manifest["config"]["digest"]))
    assert len(manifest["layers"]) == len(config["rootfs"]["diff_ids"]) == 4
    assert manifest["layers"][0]["digest"] == base_layer
    assert config["config"]["Env"] == ["PATH=/bin"] and "created" not in config
    files = image_tree(oci_registry, "team/modelcar", "v1")
    # what the modelcar sidecar runs: sh -c 'ln -sf /proc/$$/root/models /mnt/models && sleep infinity'
    assert {files["bin/sh"], files["bin/ln"], files["bin/sleep"], files["bin/mkdir"]} == {"-> busybox"}
    assert files["models/config/config.properties"] == files["models/model-store/bert.mar"] == "file"
    assert tree(kserve_fetch(ref, tmp_path / "mnt")) == tree(layout)


def test_a_base_image_on_another_registry_is_copied(
    layout: Path, oci_registry: OciRegistry, own_registry: OciRegistry
) -> None:
    base = push_busybox_base(oci_registry, "base/copied", "1")
    result = stage(layout, f"oci://{own_registry.host}/team/copied:v1", oci_base=f"oci://{base}")
    manifest = own_registry.manifest("team/copied", "v1")
    layer = manifest["layers"][0]
    assert own_registry.blob("team/copied", layer["digest"]) == oci_registry.blob("base/copied", layer["digest"])
    assert result.destination.startswith(f"{own_registry.host}/team/copied:v1@sha256:")


def test_a_missing_base_image_is_a_clear_error(layout: Path, oci_registry: OciRegistry) -> None:
    push_busybox_base(oci_registry, "base/present", "1")
    with pytest.raises(StagingError) as caught:
        stage(layout, f"oci://{oci_registry.host}/team/x:v1", oci_base=f"{oci_registry.host}/base/present:2")
    assert "MANIFEST_UNKNOWN" in caught.value.message and "no such tag" in str(caught.value.hint)
    with pytest.raises(StagingError) as caught:
        stage(layout, f"oci://{oci_registry.host}/team/x:v1", oci_base=f"{oci_registry.host}/base/absent:1")
    assert "base/absent" in caught.value.message and "HTTP 404" in caught.value.message
    assert oci_registry.tag_digest("team/x", "v1") is None


# ---- credentials ----------------------------------------------------------------------------------------------


def _no_secret_anywhere(caplog: pytest.LogCaptureFixture, *texts: str) -> None:
    for text in (caplog.text, *texts):
        assert TEST_PASSWORD not in text


def test_credentials_come_from_docker_config(
    layout: Path, oci_registry_auth: OciRegistry, auth_files: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_auth_file(auth_files / "config.json", oci_registry_auth.host, TEST_USER, TEST_PASSWORD)
    caplog.set_level(logging.DEBUG)
    result = stage(layout, f"oci://{oci_registry_auth.host}/team/private:v1")
    assert oci_registry_auth.tag_digest("team/private", "v1") == result.destination.split("@")[1]
    _no_secret_anywhere(caplog, json.dumps(result.to_dict()))


def test_credentials_come_from_registry_auth_file(
    layout: Path, oci_registry_auth: OciRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = write_auth_file(tmp_path / "podman" / "auth.json", f"http://{oci_registry_auth.host}", TEST_USER,
                           TEST_PASSWORD)
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth))
    stage(layout, f"oci://{oci_registry_auth.host}/team/podman:v1")
    assert oci_registry_auth.tag_digest("team/podman", "v1") is not None


def test_no_credentials_says_where_it_looked(layout: Path, oci_registry_auth: OciRegistry, auth_files: Path) -> None:
    with pytest.raises(StagingError) as caught:
        stage(layout, f"oci://{oci_registry_auth.host}/team/private:v2")
    assert "asks for credentials" in caught.value.message
    assert str(auth_files / "config.json") in caught.value.message
    assert f"podman login {oci_registry_auth.host}" in str(caught.value.hint)


def test_refused_credentials_name_the_user_and_file_not_the_password(
    layout: Path, oci_registry_auth: OciRegistry, auth_files: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "not-" + TEST_PASSWORD
    write_auth_file(auth_files / "config.json", oci_registry_auth.host, TEST_USER, wrong)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StagingError) as caught:
        stage(layout, f"oci://{oci_registry_auth.host}/team/private:v3")
    assert "HTTP 401" in caught.value.message
    assert f"user {TEST_USER!r} from {auth_files / 'config.json'}" in str(caught.value.hint)
    assert wrong not in str(caught.value) and wrong not in caplog.text


# ---- the reference and the connection -------------------------------------------------------------------------


@pytest.mark.parametrize(("uri", "words"), [
    ("oci://reg.example.com/team/bert", "no tag"),
    ("oci://localhost:5000/team/bert", "no tag"),
    ("oci://localhost:5000/team/bert@sha256:" + "0" * 64, "names a digest"),
    ("oci://team/bert:v1", "does not start with a registry host"),
    ("oci://localhost:5000/Team/bert:v1", "not a valid repository name"),
    ("oci://localhost:5000/team/bert:-v1", "tag '-v1'"),
])
def test_a_bad_reference_is_refused_before_anything_is_sent(layout: Path, uri: str, words: str) -> None:
    with pytest.raises(StagingError) as caught:
        stage(layout, uri)
    assert words in caught.value.message
    assert caught.value.hint


def test_latest_is_pushed_with_a_warning(layout: Path, oci_registry: OciRegistry) -> None:
    result = stage(layout, f"oci://{oci_registry.host}/team/bert:latest")
    assert any("tag 'latest'" in w and "fixed tag" in w for w in result.warnings)


def test_an_unreachable_registry_names_host_and_scheme(layout: Path) -> None:
    port = free_port()
    with pytest.raises(StagingError) as caught:
        stage(layout, f"oci://127.0.0.1:{port}/team/bert:v1")
    assert f"cannot reach 127.0.0.1:{port}" in caught.value.message
    assert f"http://127.0.0.1:{port}" in str(caught.value.hint)


def test_https_unless_loopback_or_insecure(layout: Path) -> None:
    for insecure, scheme in ((False, "https"), (True, "http")):
        with pytest.raises(StagingError) as caught:
            stage(layout, "oci://registry.invalid:5000/team/bert:v1", insecure_registry=insecure)
        assert f"{scheme}://registry.invalid:5000" in str(caught.value.hint)
    assert is_loopback("localhost:5000") and is_loopback("127.0.0.2") and is_loopback("[::1]:5000")
    assert not is_loopback("registry.example.com") and not is_loopback("10.0.0.1:5000")


def test_oci_options_apply_to_oci_only(layout: Path, tmp_path: Path) -> None:
    with pytest.raises(StagingError, match="apply to oci:// URIs only"):
        stage(layout, "pvc://claim/bert", mount=tmp_path, oci_base="localhost:5000/base:1")
    with pytest.raises(StagingError, match="do not apply to oci://"):
        stage(layout, "oci://localhost:5000/team/bert:v1", mount=tmp_path)


def test_dry_run_plans_and_writes_nothing(layout: Path, oci_registry: OciRegistry) -> None:
    mark = oci_registry.log_offset()
    result = stage(layout, f"oci://{oci_registry.host}/team/dry:v1", dry_run=True)
    assert result.dry_run and [f.action for f in result.files] == ["upload"] * 3
    assert writes_since(oci_registry, mark) == []
    assert oci_registry.tag_digest("team/dry", "v1") is None


@pytest.mark.slow
def test_a_podman_built_base_takes_the_layout_and_podman_pulls_the_result(
    layout: Path, oci_registry: OciRegistry, tmp_path: Path, auth_files: Path, request: pytest.FixtureRequest
) -> None:
    """The modelcar base as users build it (FROM scratch + busybox, gzip layers, podman's own config), with
    podman's storage in tmp_path (the developer's images are not touched)."""
    context = tmp_path / "context"
    context.mkdir()
    shutil.copy(BUSYBOX, context / "busybox")
    (context / "Containerfile").write_text(
        "FROM scratch\nCOPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "sh", "-c", "for a in sh ln sleep mkdir; do /bin/busybox ln -s busybox /bin/$a; done"]\n'
    )
    (tmp_path / "runtime").mkdir(exist_ok=True)  # the XDG_RUNTIME_DIR auth_files set: podman keeps state there
    (auth_files / "config.json").write_text('{"auths": {}}')  # podman push wants $DOCKER_CONFIG's file to exist
    runroot = Path(tempfile.mkdtemp(prefix="mbp-"))  # podman refuses a runroot path over 50 characters
    request.addfinalizer(lambda: shutil.rmtree(runroot, ignore_errors=True))
    podman = ["podman", "--root", str(tmp_path / "storage"), "--runroot", str(runroot), "--storage-driver", "vfs"]

    def run(*args: str) -> str:
        done = subprocess.run([*podman, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"podman {args[0]}: {done.stderr[-2000:]}"
        return done.stdout

    base = f"{oci_registry.host}/base/podman:1"
    run("build", "-q", "--isolation=chroot", "-t", "localhost/mb-base:1", str(context))
    run("push", "-q", "--tls-verify=false", "--format", "oci", "localhost/mb-base:1", f"docker://{base}")
    ref = f"{oci_registry.host}/team/podman-modelcar:v1"
    stage(layout, f"oci://{ref}", oci_base=base)
    files = image_tree(oci_registry, "team/podman-modelcar", "v1")
    assert files["bin/sh"] == "-> busybox" and files["models/model-store/gpt.mar"] == "file"
    run("pull", "-q", "--tls-verify=false", ref)
    image = json.loads(run("image", "inspect", ref))[0]
    assert len(image["RootFS"]["Layers"]) == 2 + 3 and image["Config"]["Env"][0].startswith("PATH=")


# ---- serve and render read what stage pushed ----------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["oci", "oci+fetch", "oci+native"])
def test_serve_pulls_the_staged_image_as_kserve_fetch_mode_does(
    layout: Path, oci_registry: OciRegistry, scheme: str
) -> None:
    """serve's source step gives TorchServe exactly the layout stage pushed, whichever oci scheme names the image
    (KServe's webhook hands all three to the initializer as oci://)."""
    from toolkit._serve.source import resolve_source

    ref = f"{oci_registry.host}/team/served:v1"
    stage(layout, f"oci://{ref}")
    cleanup: list[Path] = []
    events: list[object] = []
    try:
        folder = resolve_source(f"{scheme}://{ref}", None, cleanup, events.append)
        assert tree(folder) == tree(layout)
        assert [getattr(e, "kind", None) for e in events] == ["download"]
    finally:
        for path in cleanup:
            shutil.rmtree(path, ignore_errors=True)


def test_serve_names_an_image_that_is_not_there(oci_registry: OciRegistry) -> None:
    from toolkit import ServeError
    from toolkit._serve.source import resolve_source

    with pytest.raises(ServeError) as info:
        resolve_source(f"oci://{oci_registry.host}/team/absent:v1", None, [], lambda e: None)
    assert "could not pull oci://" in info.value.message
    assert "podman login" in (info.value.hint or "")


@pytest.mark.parametrize(("scheme", "says"), [
    ("oci", "enableModelcar"), ("oci+fetch", "ociInsecureRegistry"), ("oci+native", "ImageVolume"),
])
def test_render_says_what_the_cluster_needs_for_an_image(
    tensor_spec, tmp_path: Path, caplog: pytest.LogCaptureFixture, scheme: str, says: str
) -> None:
    from toolkit import build, render

    built = build(tensor_spec(), tmp_path / "layout")
    with caplog.at_level(logging.WARNING, logger="toolkit.render"):
        manifests = render(built.layout, name="lin", storage_uri=f"{scheme}://ghcr.io/team/lin:v1")
    assert manifests.documents[-1]["spec"]["predictor"]["model"]["storageUri"] == f"{scheme}://ghcr.io/team/lin:v1"
    assert any(says in r.getMessage() for r in caplog.records), caplog.text


@pytest.mark.slow
def test_a_model_staged_to_a_registry_serves_and_answers(
    tensor_spec, oci_registry: OciRegistry, tmp_path: Path
) -> None:
    """The whole path without a cluster: build, stage oci://, serve the image (pulled as the pod would), predict."""
    import torch

    from toolkit import Client, build, serve

    built = build(tensor_spec(), tmp_path / "layout")
    ref = f"{oci_registry.host}/team/lin:v1"
    stage(built.layout, f"oci://{ref}")
    rows = [[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]]
    model = torch.jit.load(_torchscript(built.layout))
    expected = model(torch.tensor(rows)).tolist()
    with serve(f"oci+fetch://{ref}", port=free_port()) as predictor, Client(predictor.url) as client:
        answer = client.predict("lin", rows)
    assert [[round(v, 5) for v in row] for row in answer] == [[round(v, 5) for v in row] for row in expected]


def _torchscript(layout: Path) -> str:
    """The TorchScript file inside the built archive, extracted beside it (what the worker loads)."""
    import zipfile

    mar = layout / "model-store" / "lin.mar"
    with zipfile.ZipFile(mar) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".pt"))
        return zf.extract(name, layout.parent / "extracted")
