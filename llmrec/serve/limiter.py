"""Bounded ranking work for the server: a small thread pool and a bounded wait queue.

The model work is CPU-bound torch, so it runs in worker threads (``serve_concurrency`` of them;
torch on a couple of cores gains nothing from more), never on the event loop. At most
``serve_concurrency + serve_queue`` jobs are admitted at once, running or waiting; one more is
refused at once (:class:`Busy`, answered 429). So is a job that would not finish within its time
limit by the moving average of the recent jobs' work (``expected_s``): refusing it now beats a
timeout after a long wait. A job counts until its thread is done with it: a request that timed out
while its job was running leaves the job holding its slot until it ends (a thread cannot be stopped
mid-forward-pass), so the bound is on real work, not on requests still waiting for an answer. A job
still queued when its request times out is cancelled and never runs.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

AVG_WEIGHT = 0.2
"""Weight of the latest job in the moving average of the work seconds."""


class Busy(Exception):
    """Every running and queued slot is taken, or the queue is too long for the time limit."""


class Timeout(Exception):
    """The job did not finish within the request's time limit (seconds in ``args[0]``)."""


@dataclass
class Timing:
    """Seconds: ``queue_s`` from admission to the job's start, ``work_s`` the job itself;
    ``server_s`` (set by the route) from the request's arrival to its response being built."""

    queue_s: float = 0.0
    work_s: float = 0.0
    server_s: float | None = None


class Limiter:
    """Runs blocking jobs in ``workers`` threads with at most ``queue`` more waiting.

    Its counters are kept under a lock: the worker threads update them without waking the loop.

    Args:
        workers: threads, >= 1.
        queue: jobs allowed to wait for a thread, >= 0.
    """

    def __init__(self, workers: int, queue: int):
        self.workers, self.queue = workers, queue
        self.capacity = workers + queue
        self.admitted = 0
        self.running = 0
        self.rejected = 0
        self.avg_work_s: float | None = None
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llmrec-serve")

    def stats(self) -> dict:
        """``{"running", "queued", "capacity", "rejected", "avg_work_s"}`` (queued: admitted, not started)."""
        with self._lock:
            return {"running": self.running, "queued": self.admitted - self.running, "capacity": self.capacity,
                    "rejected": self.rejected, "avg_work_s": self.avg_work_s}

    def expected_s(self) -> float:
        """Seconds a job admitted now would take to finish by the moving average of the recent jobs'
        work, ``(admitted / workers + 1) x average`` (0 before any job has finished). Call under the lock."""
        return 0.0 if self.avg_work_s is None else (self.admitted / self.workers + 1) * self.avg_work_s

    async def run(self, fn: Callable[[], Any], timeout_s: float) -> tuple[Any, Timing]:
        """``fn()`` in a worker thread; returns (its result, :class:`Timing`).

        Raises:
            Busy: ``capacity`` jobs are already admitted, or :meth:`expected_s` exceeds ``timeout_s``.
            Timeout: ``fn`` did not finish within ``timeout_s`` seconds of admission.
            Whatever ``fn`` raises.
        """
        with self._lock:
            if self.admitted >= self.capacity or self.expected_s() > timeout_s:
                self.rejected += 1
                raise Busy()
            self.admitted += 1
        timing, admitted_at = Timing(), time.perf_counter()

        def job():
            start = time.perf_counter()
            timing.queue_s = start - admitted_at
            with self._lock:  # not through the loop: waking it up would cost every request a wake-up
                self.running += 1
            try:
                return fn()
            finally:
                timing.work_s = w = time.perf_counter() - start
                with self._lock:
                    self.running -= 1
                    self.avg_work_s = w if self.avg_work_s is None else (
                        (1 - AVG_WEIGHT) * self.avg_work_s + AVG_WEIGHT * w)

        try:
            cf = self._pool.submit(job)
        except RuntimeError:  # the pool is shut down
            with self._lock:
                self.admitted -= 1
            raise
        cf.add_done_callback(self._release)  # in the worker thread (here, when cancelled while queued)
        fut = asyncio.wrap_future(cf)
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())  # nobody may await it any more
        try:
            result = await asyncio.wait_for(asyncio.shield(fut), timeout_s)
        except TimeoutError:
            cf.cancel()  # never starts if still queued; a running job finishes and keeps its slot
            raise Timeout(timeout_s) from None
        except BaseException:
            cf.cancel()
            raise
        return result, timing

    def _release(self, _future) -> None:
        with self._lock:
            self.admitted -= 1

    def shutdown(self) -> None:
        """Wait for the running jobs, then stop the threads (queued ones still run first)."""
        self._pool.shutdown(wait=True)
