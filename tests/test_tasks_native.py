"""ringloop's native Future and Task: compatibility with asyncio's helpers,
cross-awaiting with asyncio's own types and on foreign loops, cancellation in
every state, error propagation, evil callbacks, and leaks."""
import asyncio
import contextvars
import gc
import sys
import tracemalloc
import weakref

import pytest

import ringloop
from conftest import new_loop

pytestmark = pytest.mark.ringloop_only

PY312 = sys.version_info >= (3, 12)
PY313 = sys.version_info >= (3, 13)


def run(loop, coro):
    return loop.run_until_complete(coro)


# --- identity ---------------------------------------------------------------


def test_types_and_isinstance(loop):
    async def coro():
        return 1

    fut = loop.create_future()
    task = loop.create_task(coro())
    assert type(fut) is ringloop.Future
    assert type(task) is ringloop.Task
    assert isinstance(fut, asyncio.Future)
    assert isinstance(task, asyncio.Task)
    assert isinstance(task, asyncio.Future)
    assert isinstance(fut, ringloop.Future) and isinstance(task, ringloop.Future)
    assert asyncio.isfuture(fut) and asyncio.isfuture(task)
    assert hash(fut) != hash(task)
    assert weakref.ref(fut)() is fut and weakref.ref(task)() is task
    assert run(loop, task) == 1
    fut.cancel()


def test_native_tasks_false_uses_asyncio_types():
    lp = ringloop.new_event_loop(native_tasks=False)
    try:
        assert not lp.native_tasks
        assert type(lp.create_future()) is asyncio.Future

        async def coro():
            return asyncio.current_task()

        t = lp.create_task(coro())
        assert type(t) is asyncio.Task
        assert run(lp, t) is t
    finally:
        lp.close()


def test_native_tasks_env(monkeypatch):
    monkeypatch.setenv("RINGLOOP_NATIVE_TASKS", "0")
    lp = ringloop.new_event_loop()
    try:
        assert not lp.native_tasks
    finally:
        lp.close()
    monkeypatch.setenv("RINGLOOP_NATIVE_TASKS", "maybe")
    with pytest.raises(ValueError):
        ringloop.new_event_loop()


def test_python_subclasses(loop):
    class MyFuture(ringloop.Future):
        pass

    class MyTask(ringloop.Task):
        def __init__(self, coro, **kw):
            self.extra = "x"
            super().__init__(coro, **kw)

    async def coro(f):
        return await f

    f = MyFuture(loop=loop)
    t = MyTask(coro(f), loop=loop)
    loop.call_soon(f.set_result, 5)
    assert run(loop, t) == 5
    assert t.extra == "x"
    assert asyncio.isfuture(f)


def test_future_attributes_and_dict(loop):
    f = loop.create_future()
    f.custom = 1
    assert f.custom == 1
    assert f._state == "PENDING"
    assert f._loop is loop and f.get_loop() is loop
    assert f._callbacks is None
    with pytest.raises(ValueError):
        f._log_traceback = True
    f.set_result(3)
    assert f._state == "FINISHED" and f._result == 3


# --- asyncio's helpers on native tasks -----------------------------------------


def test_current_task_and_all_tasks(loop):
    async def child(ev):
        await ev.wait()

    async def main():
        me = asyncio.current_task()
        assert isinstance(me, ringloop.Task)
        ev = asyncio.Event()
        kids = [asyncio.create_task(child(ev)) for _ in range(5)]
        await asyncio.sleep(0)
        alltasks = asyncio.all_tasks()
        assert me in alltasks
        assert set(kids) <= alltasks
        ev.set()
        await asyncio.gather(*kids)
        assert asyncio.all_tasks() == {me}
        return me

    me = run(loop, main())
    assert asyncio.current_task(loop) is None
    assert me.done()


def test_timeout_taskgroup_gather_wait_shield(loop):
    async def slow(x, d=0.01):
        await asyncio.sleep(d)
        return x

    async def main():
        assert await asyncio.gather(slow(1), slow(2), slow(3)) == [1, 2, 3]
        async with asyncio.TaskGroup() as tg:
            ts = [tg.create_task(slow(i)) for i in range(10)]
        assert [t.result() for t in ts] == list(range(10))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await asyncio.sleep(10)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(10), 0.01)
        done, pending = await asyncio.wait([asyncio.create_task(slow(1)), asyncio.create_task(slow(2, 10))],
                                           return_when=asyncio.FIRST_COMPLETED)
        assert len(done) == 1 and len(pending) == 1
        for p in pending:
            p.cancel()
        inner = asyncio.create_task(slow("shielded", 0.02))
        outer = asyncio.ensure_future(asyncio.shield(inner))
        await asyncio.sleep(0)
        outer.cancel()
        assert await inner == "shielded"
        got = [await f for f in asyncio.as_completed([slow(3, 0.03), slow(1, 0.01), slow(2, 0.02)])]
        assert got == [1, 2, 3]

    run(loop, main())


def test_taskgroup_error_cancels_siblings(loop):
    cancelled = []

    async def sleeper(i):
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(i)
            raise

    async def boom():
        await asyncio.sleep(0.01)
        raise ValueError("boom")

    async def main():
        async with asyncio.TaskGroup() as tg:
            for i in range(3):
                tg.create_task(sleeper(i))
            tg.create_task(boom())

    with pytest.raises(ExceptionGroup) as ei:
        run(loop, main())
    assert ei.group_contains(ValueError) if hasattr(ei, "group_contains") else True
    assert sorted(cancelled) == [0, 1, 2]


def test_contextvars_propagate_into_tasks(loop):
    var = contextvars.ContextVar("var", default="none")

    async def child():
        return var.get()

    async def main():
        var.set("parent")
        t = asyncio.create_task(child())
        ctx = contextvars.Context()
        ctx.run(var.set, "explicit")
        t2 = loop.create_task(child(), context=ctx)
        return await t, await t2

    assert run(loop, main()) == ("parent", "explicit")


@pytest.mark.skipif(not PY312, reason="eager task factory is 3.12+")
def test_eager_task_factory_with_native_tasks(loop):
    loop.set_task_factory(asyncio.create_eager_task_factory(ringloop.Task))
    order = []

    async def child():
        order.append("child runs eagerly")
        return 7

    async def main():
        t = asyncio.create_task(child())
        order.append("after create_task")
        assert t.done() and t.result() == 7
        assert isinstance(t, ringloop.Task)

        async def blocking():
            await asyncio.sleep(0)
            return asyncio.current_task()

        t2 = asyncio.create_task(blocking())
        assert not t2.done()
        assert t2 in asyncio.all_tasks()
        assert await t2 is t2

    run(loop, main())
    assert order == ["child runs eagerly", "after create_task"]


def test_names(loop):
    async def c():
        pass

    t1 = loop.create_task(c())
    t2 = loop.create_task(c(), name="custom")
    assert t1.get_name().startswith("Task-")
    assert t2.get_name() == "custom"
    t2.set_name(123)
    assert t2.get_name() == "123"
    run(loop, asyncio.gather(t1, t2))


def test_repr(loop):
    async def c():
        await asyncio.sleep(0)

    t = loop.create_task(c(), name="r")
    assert repr(t).startswith("<Task pending name='r' coro=<")
    f = loop.create_future()
    assert repr(f) == "<Future pending>"
    f.set_result(1)
    assert repr(f) == "<Future finished result=1>"
    run(loop, t)
    assert repr(t).startswith("<Task finished name='r'")


# --- cross-awaiting ------------------------------------------------------------


def test_native_task_awaits_asyncio_future(loop):
    async def main():
        f = asyncio.Future(loop=loop)
        loop.call_soon(f.set_result, "stock")
        return await f

    assert run(loop, main()) == "stock"


def test_asyncio_task_awaits_native_future(loop):
    async def main():
        f = loop.create_future()
        loop.call_later(0.001, f.set_result, "native")
        return await f

    t = asyncio.Task(main(), loop=loop)
    assert type(t) is asyncio.Task
    assert run(loop, t) == "native"


def test_native_task_awaits_asyncio_task_and_back(loop):
    async def inner():
        await asyncio.sleep(0)
        return "inner"

    async def outer():
        stock = asyncio.Task(inner(), loop=loop)
        native = loop.create_task(inner())
        return await stock, await native

    assert run(loop, asyncio.Task(outer(), loop=loop)) == ("inner", "inner")
    assert run(loop, loop.create_task(outer())) == ("inner", "inner")


try:  # uvloop opens process-wide fds on first use: not a leak of the test's
    import uvloop as _uvloop

    _uvloop.new_event_loop().close()
except ImportError:
    pass


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_native_task_on_foreign_loop(kind):
    if kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        lp = uvloop.new_event_loop()
    else:
        lp = asyncio.new_event_loop()
    try:
        async def child(f):
            return await f

        async def main():
            f = ringloop.Future(loop=lp)
            stock = lp.create_future()
            t = ringloop.Task(child(f), loop=lp)
            t2 = ringloop.Task(child(stock), loop=lp)
            lp.call_soon(f.set_result, 1)
            lp.call_soon(stock.set_result, 2)
            assert asyncio.current_task() is not None
            res = await t, await t2
            t3 = ringloop.Task(asyncio.sleep(10), loop=lp)
            await asyncio.sleep(0)
            t3.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t3
            return res

        assert lp.run_until_complete(ringloop.Task(main(), loop=lp)) == (1, 2)
    finally:
        lp.close()


def test_task_wrong_loop(loop):
    other = new_loop()
    try:
        async def main():
            f = other.create_future()
            await f

        t = loop.create_task(main())
        with pytest.raises(RuntimeError, match="attached to a different loop"):
            run(loop, t)
    finally:
        other.close()


def test_task_awaits_itself(loop):
    async def main():
        await asyncio.sleep(0)
        await t

    t = loop.create_task(main())
    with pytest.raises(RuntimeError, match="Task cannot await on itself"):
        run(loop, t)


def test_bad_yields(loop):
    def gen_based():
        yield 123

    class Weird:
        def __await__(self):
            yield 5

    async def bad():
        await Weird()

    with pytest.raises(RuntimeError, match="Task got bad yield: 5"):
        run(loop, loop.create_task(bad()))


# --- cancellation ----------------------------------------------------------------


def test_cancel_before_first_step(loop):
    ran = []

    async def c():
        ran.append(1)

    t = loop.create_task(c())
    assert t.cancel("early")
    with pytest.raises(asyncio.CancelledError) as ei:
        run(loop, t)
    assert ran == []
    assert t.cancelled()
    assert ei.value.args == ("early",)


def test_cancel_while_waiting_future_and_task(loop):
    async def waiter(aw):
        return await aw

    async def main():
        f = loop.create_future()
        t1 = loop.create_task(waiter(f))
        await asyncio.sleep(0)
        assert t1._fut_waiter is f
        assert t1.cancel("m1")
        assert f.cancelled()
        with pytest.raises(asyncio.CancelledError):
            await t1
        inner = loop.create_task(asyncio.sleep(10))
        t2 = loop.create_task(waiter(inner))
        await asyncio.sleep(0)
        t2.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t2
        assert inner.cancelled()
        assert t2.cancelling() == 1

    run(loop, main())


def test_cancel_storm(loop):
    """Cancel repeatedly, in every state, from callbacks and other tasks."""
    async def stubborn():
        n = 0
        while True:
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                n += 1
                if n >= 3:
                    raise
                asyncio.current_task().uncancel()

    async def main():
        tasks = [loop.create_task(stubborn()) for _ in range(50)]
        for i in range(10):
            for t in tasks:
                t.cancel()
                if i % 3 == 0:
                    loop.call_soon(t.cancel)
            await asyncio.sleep(0)
        res = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in res)
        assert all(t.cancelled() for t in tasks)
        assert all(not t.cancel() for t in tasks)

    run(loop, main())


def test_uncancel_version_semantics(loop):
    async def main():
        t = loop.create_task(asyncio.sleep(0))
        t.cancel()
        assert t.cancelling() == 1
        assert t.uncancel() == 0
        assert t.uncancel() == 0
        # 3.13 clears the pending cancel when the count reaches 0
        assert t._must_cancel is (not PY313)
        try:
            await t
        except asyncio.CancelledError:
            return "cancelled"
        return "ran"

    assert run(loop, main()) == ("ran" if PY313 else "cancelled")


def test_cancel_message_and_chaining(loop):
    async def inner():
        await asyncio.sleep(10)

    async def main():
        t = loop.create_task(inner())
        await asyncio.sleep(0)
        t.cancel(msg="why")
        try:
            await t
        except asyncio.CancelledError as e:
            return e

    exc = run(loop, main())
    assert isinstance(exc, asyncio.CancelledError)


# --- errors --------------------------------------------------------------------


def test_coroutine_raising_stopiteration(loop):
    async def c():
        raise StopIteration

    t = loop.create_task(c())
    with pytest.raises(RuntimeError, match="coroutine raised StopIteration"):
        run(loop, t)


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_base_exceptions_propagate(loop, exc):
    async def c():
        await asyncio.sleep(0)
        raise exc

    t = loop.create_task(c())
    with pytest.raises(exc):
        loop.run_forever()
    assert t.done()
    with pytest.raises(exc):
        t.result()


def test_set_exception_stopiteration(loop):
    f = loop.create_future()
    if PY313:
        f.set_exception(StopIteration())
        assert isinstance(f.exception(), RuntimeError)
        assert isinstance(f.exception().__cause__, StopIteration)
    else:
        with pytest.raises(TypeError):
            f.set_exception(StopIteration())
        f.cancel()


def test_bad_input(loop):
    with pytest.raises(TypeError, match="a coroutine was expected"):
        loop.create_task(123)
    with pytest.raises(TypeError, match="a coroutine was expected"):
        ringloop.Task(lambda: None, loop=loop)
    f = loop.create_future()
    with pytest.raises(TypeError):
        f.add_done_callback()
    with pytest.raises(TypeError):
        f.add_done_callback(print, bogus=1)
    with pytest.raises(TypeError):
        f.cancel(1, 2)
    with pytest.raises(asyncio.InvalidStateError):
        f.result()
    with pytest.raises(asyncio.InvalidStateError):
        f.exception()
    f.set_result(1)
    with pytest.raises(asyncio.InvalidStateError):
        f.set_result(2)
    t = loop.create_task(asyncio.sleep(0))
    with pytest.raises(RuntimeError, match="does not support set_result"):
        t.set_result(1)
    run(loop, t)


def test_task_on_closed_loop():
    lp = new_loop()
    lp.close()
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        lp.create_task(coro)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        ringloop.Task(coro, loop=lp)
    coro.close()


def test_destroyed_pending_and_never_retrieved(loop, loop_errors):
    async def forever():
        await loop.create_future()  # nothing else references it

    t = loop.create_task(forever())
    loop.call_soon(loop.stop)
    loop.run_forever()
    del t
    gc.collect()
    f = loop.create_future()
    f.set_exception(ValueError("lost"))
    del f
    gc.collect()
    msgs = [e["message"] for e in loop_errors]
    assert "Task was destroyed but it is pending!" in msgs
    assert "Future exception was never retrieved" in msgs


# --- evil callbacks --------------------------------------------------------------


def test_callback_removes_other_callbacks(loop):
    f = loop.create_future()
    calls = []

    def cb2(fut):
        calls.append(2)

    def cb1(fut):
        calls.append(1)
        fut.remove_done_callback(cb2)  # too late: already scheduled

    f.add_done_callback(cb1)
    f.add_done_callback(cb2)
    f.set_result(None)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == [1, 2]


def test_eq_mutating_during_remove(loop):
    f = loop.create_future()

    class Evil:
        mutated = 0

        def __call__(self, fut):
            pass

        def __eq__(self, other):
            if Evil.mutated < 3:  # re-entrant mutation while comparing
                Evil.mutated += 1
                f.add_done_callback(print)
            return False

        __hash__ = object.__hash__

    for _ in range(5):
        f.add_done_callback(Evil())
    assert f.remove_done_callback(Evil()) == 0
    assert len(f._callbacks) == 8  # 5 Evil + 3 added while comparing
    assert f.remove_done_callback(print) == 3
    f.set_result(1)
    loop.call_soon(loop.stop)
    loop.run_forever()


def test_callback_order_with_native_waiter(loop):
    order = []

    async def waiter(f):
        await f
        order.append("task")

    async def main():
        f = loop.create_future()
        f.add_done_callback(lambda _: order.append("cb1"))
        t = loop.create_task(waiter(f))
        await asyncio.sleep(0)
        f.add_done_callback(lambda _: order.append("cb2"))
        f.set_result(None)
        await t

    run(loop, main())
    # registration order: the task's wake-up was added when it awaited
    assert order == ["cb1", "task", "cb2"]
    # and the same as with asyncio's own types
    stock = ringloop.new_event_loop(native_tasks=False)
    try:
        order.clear()
        f = None

        async def stock_main():
            f = stock.create_future()
            f.add_done_callback(lambda _: order.append("cb1"))
            t = stock.create_task(waiter(f))
            await asyncio.sleep(0)
            f.add_done_callback(lambda _: order.append("cb2"))
            f.set_result(None)
            await t

        stock.run_until_complete(stock_main())
        assert order == ["cb1", "task", "cb2"]
    finally:
        stock.close()


# --- leaks -----------------------------------------------------------------------


def _count(tp):
    return sum(1 for o in gc.get_objects() if type(o) is tp)


def test_no_leak_100k_tasks_and_futures(loop):
    async def work(f):
        await asyncio.sleep(0)
        return await f

    async def batch(n):
        for _ in range(n // 1000):
            futs = [loop.create_future() for _ in range(1000)]
            tasks = [loop.create_task(work(f)) for f in futs]
            await asyncio.sleep(0)
            for i, f in enumerate(futs):
                if i % 3 == 0:
                    f.set_result(i)
                elif i % 3 == 1:
                    f.set_exception(ValueError(i))
                else:
                    tasks[i].cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    run(loop, batch(2000))  # warm up free lists and caches
    gc.collect()
    tracemalloc.start()
    try:
        base_mem = tracemalloc.get_traced_memory()[0]
        base = (_count(ringloop.Task), _count(ringloop.Future))
        run(loop, batch(100_000))
        gc.collect()
        after = (_count(ringloop.Task), _count(ringloop.Future))
        grown = tracemalloc.get_traced_memory()[0] - base_mem
    finally:
        tracemalloc.stop()
    assert after == base
    assert grown < 256 * 1024, f"memory grew by {grown} bytes"


def test_refcounts_of_results(loop):
    res = object()
    rc = sys.getrefcount(res)

    async def c(f):
        return await f

    for _ in range(1000):
        f = loop.create_future()
        t = loop.create_task(c(f))
        loop.call_soon(f.set_result, res)
        assert run(loop, t) is res
    del f, t
    gc.collect()
    assert sys.getrefcount(res) == rc
