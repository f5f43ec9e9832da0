"""The worker pool's admission, queue bound, time estimate (per unit of a job's cost) and timeouts, with
plain sleeping jobs."""

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
    assert lim.stats() == {"running": 0, "queued": 0, "capacity": 2, "rejected": 1, "pending_units": 0,
                           "avg_unit_s": pytest.approx(0.3, abs=0.1)}
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


def test_the_estimate_scales_with_the_jobs_cost():
    lim = Limiter(1, 10)

    async def main():
        await lim.run(lambda: time.sleep(0.3), 10, cost=3)  # 0.1 s per unit
        return lim.expected_s(1), lim.expected_s(4)

    one, four = run(main())
    assert one == pytest.approx(0.1, abs=0.04) and four == pytest.approx(4 * one)
    assert lim.stats()["avg_unit_s"] == pytest.approx(one)
    lim.shutdown()


def test_a_costly_job_is_refused_where_a_cheap_one_is_admitted():
    lim = Limiter(1, 10)

    async def main():
        await lim.run(lambda: time.sleep(0.2), 10, cost=2)  # 0.1 s per unit
        first = asyncio.ensure_future(lim.run(lambda: time.sleep(0.5) or "first", 10, cost=5))
        await asyncio.sleep(0.05)
        # ahead: 5 units; this one would end at (5 + 3) x 0.1 = 0.8 s > 0.7 s, a 1-unit one at 0.6 s
        costly = await asyncio.gather(lim.run(lambda: "costly", 0.7, cost=3), return_exceptions=True)
        cheap = await lim.run(lambda: "cheap", 0.7, cost=1)
        return costly[0], cheap[0], await first

    costly, cheap, first = run(main())
    assert isinstance(costly, Busy) and cheap == "cheap" and first[0] == "first"
    assert lim.stats()["rejected"] == 1
    lim.shutdown()


def test_a_job_is_admitted_whatever_its_cost_when_a_worker_is_free():
    lim = Limiter(1, 10)

    async def main():
        await lim.run(lambda: time.sleep(0.1), 10)  # 0.1 s per unit
        return await lim.run(lambda: "big", 0.5, cost=50)  # 5 s by the estimate, but nothing is ahead

    assert run(main())[0] == "big"
    lim.shutdown()


class Stopped(Exception):
    units_done = 1


def test_a_timed_out_job_weighs_one_unit_and_a_stopped_job_averages_over_its_units_done():
    lim = Limiter(1, 10)

    def stops_after_one_unit():
        time.sleep(0.6)
        raise Stopped()

    async def main():
        job = asyncio.ensure_future(lim.run(stops_after_one_unit, 0.2, cost=8))
        await asyncio.sleep(0.05)
        before = lim.stats()["pending_units"]
        out = await asyncio.gather(job, return_exceptions=True)
        after_timeout = lim.stats()["pending_units"]
        await asyncio.sleep(0.8)
        return before, out[0], after_timeout

    before, out, after_timeout = run(main())
    assert before == 8 and isinstance(out, Timeout) and after_timeout == 1
    st = lim.stats()
    assert st["pending_units"] == 0 and st["running"] == 0
    assert st["avg_unit_s"] == pytest.approx(0.6, abs=0.15)  # 0.6 s over the 1 unit done, not over 8
    lim.shutdown()


def test_cost_must_be_positive():
    lim = Limiter(1, 1)
    with pytest.raises(ValueError, match="cost"):
        asyncio.run(lim.run(lambda: None, 1, cost=0))
    lim.shutdown()
