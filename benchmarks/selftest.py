#!/usr/bin/env python3
"""Check that the cases' own checks work: every case must pass on every
available loop at a small size, and must FAIL on deliberately broken loops
(dropped, duplicated or reordered callbacks, ignored cancel(), early or
out-of-order timers, lost call_soon_threadsafe, a run_forever that returns
early).  A case that passes on a broken loop could publish a fast number
for a loop that is wrong.

    PYTHONPATH=python python3 benchmarks/selftest.py     # exit status 0 = all good
"""
import asyncio
import os
import selectors
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cases import CASES, CaseFailure  # noqa: E402
import cases  # noqa: E402
from loops import LOOPS, Unavailable, applicable  # noqa: E402
from worker import run_case  # noqa: E402

N = 6000
HANG_SECONDS = 3.0
Base = asyncio.SelectorEventLoop


class _Counting(Base):
    every = 997

    def __init__(self):
        super().__init__()
        self._calls = 0

    def _tick(self):
        self._calls += 1
        return self._calls % self.every == 0


class DropsCallbacks(_Counting):
    def call_soon(self, cb, *args, context=None):
        if self._tick() and cb != self.stop:
            return None
        return super().call_soon(cb, *args, context=context)


class DuplicatesCallbacks(_Counting):
    def call_soon(self, cb, *args, context=None):
        if self._tick():
            super().call_soon(cb, *args, context=context)
        return super().call_soon(cb, *args, context=context)


class ReordersCallbacks(_Counting):
    def _call_soon(self, cb, args, context):
        h = super()._call_soon(cb, args, context)
        if self._tick() and len(self._ready) > 1:
            self._ready.rotate(1)   # last one jumps the queue
        return h


class WrongArgs(_Counting):
    def call_soon(self, cb, *args, context=None):
        if self._tick() and args and isinstance(args[0], int):
            args = (args[0] + 1,) + args[1:]
        return super().call_soon(cb, *args, context=context)


class _HandleProxy:
    """Reports the requested deadline, whatever the loop really did."""

    _source_traceback = None

    def __init__(self, handle, when, cancel=True):
        self._h, self._when, self._cancel = handle, when, cancel

    def when(self):
        return self._when

    def cancel(self):
        if self._cancel:
            self._h.cancel()


class IgnoresCancel(Base):
    def call_at(self, when, cb, *args, context=None):
        return _HandleProxy(super().call_at(when, cb, *args, context=context), when, False)


class EarlyTimers(Base):
    def call_at(self, when, cb, *args, context=None):
        return _HandleProxy(super().call_at(when - 0.01, cb, *args, context=context), when)


class ShuffledTimers(_Counting):
    def call_at(self, when, cb, *args, context=None):
        real = when + (0.003 if self._tick() else 0.0)   # late, so never early
        return _HandleProxy(super().call_at(real, cb, *args, context=context), when)


class DropsTimers(_Counting):
    def call_at(self, when, cb, *args, context=None):
        if self._tick():
            return _HandleProxy(asyncio.Handle(cb, args, self), when)  # never scheduled
        return super().call_at(when, cb, *args, context=context)


class DropsThreadsafe(_Counting):
    def call_soon_threadsafe(self, cb, *args, context=None):
        if self._tick():
            return None
        return super().call_soon_threadsafe(cb, *args, context=context)


class DuplicatesThreadsafe(_Counting):
    def call_soon_threadsafe(self, cb, *args, context=None):
        if self._tick():
            super().call_soon_threadsafe(cb, *args, context=context)
        return super().call_soon_threadsafe(cb, *args, context=context)


class _StarvingSelector(selectors.DefaultSelector):
    def select(self, timeout=None):
        return [] if timeout == 0 else super().select(timeout)


class StarvesIO(Base):
    """Never polls for I/O while callbacks are ready."""

    def __init__(self):
        super().__init__(_StarvingSelector())


class StopsEarly(Base):
    """run_forever returns after one iteration."""

    def run_forever(self):
        self.call_soon(self.stop)
        return super().run_forever()


class DropsWakeups(DropsCallbacks):
    """DropsCallbacks, more often: cases with few call_soon()s per item."""
    every = 97


class ReversesCallbacks(Base):
    """Runs each iteration's callbacks last-scheduled first."""

    def _run_once(self):
        self._ready.reverse()
        super()._run_once()


class WrongTaskResults(_Counting):
    """Now and then a task's integer result comes back off by one."""

    def create_task(self, coro, **kwargs):
        if self._tick():
            coro = self._off_by_one(coro)
        return super().create_task(coro, **kwargs)

    @staticmethod
    async def _off_by_one(coro):
        r = await coro
        return r + 1 if isinstance(r, int) else r


class _OffByOneFuture(asyncio.Future):
    def set_result(self, result):
        super().set_result(result + 1 if isinstance(result, int) else result)


class WrongFutureResults(_Counting):
    """Now and then a future's integer result is stored off by one."""

    def create_future(self):
        if self._tick():
            return _OffByOneFuture(loop=self)
        return super().create_future()


BROKEN = {
    "call_soon_chain": [DuplicatesCallbacks, WrongArgs, DropsCallbacks, StopsEarly],
    "call_soon_chain_fd": [StarvesIO, DuplicatesCallbacks, StopsEarly],
    "call_soon_batch": [DropsCallbacks, DuplicatesCallbacks, ReordersCallbacks, WrongArgs,
                        StopsEarly],
    # Early firing is only visible when the loop is not already running
    # late, i.e. when processing takes less than the 1-2 ms delays: hence a
    # tiny n.  (At benchmark sizes it could save at most those 2 ms.)
    # (StopsEarly is no test here: under load every timer may be due in the
    # first iteration, and then a loop that stops after it did nothing wrong.)
    "call_later_cancel_half": [IgnoresCancel, (EarlyTimers, 40), ShuffledTimers, DropsTimers],
    # (Not StopsEarly: the producer may submit everything before the loop's
    # first iteration, which then legitimately runs it all.)
    "call_soon_threadsafe": [DropsThreadsafe, DuplicatesThreadsafe],
    "call_soon_threadsafe_pingpong": [DropsThreadsafe, StopsEarly],
    "task_create_await": [WrongTaskResults, DropsCallbacks],
    "gather": [WrongTaskResults, DropsCallbacks],
    "sleep0_switches": [ReversesCallbacks, DropsCallbacks],
    "future_roundtrip": [WrongFutureResults, DropsCallbacks],
    "taskgroup": [WrongTaskResults, DropsCallbacks],
    "queue": [DropsWakeups],
}


class _CorruptsEcho(Base):
    """Echo servers on this loop send back a wrong byte now and then (or,
    with `dup`, some bytes twice): loadgen must notice."""
    every = 7
    dup = False

    def _mangle(self, data):
        self._n = getattr(self, "_n", 0) + 1
        if self._n % self.every or not data:
            return data
        data = bytes(data)
        if self.dup:
            return data + data[:1]
        return bytes([data[0] ^ 0x55]) + data[1:]

    async def sock_sendall(self, sock, data):
        return await super().sock_sendall(sock, self._mangle(data))

    def _make_socket_transport(self, *args, **kwargs):
        tr = super()._make_socket_transport(*args, **kwargs)
        write = tr.write
        tr.write = lambda data: write(self._mangle(data))
        return tr

    def _make_ssl_transport(self, *args, **kwargs):
        # the application's TLS transport: the bytes are wrong before
        # encryption, so only tls_loadgen's comparison can notice
        tr = super()._make_ssl_transport(*args, **kwargs)
        write = tr.write
        tr.write = lambda data: write(self._mangle(data))
        return tr


class CorruptsEcho(_CorruptsEcho):
    pass


class DuplicatesEchoBytes(_CorruptsEcho):
    dup = True


for _name, _case in CASES.items():
    if _case.group in ("echo", "tls"):
        BROKEN[_name] = [CorruptsEcho, DuplicatesEchoBytes]


class WrongReturncodes(Base):
    """Reports every child's exit status off by one."""

    def _child_watcher_callback(self, pid, returncode, transp):
        super()._child_watcher_callback(pid, returncode + 1, transp)


class CorruptsPipeReads(Base):
    """Every 5th chunk a read pipe delivers has its first byte flipped."""

    def _make_read_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        received = protocol.data_received
        count = [0]

        def data_received(data):
            count[0] += 1
            if count[0] % 5 == 0 and data:
                data = bytes([data[0] ^ 0x55]) + data[1:]
            received(data)

        protocol.data_received = data_received
        return super()._make_read_pipe_transport(pipe, protocol, waiter, extra)


class DropsPipeReads(CorruptsPipeReads):
    """Every 5th chunk a read pipe delivers is lost."""

    def _make_read_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        received = protocol.data_received
        count = [0]

        def data_received(data):
            count[0] += 1
            if count[0] % 5:
                received(data)

        protocol.data_received = data_received
        return Base._make_read_pipe_transport(self, pipe, protocol, waiter, extra)


# --- file cases (group "fs", benchmarks/files.py) ---
def _flip(b):
    if isinstance(b, (bytes, bytearray, memoryview)) and len(b) > 1:
        b = bytearray(b)
        b[0] ^= 0x55
        return bytes(b)
    return b


class CorruptsExecutorIO(Base):
    """Every 5th executor job has the first byte of the bytes it reads or
    writes flipped (ringloop.fs off io_uring, aiofiles and to_thread all go
    through run_in_executor)."""

    def run_in_executor(self, executor, func, *args):
        self._jobs = getattr(self, "_jobs", 0) + 1
        if self._jobs % 5:
            return super().run_in_executor(executor, func, *args)
        import functools
        if isinstance(func, functools.partial):
            func = functools.partial(func.func, *map(_flip, func.args), **func.keywords)
        args = tuple(map(_flip, args))

        def job():
            r = func(*args)
            return _flip(r) if isinstance(r, bytes) else r

        return super().run_in_executor(executor, job)


for _name, _case in CASES.items():
    if _case.group == "fs":
        BROKEN[_name] = [(CorruptsExecutorIO, min(_case.quick, 200))]
# --- end of file cases ---

BROKEN["subprocess_spawn_wait"] = [(WrongReturncodes, 20)]
BROKEN["pipe_cat_throughput"] = [(CorruptsPipeReads, 8), (DropsPipeReads, 8)]


def run_with_hang_guard(case, loop, n):
    """A broken loop may simply never stop: stop it from a thread after a
    while (through the unbroken base class), and let the case's checks
    notice the missing work."""
    def rescue():
        Base.call_soon_threadsafe(loop, loop.stop)
    guard = threading.Timer(HANG_SECONDS, rescue)
    guard.daemon = True
    guard.start()
    try:
        return run_case(case, loop, n)
    finally:
        guard.cancel()


def main():
    cases.THREAD_JOIN_TIMEOUT = 2.0   # a stuck producer thread fails fast here
    bad = 0
    for cname, case in CASES.items():
        if case.group == "apps":
            # Real applications under wrk: their checks are proven by
            # tests/test_bench_smoke.py (RINGLOOP_BENCH_BREAK=1 servers).
            continue
        n = min(N, case.quick)
        for lname, spec in LOOPS.items():
            if not applicable(case, spec):
                continue
            try:
                loop = spec.make()
            except Unavailable as exc:
                print(f"skip  {cname} on {lname}: {exc}")
                continue
            try:
                run_with_hang_guard(case, loop, n)
                print(f"ok    {cname} passes on {lname}")
            except Unavailable as exc:
                print(f"skip  {cname} on {lname}: {exc}")
            except Exception as exc:  # noqa: BLE001
                bad += 1
                print(f"BAD   {cname} fails on {lname}: {exc!r}")
            finally:
                loop.close()
        if not BROKEN.get(cname):
            bad += 1
            print(f"BAD   {cname} has no broken-loop test in selftest.BROKEN")
        for entry in BROKEN.get(cname, ()):
            cls, size = entry if isinstance(entry, tuple) else (entry, n)
            loop = cls()
            try:
                run_with_hang_guard(case, loop, size)
            except CaseFailure as exc:
                first = str(exc).splitlines()[0]
                print(f"ok    {cname} catches {cls.__name__}: {first}")
            except Exception as exc:  # noqa: BLE001
                bad += 1
                print(f"BAD   {cname} on {cls.__name__} raised {exc!r}, not CaseFailure")
            else:
                bad += 1
                print(f"BAD   {cname} PASSED on broken loop {cls.__name__}")
            finally:
                loop.close()
    print("selftest:", "FAILED" if bad else "all good")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
