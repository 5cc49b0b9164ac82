"""OCI staging benchmark: the text sample's layout pushed to a loopback registry as an image, then pushed again.

    python -m benchmarks.oci_staging [--rounds 3] [--layout DIR]

A docker-registry (Debian's package, CNCF distribution; started and stopped here on a free 127.0.0.1 port with
its storage under benchmarks/results/work) receives, in each round, to a fresh repository:

- first push            toolkit.stage(LAYOUT, oci://HOST/bench/rN:v1): every layer uploaded, config, manifest;
- re-push (unchanged)   the same call again: must upload 0 bytes (layers HEAD-checked, tag already there);
- KServe fetch          kserve_storage.Storage.download of the image (the oci+fetch storage-initializer code).

The layout is samples/text-classification built by mar-build (or --layout DIR). The layer digest cache is
emptied before each first push (so it hashes the layers as a first push on a new machine does); the file hash
cache is kept, as it is after `mar-build build`. Reports medians, MB/s and the bytes each push sent.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._common import RESULTS, ROOT, Started, free_port, load_note, median, table, wait_http, write_results

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
CONFIG = """version: 0.1
log: {{level: error, accesslog: {{disabled: true}}}}
storage: {{filesystem: {{rootdirectory: {root}}}, maintenance: {{uploadpurging: {{enabled: false}}}}}}
http: {{addr: "127.0.0.1:{port}", secret: bench-only}}
"""


def sample_layout() -> Path:
    from toolkit import build

    sample = ROOT / "samples" / "text-classification"
    if not (sample / "model" / "model.safetensors").exists():
        subprocess.run([sys.executable, str(sample / "prepare.py")], check=True)
    layout = RESULTS / "work" / "oci-layout"
    shutil.rmtree(layout, ignore_errors=True)
    return build(sample, layout).layout


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.oci_staging", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layout", type=Path, help="a built layout (default: build the text sample)")
    args = parser.parse_args(argv)
    print(f"oci staging benchmark: {load_note(before=True)}", flush=True)
    if not Path(REGISTRY_BIN).exists():
        raise SystemExit("docker-registry is missing: apt-get install docker-registry")
    layout = args.layout or sample_layout()
    size = sum(p.stat().st_size for p in layout.rglob("*") if p.is_file())
    cache = Path(tempfile.mkdtemp(prefix="oci-bench-cache-"))
    os.environ["MAR_BUILD_CACHE_DIR"] = str(cache)

    from kserve_storage import Storage

    from toolkit import stage

    work = RESULTS / "work" / "oci-registry"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    port = free_port()
    (work / "config.yml").write_text(CONFIG.format(root=work / "storage", port=port))
    server = Started([REGISTRY_BIN, "serve", str(work / "config.yml")], log=work / "registry.log")
    names = ["first push", "re-push (unchanged)", "KServe fetch"]
    times: dict[str, list[float]] = {name: [] for name in names}
    sent: dict[str, list[int]] = {"first push": [], "re-push (unchanged)": []}
    os.environ.update({"KSERVE_OCI_INSECURE_REGISTRY": "true", "KSERVE_OCI_DOCKER_CONFIG": str(work / "none")})
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/", timeout=30, proc=server)
        for r in range(args.rounds):
            uri = f"oci://127.0.0.1:{port}/bench/r{r}:v1"
            (cache / "oci-layers.json").unlink(missing_ok=True)
            for name in names[:2]:
                t = time.perf_counter()
                result = stage(layout, uri)
                times[name].append(time.perf_counter() - t)
                sent[name].append(result.bytes_uploaded)
            out = work / f"fetched-{r}"
            t = time.perf_counter()
            Storage.download(uri, str(out))
            times["KServe fetch"].append(time.perf_counter() - t)
            _check_same(layout, out)
            shutil.rmtree(out)
            steps = ", ".join(f"{n} {v[-1]:.2f} s" for n, v in times.items())
            print(f"  round {r + 1}: {steps}", flush=True)
    finally:
        server.stop()
        shutil.rmtree(cache, ignore_errors=True)
    rows = [[name, median(v), min(v), max(v), round(size / median(v) / 1e6) if name != "re-push (unchanged)" else None,
             max(sent[name]) if name in sent else None] for name, v in times.items()]
    report = "\n".join([
        f"\nstaging a {size / 1e6:.1f} MB layout ({layout.name}) to a loopback docker-registry as an OCI image, "
        f"{args.rounds} rounds, median",
        table(["step", "median s", "min s", "max s", "MB/s", "bytes sent"], rows),
        f"re-push sends 0 bytes: {'met' if not any(sent['re-push (unchanged)']) else 'NOT met'}",
        load_note(),
    ])
    print(report)
    data = {"layout_bytes": size, "times": times, "bytes_sent": sent}
    write_results("oci_staging", data)
    return data


def _check_same(layout: Path, fetched: Path) -> None:
    for path in layout.rglob("*"):
        if path.is_file() and path.read_bytes() != (fetched / path.relative_to(layout)).read_bytes():
            raise RuntimeError(f"{path.relative_to(layout)} came back different")


if __name__ == "__main__":
    main()
