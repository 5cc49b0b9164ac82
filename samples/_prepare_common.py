"""What every samples/*/prepare.py shares: the inputs digest, the up-to-date stamp, an atomic model folder.

A prepare script names its inputs (its data files, itself, the values it reads from mar.yaml, the library
versions that shape the result) and a function that writes the model folder and returns what it measured.
``run()`` hashes the inputs; when the stamp beside the model folder (``.prepared``) records the same digest and
the folder still holds the files the stamp lists, nothing runs. Otherwise the folder is written into a temp
sibling and swapped in, and the stamp is written last: a failed or interrupted run leaves the previous folder
with the stamp of its own inputs, or no stamp at all, never a half-written folder that looks current.

Sample scripts print what they do: they are what a person runs, not library code.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SAMPLES = Path(__file__).resolve().parent
COMMON = Path(__file__).resolve()
STAMP_NAME = ".prepared"
METRICS_NAME = "metrics.json"
EXAMPLES = ("sample.json", "expected.json")  # a request for the sample and the answers it must get


@dataclass(frozen=True)
class Prepared:
    """The outcome of one prepare run: where the model folder is, what was measured, whether work was skipped."""

    model_dir: Path
    metrics: dict[str, Any]
    skipped: bool
    digest: str


Build = Callable[[Path], dict[str, Any]]


def read_spec(sample_dir: Path) -> dict[str, Any]:
    """The sample's mar.yaml as a plain mapping (load_spec would insist on the model folder this is to write)."""
    with (sample_dir / "mar.yaml").open(encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    if not isinstance(raw, dict):
        raise SystemExit(f"{sample_dir / 'mar.yaml'} is not a mapping")
    return raw


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def library_versions(*dists: str) -> dict[str, str]:
    """Installed versions of ``dists`` (a different torch or transformers may train a different model)."""
    return {d: importlib.metadata.version(d) for d in dists}


def inputs_digest(files: Iterable[Path], values: Mapping[str, Any]) -> str:
    """One hash over the files' contents (named relative to samples/ when inside it) and JSON-able values."""
    h = hashlib.sha256()
    for path in sorted(Path(p).resolve() for p in files):
        name = path.relative_to(SAMPLES).as_posix() if path.is_relative_to(SAMPLES) else path.name
        h.update(f"file {name} {file_digest(path)}\n".encode())
    h.update(json.dumps(values, sort_keys=True, default=str).encode())
    return h.hexdigest()


def seed_everything(seed: int, threads: int) -> None:
    """Seed Python, NumPy and torch and fix torch's thread count, so a run is reproducible.

    The thread count is fixed, not os.cpu_count(): float sums depend on how work is split across threads, and
    a sample must come out the same on a laptop, in CI and on a 2-core notebook.
    """
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)


def load_module_class(path: Path) -> type:
    """The one nn.Module class that the file ``path`` defines (loaded from the file, as the handler loads it)."""
    import importlib.util
    import inspect

    import torch

    spec = importlib.util.spec_from_file_location(f"sample_net_{abs(hash(path))}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    classes = [c for _, c in inspect.getmembers(module, inspect.isclass)
               if issubclass(c, torch.nn.Module) and c.__module__ == module.__name__]
    if len(classes) != 1:
        raise SystemExit(f"{path} must define exactly one nn.Module class, found {len(classes)}")
    return classes[0]


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def has_examples(sample_dir: Path) -> bool:
    return all((sample_dir / name).is_file() for name in EXAMPLES)


def write_examples(sample_dir: Path, instances: Sequence[Any], expected: Mapping[str, Any]) -> None:
    """sample.json (a v1 request, one instance a line) and expected.json, each written only when its text differs
    (a rerun changes no file)."""
    sample = '{"instances": [\n  ' + ",\n  ".join(json.dumps(i) for i in instances) + "\n]}\n"
    for name, text in zip(EXAMPLES, (sample, json.dumps(expected) + "\n"), strict=True):
        path = sample_dir / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")


def stamp_path(model_dir: Path) -> Path:
    return model_dir.parent / STAMP_NAME


def _listing(model_dir: Path) -> dict[str, int]:
    return {
        p.relative_to(model_dir).as_posix(): p.stat().st_size
        for p in sorted(model_dir.rglob("*"))
        if p.is_file()
    }


def is_up_to_date(model_dir: Path, digest: str) -> bool:
    """True when the stamp records ``digest`` and every file it lists is there with the recorded size."""
    try:
        stamp = json.loads(stamp_path(model_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(stamp, dict) or stamp.get("digest") != digest or not model_dir.is_dir():
        return False
    files = stamp.get("files")
    if not isinstance(files, dict) or METRICS_NAME not in files:
        return False
    return all((model_dir / rel).is_file() and (model_dir / rel).stat().st_size == size for rel, size in files.items())


def read_metrics(model_dir: Path) -> dict[str, Any]:
    data = json.loads((model_dir / METRICS_NAME).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def prepare(model_dir: Path, digest: str, build: Build, *, force: bool = False) -> Prepared:
    """Write ``model_dir`` with ``build`` unless its stamp already records ``digest`` (or ``force``).

    ``build(tmp)`` writes the model files into an empty folder ``tmp`` and returns the metrics it measured;
    they are saved as ``metrics.json`` in the folder. The finished folder replaces ``model_dir`` by renames.
    Two runs for the same folder (a test session and the demo, say) take turns: the second finds it current.
    """
    model_dir = model_dir.resolve()
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(model_dir.parent):
        if not force and is_up_to_date(model_dir, digest):
            return Prepared(model_dir, read_metrics(model_dir), skipped=True, digest=digest)
        metrics = _replace_folder(model_dir, digest, build)
    return Prepared(model_dir, metrics, skipped=False, digest=digest)


@contextlib.contextmanager
def _exclusive(folder: Path) -> Iterator[None]:
    # flock on the folder itself: no lock file to clean up or to ignore in git. Where there is no fcntl
    # (Windows), runs are not serialised; a lost race fails the later rename and says so.
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _replace_folder(model_dir: Path, digest: str, build: Build) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}.", suffix=".tmp", dir=model_dir.parent))
    old: Path | None = None
    try:
        metrics = build(tmp)
        write_json(tmp / METRICS_NAME, metrics)
        # mkdtemp and some writers (safetensors) make private files; a model folder is read by servers and builds.
        tmp.chmod(0o755)
        for path in tmp.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        stamp = stamp_path(model_dir)
        stamp.unlink(missing_ok=True)  # from here until the new stamp, the folder does not count as prepared
        if model_dir.exists():
            old = model_dir.with_name(f".{model_dir.name}.old-{os.getpid()}")
            os.replace(model_dir, old)
        os.replace(tmp, model_dir)
        _write_stamp(stamp, {"digest": digest, "files": _listing(model_dir)})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not model_dir.exists():
            os.replace(old, model_dir)  # put the previous folder back; its stamp is gone, so it will be redone
            old = None
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return metrics


def _write_stamp(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f"{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        Path(tmp).chmod(0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run(
    description: str,
    sample_dir: Path,
    *,
    inputs: Sequence[Path],
    values: Mapping[str, Any],
    build: Build,
    summary: Callable[[dict[str, Any]], str],
    argv: Sequence[str] | None = None,
) -> Prepared:
    """The command line of every prepare.py: ``[--out DIR] [--force]``; prints what it did and measured."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--out", type=Path, default=sample_dir / "model",
        help="the model folder to write (default: %(default)s); the stamp goes beside it as .prepared",
    )
    parser.add_argument("--force", action="store_true", help="redo the work even when the model folder is current")
    args = parser.parse_args(argv)
    if "torch" not in sys.modules:
        # Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine spinning threads starve each
        # other (measured here: a DigitNet step went from 9 ms to 174 ms with 2 threads while other processes
        # ran; with PASSIVE it stays near the 1-thread time). OpenMP reads it once, when torch loads.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    digest = inputs_digest([*inputs, COMMON], values)
    start = time.perf_counter()
    result = prepare(args.out, digest, build, force=args.force)
    where = _display(result.model_dir)
    if result.skipped:
        print(f"{where} is up to date (inputs {digest[:12]}); --force to redo")
        print(f"recorded: {summary(result.metrics)}")
    else:
        print(f"wrote {where} in {time.perf_counter() - start:.1f} s (inputs {digest[:12]})")
        print(f"measured: {summary(result.metrics)}")
    return result


def _display(path: Path) -> str:
    try:
        return path.relative_to(Path.cwd()).as_posix() + "/"
    except ValueError:
        return str(path) + "/"
