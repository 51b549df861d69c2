"""Micro-batching: concurrent requests answered by one batched model call."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Callable

import anyio.to_thread

log = logging.getLogger("mmie.serve")

__all__ = ["MicroBatcher"]


class MicroBatcher:
    """Collect concurrent requests for up to ``window_ms`` (or ``max_batch`` items) and run
    ``batch_fn`` once on them in a worker thread. Batches run one at a time, so requests that
    arrive while a batch runs form the next batch. If a batch fails, its items are retried one
    by one with ``single_fn`` so that each request gets its own answer or its own error."""

    def __init__(self, batch_fn: Callable[[list[dict]], list], single_fn: Callable[..., Any],
                 *, window_ms: float = 5.0, max_batch: int = 16,
                 lock: threading.Lock | None = None):
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.batch_fn = batch_fn
        self.single_fn = single_fn
        self.window = max(0.0, window_ms) / 1000.0
        self.max_batch = max_batch
        self.lock = lock or threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self.batch_sizes: list[int] = []  # one entry per batch_fn call (for tests and stats)

    def _ensure_worker(self) -> asyncio.Queue:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._worker is None or self._worker.done():
            self._loop = loop
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._run(self._queue))
        return self._queue

    async def submit(self, item: dict) -> Any:
        """Queue one item and wait for its result (or its exception)."""
        fut = asyncio.get_running_loop().create_future()
        self._ensure_worker().put_nowait((item, fut))
        return await fut

    async def aclose(self) -> None:
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            try:
                await self._worker
            except (asyncio.CancelledError, Exception):
                pass
        self._worker = None

    async def _run(self, queue: asyncio.Queue) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            deadline = loop.time() + self.window
            while len(batch) < self.max_batch:
                if not queue.empty():
                    batch.append(queue.get_nowait())
                    continue
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), timeout))
                except (asyncio.TimeoutError, TimeoutError):
                    break
            batch = [(item, fut) for item, fut in batch if not fut.done()]  # drop cancelled
            if not batch:
                continue
            outcomes = await anyio.to_thread.run_sync(self._compute, [i for i, _ in batch])
            for (_, fut), (ok, value) in zip(batch, outcomes):
                if fut.done():
                    continue
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)

    def _compute(self, items: list[dict]) -> list[tuple[bool, Any]]:
        """Run in a worker thread: ``(True, result)`` or ``(False, exception)`` per item."""
        with self.lock:
            self.batch_sizes.append(len(items))
            try:
                results = list(self.batch_fn(items))
                if len(results) != len(items):
                    raise RuntimeError(f"predict_batch returned {len(results)} results for "
                                       f"{len(items)} inputs")
                return [(True, r) for r in results]
            except Exception as e:
                if len(items) == 1:
                    return [(False, e)]
                log.info("batch of %d failed (%s); retrying one by one", len(items), e)
            out: list[tuple[bool, Any]] = []
            for item in items:
                try:
                    out.append((True, self.single_fn(**item)))
                except Exception as e:  # noqa: BLE001 - reported to that request
                    out.append((False, e))
            return out
