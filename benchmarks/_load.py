"""The load generator: wrk (C, event loop) with benchmarks/wrk/rotate.lua, and what a load run cost."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._common import BENCH, machine_cpu_seconds

LUA = BENCH / "wrk" / "rotate.lua"


def require_wrk() -> str:
    """The wrk binary; installs Debian's package when missing and we are root, else exits saying how."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: apt-get install -y wrk", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, stdout=subprocess.DEVNULL)
        if not shutil.which("wrk"):
            subprocess.run(["apt-get", "update", "-q"], check=False, stdout=subprocess.DEVNULL)
            subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, stdout=subprocess.DEVNULL)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit("wrk is not installed: run `sudo apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk`")


def lua_string(data: bytes) -> str:
    """``data`` as a Lua string literal (decimal escapes for anything but printable ASCII)."""
    out = []
    for b in data:
        c = chr(b)
        out.append(c if 32 <= b < 127 and c not in '"\\' else f"\\{b:03d}")
    return '"' + "".join(out) + '"'


def write_lua_data(path: Path, bodies: Sequence[bytes], expect: Sequence[str]) -> Path:
    """The DATA.lua that rotate.lua loads: request bodies and the label expected for each ("" = must be 4xx)."""
    lines = ["return {", "bodies = {"]
    lines += [f"  {lua_string(b)}," for b in bodies]
    lines += ["},", "expect = {"]
    lines += [f"  {lua_string(e.encode())}," for e in expect]
    lines += ["},", "}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class LoadResult:
    connections: int
    seconds: float
    requests: int
    good_ok: int
    good_wrong: int
    good_failed: int
    bad_4xx: int
    bad_other: int
    errors: dict[str, int]
    statuses: dict[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    wrk_cpu_s: float
    server_cpu: dict[str, float]
    machine_busy_s: float
    wrong_example: str

    @property
    def throughput(self) -> float:
        """Answered requests per second (every status)."""
        return self.requests / self.seconds

    @property
    def good_throughput(self) -> float:
        """Correctly answered good requests per second."""
        return self.good_ok / self.seconds

    @property
    def socket_errors(self) -> int:
        """Connect/read/write errors and timeouts (wrk's "status" errors are the 4xx/5xx, checked per body)."""
        return sum(v for k, v in self.errors.items() if k != "status")

    @property
    def all_correct(self) -> bool:
        return self.good_wrong == 0 and self.good_failed == 0 and self.bad_other == 0 and not self.socket_errors

    @property
    def server_cpu_s(self) -> float:
        return sum(self.server_cpu.values())

    @property
    def other_cpu_share(self) -> float:
        """Share of the machine's CPU used by other work during the run (not the server, not wrk)."""
        cpus = os.cpu_count() or 1
        other = self.machine_busy_s - self.server_cpu_s - self.wrk_cpu_s
        return max(0.0, other) / (cpus * self.seconds)

    def summary(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d.update(
            server_cpu_s=round(self.server_cpu_s, 3),
            throughput=round(self.throughput, 1),
            good_throughput=round(self.good_throughput, 1),
            all_correct=self.all_correct,
            wrk_cpu_share=round(self.wrk_cpu_s / self.seconds, 3),
            other_cpu_share=round(self.other_cpu_share, 3),
        )
        return d


def run_wrk(
    url: str,
    data: Path,
    connections: int,
    seconds: float,
    *,
    cpu_probe: Callable[[], dict[str, float]] | None = None,
    timeout_s: int = 60,
) -> LoadResult:
    """One bounded wrk run: ``connections`` clients (one thread each) for ``seconds`` against ``url``.

    ``cpu_probe`` returns the CPU seconds used so far by each part of the server; the run reports the deltas.
    """
    wrk = require_wrk()
    cmd = [wrk, "-t", str(connections), "-c", str(connections), "-d", f"{seconds:g}s",
           "--timeout", f"{timeout_s}s", "-s", str(LUA), url, "--", str(data)]
    server_before = cpu_probe() if cpu_probe else {}
    busy_before, _ = machine_cpu_seconds()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # wait4 gives the CPU time wrk itself used: the load generator's own cost
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    elapsed = time.perf_counter() - started
    busy_after, _ = machine_cpu_seconds()
    server_after = cpu_probe() if cpu_probe else {}
    line = next((ln for ln in out.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed (exit {proc.returncode}): {err.strip() or out.strip()}")
    r = json.loads(line[len("RESULT "):])
    lat = r["latency_us"]
    return LoadResult(
        connections=connections,
        seconds=r["duration_us"] / 1e6,
        requests=r["requests"],
        good_ok=r["good_ok"],
        good_wrong=r["good_wrong"],
        good_failed=r["good_failed"],
        bad_4xx=r["bad_4xx"],
        bad_other=r["bad_other"],
        errors=r["errors"],
        statuses=r["statuses"],
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        max_ms=lat["max"] / 1000,
        wrk_cpu_s=usage.ru_utime + usage.ru_stime,
        server_cpu={k: round(server_after[k] - server_before.get(k, 0.0), 3) for k in server_after},
        machine_busy_s=busy_after - busy_before if elapsed > 0 else 0.0,
        wrong_example=r["wrong_example"],
    )
