"""Staging into a PVC mounted as a folder: pvc://CLAIM/PREFIX -> MOUNT/PREFIX."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from s3_support import make_layout, tree, write_config, write_mar

from toolkit import StagingError
from toolkit._build import build
from toolkit._stage import stage
from toolkit._stage.base import referenced_archives
from toolkit._stage.pvc import RECORD_KEY

LAYOUT_FILES = {"config/config.properties", "model-store/bert.mar", "model-store/gpt.mar"}


@pytest.fixture
def mount(tmp_path: Path) -> Path:
    path = tmp_path / "vol-1"
    path.mkdir()
    return path


def staged(dest: Path) -> dict[str, bytes]:
    """What the pod sees at /mnt/models: the staged tree without stage's own record."""
    return {k: v for k, v in tree(dest).items() if k != RECORD_KEY}


def test_stage_copies_the_layout_to_mount_prefix(layout: Path, mount: Path) -> None:
    (mount / "notebook.ipynb").write_text("{}")  # the user's own file on the volume
    result = stage(layout, "pvc://leeway/bert", mount=mount)

    assert result.storage_uri == "pvc://leeway/bert"
    assert result.destination == str(mount.resolve() / "bert")
    assert staged(mount / "bert") == tree(layout)
    assert [f.path for f in result.files] == ["model-store/bert.mar", "model-store/gpt.mar", "config/config.properties"]
    assert {f.action for f in result.files} == {"upload"}
    assert result.bytes_uploaded == sum(len(v) for v in tree(layout).values())
    # readable by the pod's user whatever uid it runs as
    for rel in LAYOUT_FILES:
        assert stat.S_IMODE((mount / "bert" / rel).stat().st_mode) == 0o644
    assert (mount / "notebook.ipynb").read_text() == "{}"
    assert any("not a mount point" in w for w in result.warnings)


def test_the_hand_workflow_layout_at_the_claim_root(tmp_path: Path, mount: Path) -> None:
    layout = make_layout(tmp_path / "bert", {"bert": b"weights"})
    result = stage(layout, "pvc://leeway", mount=mount)
    assert result.storage_uri == "pvc://leeway"
    assert staged(mount) == tree(layout)


def test_restage_unchanged_writes_nothing(layout: Path, mount: Path) -> None:
    stage(layout, "pvc://leeway/bert", mount=mount)
    before = {p: p.stat().st_mtime_ns for p in (mount / "bert").rglob("*")}
    progress: list[tuple[int, int]] = []
    result = stage(layout, "pvc://leeway/bert", mount=mount, progress=lambda d, t: progress.append((d, t)))
    assert {f.action for f in result.files} == {"skip"}
    assert result.bytes_uploaded == 0
    assert {p: p.stat().st_mtime_ns for p in (mount / "bert").rglob("*")} == before
    assert progress in ([], [(0, 0)])


def test_restage_without_the_record_hashes_what_is_there(layout: Path, mount: Path) -> None:
    stage(layout, "pvc://leeway/bert", mount=mount)
    (mount / "bert" / RECORD_KEY).unlink()
    result = stage(layout, "pvc://leeway/bert", mount=mount)
    assert {f.action for f in result.files} == {"skip"}


def test_a_changed_archive_alone_is_copied(layout: Path, mount: Path) -> None:
    stage(layout, "pvc://leeway/bert", mount=mount)
    write_mar(layout / "model-store" / "gpt.mar", "gpt", payload=os.urandom(300_000))  # same size, new bytes
    result = stage(layout, "pvc://leeway/bert", mount=mount)
    assert [(f.path, f.action) for f in result.files] == [
        ("model-store/bert.mar", "skip"), ("model-store/gpt.mar", "upload"), ("config/config.properties", "skip"),
    ]
    assert staged(mount / "bert") == tree(layout)


def test_a_destination_file_changed_behind_stage_is_replaced(layout: Path, mount: Path) -> None:
    stage(layout, "pvc://leeway/bert", mount=mount)
    there = mount / "bert" / "model-store" / "bert.mar"
    data = bytearray(there.read_bytes())
    data[-1] ^= 0xFF  # same size; mtime moves, so the record no longer vouches for it
    there.write_bytes(bytes(data))
    result = stage(layout, "pvc://leeway/bert", mount=mount)
    assert [f.action for f in result.files] == ["upload", "skip", "skip"]
    assert staged(mount / "bert") == tree(layout)


def test_archives_dropped_from_the_layout_are_removed_after_the_config(layout: Path, mount: Path) -> None:
    stage(layout, "pvc://leeway/bert", mount=mount)
    dest = mount / "bert"
    write_mar(dest / "model-store" / "mine.mar", "mine")  # the user's, never named by a staged config
    (dest / "model-store" / "README").write_text("notes")

    (layout / "model-store" / "gpt.mar").unlink()
    write_config(layout, {"bert": "1.0"})
    result = stage(layout, "pvc://leeway/bert", mount=mount)

    assert [(f.path, f.action, f.reason) for f in result.deleted] == [
        ("model-store/gpt.mar", "delete", "no longer in config.properties"),
    ]
    assert staged(dest) == {**tree(layout), "model-store/mine.mar": (dest / "model-store/mine.mar").read_bytes(),
                            "model-store/README": b"notes"}
    assert any("mine.mar" in w and "left in place" in w for w in result.warnings)
    record = json.loads((dest / RECORD_KEY).read_text())["files"]
    assert set(record) == {"config/config.properties", "model-store/bert.mar"}


class Interrupt(Exception):
    pass


def test_an_interrupted_stage_leaves_a_consistent_tree_and_a_rerun_finishes(tmp_path: Path, mount: Path) -> None:
    old = make_layout(tmp_path / "old", {"bert": os.urandom(1000)})
    stage(old, "pvc://leeway/bert", mount=mount)
    new = make_layout(tmp_path / "new", {"gpt": os.urandom(24 * 1024 * 1024), "t5": os.urandom(12 * 1024 * 1024)})

    def interrupt(done: int, total: int) -> None:
        if done > 0:
            raise Interrupt()

    with pytest.raises(Interrupt):
        stage(new, "pvc://leeway/bert", mount=mount, concurrency=1, progress=interrupt)
    dest = mount / "bert"
    # The old config is still the one there, and every archive it names is there: KServe reads a working tree.
    assert (dest / "config/config.properties").read_bytes() == (old / "config/config.properties").read_bytes()
    names = referenced_archives((dest / "config/config.properties").read_text())
    assert names == {"bert.mar"}  # an empty set would make the check below pass on anything
    for name in names:
        assert (dest / "model-store" / name).read_bytes() == (old / "model-store" / name).read_bytes()
    assert not [p for p in dest.rglob("*mar-build-tmp")], "temp files are removed when a copy is cancelled"

    result = stage(new, "pvc://leeway/bert", mount=mount)
    assert staged(dest) == tree(new)
    assert [f.path for f in result.deleted] == ["model-store/bert.mar"]


# A stage that dies by SIGKILL (no cleanup, no finally) when its progress first passes KILL_AT bytes.
_KILLED_STAGE = """
import os, signal, sys
from toolkit._stage import stage

def kill(done, total):
    if done >= int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)

stage(sys.argv[1], "pvc://leeway/bert", mount=sys.argv[2], concurrency=1, progress=kill)
"""
MB = 1024 * 1024


@pytest.mark.parametrize("kill_at", [1 * MB, 25 * MB], ids=["inside-the-first-archive", "inside-the-second"])
def test_a_stage_killed_mid_copy_never_leaves_a_config_naming_a_partial_archive(
    tmp_path: Path, mount: Path, kill_at: int
) -> None:
    """Copies go largest first in 8 MB chunks: gpt (24 MB) then t5 (12 MB); the config goes last."""
    old = make_layout(tmp_path / "old", {"bert": os.urandom(1000)})
    stage(old, "pvc://leeway/bert", mount=mount)
    new = make_layout(tmp_path / "new", {"gpt": os.urandom(24 * MB), "t5": os.urandom(12 * MB)})

    killed = subprocess.run([sys.executable, "-c", _KILLED_STAGE, str(new), str(mount), str(kill_at)],
                            capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2])
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    dest = mount / "bert"
    config = (dest / "config/config.properties").read_bytes()
    assert config == (old / "config/config.properties").read_bytes()
    names = referenced_archives(config.decode())
    assert names == {"bert.mar"}  # an empty set would make the check below pass on anything
    for name in names:
        assert (dest / "model-store" / name).read_bytes() == (old / "model-store" / name).read_bytes()
    assert len(list(dest.rglob("*mar-build-tmp"))) == 1, "killed inside a copy: its temp file is left"
    copied = {p.name for p in (dest / "model-store").glob("*.mar")} - {"bert.mar"}
    assert copied == ({"gpt.mar"} if kill_at > 24 * MB else set())
    for name in copied:  # an archive under its own name is whole: it was renamed into place after its copy
        assert (dest / "model-store" / name).read_bytes() == (new / "model-store" / name).read_bytes()

    rerun = stage(new, "pvc://leeway/bert", mount=mount)
    assert staged(dest) == tree(new)
    assert not list(dest.rglob("*mar-build-tmp")), "the killed run's temp file is removed"
    assert "model-store/bert.mar" in [f.path for f in rerun.deleted]
    # what the killed run finished is not copied again
    assert {f.path for f in rerun.uploaded} == {"model-store/t5.mar", "config/config.properties"} | (
        set() if copied else {"model-store/gpt.mar"})
    assert any(f.reason == "temp file left by an interrupted run" for f in rerun.deleted)
    again = stage(new, "pvc://leeway/bert", mount=mount)
    assert again.bytes_uploaded == 0 and not again.uploaded and not again.deleted
    assert staged(dest) == tree(new)


def test_a_killed_run_s_archives_are_recognised_and_its_temp_files_removed(tmp_path: Path, mount: Path) -> None:
    first = make_layout(tmp_path / "first", {"bert": b"1" * 1000})
    stage(first, "pvc://leeway/bert", mount=mount)
    dest = mount / "bert"
    # What a killed run (SIGKILL: no cleanup ran) leaves: its record entry and archive written, a temp file
    # half-written, the config not yet replaced.
    killed = make_layout(tmp_path / "killed", {"bert": b"1" * 1000, "gpt": b"2" * 1000})
    record = json.loads((dest / RECORD_KEY).read_text())
    record["files"]["model-store/gpt.mar"] = {"size": 1, "mtime_ns": None, "sha256": "0" * 64}
    (dest / RECORD_KEY).write_text(json.dumps(record))
    shutil.copy(killed / "model-store/gpt.mar", dest / "model-store/gpt.mar")
    (dest / "model-store" / ".t5.mar.abc123.mar-build-tmp").write_bytes(b"half")

    result = stage(first, "pvc://leeway/bert", mount=mount)
    assert sorted((f.path, f.reason) for f in result.deleted) == [
        ("model-store/.t5.mar.abc123.mar-build-tmp", "temp file left by an interrupted run"),
        ("model-store/gpt.mar", "staged by mar-build, not in the new config.properties"),
    ]
    assert staged(dest) == tree(first)


def test_only_stage_s_own_temp_names_are_removed(layout: Path, mount: Path) -> None:
    """A temp file is ``.NAME.XXXX.mar-build-tmp`` exactly; a name that only starts like one is the user's (with
    re.match, '$' also matched before a trailing newline, and such a file was deleted as ours)."""
    stage(layout, "pvc://leeway/bert", mount=mount)
    store = mount / "bert" / "model-store"
    theirs = store / ".notes.mar-build-tmp\n"
    theirs.write_bytes(b"the user's")
    ours = store / ".gpt.mar.k2j4.mar-build-tmp"
    ours.write_bytes(b"half")
    result = stage(layout, "pvc://leeway/bert", mount=mount)
    assert [f.path for f in result.deleted] == ["model-store/.gpt.mar.k2j4.mar-build-tmp"]
    assert theirs.read_bytes() == b"the user's" and not ours.exists()


def _modes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in sorted(root.rglob("*"))}


def test_the_staged_tree_is_readable_by_the_pod_whatever_the_umask(layout: Path, mount: Path, strict_umask) -> None:
    """The pod's user (1000 in KServe's runtimes) is not always the notebook's: files 0644, folders 0755."""
    stage(layout, "pvc://leeway/team/bert", mount=mount)
    assert _modes(mount) == {
        "team": "0o755", "team/bert": "0o755", "team/bert/config": "0o755",
        "team/bert/config/.mar-build-staged.json": "0o644", "team/bert/config/config.properties": "0o644",
        "team/bert/model-store": "0o755", "team/bert/model-store/bert.mar": "0o644",
        "team/bert/model-store/gpt.mar": "0o644",
    }


def _listing(root: Path, masked: Callable[[str], bool]) -> str:
    """``mode size path`` for everything under ``root``, sizes of ``masked`` paths shown as '*'."""
    lines = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        st = path.lstat()
        size = "-" if path.is_dir() else "*" if masked(rel) else str(st.st_size)
        lines.append(f"{stat.filemode(st.st_mode)} {size:>6} {rel}{'/' if path.is_dir() else ''}")
    return "\n".join(lines) + "\n"


def test_staged_tree_listing_golden(tensor_spec, mount: Path, tmp_path: Path, golden) -> None:
    """What the pod mounts after `mar-build build` then `stage`: config/ and model-store/ with their modes, stage's
    record beside the config, nothing else. Archive and record sizes vary (library versions, inode numbers)."""
    built = build(tensor_spec(name="bert"), tmp_path / "layout")
    result = stage(built.layout, "pvc://leeway/bert", mount=mount)
    listing = _listing(mount, masked=lambda rel: rel.endswith((".mar", ".json")))
    record = json.loads((mount / "bert" / RECORD_KEY).read_text())
    listing += "record: " + ", ".join(sorted(record["files"])) + "\n"
    listing += "plan: " + ", ".join(f"{f.action} {f.path}" for f in result.files) + "\n"
    golden("stage/pvc-tree.txt", listing)
    assert sorted(tree(mount)) == ["bert/config/.mar-build-staged.json", "bert/config/config.properties",
                                   "bert/config/metrics.yaml", "bert/model-store/bert.mar"]


def test_stage_result_to_dict_is_json_with_the_plan_and_totals(layout: Path, mount: Path) -> None:
    result = stage(layout, "pvc://leeway/bert", mount=mount)
    data = json.loads(json.dumps(result.to_dict()))
    sizes = {rel: len(data) for rel, data in tree(layout).items()}
    assert data["storage_uri"] == "pvc://leeway/bert" and data["destination"] == str(mount.resolve() / "bert")
    assert data["files"] == [
        {"path": rel, "action": "upload", "size": sizes[rel], "reason": "new",
         "sha256": hashlib.sha256((layout / rel).read_bytes()).hexdigest()}
        for rel in ("model-store/bert.mar", "model-store/gpt.mar", "config/config.properties")
    ]
    assert (data["uploaded"], data["skipped"], data["deleted"]) == (3, 0, 0)
    assert data["bytes_uploaded"] == sum(sizes.values()) and data["bytes_skipped"] == 0
    assert data["dry_run"] is False and data["endpoint_url"] is None and data["aborted_uploads"] == []
    assert data["warnings"] == result.warnings and isinstance(data["seconds"], float)


def test_dry_run_writes_nothing(layout: Path, mount: Path) -> None:
    result = stage(layout, "pvc://leeway/bert", mount=mount, dry_run=True)
    assert result.dry_run
    assert [(f.path, f.action, f.reason) for f in result.files] == [
        ("model-store/bert.mar", "upload", "new"), ("model-store/gpt.mar", "upload", "new"),
        ("config/config.properties", "upload", "new"),
    ]
    assert list(mount.iterdir()) == []

    stage(layout, "pvc://leeway/bert", mount=mount)
    before = tree(mount)
    (layout / "model-store" / "gpt.mar").unlink()
    write_config(layout, {"bert": "1.0"})
    result = stage(layout, "pvc://leeway/bert", mount=mount, dry_run=True)
    assert [(f.path, f.action) for f in result.files] == [
        ("model-store/bert.mar", "skip"), ("config/config.properties", "upload"), ("model-store/gpt.mar", "delete"),
    ]
    assert tree(mount) == before


def test_pvc_needs_a_mount(layout: Path) -> None:
    with pytest.raises(StagingError, match="needs the folder where the claim is mounted") as info:
        stage(layout, "pvc://leeway/bert")
    assert "--mount" in (info.value.hint or "")


def test_mount_that_does_not_exist_or_is_a_file(layout: Path, tmp_path: Path) -> None:
    with pytest.raises(StagingError, match="does not exist"):
        stage(layout, "pvc://leeway/bert", mount=tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StagingError, match="is not a folder"):
        stage(layout, "pvc://leeway/bert", mount=tmp_path / "file")


def test_a_prefix_that_is_a_file_on_the_volume(layout: Path, mount: Path) -> None:
    (mount / "bert").write_text("x")
    with pytest.raises(StagingError, match="is a file"):
        stage(layout, "pvc://leeway/bert/v1", mount=mount)
    with pytest.raises(StagingError, match="is a file, not a folder"):
        stage(layout, "pvc://leeway/bert", mount=mount)
    assert (mount / "bert").read_text() == "x"


def test_a_prefix_that_escapes_the_mount_is_refused(layout: Path, mount: Path, tmp_path: Path) -> None:
    with pytest.raises(StagingError, match="'..' segment"):
        stage(layout, "pvc://leeway/../outside", mount=mount)
    outside = tmp_path / "outside"
    outside.mkdir()
    (mount / "link").symlink_to(outside)  # a symlink on the volume that points out of it
    with pytest.raises(StagingError, match="outside the mount"):
        stage(layout, "pvc://leeway/link", mount=mount)
    (mount / "bert" / "model-store").mkdir(parents=True)
    (mount / "bert" / "config").symlink_to(outside)
    with pytest.raises(StagingError, match="outside the mount"):
        stage(layout, "pvc://leeway/bert", mount=mount)
    assert list(outside.iterdir()) == []


@pytest.fixture
def immutable_mount(mount: Path) -> Path:
    """A folder nobody may write into, root included (ext4's immutable attribute; chmod does not stop root)."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed, and chmod cannot make a folder unwritable for root")
    done = subprocess.run(["chattr", "+i", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot make a folder immutable here ({done.stderr.strip()}); chmod does not stop root")
    yield mount
    subprocess.run(["chattr", "-i", str(mount)], check=True)


def test_a_mount_that_is_not_writable(layout: Path, immutable_mount: Path) -> None:
    with pytest.raises(StagingError, match="is not writable") as info:
        stage(layout, "pvc://leeway/bert", mount=immutable_mount)
    assert "read-write" in (info.value.hint or "")
    with pytest.raises(StagingError, match="is not writable"):
        stage(layout, "pvc://leeway/bert", mount=immutable_mount, dry_run=True)


def test_a_folder_where_an_archive_goes_is_refused(layout: Path, mount: Path) -> None:
    (mount / "bert" / "model-store" / "bert.mar").mkdir(parents=True)
    with pytest.raises(StagingError, match="is a folder"):
        stage(layout, "pvc://leeway/bert", mount=mount)
