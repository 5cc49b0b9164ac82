"""Cold start: `serve` to the first correct answer for each sample, with its parts, and each worker's peak RSS.

    python -m benchmarks.cold_start [--samples text-classification,embeddings,image-classification,custom]
                                    [--runtimes torchserve,python]

For each sample: prepare.py (does nothing when the model is there), `toolkit.build` into a fresh layout, then,
timed from the call: `toolkit.serve(layout)` until it returns (every model ready behind the wrapper), then the
sample's sample.json as one v1 request, whose answer is checked (expected.json's labels; for embeddings, the
in-process MiniLM's vectors). The parts come from TorchServe's own log lines (timestamps to the millisecond):

    torchserve start   serve() called -> the worker's command line (preflight, JVM start, config, snapshot and
                       archive extraction)
    (extract)          within it: snapshot validated -> model version registered (the frontend unzips the .mar)
    worker start       worker command line -> "Torch worker started" (Python, ts imports)
    model load         LOAD sent to the worker -> its answer (handler import, tokenizer and weights load)
    ready seen         model loaded -> serve() returns (the wrapper's and serve()'s readiness polls)
    first answer       the first request, end to end; "first forward" is TorchServe's PredictionTime for it

Then 16 concurrent copies of the request exercise batching, after which the worker's VmHWM (peak RSS) is read,
and the handler's "loaded" log lines are counted: the model must be loaded once per worker.

``--runtimes python`` (or both, the default) serves the same layout with ``serve(..., runtime="python")``: no
Java, so its parts come from its own log (runtime.log): "ts start" is serve() called -> the runtime's first log
line (interpreter and kserve imports), "load" its "loaded in" figure (archive unpacked, the model's workers started
and loaded in parallel: handler imported, weights loaded); its worker processes (or its one process, for a model of
one worker) are the workers whose peak RSS is read. A last table
puts each sample's python total against the TorchServe path's (target: <= 0.5 x).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import _stacks
from ._common import RESULTS, ROOT, free_port, load_note, ratio, table, write_results

SAMPLES = ("text-classification", "embeddings", "image-classification", "custom")
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d,\d{3})")
_PY_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})")  # logging's default asctime
_PY_LOADED = re.compile(r"model (\S+) is ready \(\d+ workers?, loaded in ([\d.]+) s\)")
RUNTIMES = ("torchserve", "python")
PYTHON_TARGET = 0.5  # python's serve-to-first-answer at most this share of the TorchServe path's


def _when(line: str) -> float | None:
    match = _STAMP.match(line)
    if match is None:
        return None
    return dt.datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S,%f").timestamp()


def log_parts(log: Path, model: str) -> dict[str, float | None]:
    """Wall-clock times (epoch s) of the startup steps in TorchServe's ts_log.log."""
    marks: dict[str, float | None] = dict.fromkeys(
        ("validated", "registered", "worker_cmd", "worker_started", "load_sent", "load_done", "first_prediction_ms"))
    load_pending = False
    for line in log.read_text(errors="replace").splitlines():
        t = _when(line)
        if t is None:
            continue
        if marks["validated"] is None and "validated successfully" in line:
            marks["validated"] = t
        elif marks["registered"] is None and "Adding new version" in line and f"for model {model}" in line:
            marks["registered"] = t
        elif marks["worker_cmd"] is None and "Worker cmdline" in line:
            marks["worker_cmd"] = t
        elif marks["worker_started"] is None and "Torch worker started" in line:
            marks["worker_started"] = t
        elif marks["load_sent"] is None and "Flushing req.cmd LOAD" in line:
            marks["load_sent"] = t
            load_pending = True
        elif load_pending and "Backend response time" in line:
            marks["load_done"] = t
            load_pending = False
        elif marks["first_prediction_ms"] is None and "PredictionTime.Milliseconds:" in line:
            marks["first_prediction_ms"] = float(line.split("PredictionTime.Milliseconds:")[1].split("|")[0])
    return marks


def python_log_parts(log: Path, model: str) -> dict[str, float | None]:
    """The python runtime's first log line (epoch s), and its model's load: when done (epoch s), how long (s)."""
    marks: dict[str, float | None] = dict.fromkeys(("first_line", "load_done", "load_s"))
    for line in log.read_text(errors="replace").splitlines():
        match = _PY_STAMP.match(line)
        if match is None:
            continue
        t = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if marks["first_line"] is None:
            marks["first_line"] = t
        loaded = _PY_LOADED.search(line)
        if loaded and loaded.group(1) == model and marks["load_done"] is None:
            marks["load_done"], marks["load_s"] = t, float(loaded.group(2))
    return marks


def _span(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(b - a, 2)


# ---- answers ---------------------------------------------------------------------------------------------------
def expected_labels(folder: Path) -> list[str] | None:
    path = folder / "expected.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    for value in data.values():
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return None


def label_of(prediction: Any) -> Any:
    """The class a prediction names: a bare label, the best of a top-k list, or {"class"/"label": ...}."""
    if isinstance(prediction, list) and prediction and isinstance(prediction[0], dict):
        prediction = prediction[0]
    if isinstance(prediction, dict):
        return prediction.get("class", prediction.get("label"))
    return prediction


def embedding_reference(model_dir: Path, texts: list[str]) -> list[list[float]]:
    """Mean-pooled, L2-normalised MiniLM vectors in this process (sentence-transformers' recipe)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()
    with torch.inference_mode():
        enc = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        out = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1).tolist()


def check_answer(sample: str, folder: Path, request: dict[str, Any], answer: dict[str, Any]) -> tuple[bool, str]:
    predictions = answer.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != len(request["instances"]):
        return False, f"expected {len(request['instances'])} predictions, got {str(answer)[:200]}"
    labels = expected_labels(folder)
    if labels is not None:
        got = [label_of(p) for p in predictions]
        return got == labels, f"{sum(g == e for g, e in zip(got, labels, strict=True))}/{len(labels)} labels right"
    if sample == "embeddings":
        ref = embedding_reference(folder / "model", list(request["instances"]))
        cos = [sum(a * b for a, b in zip(p, r, strict=True)) for p, r in zip(predictions, ref, strict=True)]
        return min(cos) > 0.999, f"cosine to in-process MiniLM >= {min(cos):.5f}"
    return True, "answer shape only (no expected.json)"


async def _burst(url: str, body: bytes, n: int) -> list[int]:
    import httpx

    async with httpx.AsyncClient(timeout=300) as client:
        responses = await asyncio.gather(*[client.post(url, content=body, headers={
            "content-type": "application/json"}) for _ in range(n)])
    return [r.status_code for r in responses]


# ---- one sample ------------------------------------------------------------------------------------------------
def cold_start(sample: str, work: Path, runtime: str = "torchserve") -> dict[str, Any]:
    import httpx

    from toolkit import build, serve

    folder = ROOT / "samples" / sample
    prep = subprocess.run([sys.executable, str(folder / "prepare.py")], capture_output=True, text=True)
    if prep.returncode != 0:
        return {"sample": sample, "error": f"prepare.py failed: {prep.stderr.strip()[-300:]}"}
    t = time.perf_counter()
    result = build(folder, work / f"{sample}-{runtime}-layout")
    build_s = time.perf_counter() - t
    request = json.loads((folder / "sample.json").read_text())
    body = json.dumps(request).encode()
    run_dir = work / f"{sample}-{runtime}-run"
    events: list[tuple[str, float]] = []
    t0_wall, t0 = time.time(), time.perf_counter()
    predictor = serve(result.layout, port=free_port(), workdir=run_dir, runtime=runtime,  # type: ignore[arg-type]
                      on_event=lambda e: events.append((e.kind, time.perf_counter() - t0)))
    with predictor:
        ready_s = time.perf_counter() - t0
        ready_wall = time.time()
        t1 = time.perf_counter()
        response = httpx.post(predictor.predict_url(result.name), content=body,
                              headers={"content-type": "application/json"}, timeout=300)
        first_s = time.perf_counter() - t1
        ok, detail = (False, f"{response.status_code} {response.text[:200]}")
        if response.status_code == 200:
            ok, detail = check_answer(sample, folder, request, response.json())
        statuses = asyncio.run(_burst(predictor.predict_url(result.name), body, 16))
        stack = _stacks.Stack(sample, predictor.url, list(predictor.pids.values()), run_dir, runtime=runtime)
        workers = _stacks.worker_processes(stack)
        rss = [round(_stacks.peak_rss_mb(p.pid) or 0, 1) for p in workers]
        loads = _stacks.model_loads(run_dir / "logs", runtime)
        if runtime == "python":
            py = python_log_parts(predictor.log_path, result.name)
            marks = dict.fromkeys(("validated", "registered", "worker_cmd", "worker_started", "load_sent",
                                   "first_prediction_ms"))
            marks.update(worker_cmd=py["first_line"], load_done=py["load_done"],
                         load_sent=None if py["load_done"] is None or py["load_s"] is None
                         else py["load_done"] - py["load_s"])
        else:
            marks = log_parts(predictor.log_path, result.name)
    parts = {
        "torchserve start": _span(t0_wall, marks["worker_cmd"]),
        "archive extract": _span(marks["validated"], marks["registered"]),
        "worker start": _span(marks["worker_cmd"], marks["worker_started"]),
        "model load": _span(marks["load_sent"], marks["load_done"]),
        "ready seen": _span(marks["load_done"], ready_wall),
        "serve() total": round(ready_s, 2),
        "first answer": round(first_s, 2),
        "first forward": round(marks["first_prediction_ms"] / 1000, 4) if marks["first_prediction_ms"] else None,
        "to first answer": round(ready_s + first_s, 2),
    }
    return {
        "sample": sample, "runtime": runtime, "model": result.name, "archive_mb": round(result.archive_size / 1e6, 2),
        "build_s": round(build_s, 2), "parts_s": parts, "answer_ok": ok, "answer_detail": detail,
        "burst_statuses": sorted(set(statuses)), "workers": len(workers), "worker_peak_rss_mb": rss,
        "model_loads": loads, "loaded_once_per_worker": loads == len(workers), "t0": t0_wall,
        "serve_events_s": [(kind, round(s, 2)) for kind, s in events],
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cold_start", description=__doc__.splitlines()[0])
    parser.add_argument("--samples", default=",".join(SAMPLES))
    parser.add_argument("--runtimes", default=",".join(RUNTIMES), help="torchserve, python or both")
    args = parser.parse_args(argv)
    runtimes = [r for r in args.runtimes.split(",") if r]
    if unknown := set(runtimes) - set(RUNTIMES):
        parser.error(f"unknown runtimes {sorted(unknown)}: choose among {', '.join(RUNTIMES)}")
    started = time.perf_counter()
    print(f"cold start benchmark: {load_note(before=True)}", flush=True)
    work = RESULTS / "work" / "cold-start"
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rows, results = [], []
    for sample in [s for s in args.samples.split(",") if s]:
        for runtime in runtimes:
            r = cold_start(sample, work, runtime)
            results.append(r)
            if "error" in r:
                print(f"  {sample} ({runtime}): {r['error']}", flush=True)
                continue
            p = r["parts_s"]
            print(f"  {sample} ({runtime}): first answer after {p['to first answer']} s ({r['answer_detail']})",
                  flush=True)
            rows.append([sample, runtime, r["archive_mb"], p["torchserve start"], p["archive extract"],
                         p["worker start"], p["model load"], p["ready seen"], p["first answer"],
                         None if p["first forward"] is None else round(1000 * p["first forward"], 1),
                         p["to first answer"], "yes" if r["answer_ok"] else "NO",
                         max(r["worker_peak_rss_mb"], default=None), f"{r['model_loads']}/{r['workers']}"])
    report = "\n".join([
        "\ncold start: serve() to the first correct answer, seconds (parts from TorchServe's log, in sequence; "
        "(extract) is part of ts start; python: its own log, ts start = its first log line)",
        table(["sample", "runtime", "mar MB", "ts start", "(extract)", "worker", "load", "ready seen", "1st answer",
               "1st fwd ms", "total", "correct", "peak RSS MiB", "loads/workers"], rows),
        *_python_vs_torchserve(results),
        load_note(),
    ])
    print(report)
    out = {"samples": results, "report": report, "seconds_total": round(time.perf_counter() - started, 1)}
    path = write_results("cold_start", out)
    print(f"wrote {path.relative_to(RESULTS.parent.parent)} ({out['seconds_total']:.0f} s in all)")
    return out


def _python_vs_torchserve(results: list[dict[str, Any]]) -> list[str]:
    """Per sample measured with both runtimes: python's serve-to-first-answer over the TorchServe path's."""
    by = {(r["sample"], r.get("runtime")): r for r in results if "error" not in r}
    rows = []
    for sample in dict.fromkeys(r["sample"] for r in results):
        ts, py = by.get((sample, "torchserve")), by.get((sample, "python"))
        if ts is None or py is None:
            continue
        a, b = py["parts_s"]["to first answer"], ts["parts_s"]["to first answer"]
        share = ratio(a, b)
        verdict = "-" if share is None else ("met" if share <= PYTHON_TARGET and py["answer_ok"] else "NOT met")
        rows.append([sample, a, b, share, f"<= {PYTHON_TARGET:g}", verdict,
                     max(py["worker_peak_rss_mb"], default=None), max(ts["worker_peak_rss_mb"], default=None)])
    if not rows:
        return []
    return ["\npython runtime vs the TorchServe path: serve() to first correct answer (s) and peak RSS per worker",
            table(["sample", "python s", "torchserve s", "python/ts", "target", "verdict", "python RSS MiB",
                   "ts worker RSS MiB"], rows)]


if __name__ == "__main__":
    main()
