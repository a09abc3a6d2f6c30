"""add_reader / add_writer / remove_*: level-triggered readiness callbacks."""
import os
import socket
import tempfile

import pytest

from conftest import is_ringloop, new_loop, run_briefly


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_reader_called_when_data_arrives(loop, pair):
    a, b = pair
    got = []

    def on_read():
        got.append(a.recv(100))
        loop.stop()

    loop.add_reader(a.fileno(), on_read)
    loop.call_later(0.02, b.send, b"hello")
    loop.call_later(5, loop.stop)
    loop.run_forever()
    assert got == [b"hello"]
    assert loop.remove_reader(a.fileno()) is True
    assert loop.remove_reader(a.fileno()) is False


def test_reader_is_level_triggered(loop, pair):
    a, b = pair
    got = []

    def on_read():
        got.append(a.recv(1))  # one byte per call: must be called again
        if len(got) == 5:
            loop.stop()

    loop.add_reader(a, on_read)  # a file object works too
    b.send(b"abcde")
    loop.call_later(5, loop.stop)
    loop.run_forever()
    assert b"".join(got) == b"abcde"
    loop.remove_reader(a)


def test_reader_called_once_per_iteration(loop, pair):
    a, b = pair
    calls = []
    loop.add_reader(a.fileno(), lambda: calls.append(1))
    b.send(b"x")  # never read: stays readable

    def one_iteration():
        loop.call_soon(loop.stop)
        loop.run_forever()

    for _ in range(5):
        one_iteration()
    # asyncio calls a ready reader exactly once per iteration
    assert len(calls) == 5
    loop.remove_reader(a.fileno())
    for _ in range(3):
        one_iteration()
    assert len(calls) == 5


def test_reader_args_and_replace(loop, pair):
    a, b = pair
    got = []
    loop.add_reader(a.fileno(), got.append, "old")
    loop.add_reader(a.fileno(), lambda x: (got.append(x), a.recv(10), loop.stop()), "new")
    b.send(b"x")
    loop.call_later(5, loop.stop)
    loop.run_forever()
    assert got == ["new"]
    loop.remove_reader(a.fileno())


def test_remove_reader_inside_callback(loop, pair):
    a, b = pair
    calls = []

    def cb():
        calls.append(1)
        loop.remove_reader(a.fileno())

    loop.add_reader(a.fileno(), cb)
    b.send(b"x")
    run_briefly(loop, 5)
    assert calls == [1]


def test_remove_reader_before_it_ran(loop, pair):
    # readiness already collected, callback queued, then removed by an
    # earlier callback of the same iteration: it must not run
    a, b = pair
    calls = []
    b.send(b"x")
    loop.add_reader(a.fileno(), calls.append, "reader")
    run_briefly(loop, 2)
    assert calls
    calls.clear()
    loop.remove_reader(a.fileno())
    run_briefly(loop, 2)
    assert calls == []


def test_writer(loop, pair):
    a, b = pair
    got = []

    def on_write():
        got.append(a.send(b"ping"))
        loop.remove_writer(a.fileno())
        loop.stop()

    loop.add_writer(a.fileno(), on_write)
    loop.call_later(5, loop.stop)
    loop.run_forever()
    assert got == [4]
    assert b.recv(10) == b"ping"
    assert loop.remove_writer(a.fileno()) is False


def test_writer_waits_for_space(loop, pair):
    a, b = pair
    # fill the socket buffer
    try:
        while True:
            a.send(b"x" * 65536)
    except BlockingIOError:
        pass
    calls = []
    loop.add_writer(a.fileno(), lambda: (calls.append(1), loop.stop()))
    run_briefly(loop, 3)
    assert calls == []
    # drain the peer: now writable
    def drain():
        try:
            while True:
                if not b.recv(1 << 20):
                    break
        except BlockingIOError:
            pass

    loop.call_later(0.01, drain)
    loop.call_later(5, loop.stop)
    loop.run_forever()
    assert calls == [1]
    loop.remove_writer(a.fileno())


def test_reader_and_writer_same_fd(loop, pair):
    a, b = pair
    events = []

    def on_write():
        events.append("w")
        loop.remove_writer(a.fileno())
        b.send(b"x")

    def on_read():
        events.append("r")
        a.recv(10)
        loop.remove_reader(a.fileno())
        loop.stop()

    loop.add_reader(a.fileno(), on_read)
    loop.add_writer(a.fileno(), on_write)
    loop.call_later(5, loop.stop)
    loop.run_forever()
    assert events == ["w", "r"]


def test_hangup_reported_to_reader(loop, pair):
    a, b = pair
    got = []
    loop.add_reader(a.fileno(), lambda: (got.append(a.recv(10)), loop.stop()))
    loop.call_later(0.01, b.close)
    loop.call_later(5, loop.stop)
    loop.run_forever()
    assert got == [b""]
    loop.remove_reader(a.fileno())


def test_invalid_fd_values(loop):
    with pytest.raises(ValueError, match="Invalid file descriptor: -1"):
        loop.add_reader(-1, print)
    with pytest.raises(ValueError, match="Invalid file object"):
        loop.add_reader(object(), print)
    with pytest.raises(ValueError, match="Invalid file object"):
        loop.add_writer("not a file", print)
    with pytest.raises(ValueError):
        loop.remove_reader(-5)
    with pytest.raises(TypeError):
        loop.add_reader(1)


def test_closed_fd_raises_oserror(loop):
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError):
        loop.add_reader(r, print)
    assert loop.remove_reader(r) is False


def test_regular_file_refused(loop):
    with tempfile.TemporaryFile() as f:
        with pytest.raises(PermissionError):
            loop.add_reader(f.fileno(), print)


def test_add_after_close_and_remove_after_close():
    lp = new_loop()
    a, b = socket.socketpair()
    try:
        lp.add_reader(a.fileno(), print)
        lp.close()
        with pytest.raises(RuntimeError, match="Event loop is closed"):
            lp.add_reader(a.fileno(), print)
        with pytest.raises(RuntimeError, match="Event loop is closed"):
            lp.add_writer(a.fileno(), print)
        assert lp.remove_reader(a.fileno()) is False
        assert lp.remove_writer(a.fileno()) is False
    finally:
        a.close()
        b.close()


def test_fd_closed_and_reused_after_remove(loop):
    for _ in range(3):
        a, b = socket.socketpair()
        a.setblocking(False)
        got = []
        loop.add_reader(a.fileno(), lambda: (got.append(a.recv(5)), loop.stop()))
        b.send(b"data")
        loop.call_later(5, loop.stop)
        loop.run_forever()
        assert got == [b"data"]
        loop.remove_reader(a.fileno())
        a.close()
        b.close()


def test_pipe_reader(loop):
    r, w = os.pipe()
    os.set_blocking(r, False)
    try:
        got = []
        loop.add_reader(r, lambda: (got.append(os.read(r, 10)), loop.stop()))
        loop.call_later(0.01, os.write, w, b"pipe")
        loop.call_later(5, loop.stop)
        loop.run_forever()
        assert got == [b"pipe"]
        loop.remove_reader(r)
    finally:
        os.close(r)
        os.close(w)


def test_many_fds(loop):
    pairs = [socket.socketpair() for _ in range(200)]
    try:
        seen = set()
        for i, (a, b) in enumerate(pairs):
            a.setblocking(False)

            def cb(i=i, a=a):
                a.recv(10)
                seen.add(i)
                loop.remove_reader(a.fileno())
                if len(seen) == len(pairs):
                    loop.stop()

            loop.add_reader(a.fileno(), cb)
        for a, b in pairs:
            b.send(b"x")
        loop.call_later(10, loop.stop)
        loop.run_forever()
        assert seen == set(range(len(pairs)))
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_reader_exception_goes_to_handler(loop, loop_errors, pair):
    a, b = pair

    def cb():
        a.recv(10)
        loop.remove_reader(a.fileno())
        loop.call_soon(loop.stop)
        raise RuntimeError("reader failed")

    loop.add_reader(a.fileno(), cb)
    b.send(b"x")
    loop.call_later(5, loop.stop)
    loop.run_forever()
    assert isinstance(loop_errors[0]["exception"], RuntimeError)


@pytest.mark.ringloop_only
def test_no_ops_left_after_remove(loop, pair):
    a, b = pair
    for _ in range(10):
        loop.add_reader(a.fileno(), print)
        loop.add_writer(a.fileno(), lambda: None)
        loop.remove_reader(a.fileno())
        loop.remove_writer(a.fileno())
    run_briefly(loop, 3)
    c = loop._debug_counters()
    assert c["ops_inflight"] == 0
    assert c["watches"] == 0
