"""call_later / call_at: order, accuracy, cancellation, heap compaction."""
import asyncio
import math
import random
import time

import pytest

from conftest import is_ringloop, run_briefly


def test_timers_fire_in_time_order(loop):
    out = []
    for d in (0.05, 0.01, 0.03, 0.02, 0.04):
        loop.call_later(d, out.append, d)
    loop.call_later(0.06, loop.stop)
    loop.run_forever()
    assert out == [0.01, 0.02, 0.03, 0.04, 0.05]


@pytest.mark.ringloop_only
def test_equal_times_fire_in_call_order(loop):
    # asyncio's heap does not promise this; ringloop does.
    out = []
    when = loop.time() + 0.01
    for i in range(200):
        loop.call_at(when, out.append, i)
    loop.call_at(when + 0.01, loop.stop)
    loop.run_forever()
    assert out == list(range(200))


def test_random_timers_order_and_not_early(loop):
    rnd = random.Random(1234)
    fired = []
    start = loop.time()
    delays = [rnd.uniform(0, 0.1) for _ in range(500)]
    for d in delays:
        loop.call_at(start + d, lambda d=d: fired.append((d, loop.time())))
    loop.call_later(0.12, loop.stop)
    loop.run_forever()
    assert len(fired) == 500
    got = [d for d, _ in fired]
    assert got == sorted(got)
    for d, t in fired:
        # never early (allowing the loop's clock resolution)
        assert t - start >= d - loop._clock_resolution - 1e-6


def test_timer_accuracy(loop):
    t0 = loop.time()
    fired = []
    loop.call_later(0.05, lambda: fired.append(loop.time()))
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    dt = fired[0] - t0
    assert 0.05 - 1e-6 <= dt < 0.5


def test_call_at_in_the_past_runs_soon(loop):
    out = []
    loop.call_at(loop.time() - 10, out.append, "past")
    loop.call_at(0, out.append, "epoch")
    run_briefly(loop)
    assert sorted(out) == ["epoch", "past"]


def test_timer_handle_api(loop):
    when = loop.time() + 100
    h = loop.call_at(when, print)
    assert h.when() == when
    assert not h.cancelled()
    r = repr(h)
    assert r.startswith(f"<TimerHandle when={when} print()")
    h.cancel()
    assert h.cancelled()
    assert repr(h) == f"<TimerHandle cancelled when={when}>"


def test_timer_handle_ordering(loop):
    a = loop.call_at(10, print)
    b = loop.call_at(20, print)
    assert a < b and b > a and a <= b and b >= a
    assert a != b
    c = loop.call_at(10, print)
    assert a == c
    assert hash(a) == hash(c)
    for h in (a, b, c):
        h.cancel()
    assert a.__lt__(object()) is NotImplemented


def test_cancelled_timer_never_runs(loop):
    out = []
    h = loop.call_later(0.01, out.append, "no")
    loop.call_later(0.02, out.append, "yes")
    h.cancel()
    loop.call_later(0.03, loop.stop)
    loop.run_forever()
    assert out == ["yes"]


def test_cancel_timer_after_it_became_ready(loop):
    out = []
    box = {}

    def first():
        box["h2"].cancel()

    loop.call_later(0.01, first)
    box["h2"] = loop.call_later(0.01, out.append, "cancelled while ready")
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    assert out == []


def test_delay_none_and_when_none(loop):
    with pytest.raises(TypeError, match="delay must not be None"):
        loop.call_later(None, print)
    with pytest.raises(TypeError, match="when cannot be None"):
        loop.call_at(None, print)


def test_bad_delay_types(loop):
    with pytest.raises(TypeError):
        loop.call_later("1", print)


@pytest.mark.ringloop_only
def test_bad_when_type(loop):
    # asyncio accepts it and fails later inside its heap; ringloop refuses.
    with pytest.raises(TypeError):
        loop.call_at("1", print)


def test_int_and_float_like_delays(loop):
    out = []
    loop.call_later(0, out.append, 1)
    loop.call_later(True, loop.stop)  # bool is an int
    loop.run_forever()
    assert out == [1]


def test_infinite_delay_does_not_block_other_work(loop):
    h = loop.call_later(math.inf, print)
    out = []
    loop.call_later(0.01, out.append, 1)
    loop.call_later(0.02, loop.stop)
    loop.run_forever()
    assert out == [1]
    h.cancel()


def test_negative_delay(loop):
    out = []
    loop.call_later(-5, out.append, 1)
    run_briefly(loop)
    assert out == [1]


def test_many_cancelled_timers_compacted(loop):
    handles = [loop.call_later(1000 + i, print) for i in range(1000)]
    for h in handles[::2]:
        h.cancel()
    for h in handles[1::4]:
        h.cancel()
    assert loop._timer_cancelled_count == 750
    run_briefly(loop)
    # More than half were cancelled: the heap was rebuilt without them.
    assert loop._timer_cancelled_count == 0
    if is_ringloop():
        assert loop._debug_counters()["timers"] == 250
    else:
        assert len(loop._scheduled) == 250
    for h in handles:
        h.cancel()


def test_cancelled_head_timers_dropped_lazily(loop):
    hs = [loop.call_later(1000 + i, print) for i in range(10)]
    hs[0].cancel()
    hs[1].cancel()
    hs[5].cancel()
    assert loop._timer_cancelled_count == 3
    run_briefly(loop)
    # the two at the head go, the one inside stays counted
    assert loop._timer_cancelled_count == 1
    for h in hs:
        h.cancel()


def test_timer_from_timer(loop):
    out = []

    def tick(n):
        out.append(n)
        if n < 5:
            loop.call_later(0.001, tick, n + 1)
        else:
            loop.stop()

    loop.call_later(0.001, tick, 0)
    loop.run_forever()
    assert out == [0, 1, 2, 3, 4, 5]


def test_time_is_monotonic_clock(loop):
    t1 = time.monotonic()
    lt = loop.time()
    t2 = time.monotonic()
    assert t1 <= lt <= t2


def test_sleep_wakes_on_time(loop):
    async def main():
        t0 = loop.time()
        await asyncio.sleep(0.05)
        return loop.time() - t0

    dt = loop.run_until_complete(main())
    assert 0.05 - 1e-6 <= dt < 0.5


def test_timeout_with_idle_loop_does_not_spin(loop):
    # An idle loop waiting for one timer must sleep in the kernel, not spin.
    t0 = time.process_time()
    loop.call_later(0.2, loop.stop)
    loop.run_forever()
    cpu = time.process_time() - t0
    assert cpu < 0.1, f"loop burned {cpu:.3f}s of CPU while idle"


def test_patched_loop_time_drives_timers(loop):
    # asyncio's _run_once and call_later read self.time(): a test that
    # patches loop.time (aiohttp's keep-alive test does) controls when
    # timers are due.  A far-future timer becomes due when the patched
    # clock says so, and call_later counts from the patched clock.
    from unittest import mock

    fired = []
    now = loop.time()
    with mock.patch.object(loop, "time") as fake:
        fake.return_value = now
        h = loop.call_at(now + 3600, fired.append, "far")
        later = loop.call_later(10, fired.append, "later")
        assert later.when() == now + 10
        run_briefly(loop)
        assert fired == []
        fake.return_value = now + 3600
        run_briefly(loop)
        assert fired == ["later", "far"]
        assert not h.cancelled()
    # unpatched again: the real clock
    assert abs(loop.time() - time.monotonic()) < 60
    loop.call_later(0, fired.append, "real")
    run_briefly(loop)
    assert fired[-1] == "real"


def test_subclass_time_override_drives_timers():
    # A loop class whose time() is its own (asyncio's test loops do this)
    # schedules with it.
    import ringloop

    base = asyncio.SelectorEventLoop if not is_ringloop() else ringloop.Loop
    offset = [0.0]

    class Shifted(base):
        def time(self):
            return super().time() + offset[0]

    lp = Shifted()
    try:
        fired = []
        lp.call_later(3600, fired.append, 1)
        run_briefly(lp)
        assert fired == []
        offset[0] = 3601
        run_briefly(lp)
        assert fired == [1]
    finally:
        lp.close()
