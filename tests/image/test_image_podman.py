"""The generated build contexts, built by a real `podman build --isolation=chroot`, FROM a stand-in base.

Docker Hub cannot be reached here and containers cannot run, so the base is a stand-in built first (FROM scratch:
busybox, and stubs for apt-get, pip, python and useradd that record their arguments), tagged as the real base in a
podman store of the test's own. What this proves about the Dockerfile itself: every instruction builds, every COPY
finds its source in the context, the image's config (user 1000, entry point, command, environment, ports) and tree
(/opt/mar-build, /mnt/models, a home owned by 1000, /tmp writable) are what the runtime needs, and the steps run in
order with the arguments they should. What pip and apt-get would install is checked by test_image_resolve.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from image_support import make_layout

from toolkit._image import TORCHSERVE_ENTRY_MODULE, image

pytestmark = pytest.mark.slow

STUB = """#!/bin/sh
echo "$(basename "$0") $*" >> /stub.log
if [ "$(basename "$0")" = useradd ]; then
  home=$(echo "$*" | sed -n 's/.*--home-dir \\([^ ]*\\).*/\\1/p'); mkdir -p "$home"; chown 1000:1000 "$home"
fi
exit 0
"""
BASE_FILE = """FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "mkdir", "-p", "/usr/sbin", "/usr/local/bin", "/tmp"]
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY stub /usr/local/bin/stub
RUN chmod 755 /usr/local/bin/stub && for c in apt-get pip python; do ln -s stub /usr/local/bin/$c; done \\
 && ln -s /usr/local/bin/stub /usr/sbin/useradd
ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/bin
"""


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., str]]:
    """podman with a store of its own, holding the stand-in tagged as python:3.11-slim-bookworm."""
    root = tmp_path_factory.mktemp("podman")
    runroot = Path(tempfile.mkdtemp(prefix="mbi-"))  # podman refuses a runroot path over 50 characters
    exe = shutil.which("podman")
    assert exe, "podman is missing: apt-get install podman"
    command = [exe, "--root", str(root / "storage"), "--runroot", str(runroot), "--storage-driver", "vfs"]

    def run(*args: str) -> str:
        done = subprocess.run([*command, *args], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"podman {' '.join(args)}: {done.stderr[-3000:]}"
        return done.stdout.strip()

    base = root / "base"
    base.mkdir()
    busybox = shutil.which("busybox")
    assert busybox, "busybox is missing: apt-get install busybox-static"
    shutil.copy(busybox, base / "busybox")
    (base / "stub").write_text(STUB)
    (base / "Containerfile").write_text(BASE_FILE)
    run("build", "-q", "--isolation=chroot", "-t", "docker.io/library/python:3.11-slim-bookworm", str(base))
    yield run
    subprocess.run([*command, "rmi", "-a", "-f"], capture_output=True, timeout=120)
    shutil.rmtree(runroot, ignore_errors=True)


@pytest.mark.parametrize("runtime", ["torchserve", "python"])
def test_podman_builds_the_context_into_the_runtimes_image(podman, tmp_path, runtime):
    layout = make_layout(tmp_path / "layout", {"intent": ("text-classification", "transformers==5.23.0\n")})
    context = image(layout, tmp_path / "ctx", runtime=runtime, bake_layout=True)
    tag = f"localhost/mar-build-{runtime}:test"
    podman("build", "-q", "--isolation=chroot", "--pull=never", "-t", tag, str(context.path))
    config = json.loads(podman("image", "inspect", tag))[0]["Config"]
    assert config["User"] == "1000:1000" and config["WorkingDir"] == "/home/mar-build"
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PYTHONPATH"] == "/opt/mar-build" and env["HOME"] == "/home/mar-build"
    if runtime == "torchserve":
        assert config["Entrypoint"] == ["python", "-m", TORCHSERVE_ENTRY_MODULE]
        assert config["Cmd"][:2] == ["torchserve", "--start"] and "8082/tcp" in config["ExposedPorts"]
    else:
        assert config["Entrypoint"] == ["python", "-m", "toolkit._runtime"] and "8080/tcp" in config["ExposedPorts"]
    tree = Path(podman("image", "mount", tag))
    try:
        steps = (tree / "stub.log").read_text().splitlines()
        installs = [s for s in steps if s.startswith("pip install")]
        assert installs == ["pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0",
                            "pip install -r /opt/mar-build/requirements.txt"]
        assert ("apt-get install -y --no-install-recommends openjdk-17-jre-headless" in steps) == (
            runtime == "torchserve")
        assert steps[-1].startswith("useradd --uid 1000 ")
        assert (tree / "opt/mar-build/requirements.txt").read_bytes() == context.requirements_file.read_bytes()
        assert (tree / "opt/mar-build/toolkit/_bundled/templates").is_dir()
        assert (tree / "mnt/models/model-store/intent.mar").read_bytes() == (
            layout / "model-store/intent.mar").read_bytes()
        assert (tree / "mnt/models/config/config.properties").stat().st_mode & 0o004  # readable by user 1000
        assert (tree / "home/mar-build").stat().st_uid == 1000
        assert (tree / "tmp").stat().st_mode & 0o7777 == 0o1777
    finally:
        podman("image", "unmount", tag)
