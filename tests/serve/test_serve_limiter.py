"""The worker pool's admission, queue bound, time estimate and timeouts, with plain sleeping jobs."""

import asyncio
import threading
import time

import pytest

from llmrec.serve.limiter import Busy, Limiter, Timeout


def run(coro):
    """The results, each job's value (its Timing dropped) or the exception it raised."""
    out = asyncio.run(coro)
    return [x[0] if isinstance(x, tuple) else x for x in out] if isinstance(out, list) else out


def test_capacity_bounds_running_and_queued_jobs():
    lim = Limiter(1, 1)

    async def main():
        return await asyncio.gather(*[lim.run(lambda: time.sleep(0.3) or "done", 10) for _ in range(3)],
                                    return_exceptions=True)

    out = run(main())
    assert out.count("done") == 2 and sum(isinstance(x, Busy) for x in out) == 1
    assert lim.stats() == {"running": 0, "queued": 0, "capacity": 2, "rejected": 1,
                           "avg_work_s": pytest.approx(0.3, abs=0.1)}
    lim.shutdown()


def test_a_queue_longer_than_the_timeout_is_refused_at_once():
    lim = Limiter(1, 10)

    async def main():
        await lim.run(lambda: time.sleep(0.3), 10)  # the average is now about 0.3 s
        return await asyncio.gather(*[lim.run(lambda: time.sleep(0.3) or "done", 0.75) for _ in range(3)],
                                    return_exceptions=True)

    t0 = time.perf_counter()
    out = run(main())
    # expected finish: 0.3 s, 0.6 s, then 0.9 s > 0.75 s: the third is refused, not timed out
    assert out[:2] == ["done", "done"] and isinstance(out[2], Busy), out
    assert time.perf_counter() - t0 < 2
    lim.shutdown()


def test_timeout_keeps_the_slot_until_the_running_job_ends_and_drops_a_queued_one():
    lim = Limiter(1, 5)
    ran = threading.Event()

    async def main():
        first = asyncio.ensure_future(lim.run(lambda: time.sleep(0.6), 0.2))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(lim.run(ran.set, 0.1))  # queued behind the first
        out = await asyncio.gather(first, second, return_exceptions=True)
        held = lim.stats()
        await asyncio.sleep(0.8)
        return out, held

    (a, b), held = run(main())
    assert isinstance(a, Timeout) and isinstance(b, Timeout)
    assert held["running"] == 1 and held["queued"] == 0  # the first still works; the second was dropped
    assert not ran.is_set() and lim.stats()["running"] == 0 and lim.admitted == 0
    lim.shutdown()
