"""Exact reference counts through every path of the loop core: callbacks,
arguments and contexts must be released exactly once whatever happens to the
handle (run, cancelled, raised, dropped at close, error while scheduling)."""
import contextvars
import gc
import socket
import sys
import tracemalloc

import pytest

from conftest import new_loop, run_briefly

N = 500


class Cb:
    def __call__(self, *args):
        pass


class Boom:
    def __call__(self, *args):
        raise ValueError("boom")


def rc(o):
    return sys.getrefcount(o)


@pytest.mark.parametrize("nargs", [0, 1, 3, 4, 8])
def test_call_soon_run(loop, nargs):
    cb, arg, ctx = Cb(), object(), contextvars.copy_context()
    before = (rc(cb), rc(arg), rc(ctx))
    for _ in range(N):
        loop.call_soon(cb, *([arg] * nargs), context=ctx)
    run_briefly(loop)
    gc.collect()
    assert (rc(cb), rc(arg), rc(ctx)) == before


def test_call_soon_kept_handle(loop):
    cb, arg = Cb(), object()
    before = (rc(cb), rc(arg))
    hs = [loop.call_soon(cb, arg) for _ in range(N)]
    run_briefly(loop)
    del hs
    gc.collect()
    assert (rc(cb), rc(arg)) == before


def test_call_soon_cancelled(loop):
    cb, arg = Cb(), object()
    before = (rc(cb), rc(arg))
    for _ in range(N):
        loop.call_soon(cb, arg, arg, arg, arg).cancel()
    run_briefly(loop)
    assert (rc(cb), rc(arg)) == before


def test_callback_raises(loop, loop_errors):
    cb, arg = Boom(), object()
    before = (rc(cb), rc(arg))
    for _ in range(50):
        loop.call_soon(cb, arg)
    run_briefly(loop)
    assert len(loop_errors) == 50
    loop_errors.clear()
    gc.collect()
    assert (rc(cb), rc(arg)) == before


def test_timers_run_and_cancelled(loop):
    cb, arg = Cb(), object()
    before = (rc(cb), rc(arg))
    hs = [loop.call_later(0, cb, arg) for _ in range(N)]
    for h in hs[::2]:
        h.cancel()
    far = [loop.call_later(1000, cb, arg) for _ in range(N)]
    for h in far:
        h.cancel()
    run_briefly(loop, 2)
    del hs, far, h
    gc.collect()
    assert (rc(cb), rc(arg)) == before


def test_dropped_at_close():
    lp = new_loop()
    cb, arg = Cb(), object()
    before = (rc(cb), rc(arg))
    for _ in range(N):
        lp.call_soon(cb, arg)
        lp.call_later(1000, cb, arg)
        lp.call_soon_threadsafe(cb, arg)
    lp.close()
    del lp
    gc.collect()
    assert (rc(cb), rc(arg)) == before


def test_scheduling_errors_release_everything(loop):
    cb, arg = Cb(), object()
    before = (rc(cb), rc(arg))
    for _ in range(N):
        with pytest.raises(TypeError):
            loop.call_soon(cb, arg, bogus=1)
        with pytest.raises(TypeError):
            loop.call_later("x", cb, arg)
    assert (rc(cb), rc(arg)) == before


def test_readers(loop):
    a, b = socket.socketpair()
    try:
        cb, arg = Cb(), object()
        before = (rc(cb), rc(arg))
        for _ in range(200):
            loop.add_reader(a.fileno(), cb, arg)
            loop.add_reader(a.fileno(), cb, arg)  # replace
            loop.add_writer(a.fileno(), cb, arg)
            run_briefly(loop)
            loop.remove_reader(a.fileno())
            loop.remove_writer(a.fileno())
        run_briefly(loop, 2)
        gc.collect()
        assert (rc(cb), rc(arg)) == before
        loop.add_reader(a.fileno(), cb, arg)
    finally:
        loop.close()
        a.close()
        b.close()
    gc.collect()
    assert (rc(cb), rc(arg)) == before


def test_loop_objects_are_collected():
    import weakref

    refs = []
    for _ in range(20):
        lp = new_loop()
        lp.call_soon(lp.stop)
        lp.run_forever()
        h = lp.call_soon(print)
        lp.close()
        refs.append(weakref.ref(lp))
        del lp, h
    gc.collect()
    assert all(r() is None for r in refs)


def test_cycle_through_handle_is_collected(loop):
    import weakref

    class Holder:
        pass

    holder = Holder()
    holder.h = loop.call_later(1000, Cb(), holder)  # holder -> handle -> holder
    ref = weakref.ref(holder)
    holder.h.cancel()
    del holder
    run_briefly(loop)
    gc.collect()
    assert ref() is None


def test_no_memory_growth(loop):
    cb = Cb()

    def cycle():
        for _ in range(2000):
            loop.call_soon(cb, 1, 2)
            loop.call_later(0, cb).cancel()
        run_briefly(loop, 2)

    cycle()
    tracemalloc.start()
    try:
        cycle()
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(5):
            cycle()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, f"memory grew by {grown} bytes"
