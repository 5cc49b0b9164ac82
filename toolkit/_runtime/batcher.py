"""Server-side batching in process, adaptive: at once when the model is idle, gathered while it is busy.

TorchServe's frontend holds a batch open for up to ``maxBatchDelay`` ms until ``batchSize`` requests are in, so a
lone request always waits the whole delay. Here a request that finds the model idle runs at once (with whatever
arrived in the same turn of the event loop); requests that arrive while a batch runs queue up and form the next
batch, up to ``batchSize``, as soon as the model is free. ``maxBatchDelay`` is never waited for: under load the
batches fill by themselves, and without load waiting only adds latency. Each request keeps its own answer (status,
body), and waits at most ``responseTimeout`` seconds (then 504; the batch itself runs to its end, as a handler
cannot be interrupted). The queue holds ``job_queue_size`` requests per model (TorchServe's default 100); beyond
it a request is answered 503 at once, as TorchServe does.

One batch runs at a time per model, in the model's own thread (torch releases the GIL, so the event loop keeps
reading requests meanwhile): one worker, whatever ``minWorkers`` says (several workers per model are for later).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from .._metrics import runtime_metrics
from .envelope import run_enveloped
from .handling import Answer, Request, run_batch
from .loader import LoadedModel

log = logging.getLogger("toolkit.runtime")

DEFAULT_QUEUE = 100
# TorchServe labels its per-model counters with the version the URL named, "default" where it named none (as
# /v1/models/M:predict does); the handler's own metrics carry the archive's version.
URL_VERSION = "default"



class Batcher:
    """The queue and batch loop of one model; ``submit`` answers one request."""

    def __init__(self, model: LoadedModel, queue_size: int = DEFAULT_QUEUE) -> None:
        self.model = model
        self.queue_size = queue_size
        self.batches: list[int] = []  # the size of every batch run, for tests
        self._metrics = runtime_metrics()  # TorchServe's names; the handler reports its own through its context
        self._pending: collections.deque[tuple[Request, asyncio.Future[Answer], float]] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"model-{model.name}")

    async def submit(self, request: Request) -> Answer:
        """Queue ``request`` and wait for its answer (503 when the queue is full, 504 after responseTimeout)."""
        started = time.monotonic()
        if len(self._pending) >= self.queue_size:
            answer = Answer.error(503, f"Model \"{self.model.name}\" has no worker to serve inference request: "
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
        timeout = self.model.settings.response_timeout_s
        try:
            answer = await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            answer = Answer.error(504, f"model {self.model.name} did not answer within {timeout:g} s "
                                       "(its responseTimeout in model_snapshot)")
        return self._count(answer, started)

    def _count(self, answer: Answer, started: float) -> Answer:
        # As TorchServe counts ts_inference_requests_total and _latency_microseconds: every request, any status.
        self._metrics.answered(self.model.name, URL_VERSION, time.monotonic() - started)
        return answer

    def _take(self) -> list[tuple[Request, asyncio.Future[Answer], float]]:
        # Predict and explain never share a batch: a stock handler reads the explain header of request 0 only.
        batch = [self._pending.popleft()]
        explain = batch[0][0].explain
        while self._pending and len(batch) < self.model.settings.batch_size:
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
            while self._pending:
                batch = self._take()
                if not batch:
                    continue
                now = time.monotonic()
                for _, _, started in batch:
                    self._metrics.queued(self.model.name, URL_VERSION, now - started)
                self.batches.append(len(batch))
                requests = [request for request, _, _ in batch]
                try:
                    runner = run_enveloped if self.model.envelope else run_batch
                    answers = await loop.run_in_executor(self._executor, runner, self.model, requests)
                except Exception:  # a bug here, not in the handler (run_batch catches those): answer, keep serving
                    log.exception("model %s: running a batch failed", self.model.name)
                    answers = [Answer.error(500, "the runtime failed to run the batch")] * len(batch)
                for (_, future, _), answer in zip(batch, answers, strict=True):
                    if not future.done():
                        future.set_result(answer)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
