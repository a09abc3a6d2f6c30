"""run_forever / run_until_complete / stop / close, Runner, policy, run()."""
import asyncio
import gc
import os
import sys
import threading
import warnings

import pytest

import ringloop
from conftest import is_ringloop, new_loop, run_briefly


def test_run_until_complete_coroutine_and_future(loop):
    async def coro():
        await asyncio.sleep(0)
        return "value"

    assert loop.run_until_complete(coro()) == "value"
    fut = loop.create_future()
    loop.call_soon(fut.set_result, 7)
    assert loop.run_until_complete(fut) == 7


def test_run_until_complete_raises_exception(loop):
    async def coro():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        loop.run_until_complete(coro())


def test_run_until_complete_stopped_early(loop):
    async def forever():
        await asyncio.sleep(3600)

    task = loop.create_task(forever())
    loop.call_soon(loop.stop)
    with pytest.raises(RuntimeError, match="Event loop stopped before Future completed."):
        loop.run_until_complete(task)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(task)


def test_run_until_complete_future_of_other_loop(loop):
    other = new_loop()
    try:
        fut = other.create_future()
        with pytest.raises(ValueError):
            loop.run_until_complete(fut)
    finally:
        other.close()


def test_run_forever_while_running_raises(loop):
    errors = []

    def nested():
        try:
            loop.run_forever()
        except RuntimeError as e:
            errors.append(str(e))
        loop.stop()

    loop.call_soon(nested)
    loop.run_forever()
    assert errors == ["This event loop is already running"]


def test_run_until_complete_nested_raises(loop):
    async def inner():
        pass

    async def outer():
        coro = inner()
        try:
            with pytest.raises(RuntimeError, match="This event loop is already running"):
                loop.run_until_complete(coro)
        finally:
            coro.close()

    loop.run_until_complete(outer())


def test_run_while_another_loop_runs_raises(loop):
    other = new_loop()
    errors = []

    def try_other():
        try:
            other.run_forever()
        except RuntimeError as e:
            errors.append(str(e))
        loop.stop()

    try:
        loop.call_soon(try_other)
        loop.run_forever()
    finally:
        other.close()
    assert errors == ["Cannot run the event loop while another loop is running"]


def test_is_running_and_running_loop(loop):
    seen = []

    def probe():
        seen.append((loop.is_running(), asyncio.get_running_loop() is loop))
        loop.stop()

    assert not loop.is_running()
    loop.call_soon(probe)
    loop.run_forever()
    assert seen == [(True, True)]
    assert not loop.is_running()
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


def test_close_running_loop_raises(loop):
    errors = []

    def try_close():
        try:
            loop.close()
        except RuntimeError as e:
            errors.append(str(e))
        loop.stop()

    loop.call_soon(try_close)
    loop.run_forever()
    assert errors == ["Cannot close a running event loop"]
    assert not loop.is_closed()


def test_close_drops_pending_callbacks_and_timers():
    lp = new_loop()
    out = []

    class Cb:
        def __call__(self):
            out.append(1)

    import weakref

    cb = Cb()
    ref = weakref.ref(cb)
    lp.call_soon(cb)
    lp.call_later(10, cb)
    del cb
    lp.close()
    gc.collect()
    assert ref() is None
    assert out == []
    assert lp.is_closed()


def test_unclosed_loop_warns():
    lp = new_loop()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        del lp
        gc.collect()
    assert any(issubclass(x.category, ResourceWarning) and "unclosed event loop" in str(x.message) for x in w)


def test_loop_runs_in_another_thread():
    lp = new_loop()
    result = []

    async def work():
        await asyncio.sleep(0.01)
        return threading.get_ident()

    def target():
        asyncio.set_event_loop(lp)
        result.append(lp.run_until_complete(work()))

    t = threading.Thread(target=target)
    t.start()
    t.join(10)
    lp.close()
    assert result and result[0] != threading.get_ident()


def test_loop_created_in_one_thread_run_in_another_then_back():
    lp = new_loop()
    try:
        out = []

        def target():
            lp.call_soon(out.append, "thread")
            lp.call_soon(lp.stop)
            lp.run_forever()

        t = threading.Thread(target=target)
        t.start()
        t.join(10)
        lp.call_soon(out.append, "main")
        lp.call_soon(lp.stop)
        lp.run_forever()
        assert out == ["thread", "main"]
    finally:
        lp.close()


def test_asyncgen_hooks_installed_while_running(loop):
    before = sys.get_asyncgen_hooks()
    seen = []

    def probe():
        seen.append(sys.get_asyncgen_hooks())
        loop.stop()

    loop.call_soon(probe)
    loop.run_forever()
    assert seen[0].firstiter is not None and seen[0] != before
    assert sys.get_asyncgen_hooks() == before


def test_shutdown_asyncgens(loop):
    finalized = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            finalized.append(True)

    async def main():
        g = agen()
        assert await g.__anext__() == 1
        return g

    g = loop.run_until_complete(main())
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert finalized == [True]
    del g


def test_asyncgen_finalized_by_gc_while_running(loop):
    finalized = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            finalized.append(True)

    async def main():
        g = agen()
        await g.__anext__()
        del g
        gc.collect()
        for _ in range(5):
            await asyncio.sleep(0)

    loop.run_until_complete(main())
    assert finalized == [True]


def test_executor(loop):
    async def main():
        r = await loop.run_in_executor(None, sum, [1, 2, 3])
        return r, await loop.run_in_executor(None, threading.get_ident)

    total, tid = loop.run_until_complete(main())
    assert total == 6
    assert tid != threading.get_ident()
    loop.run_until_complete(loop.shutdown_default_executor())
    with pytest.raises(RuntimeError, match="Executor shutdown has been called"):
        loop.run_in_executor(None, print)


def test_set_default_executor(loop):
    import concurrent.futures

    with pytest.raises(TypeError):
        loop.set_default_executor(object())
    ex = concurrent.futures.ThreadPoolExecutor(1)
    loop.set_default_executor(ex)
    r = loop.run_until_complete(loop.run_in_executor(None, lambda: 5))
    assert r == 5
    loop.run_until_complete(loop.shutdown_default_executor())


def test_shutdown_default_executor_timeout(loop):
    import time

    if sys.version_info < (3, 12) and not is_ringloop():
        pytest.skip("timeout= is 3.12+ in asyncio")
    ev = threading.Event()
    loop.run_in_executor(None, ev.wait, 5)

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        t0 = time.monotonic()
        loop.run_until_complete(loop.shutdown_default_executor(timeout=0.1))
        dt = time.monotonic() - t0
    ev.set()
    assert dt < 3
    assert any(issubclass(x.category, RuntimeWarning) for x in w)


def test_task_factory(loop):
    calls = []

    def factory(lp, coro, **kw):
        calls.append(kw)
        return asyncio.Task(coro, loop=lp, **kw)

    with pytest.raises(TypeError):
        loop.set_task_factory(1)
    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory

    async def coro():
        return 3

    t = loop.create_task(coro(), name="named")
    assert t.get_name() == "named"
    assert loop.run_until_complete(t) == 3
    loop.set_task_factory(None)
    assert loop.get_task_factory() is None
    assert calls == [{}]


def test_create_task_name_and_context(loop):
    import contextvars

    var = contextvars.ContextVar("v", default=None)
    ctx = contextvars.copy_context()
    ctx.run(var.set, "ctx")

    async def coro():
        return var.get()

    t = loop.create_task(coro(), name="n1", context=ctx)
    assert t.get_name() == "n1"
    assert loop.run_until_complete(t) == "ctx"


def test_debug_flag(loop):
    assert loop.get_debug() is False
    loop.set_debug(True)
    assert loop.get_debug() is True
    loop.set_debug(False)
    assert loop.get_debug() is False


def test_debug_from_environment(monkeypatch):
    monkeypatch.setenv("PYTHONASYNCIODEBUG", "1")
    lp = new_loop()
    try:
        assert lp.get_debug() is True
    finally:
        lp.close()


def test_coroutine_origin_tracking_in_debug(loop):
    loop.set_debug(True)
    seen = []

    def probe():
        seen.append(sys.get_coroutine_origin_tracking_depth())
        loop.stop()

    loop.call_soon(probe)
    loop.run_forever()
    assert seen[0] > 0
    assert sys.get_coroutine_origin_tracking_depth() == 0


def test_runner_with_loop_factory():
    async def main():
        return type(asyncio.get_running_loop())

    with asyncio.Runner(loop_factory=new_loop) as runner:
        t = runner.run(main())
        assert t is type(runner.get_loop())


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.run(loop_factory=) is 3.12+")
def test_asyncio_run_loop_factory():
    async def main():
        return asyncio.get_running_loop()

    lp = asyncio.run(main(), loop_factory=new_loop)
    assert lp.is_closed()


@pytest.mark.ringloop_only
def test_ringloop_run_and_policy():
    async def main():
        return asyncio.get_running_loop()

    lp = ringloop.run(main())
    assert isinstance(lp, ringloop.Loop)
    assert lp.is_closed()

    old = asyncio.get_event_loop_policy()
    try:
        ringloop.install()
        pol = asyncio.get_event_loop_policy()
        assert isinstance(pol, ringloop.EventLoopPolicy)
        lp2 = asyncio.new_event_loop()
        assert isinstance(lp2, ringloop.Loop)
        lp2.close()
        lp3 = asyncio.run(main())
        assert isinstance(lp3, ringloop.Loop)
    finally:
        asyncio.set_event_loop_policy(old)


@pytest.mark.ringloop_only
def test_policy_keeps_child_watcher_api():
    import warnings

    pol = ringloop.EventLoopPolicy()
    assert isinstance(pol, asyncio.DefaultEventLoopPolicy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        w = asyncio.ThreadedChildWatcher()
        pol.set_child_watcher(w)
        assert pol.get_child_watcher() is w
    lp = pol.new_event_loop()
    assert isinstance(lp, ringloop.Loop)
    lp.close()


@pytest.mark.ringloop_only
def test_debug_default_follows_asyncio_check():
    from unittest import mock

    with mock.patch("asyncio.coroutines._is_debug_mode", lambda: True):
        lp = new_loop()
    try:
        assert lp.get_debug() is True
    finally:
        lp.close()


@pytest.mark.ringloop_only
def test_ringloop_run_debug():
    async def main():
        return asyncio.get_running_loop().get_debug()

    assert ringloop.run(main(), debug=True) is True


def test_keyboard_interrupt_in_task_propagates(loop):
    async def main():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        loop.run_until_complete(main())
    run_briefly(loop)


def test_repr(loop):
    r = repr(loop)
    assert "running=False" in r and "closed=False" in r


@pytest.mark.ringloop_only
def test_loop_refuses_to_run_in_forked_child():
    import os

    lp = new_loop()
    try:
        lp.run_until_complete(asyncio.sleep(0))
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                try:
                    lp.run_until_complete(asyncio.sleep(0))
                except RuntimeError as e:
                    if "os.fork()" in str(e):
                        code = 0
                lp.close()  # closing the inherited loop must be safe
                # a new loop works in the child
                lp2 = new_loop()
                if lp2.run_until_complete(asyncio.sleep(0, "ok")) != "ok":
                    code = 2
                lp2.close()
            finally:
                os.write(w, bytes([code]))
                os._exit(0)
        os.close(w)
        res = os.read(r, 1)
        os.close(r)
        os.waitpid(pid, 0)
        assert res == b"\x00"
        # the parent's loop is intact
        assert lp.run_until_complete(asyncio.sleep(0.01, "parent")) == "parent"
    finally:
        lp.close()


def test_loop_never_initialized_is_safe_to_use_and_collect():
    # Loop.__new__ without __init__: every part's state (transports,
    # sock_*) exists from __new__ on (rl_loop_part.loop_new), so methods
    # refuse cleanly instead of touching missing state, and the object
    # is collected without a crash.
    import gc
    import socket

    from ringloop import _core

    lp = _core.Loop.__new__(_core.Loop)
    a, b = socket.socketpair()
    try:
        with pytest.raises(RuntimeError, match="__init__"):
            lp.add_reader(a.fileno(), print)
        assert lp.remove_reader(a.fileno()) is False
        assert lp._net_counters() == {"ops_held": 0, "transports": 0}
        assert lp._net_leaked() == 0
    finally:
        a.close()
        b.close()
    del lp
    gc.collect()


def test_runner_close_on_a_closed_loop_warns_under_asyncios_name():
    # Runner.close() on a loop the user already closed leaves the
    # shutdown_asyncgens() coroutine unawaited; libraries silence that
    # RuntimeWarning with a filter naming asyncio's coroutine
    # (pytest-asyncio: ".*BaseEventLoop.shutdown_asyncgens.*").  The same
    # filter must silence ringloop's, so it is asyncio's own coroutine.
    import subprocess
    import textwrap

    code = textwrap.dedent(f"""
        import asyncio, gc, sys, warnings
        sys.path.insert(0, {os.path.dirname(os.path.dirname(ringloop.__file__))!r})
        import ringloop
        warnings.simplefilter("error")
        warnings.filterwarnings(
            "ignore", ".*BaseEventLoop.shutdown_asyncgens.*", RuntimeWarning)
        factory = (ringloop.new_event_loop if sys.argv[1] == "ringloop"
                   else asyncio.new_event_loop)
        r = asyncio.Runner(loop_factory=factory) if hasattr(asyncio, "Runner") else None
        loop = r.get_loop()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
        try:
            r.close()
        except RuntimeError as e:
            print("closed:", e)
        gc.collect()
        print("ok")
    """)
    which = "ringloop" if is_ringloop() else "asyncio"
    p = subprocess.run([sys.executable, "-W", "error", "-c", code, which],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "never awaited" not in p.stderr, p.stderr
    assert p.stdout.strip().endswith("ok"), p.stdout
