"""What every benchmark shares: tables, results files, machine state, processes started and stopped by us."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
RESULTS = BENCH / "results"
PYTHON = sys.executable


# ---- reporting -------------------------------------------------------------------------------------------------
def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain text table, right-aligned numbers, left-aligned text."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(headers)]

    def line(values: Sequence[str], numeric: Sequence[bool]) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric, strict=True))

    numeric = [all(_is_number(row[i]) for row in rows) and bool(rows) for i in range(len(headers))]
    out = [line([str(h) for h in headers], numeric), "  ".join("-" * w for w in widths)]
    out += [line(r, numeric) for r in cells]
    return "\n".join(out)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) or v is None


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else round(a / b, 2)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def machine_state() -> dict[str, Any]:
    """Load average, cores and memory now: benchmarks on a shared machine say how shared it was."""
    state: dict[str, Any] = {
        "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    with contextlib.suppress(OSError, ValueError):
        meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        state["mem_available_gb"] = round(int(meminfo["MemAvailable"].split()[0]) / 2**20, 1)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        state["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    return state


def write_results(name: str, data: dict[str, Any]) -> Path:
    """Write ``data`` (with the machine state) to benchmarks/results/NAME-<time>.json and NAME-latest.json."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "machine": machine_state(), **data}
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = json.dumps(data, indent=2, default=str) + "\n"
    path = RESULTS / f"{name}-{stamp}.json"
    for target in (path, RESULTS / f"{name}-latest.json"):
        tmp = target.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    return path


def load_note(*, before: bool = False) -> str:
    """The load average, as a line for a report; ``before`` (nothing of ours running yet) judges it too."""
    load = os.getloadavg()
    cpus = os.cpu_count() or 1
    note = f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} on {cpus} cores"
    if before and load[0] > 0.5 * cpus:
        note += " (the machine is busy with other work: figures will be lower and noisier than on an idle one)"
    elif not before:
        note += " (this benchmark's own processes included)"
    return note


# ---- CPU accounting --------------------------------------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return (total - idle) / _TICK, total / _TICK


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants."""
    import psutil

    total = 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            t = p.cpu_times()
            total += t.user + t.system
    return total


# ---- processes and ports ---------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Started:
    """A process (group) this benchmark started; ``stop()`` ends exactly that group."""

    def __init__(self, args: Sequence[str], *, log: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            list(args), stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # the group may outlive its leader (TorchServe's java, a worker): end whatever is left in it
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self._log.close()


def wait_http(url: str, *, timeout: float, ok: Sequence[int] = (200,), proc: Started | None = None,
              method: str = "GET", body: bytes | None = None) -> float:
    """Poll ``url`` until it answers one of ``ok``; return the seconds waited. Raises RuntimeError on timeout."""
    import httpx

    start = time.perf_counter()
    last = ""
    while time.perf_counter() - start < timeout:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"the server died before {url} answered; see {proc.log}")
        try:
            r = httpx.request(method, url, content=body, timeout=5,
                              headers={"content-type": "application/json"} if body else None)
            if r.status_code in ok:
                return time.perf_counter() - start
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer {list(ok)} within {timeout:.0f} s (last: {last})")


def drop_file_cache(path: Path) -> None:
    """Ask the kernel to forget ``path``'s cached pages (this file only: the machine is shared)."""
    with path.open("rb") as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def in_page_cache(path: Path) -> float | None:
    """Share of ``path``'s pages in the page cache (0..1), via mmap + mincore; None when it cannot be read."""
    import ctypes
    import mmap

    size = path.stat().st_size
    if size == 0:
        return 1.0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    vec = (ctypes.c_ubyte * pages)()
    with path.open("rb") as f:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, f.fileno(), 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            return None
        try:
            if libc.mincore(addr, size, vec) != 0:
                return None
        finally:
            libc.munmap(addr, size)
    return sum(v & 1 for v in vec) / pages
