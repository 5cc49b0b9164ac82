"""The shared prepare machinery: the stamp skips work only when inputs and files match, writes are atomic, and a
sample's prepare.py run again changes no file."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from samples_support import Sample, common_module, run_prepare, tree_state

common = common_module()


class Builder:
    """A build function that records its calls and writes a small model folder."""

    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail

    def __call__(self, out: Path) -> dict[str, Any]:
        self.calls += 1
        (out / "weights.bin").write_bytes(bytes(range(100)))
        (out / "sub").mkdir()
        (out / "sub" / "config.json").write_text('{"n": 1}')
        if self.fail:
            raise RuntimeError("training diverged")
        return {"accuracy": 0.5 + self.calls / 10}


def test_first_run_builds_second_run_skips(tmp_path: Path) -> None:
    build, model = Builder(), tmp_path / "model"
    first = common.prepare(model, "digest-1", build)
    assert not first.skipped and build.calls == 1
    assert json.loads((model / "metrics.json").read_text()) == first.metrics == {"accuracy": 0.6}
    stamp = json.loads((tmp_path / ".prepared").read_text())
    assert stamp["digest"] == "digest-1"
    assert stamp["files"] == {"metrics.json": (model / "metrics.json").stat().st_size, "sub/config.json": 8,
                              "weights.bin": 100}

    second = common.prepare(model, "digest-1", build)
    assert second.skipped and build.calls == 1
    assert second.metrics == first.metrics  # read back from metrics.json
    assert sorted(p.name for p in tmp_path.iterdir()) == [".prepared", "model"]


@pytest.mark.parametrize("change", ["digest", "force", "truncated", "deleted", "metrics", "stamp"])
def test_any_change_redoes_the_work(tmp_path: Path, change: str) -> None:
    build, model = Builder(), tmp_path / "model"
    common.prepare(model, "digest-1", build)
    digest, force = "digest-1", False
    if change == "digest":
        digest = "digest-2"
    elif change == "force":
        force = True
    elif change == "truncated":
        (model / "weights.bin").write_bytes(b"short")
    elif change == "deleted":
        (model / "sub" / "config.json").unlink()
    elif change == "metrics":
        (model / "metrics.json").unlink()
    else:
        (tmp_path / ".prepared").write_text("{not json")
    result = common.prepare(model, digest, build, force=force)
    assert not result.skipped and build.calls == 2
    assert (model / "weights.bin").read_bytes() == bytes(range(100))
    assert json.loads((tmp_path / ".prepared").read_text())["digest"] == digest


def test_a_failed_build_leaves_the_previous_folder_and_no_temp(tmp_path: Path) -> None:
    model = tmp_path / "model"
    common.prepare(model, "digest-1", Builder())
    before = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(RuntimeError, match="training diverged"):
        common.prepare(model, "digest-2", Builder(fail=True))
    after = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".prepared", "model"]


def test_a_failed_first_build_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        common.prepare(tmp_path / "model", "digest-1", Builder(fail=True))
    assert list(tmp_path.iterdir()) == []


def test_two_runs_for_one_folder_take_turns(tmp_path: Path) -> None:
    started, release = threading.Event(), threading.Event()
    build = Builder()

    def slow_build(out: Path) -> dict[str, Any]:
        started.set()
        release.wait(10)
        return build(out)

    results: dict[str, Any] = {}

    def run(name: str) -> None:
        results[name] = common.prepare(tmp_path / "model", "d", slow_build)

    first = threading.Thread(target=run, args=("first",))
    first.start()
    assert started.wait(10)
    second = threading.Thread(target=run, args=("second",))
    second.start()
    second.join(0.5)
    assert second.is_alive(), "the second run waits for the first to finish"
    release.set()
    first.join(10)
    second.join(10)
    assert build.calls == 1
    assert (results["first"].skipped, results["second"].skipped) == (False, True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".prepared", "model"]


def test_files_are_readable_by_others(tmp_path: Path) -> None:
    def private_build(out: Path) -> dict[str, Any]:
        (out / "weights.bin").write_bytes(b"w")
        (out / "weights.bin").chmod(0o600)
        return {}

    common.prepare(tmp_path / "model", "d", private_build)
    assert (tmp_path / "model").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "model" / "weights.bin").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / ".prepared").stat().st_mode & 0o777 == 0o644


def test_inputs_digest_follows_contents_and_values(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("a,b\n")
    base = common.inputs_digest([data], {"epochs": 4})
    assert common.inputs_digest([data], {"epochs": 4}) == base
    assert common.inputs_digest([data], {"epochs": 5}) != base
    data.write_text("a,c\n")
    assert common.inputs_digest([data], {"epochs": 4}) != base
    # The name matters too (a file moved in for another is another input), its folder outside samples/ does not.
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.csv").write_text("a,c\n")
    assert common.inputs_digest([other / "data.csv"], {"epochs": 4}) == common.inputs_digest([data], {"epochs": 4})


def test_command_line_prints_measured_then_recorded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mar.yaml").write_text("name: toy\n")
    build = Builder()
    argv = ["--out", str(tmp_path / "out" / "model")]

    def run(*extra: str) -> str:
        common.run("toy", tmp_path, inputs=[tmp_path / "mar.yaml"], values={}, build=build,
                   summary=lambda m: f"accuracy {m['accuracy']}", argv=[*argv, *extra])
        return capsys.readouterr().out

    assert "measured: accuracy 0.6" in run()
    out = run()
    assert "up to date" in out and "recorded: accuracy 0.6" in out and build.calls == 1
    assert "measured: accuracy 0.7" in run("--force")
    assert build.calls == 2


@pytest.mark.parametrize(
    ("name", "also_printed"),
    [
        ("text-classification", "recorded: held-out accuracy"),
        ("embeddings", None),
        ("image-classification", None),
        ("custom", None),
    ],
)
def test_running_a_samples_prepare_again_changes_nothing(
    prepared: Callable[[str], Sample], name: str, also_printed: str | None
) -> None:
    sample = prepared(name)
    before = tree_state(sample.folder)
    run = run_prepare(name)
    assert run.returncode == 0, run.stderr
    assert "up to date" in run.stdout
    if also_printed is not None:
        assert also_printed in run.stdout
    assert tree_state(sample.folder) == before
