"""Bounded ranking work for the server: a small thread pool and a bounded wait queue.

The model work is CPU-bound torch, so it runs in worker threads (``serve_concurrency`` of them;
torch on a couple of cores gains nothing from more), never on the event loop. At most
``serve_concurrency + serve_queue`` jobs are admitted at once, running or waiting; one more is
refused at once (:class:`Busy`, answered 429).

Each job comes with a ``cost``: the units of work it will do (for the server, the user turns it
will replay). The limiter keeps a moving average of the work seconds per unit (``avg_unit_s``) and
the units admitted and not yet done (``pending``), so a job's expected finish is
``(pending / workers + cost) x avg_unit_s`` (:meth:`Limiter.expected_s`): one request of eight turns
weighs eight times one of a single turn, ahead in the queue and in the average. A job that would
not finish within its time limit by that estimate is refused now (:class:`Busy`) rather than timed
out after a long wait -- unless a worker is free, since then nothing is ahead of it and refusing
would never help (its own work is bounded by its deadline instead).

A job counts until its thread is done with it: a request that timed out while its job was running
leaves the job holding its slot until it ends (a thread cannot be stopped mid-forward-pass), so the
bound is on real work, not on requests still waiting for an answer. Jobs are expected to check the
deadline between units (the server's replay does, between turns) and so to do at most one more
unit once timed out: a timed-out running job's pending cost drops to one unit. A job that stops
early says how many units it did by raising an exception with a ``units_done`` attribute; its
seconds are averaged over those. A job still queued when its request times out is cancelled and
never runs.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

AVG_WEIGHT = 0.2
"""Weight of the latest job in the moving average of the work seconds per unit of cost."""


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
        self.pending = 0.0
        """Units of cost admitted and not yet finished (running jobs' whole cost included)."""
        self.avg_unit_s: float | None = None
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llmrec-serve")

    def stats(self) -> dict:
        """``{"running", "queued", "capacity", "rejected", "pending_units", "avg_unit_s"}`` (queued:
        admitted, not started; pending_units: the cost of every admitted job not finished;
        avg_unit_s: the moving average of work seconds per unit, None before any job ended)."""
        with self._lock:
            return {"running": self.running, "queued": self.admitted - self.running, "capacity": self.capacity,
                    "rejected": self.rejected, "pending_units": self.pending, "avg_unit_s": self.avg_unit_s}

    def expected_s(self, cost: float = 1.0) -> float:
        """Seconds a job of ``cost`` units admitted now would take to finish by the moving average of
        the recent work per unit: ``(pending / workers + cost) x avg_unit_s`` (0 before any job has
        finished). Conservative: a running job counts its whole cost. Call under the lock."""
        return 0.0 if self.avg_unit_s is None else (self.pending / self.workers + cost) * self.avg_unit_s

    async def run(self, fn: Callable[[], Any], timeout_s: float, cost: float = 1.0) -> tuple[Any, Timing]:
        """``fn()`` in a worker thread; returns (its result, :class:`Timing`).

        Args:
            fn: the blocking job.
            timeout_s: seconds from admission to the result.
            cost: the job's units of work, > 0 (the server: user turns to replay).

        Raises:
            ValueError: ``cost`` not a finite number > 0.
            Busy: ``capacity`` jobs are already admitted, or every worker is taken and
                :meth:`expected_s` of ``cost`` exceeds ``timeout_s``.
            Timeout: ``fn`` did not finish within ``timeout_s`` seconds of admission.
            Whatever ``fn`` raises.
        """
        if not (math.isfinite(cost) and cost > 0):
            raise ValueError(f"cost must be a finite number > 0, got {cost!r}")
        with self._lock:
            if self.admitted >= self.capacity or (
                    self.admitted >= self.workers and self.expected_s(cost) > timeout_s):
                self.rejected += 1
                raise Busy()
            self.admitted += 1
            self.pending += cost
        timing, admitted_at = Timing(), time.perf_counter()
        left = [cost]  # this job's share of ``pending`` (under the lock)
        started = threading.Event()

        def job():
            start = time.perf_counter()
            timing.queue_s = start - admitted_at
            with self._lock:  # not through the loop: waking it up would cost every request a wake-up
                self.running += 1
            started.set()
            units = cost
            try:
                return fn()
            except BaseException as e:
                units = getattr(e, "units_done", cost)
                raise
            finally:
                timing.work_s = time.perf_counter() - start
                with self._lock:
                    self.running -= 1
                    self._average(timing.work_s, units)

        try:
            cf = self._pool.submit(job)
        except RuntimeError:  # the pool is shut down
            with self._lock:
                self.admitted -= 1
                self.pending -= cost
            raise
        cf.add_done_callback(lambda f: self._release(left))  # in the worker thread (here, when cancelled while queued)
        fut = asyncio.wrap_future(cf)
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())  # nobody may await it any more
        try:
            result = await asyncio.wait_for(asyncio.shield(fut), timeout_s)
        except TimeoutError:
            cf.cancel()  # never starts if still queued; a running job finishes and keeps its slot
            if started.is_set():
                with self._lock:  # past its deadline the job does at most the unit in progress
                    if not cf.done() and left[0] > 1:
                        self.pending -= left[0] - 1
                        left[0] = 1.0
            raise Timeout(timeout_s) from None
        except BaseException:
            cf.cancel()
            raise
        return result, timing

    def _average(self, seconds: float, units: float) -> None:
        """Fold one job's seconds per unit into ``avg_unit_s`` (a job that did no unit: skipped). Under the lock."""
        if not (isinstance(units, (int, float)) and units > 0):
            return
        unit = seconds / units
        self.avg_unit_s = unit if self.avg_unit_s is None else (1 - AVG_WEIGHT) * self.avg_unit_s + AVG_WEIGHT * unit

    def _release(self, left: list[float]) -> None:
        with self._lock:
            self.admitted -= 1
            self.pending = max(0.0, self.pending - left[0])
            left[0] = 0.0

    def shutdown(self) -> None:
        """Wait for the running jobs, then stop the threads (queued ones still run first)."""
        self._pool.shutdown(wait=True)
