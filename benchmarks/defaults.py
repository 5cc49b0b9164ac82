"""The measurements that choose the serving defaults: batch size x max batch delay, threads, workers; a profile.

    python -m benchmarks.defaults [--batch-sizes 8,16,32,64] [--delays 5,10,20,50] [--set short]
                                  [--seconds 8] [--no-extra] [--no-profile]

For each (batchSize, maxBatchDelay) the text sample is built with those settings and served by toolkit.serve;
wrk then drives N=32 clients (throughput, p50/p99) and N=1 (the latency a lone client pays: a batch that cannot
fill waits maxBatchDelay). The mean batch the worker really ran comes from TorchServe's log ("repeats N").
Extra rows at the recommended settings: torch threads 1 instead of cores/workers (MAR_BUILD_THREADS), and two
workers of one thread each. Then py-spy samples the worker and the wrapper under the N=32 load, and the samples
are grouped by what the code was doing (tokenisation, forward, JSON, TorchServe's protocol, the envelope).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import _stacks
from ._common import RESULTS, load_note, table, write_results
from ._load import LoadResult, run_wrk
from .serving import bodies_file, drain, references

PY_SPY = _stacks.BENTO_VENV / "bin" / "py-spy"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def batches(log: Path, offset: int) -> tuple[list[int], int]:
    """Batch sizes the worker ran since byte ``offset`` of ts_log.log, and the new offset.

    TorchServe logs one PredictionTime metric per batch, tagged with the ids of the batch's requests.
    """
    with log.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
        end = f.tell()
    # log4j writes some lines twice (two appenders on one file): the request ids make each batch's line unique
    seen = {line for line in text.splitlines() if "PredictionTime.Milliseconds" in line}
    return [len(_UUID.findall(line.split("|#hostname:", 1)[-1])) for line in seen], end


def measure(label: str, layout: Path, run_dir: Path, data: Path, seconds: float,
            env: dict[str, str] | None = None, profile: bool = False) -> dict[str, Any]:
    row: dict[str, Any] = {"config": label}
    with _stacks.ours(layout, run_dir, env=env) as stack:
        log = Path(stack.info["log"])
        for n, secs, warm in ((32, seconds, 2.0), (1, max(4.0, seconds / 2), 1.0)):
            run_wrk(stack.url, data, n, warm)
            drain(stack)
            offset = log.stat().st_size
            r: LoadResult = run_wrk(stack.url, data, n, secs, cpu_probe=stack.cpu)
            drain(stack)
            sizes, _ = batches(log, offset)
            row[f"n{n}"] = r.summary()
            row[f"n{n}_mean_batch"] = round(sum(sizes) / len(sizes), 1) if sizes else None
            if not r.all_correct:
                row["wrong"] = r.wrong_example
        if profile:
            row["profile"] = profile_under_load(stack, data, seconds, run_dir)
    return row


# ---- py-spy ----------------------------------------------------------------------------------------------------
CATEGORIES = [  # a sample counts for the category of its innermost frame that names one
    ("logging", ("logging/",)),
    ("json", ("json/", "orjson")),
    ("tokenizer", ("tokenization_utils", "tokenizers", "tokenize (")),
    ("model forward", ("modeling_", "torch/nn/modules")),
    ("handler (other)", ("mar_build_handlers", "mar_build_entry")),
    ("torchserve worker protocol", ("ts/protocol/", "otf_message_handler", "model_service_worker", "ts/service")),
    ("kserve model server", ("kserve/",)),
    ("http client (httpx)", ("httpx", "httpcore")),
    ("http server (uvicorn/fastapi)", ("uvicorn", "h11", "starlette", "fastapi")),
    ("asyncio", ("asyncio/",)),
]


def ensure_py_spy() -> Path | None:
    if PY_SPY.is_file():
        return PY_SPY
    found = shutil.which("py-spy")
    if found:
        return Path(found)
    venv_python = _stacks.BENTO_VENV / "bin" / "python"
    if venv_python.is_file():
        subprocess.run([str(venv_python), "-m", "pip", "install", "-q", "py-spy"], check=False)
    return PY_SPY if PY_SPY.is_file() else None


def profile_under_load(stack: _stacks.Stack, data: Path, seconds: float, run_dir: Path) -> dict[str, Any]:
    """py-spy (raw stacks, 100 Hz, non-blocking) on the worker and the wrapper during an N=32 run."""
    spy = ensure_py_spy()
    if spy is None:
        return {"skipped": "py-spy not available (pip install py-spy)"}
    targets = {"worker": _stacks.worker_processes(stack)[0].pid, "wrapper": stack.roles["wrapper"]}
    procs = {}
    for name, pid in targets.items():
        out = run_dir / f"py-spy-{name}.txt"
        procs[name] = (subprocess.Popen(
            [str(spy), "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "100",
             "--format", "raw", "--nonblocking", "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), out)
    time.sleep(0.5)
    r = run_wrk(stack.url, data, 32, seconds, cpu_probe=stack.cpu)
    drain(stack)
    result: dict[str, Any] = {"requests": r.requests, "throughput": round(r.throughput, 1)}
    for name, (proc, out) in procs.items():
        _, err = proc.communicate(timeout=seconds + 60)
        if proc.returncode != 0 or not out.is_file():
            result[name] = {"error": err.decode(errors="replace")[-300:]}
            continue
        result[name] = categorise(out, seconds)
    return result


def categorise(path: Path, seconds: float) -> dict[str, Any]:
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        category = next(
            (name for frame in reversed(stack.split(";")) for name, needles in CATEGORIES
             if any(needle in frame for needle in needles)),
            "other",
        )
        counts[category] += int(n)
        total += int(n)
    return {
        "busy_share": round(total / (100 * seconds), 2),  # samples of non-idle threads per wall second at 100 Hz
        "shares": {k: round(v / total, 3) for k, v in counts.most_common()} if total else {},
    }


# ---- main ------------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.defaults", description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="8,16,32,64")
    parser.add_argument("--delays", default="5,10,20,50")
    parser.add_argument("--set", default="short", choices=("short", "long"))
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--no-extra", action="store_true", help="skip the threads and workers rows")
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(f"defaults sweep: {load_note()}", flush=True)
    _stacks.ensure_sample()
    labels = references([args.set])[args.set]
    work = RESULTS / "work" / "defaults"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    data = bodies_file(work / "bodies.lua", args.set, labels, form="v1")

    rows: list[dict[str, Any]] = []
    for b in [int(x) for x in args.batch_sizes.split(",")]:
        for d in [int(x) for x in args.delays.split(",")]:
            layout = _stacks.build_ours(work / "layout", batch_size=b, max_batch_delay=d)
            row = measure(f"batch {b} delay {d}", layout, work / f"run-{b}-{d}", data, args.seconds)
            row.update(batch_size=b, delay=d, threads="auto", workers=1)
            rows.append(row)
            _print_row(row)
    best = recommend(rows)
    if not args.no_extra and best is not None:
        b, d = best["batch_size"], best["delay"]
        layout = _stacks.build_ours(work / "layout", batch_size=b, max_batch_delay=d)
        row = measure(f"batch {b} delay {d}, 1 thread", layout, work / "run-threads1", data, args.seconds,
                      env={"MAR_BUILD_THREADS": "1"})
        row.update(batch_size=b, delay=d, threads=1, workers=1)
        rows.append(row)
        _print_row(row)
        layout = _stacks.build_ours(work / "layout", batch_size=b, max_batch_delay=d, workers=2)
        row = measure(f"batch {b} delay {d}, 2 workers", layout, work / "run-workers2", data, args.seconds)
        row.update(batch_size=b, delay=d, threads="auto", workers=2)
        rows.append(row)
        _print_row(row)
    profile = None
    if not args.no_profile and best is not None:
        layout = _stacks.build_ours(work / "layout", batch_size=best["batch_size"], max_batch_delay=best["delay"])
        with _stacks.ours(layout, work / "run-profile") as stack:
            run_wrk(stack.url, data, 32, 2.0)
            drain(stack)
            profile = profile_under_load(stack, data, args.seconds, work / "run-profile")

    report = render(rows, best, profile, args.set)
    print(report)
    out = {"settings": vars(args), "rows": rows, "recommended": best and {k: best[k] for k in ("batch_size", "delay")},
           "profile": profile, "report": report, "seconds_total": round(time.perf_counter() - started, 1)}
    path = write_results("defaults", out)
    print(f"wrote {path.relative_to(RESULTS.parent.parent)} ({out['seconds_total']:.0f} s in all)")
    return out


def recommend(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Among the sweep rows within 5% of the best N=32 throughput, the one with the lowest N=1 p50 latency."""
    sweep = [r for r in rows if r.get("threads") == "auto" and r.get("workers") == 1 and "n32" in r]
    if not sweep:
        return None
    top = max(r["n32"]["throughput"] for r in sweep)
    near = [r for r in sweep if r["n32"]["throughput"] >= 0.95 * top]
    return min(near, key=lambda r: (r["n1"]["p50_ms"], -r["n32"]["throughput"]))


def _print_row(row: dict[str, Any]) -> None:
    a, b = row["n32"], row["n1"]
    print(f"  {row['config']:28} N=32 {a['throughput']:6.1f} req/s p50 {a['p50_ms']:6.1f} p99 {a['p99_ms']:6.1f} "
          f"(mean batch {row['n32_mean_batch']})  N=1 {b['throughput']:5.1f} req/s p50 {b['p50_ms']:6.1f} ms  "
          f"other load {100 * a['other_cpu_share']:.0f}%{'  WRONG ' + row['wrong'] if 'wrong' in row else ''}",
          flush=True)


def render(rows: list[dict[str, Any]], best: dict[str, Any] | None, profile: dict[str, Any] | None,
           set_name: str) -> str:
    lines = [f"\nserving settings, {set_name} texts: N=32 and N=1 clients (ours, full local stack)",
             table(["config", "N=32 req/s", "p50 ms", "p99 ms", "mean batch", "N=1 req/s", "N=1 p50 ms",
                    "N=1 p99 ms", "other load %"],
                   [[r["config"], r["n32"]["throughput"], r["n32"]["p50_ms"], r["n32"]["p99_ms"], r["n32_mean_batch"],
                     r["n1"]["throughput"], r["n1"]["p50_ms"], r["n1"]["p99_ms"],
                     round(100 * r["n32"]["other_cpu_share"])] for r in rows])]
    if best is not None:
        lines.append(f"\nrecommended: batch_size {best['batch_size']}, max_batch_delay {best['delay']} ms "
                     "(within 5% of the best N=32 throughput, lowest N=1 latency)")
    if profile and "worker" in profile:
        lines.append(f"\npy-spy under N=32 load ({profile.get('throughput')} req/s): share of busy samples")
        for name in ("worker", "wrapper"):
            p = profile.get(name, {})
            if "shares" in p:
                shares = ", ".join(f"{k} {100 * v:.0f}%" for k, v in p["shares"].items())
                lines.append(f"  {name:8} busy {100 * p['busy_share']:.0f}% of wall time: {shares}")
            else:
                lines.append(f"  {name:8} {p}")
    lines.append(load_note())
    return "\n".join(lines)


if __name__ == "__main__":
    main()
