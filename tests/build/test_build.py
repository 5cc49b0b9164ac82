from __future__ import annotations

import ast
import json
import os
import shutil
import struct
import zipfile
from pathlib import Path

import pytest

from toolkit import LayoutError, SpecError, load_spec
from toolkit._build.builder import build, build_many
from toolkit._layout import parse_properties, read_archive, read_layout


def _snapshot(layout: Path) -> dict:
    return json.loads(parse_properties((layout / "config/config.properties").read_text())["model_snapshot"])


def test_hand_workflow_config_golden(tensor_spec, tmp_path: Path, golden) -> None:
    """The hand workflow teams run today (PVC leeway, model-store/bert-model.mar): key bert, version 1.0, workers
    1-5, batch 1, delay 5000, timeout 120, netty threads 4, job queue 100; mar-build must write it the same."""
    spec = tensor_spec(
        name="bert", version="1.0",
        serving={"min_workers": 1, "max_workers": 5, "batch_size": 1, "max_batch_delay": 5000, "response_timeout": 120},
        server={"netty_threads": 4, "job_queue_size": 100},
    )
    result = build(spec, tmp_path / "layout")
    text = result.config.read_text()
    golden("build/hand-workflow.config.properties", text)
    props = parse_properties(text)
    # what KServe's wrapper and TorchServe read, checked by value as well as against the golden file
    assert props["inference_address"] == "http://127.0.0.1:8085"
    assert props["model_store"] == "/mnt/models/model-store"
    assert props["disable_token_authorization"] == "true"
    assert props["enable_envvars_config"] == "false"
    assert props["metrics_mode"] == "prometheus"
    assert "install_py_dep_per_model" not in props
    assert _snapshot(result.layout)["models"] == {"bert": {"1.0": {
        "defaultVersion": True, "marName": "bert.mar", "minWorkers": 1, "maxWorkers": 5, "batchSize": 1,
        "maxBatchDelay": 5000, "responseTimeout": 120}}}
    for line in text.splitlines():  # the 0.9.0 wrapper reads any line with '=' as a key
        assert not (line.startswith("#") and "=" in line), line


def test_archive_listing_and_manifest_golden(tensor_spec, tmp_path: Path, golden) -> None:
    result = build(tensor_spec(labels={"team": "ml"}, class_names=["a", "b"]), tmp_path / "layout")
    with zipfile.ZipFile(result.archive) as zf:
        listing = "".join(
            f"{i.filename}\t{'stored' if i.compress_type == zipfile.ZIP_STORED else 'deflated'}\n"
            for i in zf.infolist()
        )
        manifest = json.loads(zf.read("MAR-INF/MANIFEST.json"))
        info = json.loads(zf.read("mar_build.json"))
        # handler files travel byte for byte
        assert zf.read("mar_build_entry.py") == (Path(__file__).parents[2] / "handlers/entry.py").read_bytes()
    golden("build/tensor.mar-listing.txt", listing)
    manifest.pop("createdOn")
    golden("build/tensor.manifest.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    assert manifest["model"]["handler"] == "mar_build_entry.py" and manifest["model"]["modelName"] == "lin"
    assert info["task"] == "tensor" and info["model"] == "model/linear.pt"
    assert info["class_names"] == ["a", "b"] and info["labels"] == {"team": "ml"}


def test_weights_are_stored_not_deflated(write_spec, hf_folder: Path, tmp_path: Path) -> None:
    (hf_folder / "model.safetensors").write_bytes(os.urandom(2 * 1024 * 1024))
    result = build(write_spec(name="hf", task="embeddings", model=str(hf_folder)), tmp_path / "layout")
    with zipfile.ZipFile(result.archive) as zf:
        types = {i.filename: i.compress_type for i in zf.infolist()}
        assert zf.read("model/model.safetensors") == (hf_folder / "model.safetensors").read_bytes()
    assert types["model/model.safetensors"] == zipfile.ZIP_STORED
    assert types["model/tokenizer.json"] == zipfile.ZIP_DEFLATED
    # no claim about the runtime image here: what an image ships is check's compatibility preflight to say
    assert not any("transformers" in w for w in result.warnings), result.warnings


@pytest.mark.parametrize("kernel_copy", [True, False])
def test_large_weights_copied_by_the_kernel_keep_their_crc(
    write_spec, hf_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel_copy: bool
) -> None:
    """Above 32 MiB a stored member is filled by copy_file_range with the CRC computed beside it; the zip must be
    exactly what zipfile itself would have written (CRC checked on read), and the fallback loop the same."""
    from toolkit._build import archive as _archive

    if not kernel_copy:
        monkeypatch.delattr(_archive.os, "copy_file_range", raising=False)
    weights = os.urandom(40 * 1024 * 1024 + 12345)
    (hf_folder / "model.safetensors").write_bytes(weights)
    seen: list[tuple[int, int]] = []
    result = build(write_spec(name="big", task="embeddings", model=str(hf_folder)), tmp_path / "layout",
                   progress=lambda done, total: seen.append((done, total)))
    with zipfile.ZipFile(result.archive) as zf:
        assert zf.testzip() is None  # every member's CRC-32 matches its bytes
        assert zf.read("model/model.safetensors") == weights
        assert zf.getinfo("model/model.safetensors").compress_type == zipfile.ZIP_STORED
        assert zf.read("model/tokenizer.json") == b"{}"
        header_offset = zf.getinfo("model/model.safetensors").header_offset
    # the weights start on a 32 KiB boundary (the kernel copies them at cp speed there); the padding is an extra
    # field of the local header, which readers skip
    with result.archive.open("rb") as f:
        f.seek(header_offset)
        local = f.read(30)
        assert local[:4] == b"PK\x03\x04"
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        data_offset = header_offset + 30 + name_len + extra_len
        f.seek(data_offset)
        assert f.read(64) == weights[:64]
    assert data_offset % (32 * 1024) == 0
    assert seen[-1][0] == seen[-1][1] and all(a <= b for (a, _), (b, _) in zip(seen, seen[1:], strict=False))


def test_a_checksum_that_fails_beside_the_kernel_copy_fails_the_build_and_writes_nothing(
    write_spec, hf_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from toolkit import ArchiveError
    from toolkit._build import archive as _archive

    def unreadable(path: str, size: int) -> int:
        raise OSError(5, "Input/output error", path)

    monkeypatch.setattr(_archive, "_file_crc32", unreadable)
    (hf_folder / "model.safetensors").write_bytes(os.urandom(33 * 1024 * 1024))
    layout = tmp_path / "layout"
    with pytest.raises(ArchiveError, match="could not checksum .*model.safetensors.*Input/output error"):
        build(write_spec(name="big", task="embeddings", model=str(hf_folder)), layout)
    assert not [p.name for p in tmp_path.iterdir() if "layout" in p.name]  # no layout, no temp folder beside it


def test_second_model_merges_without_touching_the_first(tensor_spec, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    first = build(tensor_spec("a", name="first"), layout)
    before = first.archive.read_bytes(), first.archive.stat().st_mtime_ns
    second = build(tensor_spec("b", name="second", serving={"batch_size": 4}), layout)
    assert second.models == ["first", "second"] and not second.replaced
    snap = _snapshot(layout)
    assert snap["modelCount"] == 2 and list(snap["models"]) == ["first", "second"]
    assert snap["models"]["second"]["1.0"]["batchSize"] == 4
    assert (first.archive.read_bytes(), first.archive.stat().st_mtime_ns) == before
    again = build(tensor_spec("a", name="first", version="2.0"), layout)
    assert again.replaced and _snapshot(layout)["modelCount"] == 2
    assert list(_snapshot(layout)["models"]["first"]) == ["2.0"]
    assert sorted(p.name for p in (layout / "model-store").iterdir()) == ["first.mar", "second.mar"]


def test_hand_written_layout_keeps_every_other_byte(tensor_spec, tmp_path: Path) -> None:
    layout = tmp_path / "leeway"
    (layout / "config").mkdir(parents=True)
    (layout / "model-store").mkdir()
    hand = (
        "inference_address=http://0.0.0.0:8085\nmanagement_address=http://0.0.0.0:8081\n"
        "number_of_netty_threads=4\njob_queue_size=100\nmodel_store=/mnt/models/model-store\n"
        'model_snapshot={"name":"startup.cfg","modelCount":1,"models":{"bert":{"1.0":{"defaultVersion":true,'
        '"marName":"bert-model.mar","minWorkers":1,"maxWorkers":5,"batchSize":1,"maxBatchDelay":5000,'
        '"responseTimeout":120}}}}\n'
    )
    (layout / "config/config.properties").write_text(hand)
    (layout / "model-store/bert-model.mar").write_bytes(b"hand-built")
    build(tensor_spec(name="lin"), layout)
    text = (layout / "config/config.properties").read_text()
    assert text.splitlines()[:5] == hand.splitlines()[:5]
    snap = _snapshot(layout)
    assert snap["modelCount"] == 2 and snap["models"]["bert"]["1.0"]["marName"] == "bert-model.mar"
    assert (layout / "model-store/bert-model.mar").read_bytes() == b"hand-built"


def test_refuses_a_folder_that_is_not_a_layout(tensor_spec, tmp_path: Path) -> None:
    target = tmp_path / "notes"
    target.mkdir()
    (target / "todo.txt").write_text("mine")
    with pytest.raises(LayoutError, match="is not a layout") as err:
        build(tensor_spec(), target)
    assert err.value.hint and "-o" in err.value.hint
    assert sorted(p.name for p in target.iterdir()) == ["todo.txt"]


def test_failure_midway_leaves_nothing(tensor_spec, tmp_path: Path) -> None:
    def explode(done: int, total: int) -> None:
        if done > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build(tensor_spec(), tmp_path / "out" / "layout", progress=explode)
    assert list((tmp_path / "out").iterdir()) == []


def test_failure_into_existing_layout_keeps_it_intact(tensor_spec, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    build(tensor_spec("a", name="first"), layout)
    config = (layout / "config/config.properties").read_text()

    def explode(done: int, total: int) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        build(tensor_spec("b", name="second"), layout, progress=explode)
    assert (layout / "config/config.properties").read_text() == config
    assert sorted(p.name for p in (layout / "model-store").iterdir()) == ["first.mar"]


def test_duplicate_names_rejected_before_writing(tensor_spec, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="two specs name the model 'lin'"):
        build_many([tensor_spec("a"), tensor_spec("b")], tmp_path / "layout")
    assert not (tmp_path / "layout").exists()


def test_hf_folder_without_weights_or_tokenizer(write_spec, hf_folder: Path, tmp_path: Path) -> None:
    (hf_folder / "model.safetensors").unlink()
    with pytest.raises(SpecError, match="has no weights") as err:
        build(write_spec(name="t", task="text-classification", model=str(hf_folder)), tmp_path / "l")
    assert "save_pretrained" in str(err.value)
    (hf_folder / "model.safetensors").write_bytes(b"0")
    (hf_folder / "tokenizer.json").unlink()
    (hf_folder / "vocab.txt").unlink()
    with pytest.raises(SpecError, match="has no tokenizer"):
        build(write_spec(name="t", task="text-classification", model=str(hf_folder)), tmp_path / "l")
    assert not (tmp_path / "l").exists()


def test_state_dict_without_model_file(write_spec, tmp_path: Path) -> None:
    import torch

    weights = tmp_path / "weights.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), weights)
    with pytest.raises(SpecError, match="not a TorchScript archive") as err:
        build(write_spec(name="t", task="tensor", model=str(weights)), tmp_path / "l")
    assert "model_file" in str(err.value)


def test_custom_handler_that_does_not_import(write_spec, tmp_path: Path) -> None:
    folder = write_spec(name="c", task="custom", handler="handler.py")
    (folder / "handler.py").write_text("import not_a_real_module_xyz\n")
    with pytest.raises(SpecError, match="does not import: ModuleNotFoundError") as err:
        build(folder, tmp_path / "l")
    assert "not_a_real_module_xyz" in str(err.value)


def test_pinned_requirements_and_dependency_install(tensor_spec, tmp_path: Path) -> None:
    import yaml as pyyaml

    result = build(tensor_spec(requirements=["pyyaml", "numpy<3"], pin_requirements=True), tmp_path / "l")
    with zipfile.ZipFile(result.archive) as zf:
        reqs = zf.read("requirements.txt").decode().splitlines()
        manifest = json.loads(zf.read("MAR-INF/MANIFEST.json"))
    assert reqs == [f"pyyaml=={pyyaml.__version__}", "numpy<3"]
    assert manifest["model"]["requirementsFile"] == "requirements.txt"
    assert parse_properties(result.config.read_text())["install_py_dep_per_model"] == "true"
    with pytest.raises(SpecError, match="cannot pin 'surely-not-installed-pkg'"):
        build(tensor_spec("x", requirements=["surely-not-installed-pkg"], pin_requirements=True), tmp_path / "m")


def test_extra_files_and_their_clashes(tensor_spec, tmp_path: Path) -> None:
    extra = tmp_path / "vocab"
    extra.mkdir()
    (extra / "words.txt").write_text("a\n")
    result = build(tensor_spec(extra_files=[str(extra)]), tmp_path / "l")
    assert read_archive(result.archive).has("vocab/words.txt")
    clash = tmp_path / "mar_build.json"
    clash.write_text("{}")
    with pytest.raises(Exception, match="two files would land at 'mar_build.json'"):
        build(tensor_spec("y", extra_files=[str(clash)]), tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_sizes_follow_the_task(write_spec, hf_folder: Path, tensor_spec, tmp_path: Path) -> None:
    emb = build(write_spec(name="e", task="embeddings", model=str(hf_folder)), tmp_path / "e")
    props = parse_properties(emb.config.read_text())
    assert int(props["max_response_size"]) == 64 * 1024 * 1024
    spec = load_spec(tensor_spec(server={"max_request_size": 1000}))
    assert spec.default_sizes()[0] == 1000


def _modes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix() or ".": oct(p.stat().st_mode & 0o777)
            for p in [root, *sorted(root.rglob("*"))]}


def test_layout_is_readable_by_the_pods_user_whatever_the_umask(tensor_spec, tmp_path: Path, strict_umask) -> None:
    """KServe's runtime reads the layout as user 1000, rarely the builder: files 0644, folders 0755, set
    explicitly (nothing may keep mkstemp's 0600 or mkdtemp's 0700, nor follow the umask, as the folders did)."""
    result = build(tensor_spec(), tmp_path / "l")
    assert _modes(result.layout) == {
        ".": "0o755", "config": "0o755", "config/config.properties": "0o644", "config/metrics.yaml": "0o644",
        "model-store": "0o755", "model-store/lin.mar": "0o644",
    }
    second = build(tensor_spec("b", name="second"), result.layout)  # merged into the layout: the same modes
    assert second.models == ["lin", "second"]
    assert _modes(result.layout) == {
        ".": "0o755", "config": "0o755", "config/config.properties": "0o644", "config/metrics.yaml": "0o644",
        "model-store": "0o755", "model-store/lin.mar": "0o644", "model-store/second.mar": "0o644",
    }


def test_a_layout_without_model_store_gains_one_readable_by_the_pod(tmp_path: Path, tensor_spec, strict_umask) -> None:
    layout = build(tensor_spec(), tmp_path / "l").layout
    shutil.rmtree(layout / "model-store")  # a hand-made layout that has only its config so far
    build(tensor_spec("b", name="second"), layout)
    assert _modes(layout)["model-store"] == "0o755"
    assert _modes(layout)["model-store/second.mar"] == "0o644"


def _calls_umask(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "umask":
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "os" and any(a.name == "umask" for a in node.names):
            return True
    return False


def test_no_module_of_the_toolkit_touches_the_umask() -> None:
    """The umask is process-wide: setting it even for a moment (to read it) changes the mode of whatever another
    thread creates then. Modes are set explicitly instead (toolkit/_files.py)."""
    toolkit = Path(__file__).resolve().parents[2] / "toolkit"
    sources = sorted(toolkit.rglob("*.py"))
    assert len(sources) > 20
    offenders = [p.relative_to(toolkit).as_posix() for p in sources if _calls_umask(ast.parse(p.read_text()))]
    assert offenders == []
    assert _calls_umask(ast.parse("import os\nold = os.umask(0)\n"))  # the check itself sees a call
    assert _calls_umask(ast.parse("from os import umask\n"))


def test_build_result_to_dict_holds_what_the_cli_prints(tensor_spec, tmp_path: Path) -> None:
    result = build(tensor_spec(), tmp_path / "l")
    data = json.loads(json.dumps(result.to_dict()))
    assert data == {
        "layout": str(tmp_path / "l"), "name": "lin", "version": "1.0",
        "archive": str(tmp_path / "l" / "model-store" / "lin.mar"), "archive_size": result.archive.stat().st_size,
        "replaced": False, "models": ["lin"], "config": str(tmp_path / "l" / "config" / "config.properties"),
        "warnings": [],
    }


def test_layout_reads_back(tensor_spec, tmp_path: Path) -> None:
    result = build(tensor_spec(), tmp_path / "l")
    layout = read_layout(result.layout)
    assert layout.model_names() == ["lin"] and [p.name for p in layout.archives] == ["lin.mar"]
    assert not layout.problems
