"""`mar-build image`: the build context (Dockerfile parsed as docker reads it, pinned requirements, mar-build's own
package), the layout's install_py_dep_per_model switched off, and the combinations it refuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from dockerfile_parse import DockerfileParser
from image_support import HAND_CONFIG, make_layout

import toolkit._cli.image  # noqa: F401 - registers `image` on the group (until it joins _COMMANDS)
from toolkit._cli import cli
from toolkit._image import TORCHSERVE_ENTRY_MODULE, ImageError, image
from toolkit._layout import check, parse_properties

TS_ARGS = ["torchserve", "--start", "--model-store=/mnt/models/model-store",
           "--ts-config=/mnt/models/config/config.properties"]


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    return make_layout(tmp_path / "layout", {"intent": ("text-classification", "transformers==5.23.0\n")})


def parsed(context: Path) -> DockerfileParser:
    parser = DockerfileParser(path=str(context / "Dockerfile"))
    assert parser.structure, "the Dockerfile has no instructions"
    return parser


def instructions(parser: DockerfileParser, name: str) -> list[str]:
    return [i["value"] for i in parser.structure if i["instruction"] == name]


def pins(context: Path) -> dict[str, str]:
    lines = [ln for ln in (context / "requirements.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    return dict(ln.split("==", 1) if "==" in ln else (ln, "") for ln in lines)


@pytest.mark.parametrize(("case", "options"), [
    ("torchserve", {}),
    ("torchserve-gpu", {"gpu": True}),
    ("python", {"runtime": "python"}),
    ("python-bake-layout", {"runtime": "python", "bake_layout": True}),
])
def test_dockerfiles_match_their_golden_files(layout, tmp_path, golden, case, options):
    context = image(layout, tmp_path / "ctx", **options)
    golden(f"image/{case}.Dockerfile", context.dockerfile.read_text())


@pytest.mark.parametrize("runtime", ["torchserve", "python"])
def test_the_dockerfile_parses_and_runs_as_the_runtimes_user(layout, tmp_path, runtime):
    context = image(layout, tmp_path / "ctx", runtime=runtime, bake_layout=True)
    parser = parsed(context.path)
    assert parser.baseimage == "python:3.11-slim-bookworm"
    assert instructions(parser, "USER") == ["1000:1000"]  # numeric: runAsNonRoot can verify it
    env = parser.envs
    assert env["HOME"] == "/home/mar-build" and env["PYTHONPATH"] == "/opt/mar-build"
    entrypoint = json.loads(instructions(parser, "ENTRYPOINT")[0])
    cmd = json.loads(instructions(parser, "CMD")[0])
    if runtime == "torchserve":
        # KServe passes kserve-torchserve's args; with none (docker run) the same ones are the default.
        assert entrypoint == ["python", "-m", TORCHSERVE_ENTRY_MODULE] and cmd == TS_ARGS
        assert any("openjdk-17-jre-headless" in run for run in instructions(parser, "RUN"))
    else:
        assert entrypoint == ["python", "-m", "toolkit._runtime"]
        assert cmd == ["--layout", "/mnt/models", "--http-port", "8080", "--host", "0.0.0.0"]
        assert not any("openjdk" in run for run in instructions(parser, "RUN"))
    for copy in instructions(parser, "COPY"):
        source = copy.split()[0]
        assert (context.path / source).exists(), f"COPY {source}: not in the build context"


def test_the_render_runtime_and_the_image_agree_on_the_command(layout, tmp_path):
    """What render's python ServingRuntime runs (command + args) is what the image runs by default."""
    from toolkit._render.runtimes import PYTHON_ARGS, PYTHON_COMMAND, TORCHSERVE_ARGS

    parser = parsed(image(layout, tmp_path / "py", runtime="python").path)
    assert [*json.loads(instructions(parser, "ENTRYPOINT")[0]), *json.loads(instructions(parser, "CMD")[0])] == [
        *PYTHON_COMMAND, *PYTHON_ARGS]
    parser = parsed(image(layout, tmp_path / "ts").path)
    assert json.loads(instructions(parser, "CMD")[0]) == list(TORCHSERVE_ARGS)


def test_requirements_pin_the_runtime_here_and_carry_what_the_archives_packaged(tmp_path):
    layout = make_layout(tmp_path / "layout", {
        "intent": ("text-classification", "transformers==5.23.0\nscikit-learn>=1.4  # the tokenizer's\n"),
        "digits": ("image-classification", None),
        "hand": (None, "# hand-built\nnumpy>=1.24\n"),
    })
    context = image(layout, tmp_path / "ctx")
    assert context.warnings == []
    got = pins(context.path)
    import torch
    assert got["torch"] == torch.__version__.split("+")[0]
    for dist in ("kserve", "torchserve", "aiohttp", "orjson", "click", "jinja2", "transformers", "pillow"):
        assert got[dist], f"{dist} is not pinned"
    assert got["scikit-learn>=1.4"] == "" and got["numpy>=1.24"] == ""
    assert "kserve-storage" not in got  # the storage-initializer downloads, not the predictor
    python = pins(image(layout, tmp_path / "py", runtime="python").path)
    assert "torchserve" not in python and python["kserve"] == got["kserve"]


@pytest.mark.parametrize(("models", "message"), [
    ({"a": ("tensor", "torch<2\n")}, "a.mar:requirements.txt wants torch<2, but the image carries torch=="),
    ({"a": ("tensor", "kserve==0.11.1\n")}, "wants kserve==0.11.1, but the image carries kserve=="),
    ({"a": ("tensor", "foo==1.0\n"), "b": ("tensor", "foo==2.0\n")}, "one image cannot carry both"),
    ({"a": ("tensor", "--index-url https://example.com/simple\n")}, "is not a requirement the image can carry"),
])
def test_pins_that_cannot_live_together_are_refused_and_nothing_is_written(tmp_path, models, message):
    layout = make_layout(tmp_path / "layout", models)
    before = (layout / "config" / "config.properties").read_bytes()
    with pytest.raises(ImageError, match=message.replace("(", r"\(").replace("+", r"\+")):
        image(layout, tmp_path / "ctx")
    assert not (tmp_path / "ctx").exists()
    assert (layout / "config" / "config.properties").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layout"]  # no temp folder left behind


def test_an_archive_whose_libraries_the_image_can_only_guess_is_a_warning(tmp_path):
    layout = make_layout(tmp_path / "layout", {"hand": (None, None), "mine": ("custom", None), "t": ("tensor", None)})
    warnings = image(layout, tmp_path / "ctx").warnings
    assert [w.split()[0] for w in warnings] == ["hand.mar", "mine.mar"]
    assert "package the handler's libraries" in warnings[0]


def test_archives_agreeing_on_a_library_share_one_line(tmp_path):
    layout = make_layout(tmp_path / "layout", {"a": ("tensor", "foo>=1.0\n"), "b": ("tensor", "foo<3,!=2.1\n")})
    got = pins(image(layout, tmp_path / "ctx").path)
    assert [k for k in got if k.startswith("foo")] == ["foo!=2.1,<3,>=1.0"]


def test_install_py_dep_per_model_goes_off_and_every_other_byte_stays(tmp_path):
    config = HAND_CONFIG.replace("job_queue_size=100\n", "job_queue_size=100\n! a Java comment\n"
                                 "default_workers_per_model = \\\n    2\n")
    layout = make_layout(tmp_path / "layout", {"intent": ("text-classification", "transformers\n")}, config)
    path = layout / "config" / "config.properties"
    before = path.read_text()
    context = image(layout, tmp_path / "ctx")
    after = path.read_text()
    assert context.layout_changes == {"install_py_dep_per_model": "false", "disable_token_authorization": "true"}
    # TorchServe 0.12 (the image's) checks tokens by default; the wrapper sends none: the key is added at the end
    assert after == before.replace("install_py_dep_per_model = true\n", "install_py_dep_per_model=false\n") + (
        "# set by mar-build image (the image's needs)\ndisable_token_authorization=true\n")
    # the layout still stages and serves: the packaged requirements are the image's now (a warning, no error)
    report = check(layout, pod=False)
    assert not [p for p in report.errors if "requirements" in p.message], report.errors
    assert [p for p in report.warnings if "install_py_dep_per_model=false" in p.message]
    assert parse_properties(after)["default_workers_per_model"] == "2"
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    mtime = path.stat().st_mtime_ns
    again = image(layout, tmp_path / "ctx")  # already right: the file is not written again
    assert again.layout_changes == {} and path.read_text() == after and path.stat().st_mtime_ns == mtime


def test_the_python_runtime_needs_no_token_key(layout, tmp_path):
    context = image(layout, tmp_path / "ctx", runtime="python")
    assert context.layout_changes == {"install_py_dep_per_model": "false"}


def test_a_baked_layout_is_the_layout_as_the_image_runs_it(layout, tmp_path):
    context = image(layout, tmp_path / "ctx", runtime="python", bake_layout=True)
    baked = context.path / "layout"
    assert (baked / "config" / "config.properties").read_bytes() == (layout / "config/config.properties").read_bytes()
    assert "install_py_dep_per_model=false" in (baked / "config" / "config.properties").read_text()
    assert (baked / "model-store" / "intent.mar").read_bytes() == (layout / "model-store/intent.mar").read_bytes()
    assert "COPY layout/ /mnt/models/" in instructions(parsed(context.path), "COPY")[-1:][0] or any(
        c == "layout/ /mnt/models/" for c in instructions(parsed(context.path), "COPY"))


def test_the_context_carries_mar_build_itself_importable_from_there(layout, tmp_path):
    context = image(layout, tmp_path / "ctx")
    package = context.path / "mar-build"
    assert not list(package.rglob("__pycache__"))
    code = (
        "import toolkit, toolkit._runtime.server, toolkit._serve.wrapper, toolkit._serve.pod\n"
        "from toolkit._resources import handlers_dir, templates_dir\n"
        "print(toolkit.__file__, handlers_dir(), templates_dir())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(package)}
    done = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for printed in done.stdout.split():
        assert Path(printed).resolve().is_relative_to(package.resolve()), printed
    assert (package / "toolkit" / "_bundled" / "handlers" / "base.py").is_file()


def test_the_torchserve_entry_point_is_in_the_package(layout, tmp_path):
    context = image(layout, tmp_path / "ctx")
    module = context.path / "mar-build" / Path(*TORCHSERVE_ENTRY_MODULE.split("."))
    assert module.with_suffix(".py").is_file() or (module / "__main__.py").is_file()


def test_an_earlier_context_is_replaced_and_a_foreign_folder_is_refused(layout, tmp_path):
    first = image(layout, tmp_path / "ctx")
    (first.path / "stale.txt").write_text("x")
    second = image(layout, tmp_path / "ctx", runtime="python")
    assert not (second.path / "stale.txt").exists() and "toolkit._runtime" in second.dockerfile.read_text()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ImageError, match="not empty and was not written by `mar-build image`"):
        image(layout, foreign)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    with pytest.raises(ImageError, match="inside the layout"):
        image(layout, layout / "image")


def run(*args: str):
    return CliRunner().invoke(cli, ["image", *args], catch_exceptions=False)


@pytest.mark.parametrize(("args", "message"), [
    (["--base", "pytorch/torchserve-kfs:0.9.0"], "pytorch/torchserve-kfs:0.9.0 has Python 3.9"),
    (["--base", "docker.io/pytorch/torchserve-kfs:0.12.0-gpu"], "has Python 3.9"),
    (["--base", "python:3.9-slim-bookworm"], "has Python 3.9: mar-build needs Python >= 3.10"),
    (["--base", "python:3.12-alpine"], "Alpine (musl)"),
    (["--base", "ghcr.io/team/base:1"], "cannot tell which Python ghcr.io/team/base:1 has"),
    (["--base", "ghcr.io/team/base:1", "--base-python", "three"], "must be a Python version X.Y"),
    # transformers 5 needs Python >= 3.11 (its Requires-Python): the pins cannot install on 3.10
    (["--base", "python:3.10-slim-bookworm"], "needs Python >=3.11"),
])
def test_impossible_combinations_are_clear_errors(layout, tmp_path, args, message):
    result = run(str(layout), "-o", str(tmp_path / "ctx"), *args)
    assert result.exit_code == 1
    assert message in result.output and "hint:" in result.output
    assert not (tmp_path / "ctx").exists()


def test_the_cli_prints_the_build_and_json_the_result(layout, tmp_path):
    result = run(str(layout), "-o", str(tmp_path / "ctx"))
    assert result.exit_code == 0, result.output
    assert "FROM python:3.11-slim-bookworm, Python 3.11" in result.output
    assert "install_py_dep_per_model=false" in result.output and "docker build -t" in result.output
    assert "disable_token_authorization=true" in result.output
    result = run(str(layout), "-o", str(tmp_path / "ctx"), "--runtime", "python", "--base", "python:3.12-slim",
                 "--gpu", "--json")
    data = json.loads(result.output)
    assert (data["runtime"], data["base"], data["python"], data["gpu"]) == ("python", "python:3.12-slim", "3.12",
                                                                            True)
    assert data["platforms"][0] == "manylinux_2_41_x86_64" and "torch" in "".join(data["requirements"])
