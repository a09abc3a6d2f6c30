"""Subprocesses: asyncio.create_subprocess_exec/shell on the loop under test.

Many concurrent children echoing data through cat with every byte checked; a
child killed while it writes; a child that closes stdout and keeps running;
communicate() with a timeout and with cancellation; Popen's arguments; 1,000
spawn/wait cycles leave no zombie, fd or object behind; ringloop's child
watcher (pidfd, its thread fallback, a user's own waitpid, a loop closed
while a child runs).

RINGLOOP_TEST_PROCS sets how many children the concurrent echo test runs
(default 200)."""
import asyncio
import gc
import os
import signal
import subprocess
import sys
import tracemalloc
import warnings

import pytest

from conftest import is_ringloop, new_loop

NPROCS = int(os.environ.get("RINGLOOP_TEST_PROCS", "200"))
PIPE = asyncio.subprocess.PIPE
DEVNULL = asyncio.subprocess.DEVNULL


def run(loop, coro, timeout=60):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def my_zombies():
    """Pids of this process's children that are zombies."""
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may hold spaces/parens
        rest = stat[stat.rindex(")") + 2:].split()
        if rest[0] == "Z" and int(rest[1]) == me:
            found.append(int(name))
    return found


@pytest.mark.timeout_s(300)
def test_many_concurrent_cat_echoes(loop):
    size = 1 << 20
    base = os.urandom(size)

    def payload(i):
        k = (i * 4099) % size
        return base[k:] + base[:k]

    async def one(i):
        proc = await asyncio.create_subprocess_exec("cat", stdin=PIPE, stdout=PIPE)
        out, err = await proc.communicate(payload(i))
        assert err is None
        return i, proc.returncode, out

    async def main():
        results = await asyncio.gather(*(one(i) for i in range(NPROCS)))
        for i, rc, out in results:
            assert rc == 0
            assert len(out) == size
            assert out == payload(i), f"child {i}: bytes differ"

    run(loop, main(), timeout=280)
    assert my_zombies() == []


def test_child_killed_mid_write(loop):
    """The child writes without end; we kill it after the first bytes: stdout
    reaches EOF, wait() gives -SIGKILL."""
    code = "import sys\nwhile True:\n    sys.stdout.buffer.write(b'z' * 65536)\n"

    async def main():
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdout=PIPE)
        first = await proc.stdout.readexactly(100_000)
        assert first == b"z" * 100_000
        proc.kill()
        rest = await proc.stdout.read()  # up to EOF
        assert set(rest) <= {ord("z")}
        assert await proc.wait() == -signal.SIGKILL
        assert proc.returncode == -signal.SIGKILL

    run(loop, main())


def test_child_killed_while_we_write(loop):
    """We write to a child's stdin faster than it reads; it is killed: the
    pending write fails with a connection error, wait() gives -SIGKILL."""

    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import time; time.sleep(60)", stdin=PIPE
        )
        proc.stdin.write(b"w" * (4 << 20))  # far more than a pipe holds
        drain = asyncio.ensure_future(proc.stdin.drain())
        await asyncio.sleep(0)
        assert not drain.done()
        proc.kill()
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            await drain
        assert await proc.wait() == -signal.SIGKILL

    run(loop, main())


def test_child_closes_stdout_and_keeps_running(loop):
    code = (
        "import os, sys\n"
        "os.close(1)\n"
        "sys.stdin.buffer.read()\n"  # until we close its stdin
        "sys.exit(7)\n"
    )

    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, stdin=PIPE, stdout=PIPE
        )
        assert await proc.stdout.read() == b""  # EOF while it runs
        for _ in range(5):
            await asyncio.sleep(0)
        assert proc.returncode is None
        transport = proc._transport
        assert transport.get_returncode() is None
        proc.stdin.close()
        assert await proc.wait() == 7
        assert transport.get_returncode() == 7

    run(loop, main())


def test_communicate_timeout_then_kill(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import time; time.sleep(60)", stdout=PIPE
        )
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(proc.communicate(), 0.2)
        assert proc.returncode is None  # still running
        proc.kill()
        out, err = await proc.communicate()
        assert out == b"" and err is None
        assert proc.returncode == -signal.SIGKILL

    run(loop, main())


def test_communicate_cancelled(loop):
    code = (
        "import sys, time\n"
        "sys.stdout.write(sys.stdin.readline()); sys.stdout.flush()\n"
        "time.sleep(60)\n"
    )

    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, stdin=PIPE, stdout=PIPE, stderr=PIPE
        )
        proc.stdin.write(b"partial\n")
        assert await proc.stdout.readexactly(8) == b"partial\n"
        comm = asyncio.ensure_future(proc.communicate())
        for _ in range(3):
            await asyncio.sleep(0)
        assert not comm.done()
        comm.cancel()
        with pytest.raises(asyncio.CancelledError):
            await comm
        assert proc.returncode is None  # cancelling communicate() kills nothing
        proc.kill()
        out, err = await proc.communicate()
        assert out == b"" and err == b""
        assert proc.returncode == -signal.SIGKILL

    run(loop, main())


def test_popen_arguments(loop, tmp_path):
    rfd, wfd = os.pipe()
    os.write(wfd, b"passed fd")
    os.close(wfd)
    code = (
        "import os, sys\n"
        "print(os.getcwd())\n"
        "print(os.environ.get('RL_TEST_VAR'))\n"
        f"print(os.read({rfd}, 100).decode())\n"
        "print(os.getpgrp() == os.getpid(), os.getsid(0) == os.getpid())\n"
        "old = os.umask(0); print(oct(old))\n"
        "sys.stdout.flush()\n"
        "print('err', file=sys.stderr)\n"
    )

    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code,
            stdout=PIPE, stderr=asyncio.subprocess.STDOUT,
            cwd=str(tmp_path), env={"RL_TEST_VAR": "here", "PATH": os.environ["PATH"]},
            pass_fds=(rfd,), start_new_session=True, umask=0o027,
        )
        out, err = await proc.communicate()
        assert err is None
        lines = out.decode().splitlines()
        assert lines == [
            str(tmp_path), "here", "passed fd", "True True", "0o27", "err",
        ]
        # a file object and DEVNULL as stdin, an fd as stdout
        with open(tmp_path / "out", "wb") as f:
            proc = await asyncio.create_subprocess_shell(
                "echo shell $((6*7)); cat", stdin=DEVNULL, stdout=f.fileno()
            )
            assert await proc.wait() == 0
        assert (tmp_path / "out").read_bytes() == b"shell 42\n"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import os; print(os.getpgrp() == os.getpid())",
            stdout=PIPE, process_group=0,
        )
        assert (await proc.communicate())[0] == b"True\n"

    try:
        run(loop, main())
    finally:
        os.close(rfd)


def test_bad_arguments(loop):
    async def main():
        with pytest.raises(ValueError, match="text must be False"):
            await asyncio.create_subprocess_exec("true", text=True)
        with pytest.raises(ValueError, match="bufsize must be 0"):
            await loop.subprocess_exec(asyncio.SubprocessProtocol, "true", bufsize=1)
        with pytest.raises(ValueError, match="shell must be False"):
            await loop.subprocess_exec(asyncio.SubprocessProtocol, "true", shell=True)
        with pytest.raises(ValueError, match="shell must be True"):
            await loop.subprocess_shell(asyncio.SubprocessProtocol, "true", shell=False)
        with pytest.raises(ValueError, match="cmd must be a string"):
            await loop.subprocess_shell(asyncio.SubprocessProtocol, ["true"])
        with pytest.raises(ValueError, match="universal_newlines must be False"):
            await loop.subprocess_exec(
                asyncio.SubprocessProtocol, "true", universal_newlines=True)
        with pytest.raises(FileNotFoundError):
            await asyncio.create_subprocess_exec("/nonexistent/ringloop-test-program")
        with pytest.raises(TypeError):
            await asyncio.create_subprocess_exec("true", no_such_popen_argument=1)

    run(loop, main())
    assert my_zombies() == []


def test_transport_api(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys; sys.stdin.read()",
            stdin=PIPE, stdout=PIPE, stderr=DEVNULL,
        )
        tr = proc._transport
        assert isinstance(tr, asyncio.SubprocessTransport)
        assert tr.get_pid() == proc.pid
        assert tr.get_returncode() is None
        assert isinstance(tr.get_pipe_transport(0), asyncio.WriteTransport)
        assert isinstance(tr.get_pipe_transport(1), asyncio.ReadTransport)
        assert tr.get_pipe_transport(2) is None
        assert isinstance(tr.get_extra_info("subprocess"), subprocess.Popen)
        tr.send_signal(signal.SIGTERM)
        assert await proc.wait() == -signal.SIGTERM
        assert tr.get_returncode() == -signal.SIGTERM
        tr.close()
        assert tr.is_closing()
        # the process is gone: signals are ignored or say so, as in asyncio
        try:
            tr.kill()
        except ProcessLookupError:
            pass

    run(loop, main())


@pytest.mark.timeout_s(240)
def test_spawn_wait_cycles_leave_nothing_behind(loop):
    """1,000 spawn/wait cycles: no zombie, no fd, no transport or Popen left,
    no growth of traced memory after warm-up."""

    async def cycle(n):
        for _ in range(n):
            proc = await asyncio.create_subprocess_exec("true", stdout=PIPE)
            await proc.communicate()
            assert proc.returncode == 0

    def live(cls):
        return sum(1 for o in gc.get_objects() if type(o) is cls)

    async def main():
        await cycle(100)  # warm-up: caches, free lists, executor-free paths
        gc.collect()
        # After the warm-up: the loop may keep fds of its own for its whole
        # life (on io_uring, the epoll set behind add_reader watches).
        fds.append(len(os.listdir("/proc/self/fd")))
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            await cycle(900)
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        return before, after

    fds = []
    before, after = run(loop, main(), timeout=230)
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) == fds[0]
    assert my_zombies() == []
    assert live(subprocess.Popen) == 0
    if is_ringloop():
        from ringloop import _proc

        assert live(_proc._SubprocessTransport) == 0
        assert not loop.__dict__.get("_rl_children_map")
    # a leak of one small object per cycle would show as >= 900 * 50 bytes
    assert after - before < 40_000, (before, after)


# -- ringloop's child watcher ----------------------------------------------------



@pytest.mark.ringloop_only
def test_no_sigchld_handler_and_no_thread(loop):
    import threading

    async def main():
        procs = [await asyncio.create_subprocess_exec("sleep", "0.2") for _ in range(5)]
        # no thread per child (ours would be "ringloop-waitpid-<pid>")
        watcher_threads = [
            t.name for t in threading.enumerate()
            if any(t.name.endswith(f"-{p.pid}") for p in procs)
        ]
        assert watcher_threads == []
        assert signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL
        assert [await p.wait() for p in procs] == [0] * 5

    run(loop, main())


@pytest.mark.ringloop_only
def test_user_reaped_first_gives_255_with_warning(loop, caplog):
    """A user's own waitpid() reaps the child before the loop looks: 255
    and asyncio's pidfd-watcher warning."""

    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import time; time.sleep(60)"
        )
        os.kill(proc.pid, signal.SIGKILL)
        pid, status = os.waitpid(proc.pid, 0)  # the loop does not run meanwhile
        assert pid == proc.pid
        with caplog.at_level("WARNING", logger="asyncio"):
            assert await proc.wait() == 255
        assert "exit status already read" in caplog.text

    run(loop, main())


@pytest.mark.ringloop_only
@pytest.mark.parametrize("how", ["close", "send_signal"])
def test_popen_reaped_first_keeps_the_status(loop, caplog, how):
    """transport.close() (and, on 3.11/3.12, send_signal()) go through
    Popen.poll(), which may reap the child before the loop's watcher does:
    the watcher then takes the status Popen recorded instead of 255."""

    async def main():
        # the child exits only when told, so the loop cannot see it first
        rfd, wfd = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", "import os, sys; os.read(0, 1); sys.exit(5)", stdin=rfd
            )
        finally:
            os.close(rfd)
        os.write(wfd, b"x")
        os.close(wfd)
        # wait for the exit without reaping and without running the loop
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        popen = proc._transport.get_extra_info("subprocess")
        assert popen.poll() == 5  # what close()/send_signal() do inside
        if how == "close":
            proc._transport.close()
        else:
            proc.send_signal(signal.SIGTERM)
        with caplog.at_level("WARNING", logger="asyncio"):
            assert await proc.wait() == 5
        assert "already read" not in caplog.text

    run(loop, main())


@pytest.mark.ringloop_only
def test_thread_fallback_without_pidfd(loop, monkeypatch):
    from ringloop import _proc

    monkeypatch.setattr(_proc, "_HAVE_PIDFD", False)

    async def main():
        procs = [
            await asyncio.create_subprocess_exec(sys.executable, "-c", f"raise SystemExit({i})")
            for i in range(3)
        ]
        assert [await p.wait() for p in procs] == [0, 1, 2]
        proc = await asyncio.create_subprocess_exec("cat", stdin=PIPE, stdout=PIPE)
        assert await proc.communicate(b"fallback") == (b"fallback", None)

    run(loop, main())
    assert not loop.__dict__.get("_rl_children_map")


@pytest.mark.ringloop_only
def test_loop_closed_while_child_runs(caplog):
    """The loop closes with a child still running: the transport warns when
    collected unclosed (asyncio's ResourceWarning) and kills it; the child is
    reaped after it exits, so no zombie stays."""
    lp = new_loop()
    asyncio.set_event_loop(lp)
    try:
        async def start():
            return await asyncio.create_subprocess_exec(
                "sleep", "60", stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL
            )

        proc = lp.run_until_complete(start())
        pid = proc.pid
    finally:
        asyncio.set_event_loop(None)
    lp.close()
    assert not lp.__dict__.get("_rl_children_map")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with caplog.at_level("WARNING", logger="asyncio"):
            del proc
            gc.collect()
            # the transport's __del__ killed it; the reaper thread reaps it
            deadline = 600
            while os.path.exists(f"/proc/{pid}") and deadline:
                import time

                time.sleep(0.05)
                deadline -= 1
    assert not os.path.exists(f"/proc/{pid}"), "child not reaped"
    assert any(
        issubclass(w.category, ResourceWarning) and "unclosed transport" in str(w.message)
        for w in caught
    ), [str(w.message) for w in caught]


@pytest.mark.ringloop_only
def test_reactor_refusing_the_pidfd_falls_back_to_a_thread(loop):
    """If the pidfd cannot be watched, the child (already running) is still
    watched, by a waitpid thread, instead of being left unreaped."""
    real_add_reader = loop.add_reader
    refused = []

    def add_reader(fd, cb, *args):
        if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[pidfd]":
            refused.append(fd)
            raise OSError(12, "Cannot allocate memory")
        return real_add_reader(fd, cb, *args)

    loop.add_reader = add_reader
    try:
        async def main():
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", "raise SystemExit(3)")
            assert await proc.wait() == 3

        run(loop, main())
    finally:
        del loop.add_reader
    assert len(refused) == 1
    assert my_zombies() == []
