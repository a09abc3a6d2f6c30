"""Reactor safety (issue 9): a watched socket closed without remove_reader()
(defect 10), io_uring's DEFER_TASKRUN ring used from another thread
(defect 12)."""
import asyncio
import errno
import os
import socket
import struct
import threading
import time

import pytest

from conftest import BACKEND, is_ringloop, run_briefly


def _tcp_pair():
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        peer = socket.create_connection(lsock.getsockname())
        conn, _ = lsock.accept()
    return conn, peer


def test_socket_closed_under_reader_reaches_peer_as_eof(loop):
    # asyncio (and epoll) hold no reference to a watched file: closing the
    # socket without remove_reader() closes the connection.  io_uring's armed
    # POLL used to hold the file open, so the peer never saw EOF.
    conn, peer = _tcp_pair()
    fd = conn.fileno()
    fired = []
    try:
        loop.add_reader(fd, lambda: fired.append(1))
        run_briefly(loop, 3)  # the watch reaches the kernel
        conn.close()
        run_briefly(loop, 3)
        peer.settimeout(20)  # a hang guard, not a threshold
        assert peer.recv(10) == b""
    finally:
        loop.remove_reader(fd)
        conn.close()
        peer.close()
    assert fired == []


def test_socket_closed_under_writer_is_closed(loop):
    # The same for add_writer, on a socket that is not writable (its send
    # buffer is full, the peer does not read): with SO_LINGER 0 the close
    # resets the connection at once
    # (while the watch held the file, nothing happened).
    conn, peer = _tcp_pair()
    fd = conn.fileno()
    fired = []
    try:
        conn.setblocking(False)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack("ii", 1, 0))
        try:
            while True:
                conn.send(b"x" * 65536)
        except BlockingIOError:
            pass
        loop.add_writer(fd, lambda: fired.append(1))
        run_briefly(loop, 3)
        assert fired == []
        conn.close()
        run_briefly(loop, 3)
        # the reset shows in the peer's SO_ERROR (polled without reading,
        # which would free buffer space and end the watch's POLL)
        err = 0
        deadline = time.monotonic() + 20  # a hang guard, not a threshold
        while not err and time.monotonic() < deadline:
            err = peer.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if not err:
                time.sleep(0.005)
        assert err == errno.ECONNRESET
    finally:
        loop.remove_writer(fd)
        conn.close()
        peer.close()
    assert fired == []


def test_fd_number_reused_after_close_under_watch(loop):
    # the closed socket's watch is removed afterwards (by number), a new
    # socket gets the same number, and a watch on it works
    a, b = socket.socketpair()
    fd = a.fileno()
    loop.add_reader(fd, lambda: None)
    run_briefly(loop, 2)
    a.close()
    run_briefly(loop, 2)
    assert loop.remove_reader(fd)
    c, d = socket.socketpair()
    try:
        if c.fileno() != fd:
            c, d = d, c
        got = []
        loop.add_reader(c.fileno(), lambda: got.append(c.recv(10)))
        d.send(b"hi")
        for _ in range(200):
            if got:
                break
            run_briefly(loop)
        assert got == [b"hi"]
        assert loop.remove_reader(c.fileno())
    finally:
        for s in (b, c, d):
            s.close()


def test_reader_level_triggered_and_many_watches(loop):
    # A reader that does not drain the fd is called again each iteration
    # (asyncio's level-triggered semantics), also with many watches.
    pairs = [socket.socketpair() for _ in range(50)]
    calls = {}
    try:
        for i, (x, y) in enumerate(pairs):
            x.setblocking(False)
            loop.add_reader(x, lambda i=i: calls.__setitem__(
                i, calls.get(i, 0) + 1))
        for x, y in pairs[::7]:
            y.send(b"z")
        run_briefly(loop, 5)
        want = {i for i in range(0, 50, 7)}
        assert set(calls) == want
        assert all(calls[i] >= 3 for i in want), calls
        for x, y in pairs:
            assert loop.remove_reader(x)
        counts = dict(calls)
        run_briefly(loop, 3)
        assert calls == counts
    finally:
        for x, y in pairs:
            x.close()
            y.close()


def _defer_taskrun_ring_possible():
    if not is_ringloop() or BACKEND == "epoll":
        return "io_uring tests run in the io_uring/auto pass"
    import ringloop

    why = ringloop.io_uring_unavailable_reason()
    if why is not None:
        return why
    try:
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return "unknown kernel version"
    if (major, minor) < (6, 1):
        return "IORING_SETUP_DEFER_TASKRUN needs Linux 6.1"
    return None


def _run_in_thread(fn):
    out = []

    def target():
        try:
            out.append(("ok", fn()))
        except BaseException as e:  # handed to the test thread
            out.append(("err", e))

    t = threading.Thread(target=target)
    t.start()
    t.join(30)
    assert not t.is_alive()
    kind, val = out[0]
    if kind == "err":
        raise val
    return val


@pytest.fixture
def defer_loop(monkeypatch):
    why = _defer_taskrun_ring_possible()
    if why:
        pytest.skip(why)
    import ringloop

    # read once, when the ring is created
    monkeypatch.setenv("RINGLOOP_URING_DEFER_TASKRUN", "1")
    lp = ringloop.new_event_loop(backend="io_uring")
    monkeypatch.delenv("RINGLOOP_URING_DEFER_TASKRUN")
    try:
        yield lp
    finally:
        lp.close()


async def _some_io(loop):
    a, b = socket.socketpair()
    try:
        a.setblocking(False)
        b.setblocking(False)
        got = []
        loop.add_reader(a, lambda: got.append(a.recv(10)))
        await loop.sock_sendall(b, b"one")
        while not got:
            await asyncio.sleep(0.001)
        loop.remove_reader(a)
        await loop.sock_sendall(b, b"two")
        got.append(await loop.sock_recv(a, 10))
        await asyncio.sleep(0.01)
        return got
    finally:
        a.close()
        b.close()


@pytest.mark.ringloop_only
def test_defer_taskrun_loop_runs_in_another_thread(defer_loop):
    # Created in this thread, run in another (and closed here): the ring
    # is enabled by the thread that first runs the loop.
    loop = defer_loop
    assert _run_in_thread(
        lambda: loop.run_until_complete(_some_io(loop))) == [b"one", b"two"]


@pytest.mark.ringloop_only
def test_defer_taskrun_second_thread_gets_a_clear_error(defer_loop):
    loop = defer_loop
    loop.run_until_complete(_some_io(loop))  # this thread owns the ring now
    coro = _some_io(loop)
    with pytest.raises(OSError, match="RINGLOOP_URING_DEFER_TASKRUN=1") as ei:
        _run_in_thread(lambda: loop.run_until_complete(coro))
    coro.close()
    assert "thread" in str(ei.value)
    # the owner thread still runs it
    assert loop.run_until_complete(_some_io(loop)) == [b"one", b"two"]
