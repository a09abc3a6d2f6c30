"""Test harness for ringloop.

Which loop the tests run on:
  RINGLOOP_BACKEND=io_uring|epoll|auto  (ringloop's own switch; CI runs the
                                          suite once per backend)
  RINGLOOP_TEST_LOOP=asyncio            run the loop-generic tests on stock
                                          asyncio instead, to check that they
                                          assert asyncio's real behaviour.

Guards on every test:
  - a hang fails that test alone: after RINGLOOP_TEST_TIMEOUT seconds
    (default 60; mark a test with @pytest.mark.timeout_s(N) to change it) a
    watchdog thread dumps every thread's stack and raises TestTimeout in the
    main thread (a real signal, so a blocking wait is interrupted); only if
    the test still has not given up 60 s later does faulthandler end the
    process (a hang that holds the GIL in C cannot be interrupted);
  - the `loop` fixture fails the test if the loop's exception handler was
    called and the test did not look at `loop_errors`, and if the loop did
    not close cleanly;
  - no file descriptor may be left open by a test.
"""
import asyncio
import faulthandler
import gc
import os
import signal
import sys
import threading
import time

import pytest

import ringloop

TEST_LOOP = os.environ.get("RINGLOOP_TEST_LOOP", "ringloop")
BACKEND = os.environ.get("RINGLOOP_BACKEND", "auto")
DEFAULT_TIMEOUT = float(os.environ.get("RINGLOOP_TEST_TIMEOUT", "60"))

if TEST_LOOP not in ("ringloop", "asyncio"):
    raise SystemExit(f"RINGLOOP_TEST_LOOP must be ringloop or asyncio, not {TEST_LOOP!r}")


def new_loop():
    """A new loop of the kind under test."""
    if TEST_LOOP == "asyncio":
        return asyncio.new_event_loop()
    return ringloop.new_event_loop()


def is_ringloop():
    return TEST_LOOP == "ringloop"


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout_s(seconds): per-test hang guard")
    config.addinivalue_line("markers", "ringloop_only: tests ringloop-specific API")


def pytest_report_header(config):
    if TEST_LOOP == "asyncio":
        return "loop under test: stock asyncio"
    why = ringloop.io_uring_unavailable_reason()
    return (
        f"loop under test: ringloop, RINGLOOP_BACKEND={BACKEND}; "
        f"io_uring here: {'yes' if why is None else 'no (' + why + ')'}"
    )


def pytest_collection_modifyitems(config, items):
    if TEST_LOOP == "ringloop":
        return
    skip = pytest.mark.skip(reason="ringloop-specific (RINGLOOP_TEST_LOOP=asyncio)")
    for item in items:
        if "ringloop_only" in item.keywords:
            item.add_marker(skip)


def _open_fds():
    try:
        return set(os.listdir("/proc/self/fd"))
    except OSError:
        return set()


def _fd_desc(fd):
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"


def _real_stderr(config):
    """Where a hang report must go: pytest's saved copy of the process's
    stderr (fd 2 itself is pytest's capture file, thrown away on exit)."""
    try:
        from _pytest.faulthandler import fault_handler_stderr_fd_key

        return config.stash[fault_handler_stderr_fd_key]
    except Exception:
        return sys.stderr


class TestTimeout(SystemExit):
    """Raised in the main thread when a test runs past its time limit.

    A SystemExit so that it leaves an event loop's callbacks and task steps
    the way asyncio lets SystemExit through (an Exception would be handed to
    the loop's exception handler and the hang would go on); pytest records a
    SystemExit raised by a test as that test's failure and goes on with the
    next one."""


# A real-time signal nobody else uses: tests install handlers for SIGALRM,
# SIGUSR1/2, SIGINT, SIGCHLD and SIGTERM (CPython's tests included).
_TIMEOUT_SIGNAL = signal.SIGRTMIN + 5


class _Watchdog:
    """One daemon thread that interrupts the main thread at a deadline."""

    def __init__(self):
        self._cond = threading.Condition()
        self._deadline = None
        self._token = 0
        self._fired = None
        self._main = threading.main_thread().ident
        self._out = sys.stderr
        signal.signal(_TIMEOUT_SIGNAL, self._on_signal)
        threading.Thread(target=self._run, name="test-watchdog", daemon=True).start()

    def arm(self, seconds, out, what):
        with self._cond:
            self._token += 1
            self._deadline = time.monotonic() + seconds
            self._seconds = seconds
            self._what = what
            self._out = out
            self._fired = None
            self._cond.notify()
        # The last resort, for a hang that holds the GIL.
        faulthandler.dump_traceback_later(seconds + 60, exit=True, file=out)

    def disarm(self):
        faulthandler.cancel_dump_traceback_later()
        with self._cond:
            self._token += 1
            self._deadline = None
            self._cond.notify()

    def _on_signal(self, signum, frame):
        fired = self._fired
        if fired is not None and fired == self._token:
            raise TestTimeout(f"test timed out after {self._seconds:g} s (all stacks were dumped to stderr)")

    def _run(self):
        while True:
            with self._cond:
                while self._deadline is None or time.monotonic() < self._deadline:
                    wait = None if self._deadline is None else self._deadline - time.monotonic()
                    self._cond.wait(wait)
                token = self._token
                self._fired = token
                # Ask again every 10 s while the same test is still running.
                self._deadline = time.monotonic() + 10
                out = self._out
                what = self._what
            try:
                print(f"\n+++ {what}: timed out, stacks follow +++", file=out, flush=True)
                faulthandler.dump_traceback(file=out, all_threads=True)
            except Exception:
                pass
            signal.pthread_kill(self._main, _TIMEOUT_SIGNAL)


_watchdog = None


@pytest.fixture(autouse=True)
def _guards(request):
    global _watchdog
    marker = request.node.get_closest_marker("timeout_s")
    timeout = float(marker.args[0]) if marker else DEFAULT_TIMEOUT
    if _watchdog is None:
        _watchdog = _Watchdog()
    # A test may have replaced the handler and not put it back.
    signal.signal(_TIMEOUT_SIGNAL, _watchdog._on_signal)
    _watchdog.arm(timeout, _real_stderr(request.config), request.node.nodeid)
    before = _open_fds()
    try:
        yield
    finally:
        _watchdog.disarm()
    # Let unreachable loops/sockets be finalized before counting fds.
    gc.collect()
    leaked = sorted(_open_fds() - before, key=int)
    # /proc/self/fd listing itself opens a directory fd that is gone by now;
    # anything still open was opened by the test and not closed.
    leaked = [fd for fd in leaked if os.path.exists(f"/proc/self/fd/{fd}")]
    if leaked:
        desc = ", ".join(f"{fd} -> {_fd_desc(fd)}" for fd in leaked)
        pytest.fail(f"test leaked file descriptors: {desc}", pytrace=False)


class LoopErrors(list):
    """Exception-handler calls recorded by the `loop` fixture.  A test that
    expects them inspects this list (which marks them as seen)."""

    seen = False

    def __iter__(self):
        self.seen = True
        return super().__iter__()

    def __len__(self):
        self.seen = True
        return super().__len__()

    def __getitem__(self, i):
        self.seen = True
        return super().__getitem__(i)


@pytest.fixture
def loop_errors():
    return LoopErrors()


@pytest.fixture
def loop(loop_errors):
    """A fresh loop of the kind under test, set as the current loop."""
    lp = new_loop()
    lp.set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
    asyncio.set_event_loop(lp)
    try:
        yield lp
    finally:
        asyncio.set_event_loop(None)
        if lp.is_running():
            pytest.fail("loop still running at teardown")
        if not lp.is_closed():
            # Give pending shutdown callbacks (executor, asyncgens) a chance,
            # as asyncio.Runner does.
            try:
                lp.run_until_complete(lp.shutdown_asyncgens())
                lp.run_until_complete(lp.shutdown_default_executor())
            finally:
                lp.close()
        assert lp.is_closed()
    errs = list.__len__(loop_errors)
    if errs and not loop_errors.seen:
        first = list.__getitem__(loop_errors, 0)
        pytest.fail(
            f"loop's exception handler was called {errs} time(s) unexpectedly; "
            f"first: {first.get('message')!r} {first.get('exception')!r}",
            pytrace=False,
        )


def run_briefly(loop, steps=1):
    """Run `steps` iterations of the loop."""
    async def once():
        pass

    for _ in range(steps):
        loop.run_until_complete(once())


@pytest.fixture
def python_exe():
    return sys.executable
