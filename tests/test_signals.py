"""add_signal_handler / remove_signal_handler, and Ctrl-C while waiting."""
import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from conftest import new_loop


@pytest.fixture(autouse=True)
def _restore_signals():
    saved = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT, signal.SIGHUP)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)
    signal.set_wakeup_fd(-1)


def test_signal_handler_called_with_args(loop):
    got = []
    loop.add_signal_handler(signal.SIGUSR1, lambda *a: (got.append(a), loop.stop()), 1, 2)
    loop.call_later(0.01, os.kill, os.getpid(), signal.SIGUSR1)
    loop.call_later(5, loop.stop)
    loop.run_forever()
    assert got == [(1, 2)]
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert loop.remove_signal_handler(signal.SIGUSR1) is False
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_signal_while_loop_blocked_in_wait(loop):
    got = []
    loop.add_signal_handler(signal.SIGUSR2, lambda: (got.append(True), loop.stop()))
    # Sent from another thread while the loop sleeps in the kernel with no
    # timer: only the signal can end this wait.
    t = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGUSR2))
    t.start()
    t0 = time.monotonic()
    loop.run_forever()
    t.join()
    assert got == [True]
    assert time.monotonic() - t0 < 5
    loop.remove_signal_handler(signal.SIGUSR2)


def test_signal_several_times(loop):
    count = [0]

    def handler():
        count[0] += 1
        if count[0] == 3:
            loop.stop()

    loop.add_signal_handler(signal.SIGUSR1, handler)
    for i in range(3):
        loop.call_later(0.01 * (i + 1), os.kill, os.getpid(), signal.SIGUSR1)
    loop.call_later(5, loop.stop)
    loop.run_forever()
    assert count[0] == 3
    loop.remove_signal_handler(signal.SIGUSR1)


def test_replace_signal_handler(loop):
    got = []
    loop.add_signal_handler(signal.SIGUSR1, got.append, "old")
    loop.add_signal_handler(signal.SIGUSR1, lambda: (got.append("new"), loop.stop()))
    loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
    loop.call_later(5, loop.stop)
    loop.run_forever()
    assert got == ["new"]
    loop.remove_signal_handler(signal.SIGUSR1)


def test_signal_handler_bad_input(loop):
    with pytest.raises(TypeError, match="sig must be an int"):
        loop.add_signal_handler("x", print)
    with pytest.raises(ValueError, match="invalid signal number"):
        loop.add_signal_handler(10_000, print)
    with pytest.raises(RuntimeError, match="cannot be caught"):
        loop.add_signal_handler(signal.SIGKILL, print)

    async def coro():
        pass

    with pytest.raises(TypeError, match="coroutines cannot be used with add_signal_handler"):
        loop.add_signal_handler(signal.SIGUSR1, coro)
    with pytest.raises(TypeError):
        loop.remove_signal_handler("x")


def test_add_signal_handler_closed_loop():
    lp = new_loop()
    lp.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        lp.add_signal_handler(signal.SIGUSR1, print)


def test_add_signal_handler_not_main_thread(loop):
    errors = []

    def other():
        try:
            loop.add_signal_handler(signal.SIGUSR1, print)
        except RuntimeError as e:
            errors.append(e)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(errors) == 1


def test_close_removes_signal_handlers():
    lp = new_loop()
    lp.add_signal_handler(signal.SIGHUP, print)
    assert signal.getsignal(signal.SIGHUP) not in (signal.SIG_DFL, None)
    lp.close()
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL


def test_sigint_removal_restores_default_int_handler(loop):
    loop.add_signal_handler(signal.SIGINT, print)
    loop.remove_signal_handler(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _run_child(code, timeout=20):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    p = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    line = p.stdout.readline()
    assert line.strip() == "ready", (line, p.stderr.read())
    time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def test_ctrl_c_interrupts_idle_run_forever():
    code = """
    import sys
    sys.path.insert(0, %r)
    from conftest import new_loop
    loop = new_loop()
    import functools
    loop.call_soon(functools.partial(print, "ready", flush=True))
    try:
        loop.run_forever()   # nothing scheduled: blocked in the kernel
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    loop.close()
    """ % os.path.dirname(__file__)
    rc, out, err = _run_child(code)
    assert "interrupted" in out, err
    assert rc == 0


def test_ctrl_c_cancels_main_task_under_runner():
    code = """
    import asyncio, sys
    sys.path.insert(0, %r)
    from conftest import new_loop
    async def main():
        print("ready", flush=True)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            print("cancelled", flush=True)
            raise
    try:
        with asyncio.Runner(loop_factory=new_loop) as r:
            r.run(main())
    except KeyboardInterrupt:
        print("keyboardinterrupt", flush=True)
    """ % os.path.dirname(__file__)
    rc, out, err = _run_child(code)
    assert "cancelled" in out and "keyboardinterrupt" in out, err
