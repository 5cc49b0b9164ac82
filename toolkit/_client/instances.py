"""Instances: read from JSON, encoded once, split into chunks, and the chunks' results joined back in order.

A call split into chunks (``max_batch``, sent ``concurrency`` at a time) fails as a whole when one chunk fails, the
same way in ``Client`` (threads) and ``AsyncClient`` (tasks): chunks not yet sent are not sent, chunks in flight
finish, and the call raises the first failed chunk's error (in instance order) as one ``PredictError`` that says which
chunk and instances failed. An exception that is not a PredictError is a bug and is raised as it is.
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from .._errors import PredictError

_INSTANCES_HINT = 'give {"instances": [...]} or a JSON list of instances, e.g. [{"data": "Hello World!"}]'


@dataclass(frozen=True)
class Chunk:
    """Instances ``start`` .. ``start + len(parts) - 1`` of a call, already encoded as JSON."""

    index: int
    start: int
    parts: tuple[bytes, ...]

    @property
    def end(self) -> int:
        return self.start + len(self.parts)


def instances_from_json(data: str | bytes, *, source: str) -> list[Any]:
    """Instances from JSON text: {"instances": [...]} or a bare list. ``source`` names the input in errors.

    Raises PredictError for text that is not UTF-8 or not JSON, or that holds no list of instances.
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise PredictError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})",
                               hint=_INSTANCES_HINT) from exc
    if not data.strip():
        raise PredictError(f"{source}: empty input, no instances", hint=_INSTANCES_HINT)
    try:
        value = json.loads(data)
    except json.JSONDecodeError as exc:
        raise PredictError(f"{source}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                           hint=_INSTANCES_HINT) from exc
    if isinstance(value, dict):
        if "instances" not in value:
            keys = ", ".join(sorted(value)) or "none"
            extra = " (TorchServe's KServe v1 reads only \"instances\", not \"inputs\")" if "inputs" in value else ""
            raise PredictError(f"{source}: the JSON object has no \"instances\" key (keys: {keys}){extra}",
                               hint=_INSTANCES_HINT)
        value = value["instances"]
        if not isinstance(value, list):
            raise PredictError(f"{source}: \"instances\" is a JSON {_json_type(value)}, not a list",
                               hint=_INSTANCES_HINT)
        return value
    if not isinstance(value, list):
        raise PredictError(f"{source}: holds a JSON {_json_type(value)}, not a list of instances", hint=_INSTANCES_HINT)
    return value


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


def encode_instances(instances: Sequence[Any]) -> list[bytes]:
    """Each instance as compact JSON bytes (so a chunk's body is a join, not a re-encoding).

    Raises PredictError unless ``instances`` is a list or tuple of JSON-serialisable values (no NaN/Infinity).
    """
    if not isinstance(instances, (list, tuple)):
        kind = type(instances).__name__
        hint = "pass a list of instances, e.g. [{\"data\": \"Hello World!\"}]"
        if isinstance(instances, dict) and "instances" in instances:
            hint = "pass body[\"instances\"], or send the whole body with infer()"
        elif hasattr(instances, "tolist"):
            hint = "convert it with .tolist()"
        raise PredictError(f"instances must be a list (or tuple), not {kind}", hint=hint)
    return [encode_json(value, f"instance {i}") for i, value in enumerate(instances)]


def encode_json(value: Any, what: str) -> bytes:
    """``value`` as compact UTF-8 JSON; PredictError naming ``what`` when it cannot be."""
    try:
        return json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise PredictError(
            f"{what} is not JSON-serialisable: {exc}",
            hint="use plain lists, dicts, strings and numbers (numpy arrays and tensors: .tolist(); "
            "bytes: base64 text); NaN and Infinity are not valid JSON",
        ) from exc


def plan_chunks(parts: Sequence[bytes], max_batch: int | None) -> list[Chunk]:
    """Split encoded instances into chunks of at most ``max_batch`` (one chunk when None)."""
    size = max_batch or max(len(parts), 1)
    return [Chunk(i, start, tuple(parts[start : start + size])) for i, start in enumerate(range(0, len(parts), size))]


def chunk_error(exc: PredictError, chunk: Chunk, total: int) -> PredictError:
    """The error of one chunk, said as the failure of the whole call (no partial result is returned)."""
    return PredictError(
        f"chunk {chunk.index + 1} of {total} (instances {chunk.start}-{chunk.end - 1}) failed, so the call failed "
        f"and no predictions are returned: {exc.message}",
        status=exc.status, url=exc.url, body=exc.body, hint=exc.hint,
    )


def assemble(
    chunks: Sequence[Chunk], errors: Sequence[BaseException | None], results: Sequence[list[Any] | None]
) -> list[Any]:
    """The chunks' results joined in order; the first failed chunk's error (as the call's) if any failed."""
    for chunk, error in zip(chunks, errors, strict=True):
        if isinstance(error, PredictError):
            raise chunk_error(error, chunk, len(chunks)) from error
        if error is not None:
            raise error  # a bug, not a server answer: keep its traceback
    joined: list[Any] = []
    for chunk, result in zip(chunks, results, strict=True):
        if result is None:  # cannot happen without an error above; never return a partial list as complete
            raise PredictError(f"chunk {chunk.index + 1} of {len(chunks)} has no result")
        joined.extend(result)
    return joined


def run_chunks(chunks: Sequence[Chunk], call: Callable[[Chunk], list[Any]], concurrency: int) -> list[Any]:
    """``call`` on every chunk, ``concurrency`` threads at a time; the results joined (see the module docstring)."""
    if len(chunks) == 1:
        return call(chunks[0])
    failed = threading.Event()

    def one(chunk: Chunk) -> list[Any] | None:
        if failed.is_set():  # an earlier chunk failed: the call has failed, send nothing more
            return None
        try:
            return call(chunk)
        except BaseException:
            failed.set()
            raise

    workers = min(concurrency, len(chunks))
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="mar-build-predict") as pool:
        futures = [pool.submit(one, chunk) for chunk in chunks]
    # Leaving the pool waited for every chunk: each future is done.
    errors = [f.exception() for f in futures]
    return assemble(chunks, errors, [None if e else f.result() for f, e in zip(futures, errors, strict=True)])


async def run_chunks_async(
    chunks: Sequence[Chunk], call: Callable[[Chunk], Awaitable[list[Any]]], concurrency: int
) -> list[Any]:
    """The async twin of run_chunks: tasks instead of threads, and the same outcome.

    Every chunk's exception is caught in its task, so none escapes the task group as an ExceptionGroup; a
    cancellation from outside the call still cancels every chunk.
    """
    if len(chunks) == 1:
        return await call(chunks[0])
    results: list[list[Any] | None] = [None] * len(chunks)
    errors: list[BaseException | None] = [None] * len(chunks)
    limiter = anyio.Semaphore(concurrency)  # first come, first served: chunks start in order, as in the thread pool

    async def one(chunk: Chunk) -> None:
        async with limiter:
            if any(e is not None for e in errors):  # an earlier chunk failed: send nothing more
                return
            try:
                results[chunk.index] = await call(chunk)
            except Exception as exc:
                errors[chunk.index] = exc

    async with anyio.create_task_group() as group:
        for chunk in chunks:
            group.start_soon(one, chunk)
    return assemble(chunks, errors, results)
