"""Server-side batching, adaptive: at once when a worker is idle, gathered while every worker is busy.

TorchServe's frontend holds a batch open for up to ``maxBatchDelay`` ms until ``batchSize`` requests are in, so a
lone request always waits the whole delay. Here a request that finds a worker idle runs at once (with whatever
arrived in the same turn of the event loop); requests that arrive while every worker runs a batch queue up and
form the next batch, up to ``batchSize``, as soon as a worker is free. ``maxBatchDelay`` is never waited for: under
load the batches fill by themselves, and without load waiting only adds latency. Each request keeps its own answer
(status, body), and waits at most ``responseTimeout`` seconds (then 504; the batch itself runs to its end, as a
handler cannot be interrupted). The queue holds ``job_queue_size`` requests per model (TorchServe's default 100);
beyond it a request is answered 503 at once, as TorchServe does.

A model's workers are its lanes (toolkit/_runtime/workers.py): the model loaded in this process (one worker), or
``minWorkers`` worker processes. Each lane runs one batch at a time, in a thread of its own here (torch releases the
GIL, and a worker process's answer is waited for off the event loop), so the event loop keeps reading requests.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from .._metrics import runtime_metrics
from .handling import Answer, Request
from .loader import Settings
from .workers import Lane

log = logging.getLogger("toolkit.runtime")

DEFAULT_QUEUE = 100
# TorchServe labels its per-model counters with the version the URL named, "default" where it named none (as
# /v1/models/M:predict does); the handler's own metrics carry the archive's version.
URL_VERSION = "default"
RESTART_TRIES = 3  # a dead worker is started again at most this many times in a row

Pending = tuple[Request, "asyncio.Future[Answer]", float]


class Batcher:
    """The queue and batch loop of one model over its workers (``lanes``); ``submit`` answers one request."""

    def __init__(self, name: str, settings: Settings, lanes: list[Lane], queue_size: int = DEFAULT_QUEUE,
                 threads_per_worker: int | None = None) -> None:
        if not lanes:
            raise ValueError(f"model {name}: a batcher needs at least one worker")
        self.name = name
        self.settings = settings
        self.lanes = list(lanes)
        self.queue_size = queue_size
        self.threads_per_worker = threads_per_worker
        self.on_no_workers: Callable[[], None] | None = None  # called once the last worker is given up on
        self.batches: list[int] = []  # the size of every batch run, for tests
        self._metrics = runtime_metrics()  # TorchServe's names; the handler reports its own through its context
        self._pending: collections.deque[Pending] = collections.deque()
        self._idle: collections.deque[Lane] = collections.deque(self.lanes)
        self._executors = {id(lane): ThreadPoolExecutor(1, thread_name_prefix=f"model-{name}-{i}")
                           for i, lane in enumerate(self.lanes)}
        self._running: set[asyncio.Task[None]] = set()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def submit(self, request: Request) -> Answer:
        """Queue ``request`` and wait for its answer (503 when the queue is full, 504 after responseTimeout)."""
        started = time.monotonic()
        if not self.lanes:
            return self._count(self._no_workers(), started)
        if len(self._pending) >= self.queue_size:
            answer = Answer.error(503, f"Model \"{self.name}\" has no worker to serve inference request: "
                                       f"its queue of {self.queue_size} requests is full")
            return self._count(answer, started)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        self._pending.append((request, future, started))
        if self._task is None:
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._loop())
        assert self._wakeup is not None
        self._wakeup.set()
        timeout = self.settings.response_timeout_s
        try:
            answer = await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            answer = Answer.error(504, f"model {self.name} did not answer within {timeout:g} s "
                                       "(its responseTimeout in model_snapshot)")
        return self._count(answer, started)

    def _count(self, answer: Answer, started: float) -> Answer:
        # As TorchServe counts ts_inference_requests_total and _latency_microseconds: every request, any status.
        self._metrics.answered(self.name, URL_VERSION, time.monotonic() - started)
        return answer

    def _take(self) -> list[Pending]:
        # Predict and explain never share a batch: a stock handler reads the explain header of request 0 only.
        batch = [self._pending.popleft()]
        explain = batch[0][0].explain
        while self._pending and len(batch) < self.settings.batch_size:
            if self._pending[0][0].explain != explain:
                break
            batch.append(self._pending.popleft())
        return [item for item in batch if not item[1].done()]

    async def _loop(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            # One turn of the loop: requests read in the same turn join the first batch.
            await asyncio.sleep(0)
            while self._pending and self._idle:
                batch = self._take()
                if not batch:
                    continue
                now = time.monotonic()
                for _, _, started in batch:
                    self._metrics.queued(self.name, URL_VERSION, now - started)
                self.batches.append(len(batch))
                lane = self._idle.popleft()
                task = loop.create_task(self._run(lane, batch, self._threads()))
                self._running.add(task)
                task.add_done_callback(self._running.discard)

    def _threads(self) -> int | None:
        """Torch threads for a batch starting now: the model's workers' threads (MAR_BUILD_THREADS each) shared by
        the workers busy with it, so that a lone batch on an idle model runs as fast as its CPUs allow, and a
        loaded model's workers one share each. None: each handler keeps what it chose."""
        if self.threads_per_worker is None or len(self.lanes) == 1:
            return None
        busy = len(self.lanes) - len(self._idle)
        return max(1, self.threads_per_worker * len(self.lanes) // max(1, busy))

    async def _run(self, lane: Lane, batch: list[Pending], threads: int | None = None) -> None:
        """One batch on one worker; the worker goes back to the idle ones (restarted first if it died)."""
        loop = asyncio.get_running_loop()
        executor = self._executors[id(lane)]
        try:
            answers = await loop.run_in_executor(executor, lane.run, [request for request, _, _ in batch], threads)
        except Exception:  # a bug here, not in the handler (run_batch catches those): answer, keep serving
            log.exception("model %s: running a batch failed", self.name)
            answers = [Answer.error(500, "the runtime failed to run the batch")] * len(batch)
        for (_, future, _), answer in zip(batch, answers, strict=True):
            if not future.done():
                future.set_result(answer)
        if lane.broken and not await self._restart(lane):
            return
        # Last in, first out: an idle model keeps using the worker that ran last (its caches warm, and no other
        # worker competes with the threads torch leaves spinning for a moment after a batch).
        self._idle.appendleft(lane)
        if self._wakeup is not None:
            self._wakeup.set()

    async def _restart(self, lane: Lane) -> bool:
        """Start a dead worker again, RESTART_TRIES times at most (waiting 1, 2, 4 s between), as TorchServe
        restarts its workers with a backoff; False once it gave up. A model left with no worker answers 503 and
        stops being ready (``on_no_workers``), so that KServe's readiness probe sees it."""
        loop = asyncio.get_running_loop()
        for attempt in range(RESTART_TRIES):
            try:
                await loop.run_in_executor(self._executors[id(lane)], lane.restart)
                return True
            except Exception as exc:
                log.error("model %s: starting %s again failed (try %d of %d): %s", self.name, lane.label,
                          attempt + 1, RESTART_TRIES, exc)
                await asyncio.sleep(2 ** attempt)
        log.error("model %s: %s is given up on", self.name, lane.label)
        self.lanes.remove(lane)
        if not self.lanes:
            log.error("model %s has no worker left: it is not ready, and its requests are answered 503", self.name)
            while self._pending:
                _, future, _ = self._pending.popleft()
                if not future.done():
                    future.set_result(self._no_workers())
            if self.on_no_workers is not None:
                self.on_no_workers()
        return False

    def _no_workers(self) -> Answer:
        return Answer.error(503, f"model {self.name} has no worker left: each one died and could not be started "
                                 "again (the runtime's log says why)")

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for task in list(self._running):
            task.cancel()
        for lane in self.lanes:
            lane.close()
        for executor in self._executors.values():
            executor.shutdown(wait=False, cancel_futures=True)
