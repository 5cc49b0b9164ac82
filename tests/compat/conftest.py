"""TorchServe 0.9.0, the release in KServe's default pytorch/torchserve-kfs image, for the tests of this folder.

A venv holding torchserve/torch-model-archiver 0.9.0 that borrows torch (and transformers) from the dev venv
through a .pth file, so it costs seconds, not a second torch install. 0.9.0 imports yaml and pkg_resources but
declares neither (without them every worker dies at start): yaml comes from the dev venv, pkg_resources from
setuptools<70 in that venv. Made once per test session.
"""

from __future__ import annotations

import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def torchserve_090(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env_dir = tmp_path_factory.mktemp("ts090") / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
         "torchserve==0.9.0", "torch-model-archiver==0.9.0", "setuptools<70"],
        check=True, capture_output=True, text=True,
    )
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # after its own site-packages: ts 0.9.0 wins, torch/transformers/yaml come from the dev venv
    Path(purelib, "dev-venv.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    version = subprocess.run([str(py), "-c", "import ts.version; print(ts.version.__version__)"],
                             check=True, capture_output=True, text=True).stdout.strip()
    assert version == "0.9.0"
    return env_dir / "bin" / "torchserve"
