"""call_soon and friends: ordering, arguments, contexts, errors, cancellation.

Loop-generic: RINGLOOP_TEST_LOOP=asyncio runs them against stock asyncio."""
import asyncio
import contextvars
import functools
import gc
import re
import weakref

import pytest

from conftest import is_ringloop, new_loop, run_briefly


def test_call_soon_runs_in_order_with_args(loop):
    out = []
    for i in range(10):
        loop.call_soon(out.append, i)
    loop.call_soon(lambda *a: out.append(a), 1, 2, 3, 4, 5)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert out == list(range(10)) + [(1, 2, 3, 4, 5)]


@pytest.mark.parametrize("nargs", range(0, 7))
def test_call_soon_any_number_of_args(loop, nargs):
    got = []
    loop.call_soon(lambda *a: got.append(a), *range(nargs))
    run_briefly(loop)
    assert got == [tuple(range(nargs))]


def test_callbacks_scheduled_during_iteration_run_next_iteration(loop):
    order = []

    def first():
        order.append("first")
        loop.call_soon(order.append, "third")

    loop.call_soon(first)
    loop.call_soon(order.append, "second")
    loop.call_soon(loop.stop)
    loop.run_forever()
    # "third" was scheduled while iteration 1 ran: it runs after stop()'s
    # iteration completes only if the loop runs again.
    assert order == ["first", "second"]
    run_briefly(loop)
    assert order == ["first", "second", "third"]


def test_handle_cancel_prevents_run(loop):
    out = []
    h = loop.call_soon(out.append, 1)
    loop.call_soon(out.append, 2)
    assert not h.cancelled()
    h.cancel()
    assert h.cancelled()
    h.cancel()  # idempotent
    run_briefly(loop)
    assert out == [2]


def test_handle_cancel_from_earlier_callback(loop):
    out = []
    h2 = None

    def cancel_next():
        out.append(1)
        h2.cancel()

    loop.call_soon(cancel_next)
    h2 = loop.call_soon(out.append, 2)
    run_briefly(loop)
    assert out == [1]


def test_handle_cancel_itself_while_running(loop):
    box = {}
    out = []

    def cb(x):
        box["h"].cancel()
        out.append(x)

    box["h"] = loop.call_soon(cb, "arg")
    run_briefly(loop)
    assert out == ["arg"]
    assert box["h"].cancelled()


def test_cancelled_handle_releases_callback(loop):
    class Thing:
        def __call__(self):
            pass

    t = Thing()
    ref = weakref.ref(t)
    h = loop.call_soon(t)
    del t
    h.cancel()
    gc.collect()
    assert ref() is None
    run_briefly(loop)


def test_context_default_is_a_copy(loop):
    var = contextvars.ContextVar("var", default="unset")
    seen = []

    def cb():
        seen.append(var.get())
        var.set("inner")

    def body():
        var.set("outer")
        loop.call_soon(cb)
        loop.call_soon(cb)
        run_briefly(loop)
        # each callback got its own copy taken when it was scheduled
        assert seen == ["outer", "outer"]
        assert var.get() == "outer"

    # In a context of its own: a variable set in pytest's context would stay
    # there (the refleak runner counts it).
    contextvars.copy_context().run(body)


def test_context_explicit(loop):
    var = contextvars.ContextVar("var", default="unset")
    ctx = contextvars.Context()
    ctx.run(var.set, "in-ctx")
    seen = []
    h = loop.call_soon(lambda: seen.append(var.get()), context=ctx)
    assert h._context is ctx
    if hasattr(h, "get_context"):  # 3.12+ in asyncio; always in ringloop
        assert h.get_context() is ctx
    loop.call_soon(lambda: seen.append(var.get()), context=None)
    run_briefly(loop)
    assert seen == ["in-ctx", "unset"]


def test_context_changes_persist_in_explicit_context(loop):
    var = contextvars.ContextVar("var", default=0)
    ctx = contextvars.copy_context()
    for _ in range(3):
        loop.call_soon(lambda: var.set(var.get() + 1), context=ctx)
    run_briefly(loop)
    assert ctx[var] == 3
    assert var.get() == 0


def test_unknown_keyword_rejected(loop):
    with pytest.raises(TypeError):
        loop.call_soon(print, bogus=1)
    with pytest.raises(TypeError):
        loop.call_later(1, print, bogus=1)
    with pytest.raises(TypeError):
        loop.call_soon_threadsafe(print, bogus=1)


def test_missing_callback_rejected(loop):
    with pytest.raises(TypeError):
        loop.call_soon()
    with pytest.raises(TypeError):
        loop.call_later(1)
    with pytest.raises(TypeError):
        loop.call_at(1)


@pytest.mark.parametrize("method", ["call_soon", "call_soon_threadsafe"])
def test_non_callable_rejected_in_debug(loop, method):
    loop.set_debug(True)
    with pytest.raises(TypeError, match="a callable object was expected"):
        getattr(loop, method)(1)


def test_non_callable_timer_rejected_in_debug(loop):
    loop.set_debug(True)
    with pytest.raises(TypeError, match=r"a callable object was expected by call_at\(\)"):
        loop.call_later(1, "not callable")
    with pytest.raises(TypeError, match=r"a callable object was expected by call_at\(\)"):
        loop.call_at(1, None)


@pytest.mark.ringloop_only
def test_non_callable_rejected_without_debug(loop):
    # Stricter than stock asyncio, which accepts it and reports a TypeError
    # through the exception handler when the callback runs.
    with pytest.raises(TypeError, match=r"a callable object was expected by call_soon\(\), got 1"):
        loop.call_soon(1)
    with pytest.raises(TypeError, match=r"call_at\(\)"):
        loop.call_later(0, 1)


def test_coroutine_rejected(loop):
    loop.set_debug(True)

    async def coro():
        pass

    c = coro()
    try:
        with pytest.raises(TypeError, match=r"coroutines cannot be used with call_soon\(\)"):
            loop.call_soon(c)
        with pytest.raises(TypeError, match=r"coroutines cannot be used with call_soon\(\)"):
            loop.call_soon(coro)
        with pytest.raises(TypeError, match=r"coroutines cannot be used with call_at\(\)"):
            loop.call_later(1, coro)
    finally:
        c.close()


def test_closed_loop_raises():
    lp = new_loop()
    lp.close()
    for call in (
        lambda: lp.call_soon(print),
        lambda: lp.call_soon_threadsafe(print),
        lambda: lp.call_later(1, print),
        lambda: lp.call_at(1, print),
        lambda: lp.run_forever(),
        lambda: lp.run_in_executor(None, print),
    ):
        with pytest.raises(RuntimeError, match="Event loop is closed"):
            call()
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        lp.run_until_complete(coro)
    coro.close()
    lp.close()  # idempotent


def test_exception_in_callback_goes_to_handler_and_loop_continues(loop, loop_errors):
    out = []

    def boom():
        raise ZeroDivisionError("nope")

    h = loop.call_soon(boom)
    loop.call_soon(out.append, "after")
    run_briefly(loop)
    assert out == ["after"]
    assert len(loop_errors) == 1
    ctx = loop_errors[0]
    assert isinstance(ctx["exception"], ZeroDivisionError)
    assert ctx["handle"] is h
    assert ctx["message"].startswith("Exception in callback ")
    assert "boom" in ctx["message"]


def test_exception_handler_default_logs(caplog):
    lp = new_loop()
    try:
        def boom():
            raise ValueError("logged")

        lp.call_soon(boom)
        with caplog.at_level("ERROR", logger="asyncio"):
            run_briefly(lp)
        records = [r for r in caplog.records if r.name == "asyncio"]
        assert len(records) == 1
        rec = records[0]
        assert rec.getMessage().startswith("Exception in callback ")
        assert "handle: <Handle" in rec.getMessage()
        assert rec.exc_info[0] is ValueError
    finally:
        lp.close()


def test_base_exceptions_other_than_exit_go_to_handler(loop, loop_errors):
    def cb():
        raise asyncio.CancelledError()

    loop.call_soon(cb)
    run_briefly(loop)
    assert isinstance(loop_errors[0]["exception"], asyncio.CancelledError)


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_exit_exceptions_propagate_and_keep_queue(loop, exc):
    out = []

    def cb():
        raise exc()

    loop.call_soon(out.append, 1)
    loop.call_soon(cb)
    loop.call_soon(out.append, 2)
    with pytest.raises(exc):
        loop.run_forever()
    assert out == [1]
    assert not loop.is_running()
    # The remaining callback is still queued and runs on the next run.
    run_briefly(loop)
    assert out == [1, 2]


def test_exception_handler_raising_is_logged(caplog):
    lp = new_loop()
    try:
        def bad_handler(loop, ctx):
            raise RuntimeError("handler broke")

        lp.set_exception_handler(bad_handler)
        lp.call_soon(lambda: 1 / 0)
        with caplog.at_level("ERROR", logger="asyncio"):
            run_briefly(lp)
        msgs = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
        assert any("Unhandled error in exception handler" in m for m in msgs)
    finally:
        lp.close()


def test_set_exception_handler_validates(loop):
    with pytest.raises(TypeError, match="A callable object or None is expected"):
        loop.set_exception_handler("nope")
    handler = lambda lp, ctx: None  # noqa: E731
    loop.set_exception_handler(handler)
    assert loop.get_exception_handler() is handler
    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None


def test_call_exception_handler_custom_gets_loop(loop):
    seen = []
    loop.set_exception_handler(lambda lp, ctx: seen.append((lp, ctx)))
    loop.call_exception_handler({"message": "hi"})
    assert seen == [(loop, {"message": "hi"})]


def test_handle_repr(loop):
    def noop(*args):
        pass

    import sys

    # 3.13 shows callback arguments only in debug mode
    shown = "" if sys.version_info >= (3, 13) else "1, 2"
    shown_p1, shown_p2 = ("", "") if sys.version_info >= (3, 13) else ("1", "2")
    h = loop.call_soon(noop, 1, 2)
    r = repr(h)
    assert r.startswith(f"<Handle test_handle_repr.<locals>.noop({shown}) at ")
    assert re.search(r"test_callbacks\.py:\d+>$", r)
    h.cancel()
    assert repr(h) == "<Handle cancelled>"
    p = loop.call_soon(functools.partial(noop, 1), 2)
    assert repr(p).startswith(f"<Handle test_handle_repr.<locals>.noop({shown_p1})({shown_p2}) at ")
    run_briefly(loop)


def test_handle_repr_debug_keeps_callback_after_cancel(loop):
    loop.set_debug(True)

    def noop():
        pass

    h = loop.call_soon(noop)
    assert "created at" in repr(h)
    h.cancel()
    r = repr(h)
    assert r.startswith(
        "<Handle cancelled test_handle_repr_debug_keeps_callback_after_cancel.<locals>.noop() at "
    )
    assert "created at" in r
    run_briefly(loop)


def test_handle_weakref(loop):
    h = loop.call_soon(print)
    wr = weakref.ref(h)
    assert wr() is h
    h.cancel()
    run_briefly(loop)


def test_handle_attributes(loop):
    def cb(a, b):
        pass

    h = loop.call_soon(cb, 1, 2)
    assert h._callback is cb
    assert h._args == (1, 2)
    assert h._loop is loop
    assert h._cancelled is False
    assert isinstance(h._context, contextvars.Context)
    h.cancel()
    assert h._callback is None
    assert h._args is None
    assert h._cancelled is True
    run_briefly(loop)


def test_handles_are_independent_objects_after_recycling(loop):
    # The loop recycles handles nobody else holds; one that is held must
    # never be reused behind the holder's back.
    kept = loop.call_soon(lambda: None)
    for _ in range(5):
        for _ in range(100):
            loop.call_soon(lambda: None)
        run_briefly(loop)
    assert kept._callback is not None or kept.cancelled() is False
    h2 = loop.call_soon(print, "x")
    assert h2 is not kept
    h2.cancel()
    run_briefly(loop)


def test_many_callbacks_grow_queue(loop):
    n = 100_000
    count = [0]

    def inc():
        count[0] += 1

    for _ in range(n):
        loop.call_soon(inc)
    run_briefly(loop)
    assert count[0] == n


def test_stop_then_run_again(loop):
    out = []
    loop.call_soon(out.append, 1)
    loop.stop()
    loop.run_forever()
    assert out == [1]
    loop.call_soon(out.append, 2)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert out == [1, 2]


def test_stop_inside_callback_finishes_iteration(loop):
    out = []
    loop.call_soon(loop.stop)
    loop.call_soon(out.append, "same iteration")
    loop.run_forever()
    assert out == ["same iteration"]


def test_callback_raising_in_debug_includes_source_traceback(loop, loop_errors):
    loop.set_debug(True)

    def boom():
        raise KeyError("k")

    loop.call_soon(boom)
    run_briefly(loop)
    ctx = loop_errors[0]
    assert "source_traceback" in ctx
    assert ctx["source_traceback"][-1][2] == "test_callback_raising_in_debug_includes_source_traceback"


def test_slow_callback_warning(loop, caplog):
    import time

    loop.set_debug(True)
    loop.slow_callback_duration = 0.01

    def slow():
        time.sleep(0.03)

    loop.call_soon(slow)
    with caplog.at_level("WARNING", logger="asyncio"):
        run_briefly(loop)
    msgs = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert any(m.startswith("Executing <Handle") and "took" in m and "slow" in m for m in msgs), msgs


def test_debug_thread_check(loop):
    import threading

    loop.set_debug(True)
    errors = []

    def from_other_thread():
        try:
            loop.call_soon(print)
        except RuntimeError as e:
            errors.append(str(e))
        loop.call_soon_threadsafe(loop.stop)

    def start():
        threading.Thread(target=from_other_thread).start()

    loop.call_soon(start)
    loop.run_forever()
    assert errors == [
        "Non-thread-safe operation invoked on an event loop other than the current one"
    ]


def test_ringloop_is_abstract_event_loop(loop):
    assert isinstance(loop, asyncio.AbstractEventLoop)
    asyncio.set_event_loop(loop)
    assert asyncio.get_event_loop_policy().get_event_loop() is loop


@pytest.mark.skipif(not is_ringloop(), reason="ringloop handle types")
def test_handle_types_not_instantiable():
    import ringloop

    with pytest.raises(TypeError):
        ringloop.Handle()
    with pytest.raises(TypeError):
        ringloop.TimerHandle()


def test_handles_are_asyncio_handles(loop):
    h = loop.call_soon(print)
    t = loop.call_later(10, print)
    assert isinstance(h, asyncio.Handle)
    assert isinstance(t, asyncio.TimerHandle) and isinstance(t, asyncio.Handle)
    assert not isinstance(h, asyncio.TimerHandle)
    h.cancel()
    t.cancel()
