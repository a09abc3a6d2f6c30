"""Wake-ups from other threads and signal handlers (issue 9: a lost wake-up
after Ctrl-C).

call_soon_threadsafe() writes the wake-up eventfd only when the loop's
`wake_pending` flag is clear: a burst of calls costs one write.  The flag
must never be set while the loop blocks without a write on its way, or the
next call from a thread is queued and nobody wakes the loop.  It was lost
when a Python signal handler that posts a callback (asyncio.Runner's SIGINT
handler does) ran between the end of the wait and the dispatch: the handler
set the flag and wrote, the dispatch consumed that write (io_uring reaps the
eventfd poll's completion there, epoll reads the eventfd there), and the
flag stayed set through the next blocking wait.

Each scenario runs in a child process and must finish; the parent only
guards against a hang.  The children make the race deterministic: a thread
acts only once the loop's thread sleeps in its wait syscall (read from
/proc), and where the handler must run between the wait and the dispatch,
the thread that wakes the loop and raises the signal holds the GIL for both
(a huge switch interval), so the loop can only take it back afterwards.
"""
import os
import subprocess
import sys
import textwrap

import pytest

# Shared by the children: wait until the loop's thread sleeps in its wait.
_PRELUDE = """
import asyncio, faulthandler, os, platform, signal, sys, threading, time
sys.path.insert(0, %(testdir)r)
from conftest import new_loop

# A hang dumps the stacks (the parent waits longer than this).
faulthandler.dump_traceback_later(%(child_guard)d, exit=True)

LOOP_TID = threading.get_native_id()
# io_uring_enter, epoll_wait, epoll_pwait, epoll_pwait2 (asyncio's selector
# and ringloop's epoll backend use one of the epoll ones).
WAIT_SYSCALLS = {
    "x86_64": {426, 232, 281, 441},
    "aarch64": {426, 22, 441},
}.get(platform.machine())

def loop_thread_waits():
    try:
        with open(f"/proc/self/task/{LOOP_TID}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/self/task/{LOOP_TID}/syscall") as f:
            nr = f.read().split()[0]
    except (OSError, IndexError):
        return None
    if not nr.lstrip("-").isdigit():
        return False  # "running"
    return state == "S" and int(nr) in WAIT_SYSCALLS

def until_loop_waits():
    if WAIT_SYSCALLS is None or loop_thread_waits() is None:
        time.sleep(0.5)  # no /proc view: most likely blocked by then
        return
    while not loop_thread_waits():
        time.sleep(0.001)
"""


def _run_child(body, hang_guard=45):
    child_guard = hang_guard - 15
    code = _PRELUDE % {"testdir": os.path.dirname(__file__), "child_guard": child_guard}
    code += textwrap.dedent(body)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    p = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        out, err = p.communicate(timeout=hang_guard)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        pytest.fail(f"the child hung (loop never woken)\nstdout:\n{out}\nstderr:\n{err}")
    return p.returncode, out.split(), err


@pytest.mark.timeout_s(90)
def test_ctrl_c_then_executor_in_cleanup():
    # The reported case: one SIGINT while the main task sleeps (the loop
    # blocked in its wait, which ends with EINTR); Runner's handler cancels
    # the task and posts a callback with call_soon_threadsafe(); the task's
    # cleanup awaits an executor job that finishes while the loop waits
    # again.  The job's call_soon_threadsafe() must wake it.
    rc, out, err = _run_child("""
    async def main():
        loop = asyncio.get_running_loop()
        def interrupt():
            until_loop_waits()
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        threading.Thread(target=interrupt, daemon=True).start()
        try:
            await asyncio.sleep(3600)
        finally:
            print("cleanup", flush=True)
            await loop.run_in_executor(None, until_loop_waits)
            print("executor-done", flush=True)

    try:
        with asyncio.Runner(loop_factory=new_loop) as runner:
            runner.run(main())
    except KeyboardInterrupt:
        print("keyboardinterrupt", flush=True)
    """)
    assert out == ["cleanup", "executor-done", "keyboardinterrupt"], err
    assert rc == 0, err


@pytest.mark.timeout_s(90)
def test_signal_handler_posts_between_wait_and_dispatch():
    # The wait ends normally (a thread's call_soon_threadsafe() woke it)
    # and a signal is pending: its handler runs before the dispatch and
    # posts a callback.  The callbacks of that pass schedule nothing, so the
    # loop blocks next; a later call_soon_threadsafe() from a thread must
    # still wake it.  (On epoll too: its dispatch reads the eventfd,
    # consuming the handler's write with the thread's.)
    rc, out, err = _run_child("""
    sys.setswitchinterval(1000)  # a thread keeps the GIL until it blocks
    loop = new_loop()
    def say(what):
        print(what, flush=True)
    signal.signal(signal.SIGUSR1, lambda *a: loop.call_soon_threadsafe(say, "handler"))
    poked = threading.Event()

    def poke():
        until_loop_waits()
        # One stretch under the GIL: the write ends the loop's wait, and
        # the signal (sent to this thread; the main thread runs the Python
        # handler at the loop's next check) is pending before the loop
        # can take the GIL back.
        loop.call_soon_threadsafe(say, "poked")
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
        poked.set()

    def later():
        poked.wait()
        until_loop_waits()
        return "done"

    async def main():
        threading.Thread(target=poke, daemon=True).start()
        say(await loop.run_in_executor(None, later))

    try:
        loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
    """)
    assert out == ["poked", "handler", "done"], err
    assert rc == 0, err


@pytest.mark.timeout_s(90)
def test_wake_ups_keep_working_after_a_signal_handler_posted():
    # Many rounds of the above without the forced interleaving: each round
    # a handler posts, then a thread wakes the blocked loop.  Every round
    # must complete (a lost wake-up hangs the child).
    rc, out, err = _run_child("""
    loop = new_loop()
    signal.signal(signal.SIGUSR2, lambda *a: loop.call_soon_threadsafe(lambda: None))
    main_ident = threading.main_thread().ident

    def kick():
        until_loop_waits()
        signal.pthread_kill(main_ident, signal.SIGUSR2)
        until_loop_waits()

    async def main():
        for _ in range(20):
            await loop.run_in_executor(None, kick)
        print("done", flush=True)

    try:
        loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
    """)
    assert out == ["done"], err
    assert rc == 0, err
