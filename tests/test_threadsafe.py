"""call_soon_threadsafe: wake-ups from other threads, no lost callbacks."""
import asyncio
import threading
import time

import pytest

from conftest import new_loop


def test_threadsafe_wakes_idle_loop(loop):
    woke = []

    def other():
        time.sleep(0.05)
        loop.call_soon_threadsafe(lambda: (woke.append(time.monotonic()), loop.stop()))

    t0 = time.monotonic()
    threading.Thread(target=other).start()
    loop.run_forever()  # nothing else scheduled: only the wake-up ends this
    assert woke and woke[0] - t0 < 2.0


def test_threadsafe_many_threads_lose_nothing(loop):
    nthreads, per_thread = 8, 2000
    counts = [0] * nthreads
    done = threading.Barrier(nthreads + 1)

    def bump(i):
        counts[i] += 1

    def worker(i):
        for _ in range(per_thread):
            loop.call_soon_threadsafe(bump, i)
        done.wait()

    async def main():
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(nthreads)]
        for t in threads:
            t.start()
        await loop.run_in_executor(None, done.wait)
        # everything sent before the barrier is queued by now
        while sum(counts) < nthreads * per_thread:
            await asyncio.sleep(0.001)
        for t in threads:
            t.join()

    loop.run_until_complete(asyncio.wait_for(main(), 30))
    assert counts == [per_thread] * nthreads


def test_threadsafe_order_from_one_thread(loop):
    out = []
    n = 5000

    def worker():
        for i in range(n):
            loop.call_soon_threadsafe(out.append, i)
        loop.call_soon_threadsafe(loop.stop)

    threading.Thread(target=worker).start()
    loop.run_forever()
    # the stop may land before all were run only if they were sent after it
    while len(out) < n:
        loop.call_soon(loop.stop)
        loop.run_forever()
    assert out == list(range(n))


def test_threadsafe_while_loop_not_running_then_run():
    lp = new_loop()
    try:
        out = []
        t = threading.Thread(target=lambda: lp.call_soon_threadsafe(out.append, 1))
        t.start()
        t.join()
        lp.call_soon(lp.stop)
        lp.run_forever()
        assert out == [1]
    finally:
        lp.close()


def test_threadsafe_after_close_raises():
    lp = new_loop()
    lp.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        lp.call_soon_threadsafe(print)


def test_threadsafe_with_context(loop):
    import contextvars

    var = contextvars.ContextVar("v", default="no")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "yes")
    got = []

    def worker():
        loop.call_soon_threadsafe(lambda: (got.append(var.get()), loop.stop()), context=ctx)

    threading.Thread(target=worker).start()
    loop.run_forever()
    assert got == ["yes"]


def test_run_coroutine_threadsafe(loop):
    async def add(a, b):
        await asyncio.sleep(0)
        return a + b

    result = []

    def worker():
        fut = asyncio.run_coroutine_threadsafe(add(2, 3), loop)
        result.append(fut.result(10))
        loop.call_soon_threadsafe(loop.stop)

    threading.Thread(target=worker).start()
    loop.run_forever()
    assert result == [5]


def test_wakeups_coalesce_without_spinning(loop):
    # After a burst of wake-ups the loop must go back to sleep.
    def burst():
        for _ in range(1000):
            loop.call_soon_threadsafe(lambda: None)

    t = threading.Thread(target=burst)
    t.start()
    t.join()
    loop.call_later(0.2, loop.stop)
    c0 = time.process_time()
    loop.run_forever()
    assert time.process_time() - c0 < 0.15
