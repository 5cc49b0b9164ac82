"""Serving benchmark: single-instance v1 requests from N concurrent clients, ours against the limit and the peers.

    python -m benchmarks.serving [--seconds 10] [--clients 1,8,32,64] [--sets short,long]
                                 [--systems raw,ours,stock,bento,python[,sample]] [--quick]
                                 [--batch-size B] [--delay MS] [--workers W]   (ours with other settings)

For each text set (benchmarks/texts.py) and each N, wrk runs N connections (one thread each) for a bounded time
against:

- raw    the sample's model in this process: tokenise + forward batches of N texts (the limit, no HTTP at all);
- ours   the text sample built by mar-build, served by toolkit.serve (kserve wrapper + TorchServe + our handler),
         server-side batching with the sample's settings, or those given by --batch-size/--delay/--workers;
- sample (only when listed) the sample with its own settings, beside ours with overrides;
- stock  the same model archived by torch-model-archiver with a user-style BaseHandler (stock_handler.py),
         TorchServe's kserve envelope, batchSize 1, behind the same wrapper;
- bento  BentoML 1.4 adaptive batching on the same model (bento_service.py, its own venv);
- python the layout ours serves, served by mar-build's python runtime (toolkit.serve(..., runtime="python"):
         kserve's ModelServer and an adaptive batcher in one process, the handler in the model's minWorkers worker
         processes, or in that same process for one worker; no Java).

All servers run at once and the runs interleave (for each set and N: raw, then each server), so a change in the
machine's other load lands on all of them alike. Every answer is checked against the raw model's label for its
text (wrk/rotate.lua), and a mixed load sends one malformed request in ten to ours (and python): each must get a 4xx and
every good one its right label. Prints the tables and writes benchmarks/results/serving-*.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import _stacks
from ._common import RESULTS, load_note, machine_state, ratio, table, write_results
from ._load import LoadResult, run_wrk, write_lua_data
from ._model import RawModel
from .texts import MALFORMED, SETS, texts, v1_body

TARGET_CLIENTS = 32
PYTHON_IDLE_MS = 3.0  # the python runtime's one-client p50 may exceed the raw batch-1 forward by this much


# ---- reference answers -----------------------------------------------------------------------------------------
def references(sets: Sequence[str]) -> dict[str, list[str]]:
    """The raw model's label for every text of each set, each text alone (cached per model digest)."""
    stamp = json.loads((_stacks.SAMPLE / ".prepared").read_text())["digest"][:16]
    out: dict[str, list[str]] = {}
    model: RawModel | None = None
    for name in sets:
        cache = RESULTS / "cache" / f"reference-{name}-{stamp}.json"
        if cache.is_file():
            out[name] = json.loads(cache.read_text())
            continue
        model = model or RawModel()
        print(f"reference answers for the {name} texts (each alone) ...", flush=True)
        labels = [label for label, _ in model.reference(texts(name))]
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(labels))
        out[name] = labels
    return out


def bodies_file(path: Path, set_name: str, labels: list[str], *, form: str, malformed_every: int = 0) -> Path:
    """DATA.lua for one text set: v1 bodies (or BentoML's) with the label each must get."""
    bodies: list[bytes] = []
    expect: list[str] = []
    for i, (text, label) in enumerate(zip(texts(set_name), labels, strict=True)):
        if malformed_every and i % malformed_every == malformed_every - 1:
            bodies.append(MALFORMED[(i // malformed_every) % len(MALFORMED)])
            expect.append("")
            continue
        bodies.append(v1_body(text) if form == "v1" else json.dumps({"texts": [text]}).encode())
        expect.append(label)
    return write_lua_data(path, bodies, expect)


# ---- runs ------------------------------------------------------------------------------------------------------
def one_run(stack: _stacks.Stack, set_name: str, path: Path, n: int, seconds: float, warmup: float) -> LoadResult:
    """Warm up, drain, measure ``n`` clients for ``seconds``, drain; print one line."""
    if warmup:
        run_wrk(stack.url, path, n, warmup)
        drain(stack)
    r = run_wrk(stack.url, path, n, seconds, cpu_probe=stack.cpu)
    drain(stack)
    flag = "" if r.all_correct else (
        f"  WRONG {r.good_wrong}, FAILED {r.good_failed}, bad not 4xx {r.bad_other}, socket errors "
        f"{r.socket_errors}, statuses {r.statuses} {r.wrong_example}")
    print(f"  {stack.name:6} {set_name:5} N={n:<3} {r.throughput:7.1f} req/s  p50 {r.p50_ms:7.1f} ms  "
          f"p99 {r.p99_ms:7.1f} ms  wrk cpu {100 * r.wrk_cpu_s / r.seconds:4.1f}%  "
          f"other load {100 * r.other_cpu_share:3.0f}%{flag}", flush=True)
    return r


def drain(stack: _stacks.Stack) -> None:
    """Wait until the requests wrk left in the server's queue are answered: one request, queued behind them."""
    import httpx

    body = v1_body("drain") if stack.name != "bento" else json.dumps({"texts": ["drain"]}).encode()
    httpx.post(stack.url, content=body, headers={"content-type": "application/json"}, timeout=600)


def run_raw(model: RawModel, set_name: str, batch_size: int, seconds: float) -> dict[str, Any]:
    r = model.batched(texts(set_name), batch_size, seconds)
    print(f"  raw    {set_name:5} b={batch_size:<3} {r['throughput']:7.1f} texts/s  "
          f"batch p50 {r['batch_ms_p50']:.1f} ms", flush=True)
    return r


def worker_report(stack: _stacks.Stack) -> dict[str, Any]:
    """Peak RSS of each worker and how many times the model was loaded (must be once per worker)."""
    workers = _stacks.worker_processes(stack)
    loads = _stacks.model_loads(stack.run_dir / "logs", stack.runtime) if stack.run_dir else None
    return {
        "workers": len(workers),
        "worker_peak_rss_mb": [round(_stacks.peak_rss_mb(p.pid) or 0, 1) for p in workers],
        "model_loads": loads,
        "loaded_once_per_worker": loads == len(workers) if loads is not None else None,
    }


# ---- main ------------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per load run")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each load run")
    parser.add_argument("--clients", default="1,8,32,64", help="concurrent clients (= raw batch sizes)")
    parser.add_argument("--sets", default=",".join(SETS), help="text sets: short,long")
    parser.add_argument("--systems", default="raw,ours,stock,bento,python")
    parser.add_argument("--no-mixed", action="store_true", help="skip the mixed load with malformed requests")
    parser.add_argument("--batch-size", type=int, help="ours: override the sample's batch_size")
    parser.add_argument("--delay", type=int, help="ours: override the sample's max_batch_delay (ms)")
    parser.add_argument("--workers", type=int, help="ours: override the sample's workers (min = max)")
    parser.add_argument("--python-threads", type=int, help="python: MAR_BUILD_THREADS for each of its workers")
    parser.add_argument("--quick", action="store_true", help="5 s runs, N=1,32, short texts: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup, args.clients, args.sets = 5.0, 2.0, "1,32", "short"
    clients = [int(c) for c in args.clients.split(",")]
    sets = [s for s in args.sets.split(",") if s]
    systems = [s for s in args.systems.split(",") if s]
    started = time.perf_counter()
    before = machine_state()
    print(f"serving benchmark: {load_note(before=True)}", flush=True)

    _stacks.ensure_sample()
    labels = references(sets)
    work = RESULTS / "work" / "serving"
    work.mkdir(parents=True, exist_ok=True)
    data_v1 = {s: bodies_file(work / f"{s}-v1.lua", s, labels[s], form="v1") for s in sets}
    results: dict[str, Any] = {"settings": vars(args), "raw": {}, "systems": {}}

    with contextlib.ExitStack() as running:
        # Every server is up at once and the runs interleave (for each text set and N: raw, ours, stock, bento),
        # so that a change in the machine's other load lands on all of them alike.
        stacks: dict[str, _stacks.Stack] = {}
        data: dict[str, dict[str, Path]] = {}
        layout = work / "ours-layout"  # built once: ours and python serve the very same layout
        if "ours" in systems or "python" in systems:
            layout = _stacks.build_ours(layout, batch_size=args.batch_size,
                                        max_batch_delay=args.delay, workers=args.workers)
        if "ours" in systems:
            stacks["ours"] = running.enter_context(_stacks.ours(layout, work / "ours-run"))
            stacks["ours"].info["settings"] = _settings(layout)
            data["ours"] = data_v1
        if "python" in systems:  # the very layout ours serves, through the other runtime
            # --python-threads: the caller's MAR_BUILD_THREADS, which serve() passes through instead of its rule's
            env = {"MAR_BUILD_THREADS": str(args.python_threads)} if args.python_threads else None
            stacks["python"] = running.enter_context(_stacks.python(layout, work / "python-run", env=env))
            stacks["python"].info["threads"] = args.python_threads or "serve()'s rule"
            stacks["python"].info["settings"] = _settings(layout)
            data["python"] = data_v1
        if "sample" in systems:  # the sample's own settings, beside ours with overrides
            layout = _stacks.build_ours(work / "sample-layout")
            stack = running.enter_context(_stacks.ours(layout, work / "sample-run"))
            stack.name = "sample"
            stack.info["settings"] = _settings(layout)
            stacks["sample"] = stack
            data["sample"] = data_v1
        if "stock" in systems:
            layout = _stacks.build_stock(work / "stock-layout")
            stacks["stock"] = running.enter_context(_stacks.stock(layout, work / "stock-run"))
            data["stock"] = data_v1
        if "bento" in systems:
            stacks["bento"] = running.enter_context(_stacks.bento(work / "bento-run"))
            data["bento"] = {s: bodies_file(work / f"{s}-bento.lua", s, labels[s], form="bento") for s in sets}
        for name, stack in stacks.items():
            print(f"{name}: {stack.url} {stack.info.get('version', '')}", flush=True)
        model = RawModel() if "raw" in systems else None
        runs: dict[str, dict[str, dict[int, LoadResult]]] = {name: {s: {} for s in sets} for name in stacks}
        for set_name in sets:
            for n in clients:
                if model is not None:
                    results["raw"].setdefault(set_name, {})[n] = run_raw(model, set_name, n, max(3.0, args.seconds / 2))
                for name, stack in stacks.items():
                    runs[name][set_name][n] = one_run(stack, set_name, data[name][set_name], n, args.seconds,
                                                      args.warmup)
        for name, stack in stacks.items():
            results["systems"][name] = {"runs": runs[name], **stack.info}
            if name != "bento":
                results["systems"][name].update(worker_report(stack))
        mixed = [name for name in ("ours", "python") if name in stacks] if not args.no_mixed else []
        if mixed:
            mixed_set = sets[0]
            path = bodies_file(work / "mixed.lua", mixed_set, labels[mixed_set], form="v1", malformed_every=10)
            n = TARGET_CLIENTS if TARGET_CLIENTS in clients else max(clients)
            print(f"mixed load ({mixed_set} texts, 1 in 10 malformed):", flush=True)
            for name in mixed:
                results["systems"][name]["mixed"] = one_run(stacks[name], mixed_set, path, n, args.seconds,
                                                            args.warmup)
                results["systems"][name].update(worker_report(stacks[name]))

    results["seconds_total"] = round(time.perf_counter() - started, 1)
    results["machine_before"] = before
    report = render(results, sets, clients)
    print(report)
    path = write_results("serving", _jsonable(results) | {"report": report})
    print(f"\nwrote {path.relative_to(RESULTS.parent.parent)} ({results['seconds_total']:.0f} s in all; {load_note()})")
    return results


def _settings(layout: Path) -> dict[str, Any]:
    """The model_snapshot settings a layout serves with (batchSize, maxBatchDelay, workers)."""
    from toolkit._layout.read import read_layout

    entry = read_layout(layout).entries[0]
    return {k: entry.settings.get(k) for k in ("batchSize", "maxBatchDelay", "minWorkers", "maxWorkers")}


def _jsonable(value: Any) -> Any:
    if isinstance(value, LoadResult):
        return value.summary()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# ---- report ----------------------------------------------------------------------------------------------------
SYSTEMS = ("ours", "sample", "stock", "bento", "python")


def _run(systems: dict[str, Any], name: str, set_name: str, n: int) -> LoadResult | None:
    run: LoadResult | None = systems.get(name, {}).get("runs", {}).get(set_name, {}).get(n)
    return run


def _tp(run: LoadResult | None) -> float | None:
    return run.throughput if run else None


def render(results: dict[str, Any], sets: Sequence[str], clients: Sequence[int]) -> str:
    systems = results["systems"]
    lines: list[str] = []
    for set_name in sets:
        lines += [f"\n{set_name} texts: requests/s (one text each) and latency; raw = in-process batches of N",
                  _set_table(results, set_name, clients)]
    lines += _checks(systems)
    for name in ("ours", "python"):
        lines += _mixed(systems, name)
    for name in ("ours", "sample", "stock", "python"):
        info = systems.get(name)
        if info and "workers" in info:
            threads = f"; torch threads {info['threads']}" if "threads" in info else ""
            lines.append(f"\n{name}: {info.get('settings') or 'stock settings'}{threads}; {info['workers']} worker(s), "
                         f"peak RSS {info['worker_peak_rss_mb']} MiB, model loaded {info['model_loads']} time(s)")
    lines += _python_vs(results, sets, clients)
    if "ours" in systems and TARGET_CLIENTS in clients:
        lines.append(f"\ntargets at N={TARGET_CLIENTS}:")
        for set_name in sets:
            o = _run(systems, "ours", set_name, TARGET_CLIENTS)
            if o is None:
                continue
            raw_tp = results["raw"].get(set_name, {}).get(TARGET_CLIENTS, {}).get("throughput")
            for what, value, goal in (
                ("ours >= 0.8 x raw", ratio(o.throughput, raw_tp), 0.8),
                ("ours >= 3 x stock", ratio(o.throughput, _tp(_run(systems, "stock", set_name, TARGET_CLIENTS))), 3.0),
                ("ours > bento", ratio(o.throughput, _tp(_run(systems, "bento", set_name, TARGET_CLIENTS))), 1.0),
            ):
                lines.append(_verdict(set_name, what, value, goal, strict=goal == 1.0))
    lines.append(f"\n{load_note()}")
    return "\n".join(lines)


def _verdict(set_name: str, what: str, value: float | None, goal: float, *, strict: bool = False,
             at_most: bool = False) -> str:
    if value is None:
        verdict = "-"
    elif at_most:
        verdict = "met" if value <= goal else "NOT met"
    else:
        verdict = "met" if value >= goal and (not strict or value > goal) else "NOT met"
    return f"  {set_name:5} {what:30} {value if value is not None else '-':>6}  {verdict}"


def _set_table(results: dict[str, Any], set_name: str, clients: Sequence[int]) -> str:
    systems, raw = results["systems"], results["raw"]
    headers = ["N", "raw/s"]
    names = [n for n in SYSTEMS if n in systems]
    for name in names:
        headers += [f"{name}/s", "p50 ms", "p99 ms"]
    if "ours" in systems:
        headers += ["ours/raw", "ours/stock", "ours/bento"]
    if "python" in systems:
        headers += ["py/raw", "py/ours"]
    rows = []
    for n in clients:
        raw_tp = raw.get(set_name, {}).get(n, {}).get("throughput")
        row: list[Any] = [n, raw_tp]
        tps: dict[str, float | None] = {}
        for name in names:
            r = _run(systems, name, set_name, n)
            tps[name] = _tp(r)
            row += [_tp(r), r.p50_ms if r else None, r.p99_ms if r else None]
        if "ours" in systems:
            row += [ratio(tps.get("ours"), raw_tp), ratio(tps.get("ours"), tps.get("stock")),
                    ratio(tps.get("ours"), tps.get("bento"))]
        if "python" in systems:
            row += [ratio(tps.get("python"), raw_tp), ratio(tps.get("python"), tps.get("ours"))]
        rows.append(row)
    return table(headers, rows)


def _checks(systems: dict[str, Any]) -> list[str]:
    check_rows = []
    for name, info in systems.items():
        for set_name, runs in info["runs"].items():
            for n, r in runs.items():
                per_request = {k: 1000 * v / max(1, r.requests) for k, v in r.server_cpu.items()}
                split = "/".join(f"{per_request[k]:.1f}" for k in ("wrapper", "runtime", "frontend", "worker")
                                 if k in per_request) or "-"
                check_rows.append([name, set_name, n, r.requests, r.good_ok, r.good_wrong, r.good_failed,
                                   r.socket_errors, round(100 * r.wrk_cpu_s / r.seconds, 1),
                                   round(sum(per_request.values()), 1), split, round(100 * r.other_cpu_share)])
    return ["\nanswers checked (every one against the raw model's label) and what the load cost "
            "(python: its server process / its workers)",
            table(["system", "set", "N", "requests", "right", "wrong", "failed", "socket err", "wrk cpu %",
                   "server cpu ms/req", "wrapper/java/worker", "other load %"], check_rows)]


def _mixed(systems: dict[str, Any], name: str) -> list[str]:
    info = systems.get(name)
    if not info or info.get("mixed") is None:
        return []
    m: LoadResult = info["mixed"]
    clean = next(iter(info["runs"].values())).get(m.connections)
    return [f"\n{name}: mixed load, N={m.connections}: one request in ten malformed",
            table(["good req/s", "clean req/s", "good/clean", "good right", "good wrong/failed",
                   "bad -> 4xx", "bad -> other", "p99 ms"],
                  [[m.good_throughput, _tp(clean), ratio(m.good_throughput, _tp(clean)), m.good_ok,
                    m.good_wrong + m.good_failed, m.bad_4xx, m.bad_other, m.p99_ms]])]


def _python_vs(results: dict[str, Any], sets: Sequence[str], clients: Sequence[int]) -> list[str]:
    """The python runtime's targets: N=32 against raw and the TorchServe path, one client against batch-1 raw."""
    systems, raw = results["systems"], results["raw"]
    if "python" not in systems:
        return []
    lines = ["\npython runtime vs raw and the TorchServe path (ours):"]
    for set_name in sets:
        if TARGET_CLIENTS in clients:
            p = _run(systems, "python", set_name, TARGET_CLIENTS)
            raw_tp = raw.get(set_name, {}).get(TARGET_CLIENTS, {}).get("throughput")
            lines.append(_verdict(set_name, f"N={TARGET_CLIENTS} python >= 0.85 x raw", ratio(_tp(p), raw_tp), 0.85))
            lines.append(_verdict(set_name, f"N={TARGET_CLIENTS} python >= 1.3 x ours",
                                  ratio(_tp(p), _tp(_run(systems, "ours", set_name, TARGET_CLIENTS))), 1.3))
        if 1 in clients:
            p1 = _run(systems, "python", set_name, 1)
            o1 = _run(systems, "ours", set_name, 1)
            raw_ms = raw.get(set_name, {}).get(1, {}).get("batch_ms_p50")
            gap = None if p1 is None or raw_ms is None else round(p1.p50_ms - raw_ms, 2)
            lines.append(f"  {set_name:5} N=1 p50: python {round(p1.p50_ms, 2) if p1 else '-'} ms, ours "
                         f"{round(o1.p50_ms, 2) if o1 else '-'} ms, raw batch-1 forward "
                         f"{raw_ms if raw_ms is not None else '-'} ms")
            lines.append(_verdict(set_name, f"N=1 python p50 - raw <= {PYTHON_IDLE_MS:g} ms", gap, PYTHON_IDLE_MS,
                                  at_most=True))
    return lines


if __name__ == "__main__":
    main()
