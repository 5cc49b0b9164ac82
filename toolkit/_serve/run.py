"""The run folder of one local predictor (config copy, logs/, tmp/), and the errors that quote its logs.

A run's errors quote its log tail and, first, what the diagnosis rules recognise in its logs: the same table
`status` runs over a pod's kserve-container log, so a local failure names the fix a cluster failure would.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .._diagnose import Hint, run_hints
from .._errors import ServeError

# Every log a run writes that the rules may read: in the pod they are all one kserve-container log.
RULE_LOGS = ("torchserve-console.log", "ts_log.log", "model_log.log", "access_log.log", "wrapper.log")
HINT_INDENT = "\n        "  # under the first hint, after the CLI's "  hint: "


@dataclass(frozen=True)
class RunFolder:
    """The run folder: config copy, logs/, tmp/; ``kept`` when the caller gave it (workdir), else removed at stop."""

    path: Path
    kept: bool

    @property
    def config(self) -> Path:
        return self.path / "config.properties"

    def log(self, name: str) -> Path:
        return self.path / "logs" / name

    def where(self, name: str) -> str:
        if self.kept:
            return f"the full log is {self.log(name)}"
        return "pass workdir= (--workdir DIR) to keep TorchServe's logs after it stops"

    def hints(self) -> list[Hint]:
        """What the diagnosis rules recognise in this run's logs (fatal hints only)."""
        return run_hints([self.log(name) for name in RULE_LOGS])

    def error(self, message: str, *, log_tail: Sequence[str] = (), hint: str | None = None) -> ServeError:
        """A ServeError with ``log_tail`` and, before ``hint``, each recognised failure as "problem: fix"."""
        texts = [h.text() for h in self.hints()] + ([hint] if hint else [])
        return ServeError(message, log_tail=log_tail, hint=HINT_INDENT.join(texts) or None)


def open_run_folder(workdir: str | Path | None, cleanup: list[Path]) -> RunFolder:
    """The caller's ``workdir`` made ready (see reuse_workdir), or a temporary folder added to ``cleanup``."""
    if workdir is None:
        path = Path(tempfile.mkdtemp(prefix="mar-build-serve-"))
        cleanup.append(path)
    else:
        path = Path(workdir).resolve()
        reuse_workdir(path)
    for sub in ("logs", "tmp"):
        (path / sub).mkdir(exist_ok=True)
    return RunFolder(path, kept=workdir is not None)


def reuse_workdir(run_dir: Path) -> None:
    """Make a caller's run folder ready: refuse one a running TorchServe uses, else drop a previous run's logs/tmp."""
    pid_file = run_dir / "tmp" / ".model_server.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        cmdline = b""
    if b"org.pytorch.serve.ModelServer" in cmdline:
        raise ServeError(
            f"{run_dir} is the run folder of a TorchServe that is still running (pid {pid})",
            hint="stop that one first (Ctrl-C in its terminal, or predictor.stop()), or pass another workdir",
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    # Old logs would be read as this run's (a worker that died last time is not dying now).
    for sub in ("logs", "tmp"):
        shutil.rmtree(run_dir / sub, ignore_errors=True)
