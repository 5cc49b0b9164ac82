"""Staging benchmark: a 500 MB layout to a loopback S3 endpoint, against `aws s3 cp --recursive`.

    python -m benchmarks.staging [--size-mb 500] [--rounds 3]

A moto_server (real S3 API over HTTP on 127.0.0.1, started and stopped here) receives, in each round, one after
the other to fresh prefixes:

- aws s3 cp --recursive    the AWS CLI with its default transfer settings (10 threads, 8 MiB parts);
- mar-build stage (CLI)    our command line (interpreter start and imports included, like the aws CLI);
- toolkit.stage()          our staging (parallel multipart upload, config last), in this process;
- re-stage                 toolkit.stage() (and the CLI) of the unchanged layout to the prefix just written:
                           must upload nothing, and take < 1 s.

The order of the three uploads rotates from round to round.

The layout is the build benchmark's 500 MB embeddings model built by mar-build (weights stored, so the archive
is as large as the weights). Objects are deleted between rounds (untimed). Reports medians, MB/s and ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._common import RESULTS, Started, free_port, load_note, median, table, wait_http, write_results
from .build import make_model

BUCKET = "bench"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}


def aws_cli() -> list[str]:
    """The `aws` command; exits saying how to install it when there is none."""
    found = shutil.which("aws")
    if found:
        return [found]
    raise SystemExit("the AWS CLI is missing: `pip install awscli` (any environment) or see "
                     "https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html")


def layout_of(size_mb: int) -> Path:
    from toolkit import build

    folder = RESULTS / "work" / "build-model"
    make_model(folder, size_mb)
    layout = RESULTS / "work" / "staging-layout"
    shutil.rmtree(layout, ignore_errors=True)
    return build(folder, layout).layout


def layout_bytes(layout: Path) -> int:
    return sum(p.stat().st_size for p in layout.rglob("*") if p.is_file())


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.staging", description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(f"staging benchmark: {load_note(before=True)}", flush=True)
    os.environ.update(CREDENTIALS)
    aws = aws_cli()
    layout = layout_of(args.size_mb)
    size = layout_bytes(layout)

    import boto3

    from toolkit import stage

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = Started([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                     log=RESULTS / "work" / "moto.log")
    names = ["aws s3 cp --recursive", "mar-build stage (CLI)", "toolkit.stage()", "re-stage (unchanged)",
             "re-stage (CLI)"]
    times: dict[str, list[float]] = {name: [] for name in names}
    restage_bytes: list[int] = []

    def upload(name: str, uri: str) -> int | None:
        if name == "toolkit.stage()":
            return stage(layout, uri, endpoint_url=endpoint).bytes_uploaded
        if name == "mar-build stage (CLI)":
            cmd = [sys.executable, "-m", "toolkit", "-q", "stage", str(layout), uri, "--endpoint-url", endpoint]
        else:
            cmd = [*aws, "s3", "cp", "--recursive", "--only-show-errors", str(layout), uri, "--endpoint-url", endpoint]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        return None

    try:
        wait_http(f"{endpoint}/", timeout=60, proc=server)
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket=BUCKET)
        for r in range(args.rounds):
            prefixes = {"aws s3 cp --recursive": f"aws-{r}", "mar-build stage (CLI)": f"cli-{r}",
                        "toolkit.stage()": f"ours-{r}"}
            order = list(prefixes)
            # rotate the order each round: no tool always runs first (or last) on a busy machine
            for name in order[r % 3:] + order[:r % 3]:
                os.sync()
                t = time.perf_counter()
                uploaded = upload(name, f"s3://{BUCKET}/{prefixes[name]}")
                times[name].append(time.perf_counter() - t)
                _check_prefix(s3, prefixes[name], layout)
                if uploaded is not None and uploaded != size:
                    raise RuntimeError(f"stage uploaded {uploaded} bytes of {size}")

            t = time.perf_counter()
            again = stage(layout, f"s3://{BUCKET}/{prefixes['toolkit.stage()']}", endpoint_url=endpoint)
            times["re-stage (unchanged)"].append(time.perf_counter() - t)
            restage_bytes.append(again.bytes_uploaded)
            t = time.perf_counter()
            upload("mar-build stage (CLI)", f"s3://{BUCKET}/{prefixes['toolkit.stage()']}")
            times["re-stage (CLI)"].append(time.perf_counter() - t)
            for name, values in times.items():
                print(f"  round {r + 1}: {name:22} {values[-1]:6.2f} s", flush=True)
            for prefix in prefixes.values():
                _delete_prefix(s3, prefix)
    finally:
        server.stop()

    cli = median(times["aws s3 cp --recursive"])
    rows = []
    for name, values in times.items():
        m = median(values)
        rows.append([name, m, min(values), max(values), round(size / m / 1e6) if "re-stage" not in name else None,
                     round(cli / m, 2) if "re-stage" not in name else None])
    ours = median(times["toolkit.stage()"])
    ours_cli = median(times["mar-build stage (CLI)"])
    restage = median(times["re-stage (unchanged)"])
    restage_cli = median(times["re-stage (CLI)"])
    report = "\n".join([
        f"\nstaging a {size / 1e6:.0f} MB layout to a loopback S3 endpoint (moto_server), {args.rounds} rounds, median",
        table(["method", "median s", "min s", "max s", "MB/s", "speed vs aws"], rows),
        "",
        f"target throughput >= aws s3 cp: toolkit.stage() {cli / ours:.2f} x, CLI {cli / ours_cli:.2f} x  "
        f"{'met' if max(ours, ours_cli) <= cli else 'NOT met'}",
        f"target re-stage < 1 s, 0 bytes: {restage:.2f} s (CLI {restage_cli:.2f} s), {max(restage_bytes)} bytes  "
        f"{'met' if restage < 1 and not any(restage_bytes) else 'NOT met'}"
        + ("" if restage_cli < 1 else " (the CLI's interpreter start and imports exceed 1 s here)"),
        load_note(),
    ])
    print(report)
    result = {"size_bytes": size, "rounds": args.rounds, "seconds": times, "restage_bytes": restage_bytes,
              "aws_cli": subprocess.run([*aws, "--version"], capture_output=True, text=True).stdout.strip(),
              "report": report, "seconds_total": round(time.perf_counter() - started, 1)}
    path = write_results("staging", result)
    print(f"wrote {path.relative_to(RESULTS.parent.parent)} ({result['seconds_total']:.0f} s in all)")
    return result


def _check_prefix(s3: Any, prefix: str, layout: Path) -> None:
    """Every layout file arrived with its size (a cheap check that both tools wrote the same thing)."""
    listed = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/").get("Contents", [])}
    for p in layout.rglob("*"):
        if p.is_file():
            key = f"{prefix}/{p.relative_to(layout).as_posix()}"
            if listed.get(key) != p.stat().st_size:
                raise RuntimeError(f"{key}: expected {p.stat().st_size} bytes, S3 has {listed.get(key)}")


def _delete_prefix(s3: Any, prefix: str) -> None:
    objects = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/").get("Contents", [])
    if objects:
        s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": o["Key"]} for o in objects]})


if __name__ == "__main__":
    main()
