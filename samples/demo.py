"""The README's demo: build the text sample, serve it locally exactly like the predictor pod, predict, print, stop.

    make demo            (or: .venv/bin/python samples/demo.py)

Every step is the same public call a notebook user makes: toolkit.build, toolkit.serve, toolkit.Client.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SAMPLE = HERE / "text-classification"
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _port(preferred: int) -> int:
    """The pod's port 8080 when it is free here, else any free port."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


def main() -> int:
    import toolkit

    started = time.perf_counter()
    print("1/4 preparing the sample model (fine-tunes MiniLM once, then reuses it)", flush=True)
    subprocess.run([sys.executable, str(SAMPLE / "prepare.py")], check=True)

    print("2/4 building the archive and config.properties", flush=True)
    result = toolkit.build(SAMPLE, REPO / "build" / "demo")
    print(f"    {result.archive} ({result.archive_size / 1e6:.1f} MB)")
    report = toolkit.check(result.layout)
    print(f"    preflight: {'ok' if report.ok else 'FAILED'}, {len(report.warnings)} warning(s)")

    port = _port(8080)
    print(f"3/4 serving it like the predictor pod (KServe wrapper on :{port}, TorchServe behind it)", flush=True)
    instances = json.loads((SAMPLE / "sample.json").read_text())["instances"]
    with toolkit.serve(result.layout, port=port) as predictor:
        print(f"    ready in {time.perf_counter() - started:.1f} s since start: {predictor.url}")
        print(f"4/4 POST {predictor.url}/v1/models/{result.name}:predict", flush=True)
        with toolkit.Client(predictor.url) as client:
            predictions = client.predict(result.name, instances)
    print()
    for instance, prediction in zip(instances, predictions, strict=True):
        text = instance["data"] if isinstance(instance, dict) else instance
        print(f"  {prediction!s:<12} <- {text}")
    print(f"\ndone in {time.perf_counter() - started:.1f} s; the server is stopped.")
    sample = (SAMPLE / "sample.json").relative_to(REPO)
    print(f"next: mar-build serve {result.layout.relative_to(REPO)}  and  "
          f"mar-build predict http://localhost:8080 -m {result.name} --data {sample}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
