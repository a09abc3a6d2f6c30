"""loop.connect_read_pipe / connect_write_pipe: pipes, FIFOs, ptys (character
devices) and sockets; regular files refused; EOF, close, abort, flow control,
pause/resume_reading, and the other end going away (BrokenPipeError).

Every test also runs on stock asyncio (RINGLOOP_TEST_LOOP=asyncio), which
shows it asserts asyncio's own behaviour."""
import asyncio
import os
import pty
import socket

import pytest

from conftest import run_briefly
from netutil import Recorder, until


def run(loop, coro, timeout=30):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def test_read_pipe_data_eof_and_extra_info(loop):
    rfd, wfd = os.pipe()
    pipeobj = open(rfd, "rb", buffering=0)

    async def main():
        tr, pr = await loop.connect_read_pipe(lambda: Recorder(loop), pipeobj)
        assert isinstance(tr, asyncio.ReadTransport)
        assert tr.get_extra_info("pipe") is pipeobj
        assert pr.events == ["made"]
        assert tr.is_reading()
        os.write(wfd, b"hello ")
        await until(lambda: pr.data == b"hello ")
        os.write(wfd, b"pipe")
        os.close(wfd)
        assert await pr.eof == b"hello pipe"
        assert await pr.lost is None
        assert pr.events == ["made", "data", "eof", "lost"]
        assert pipeobj.closed  # the transport closes the pipe object

    run(loop, main())


def test_write_pipe_data_and_close(loop):
    rfd, wfd = os.pipe()
    pipeobj = open(wfd, "wb", buffering=0)

    async def main():
        tr, pr = await loop.connect_write_pipe(lambda: Recorder(loop), pipeobj)
        assert isinstance(tr, asyncio.WriteTransport)
        assert tr.get_extra_info("pipe") is pipeobj
        assert tr.can_write_eof()
        tr.write(b"abc")
        tr.write(bytearray(b"def"))
        tr.write(memoryview(b"ghi"))
        tr.close()
        assert tr.is_closing()
        assert await pr.lost is None
        assert pipeobj.closed

    run(loop, main())
    with open(rfd, "rb") as r:
        assert r.read() == b"abcdefghi"


@pytest.mark.parametrize("kind", ["read", "write"])
def test_regular_file_refused(loop, tmp_path, kind):
    path = tmp_path / "regular"
    path.write_bytes(b"data")
    mode = "rb" if kind == "read" else "wb"
    with open(path, mode) as f:
        connect = loop.connect_read_pipe if kind == "read" else loop.connect_write_pipe
        with pytest.raises(ValueError, match="Pipe transport is"):
            run(loop, connect(asyncio.Protocol, f))


def test_fifo(loop, tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    wfd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    rpipe = open(rfd, "rb", buffering=0)
    wpipe = open(wfd, "wb", buffering=0)

    async def main():
        rtr, rpr = await loop.connect_read_pipe(lambda: Recorder(loop), rpipe)
        wtr, wpr = await loop.connect_write_pipe(lambda: Recorder(loop), wpipe)
        payload = os.urandom(300_000)  # more than the FIFO holds: queued
        wtr.write(payload)
        wtr.close()
        assert await wpr.lost is None
        assert await rpr.eof == payload
        assert await rpr.lost is None

    run(loop, main())


def test_pty_both_ways(loop):
    master, slave = pty.openpty()
    # raw-ish: no echo, so what the slave side reads is exactly what we wrote
    import termios
    import tty

    tty.setraw(slave, termios.TCSANOW)
    mpipe = open(master, "rb", buffering=0)
    spipe = open(slave, "wb", buffering=0)

    async def main():
        rtr, rpr = await loop.connect_read_pipe(lambda: Recorder(loop), mpipe)
        wtr, wpr = await loop.connect_write_pipe(lambda: Recorder(loop), spipe)
        wtr.write(b"through a character device")
        await until(lambda: bytes(rpr.data) == b"through a character device")
        wtr.close()
        assert await wpr.lost is None
        rtr.close()
        assert await rpr.lost is None

    run(loop, main())


def test_socket_as_pipe(loop):
    a, b = socket.socketpair()

    async def main():
        rtr, rpr = await loop.connect_read_pipe(lambda: Recorder(loop), a)
        wtr, wpr = await loop.connect_write_pipe(lambda: Recorder(loop), b)
        wtr.write(b"over a socketpair")
        await until(lambda: rpr.data == b"over a socketpair")
        wtr.write_eof()  # closes the write side: the reader sees EOF
        assert await wpr.lost is None
        assert await rpr.eof == b"over a socketpair"
        assert await rpr.lost is None

    run(loop, main())
    assert a.fileno() == -1 and b.fileno() == -1


def test_pause_and_resume_reading(loop):
    rfd, wfd = os.pipe()
    pipeobj = open(rfd, "rb", buffering=0)

    async def main():
        tr, pr = await loop.connect_read_pipe(lambda: Recorder(loop), pipeobj)
        tr.pause_reading()
        assert not tr.is_reading()
        os.write(wfd, b"held back")
        for _ in range(5):
            await asyncio.sleep(0)
        assert pr.data == b""
        tr.resume_reading()
        assert tr.is_reading()
        await until(lambda: pr.data == b"held back")
        os.close(wfd)
        assert await pr.lost is None

    run(loop, main())


def test_write_pipe_flow_control_and_drain_order(loop):
    rfd, wfd = os.pipe()
    pipeobj = open(wfd, "wb", buffering=0)
    reader = open(rfd, "rb", buffering=0)

    async def main():
        tr, pr = await loop.connect_write_pipe(lambda: Recorder(loop), pipeobj)
        tr.set_write_buffer_limits(high=64 * 1024, low=16 * 1024)
        chunks = [bytes([i]) * 100_000 for i in range(10)]
        for c in chunks:
            tr.write(c)
        # a pipe holds 64 KiB: the rest is queued, over the high-water mark
        assert tr.get_write_buffer_size() > 64 * 1024
        assert pr.paused == 1
        got = bytearray()

        def drain_some():
            got.extend(os.read(rfd, 1 << 20))

        loop.add_reader(rfd, drain_some)
        try:
            await until(lambda: pr.resumed == 1)
            await until(lambda: len(got) == 1_000_000)
        finally:
            loop.remove_reader(rfd)
        assert tr.get_write_buffer_size() == 0
        assert bytes(got) == b"".join(chunks)
        tr.close()
        assert await pr.lost is None

    try:
        run(loop, main())
    finally:
        reader.close()


def test_write_pipe_reader_gone_with_pending_data(loop):
    """The read end closes while data is queued: connection_lost gets
    BrokenPipeError (asyncio's write pipe watches its fd for readability,
    which a pipe's write end reports when the reader went away)."""
    rfd, wfd = os.pipe()
    pipeobj = open(wfd, "wb", buffering=0)

    async def main():
        tr, pr = await loop.connect_write_pipe(lambda: Recorder(loop), pipeobj)
        tr.write(b"x" * 1_000_000)
        assert tr.get_write_buffer_size() > 0
        os.close(rfd)
        exc = await pr.lost
        assert isinstance(exc, BrokenPipeError)
        assert tr.is_closing()
        assert tr.get_write_buffer_size() == 0
        # later writes are dropped (counted), not raised
        tr.write(b"more")

    run(loop, main())


def test_write_pipe_reader_gone_idle(loop):
    rfd, wfd = os.pipe()
    pipeobj = open(wfd, "wb", buffering=0)

    async def main():
        tr, pr = await loop.connect_write_pipe(lambda: Recorder(loop), pipeobj)
        os.close(rfd)
        assert await pr.lost is None  # nothing was lost

    run(loop, main())


def test_write_pipe_abort_discards(loop):
    rfd, wfd = os.pipe()
    pipeobj = open(wfd, "wb", buffering=0)

    async def main():
        tr, pr = await loop.connect_write_pipe(lambda: Recorder(loop), pipeobj)
        tr.write(b"y" * 1_000_000)
        assert tr.get_write_buffer_size() > 0
        tr.abort()
        assert tr.get_write_buffer_size() == 0
        assert await pr.lost is None
        assert pipeobj.closed

    run(loop, main())
    with open(rfd, "rb") as r:
        assert len(r.read()) < 1_000_000


def test_read_pipe_close_before_eof(loop):
    rfd, wfd = os.pipe()
    pipeobj = open(rfd, "rb", buffering=0)

    async def main():
        tr, pr = await loop.connect_read_pipe(lambda: Recorder(loop), pipeobj)
        tr.close()
        assert tr.is_closing()
        assert await pr.lost is None
        assert "eof" not in pr.events

    try:
        run(loop, main())
    finally:
        os.close(wfd)


def test_read_pipe_unclosed_warns(loop):
    rfd, wfd = os.pipe()
    pipeobj = open(rfd, "rb", buffering=0)
    tr, pr = run(loop, loop.connect_read_pipe(lambda: Recorder(loop), pipeobj))
    tr.pause_reading()
    run_briefly(loop)
    with pytest.warns(ResourceWarning, match="unclosed transport"):
        del tr, pr
        import gc

        gc.collect()
    assert pipeobj.closed
    os.close(wfd)


# -- reading until the pipe is empty, subprocess pipe capacity (issue 11) ----------

F_SETPIPE_SZ = 1031
F_GETPIPE_SZ = 1032


def _big_pipe(size):
    """A pipe enlarged to `size`, or skip where the kernel refuses (an
    unprivileged user over fs.pipe-user-pages-soft)."""
    import fcntl

    rfd, wfd = os.pipe()
    try:
        fcntl.fcntl(wfd, F_SETPIPE_SZ, size)
    except OSError as exc:
        os.close(rfd)
        os.close(wfd)
        pytest.skip(f"F_SETPIPE_SZ refused: {exc}")
    return rfd, wfd


@pytest.mark.ringloop_only
def test_read_pipe_reads_until_empty_per_wakeup(loop):
    """What a pipe holds is read in one wake-up (asyncio reads 256 KiB per
    loop iteration): a callback queued by the first data_received() runs
    after all of it arrived.  Read one chunk per wake-up (before), it saw
    only the first 256 KiB."""
    rfd, wfd = _big_pipe(1 << 20)
    payload = os.urandom(768 * 1024)
    assert os.write(wfd, payload) == len(payload)
    os.close(wfd)
    seen_by_next_callback = []

    class P(Recorder):
        def data_received(self, data):
            if not self.data:
                loop.call_soon(lambda: seen_by_next_callback.append(len(self.data)))
            super().data_received(data)

    async def main():
        tr, pr = await loop.connect_read_pipe(lambda: P(loop), open(rfd, "rb", buffering=0))
        assert await pr.eof == payload
        await pr.lost
        return pr

    pr = run(loop, main())
    assert seen_by_next_callback == [len(payload)]
    assert pr.events == ["made", "data", "eof", "lost"]


def test_read_pipe_pause_inside_data_received_stops_the_wakeup(loop):
    """pause_reading() from data_received() stops reading at once, even with
    more in the pipe; resume_reading() gets the rest, in order."""
    rfd, wfd = _big_pipe(1 << 20)
    payload = os.urandom(768 * 1024)
    assert os.write(wfd, payload) == len(payload)
    os.close(wfd)

    class P(Recorder):
        chunks = 0

        def data_received(self, data):
            self.chunks += 1
            super().data_received(data)
            self.transport.pause_reading()

    async def main():
        tr, pr = await loop.connect_read_pipe(lambda: P(loop), open(rfd, "rb", buffering=0))
        await until(lambda: pr.chunks == 1)
        for _ in range(5):
            await asyncio.sleep(0)
        assert pr.chunks == 1 and not tr.is_reading()
        while not pr.eof.done():
            n = pr.chunks
            tr.resume_reading()
            await until(lambda: pr.chunks > n or pr.eof.done())
        assert await pr.eof == payload
        await pr.lost

    run(loop, main())


@pytest.mark.ringloop_only
def test_subprocess_pipes_enlarged_user_pipes_untouched(loop):
    """The pipes a subprocess transport makes hold 256 KiB (64 KiB pipes made
    1 MiB chunks through cat 0.5x uvloop); a pipe given to
    connect_read_pipe()/connect_write_pipe() keeps its size."""
    import fcntl

    rfd, wfd = _big_pipe(256 * 1024)  # skips where the kernel refuses
    os.close(rfd)
    os.close(wfd)
    rfd, wfd = os.pipe()
    default = fcntl.fcntl(rfd, F_GETPIPE_SZ)

    async def main():
        proc = await asyncio.create_subprocess_exec(
            "cat", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        tr = proc._transport
        sizes = [fcntl.fcntl(tr.get_pipe_transport(i).get_extra_info("pipe").fileno(),
                             F_GETPIPE_SZ) for i in (0, 1, 2)]
        out, _ = await proc.communicate(b"x" * 300_000)
        assert out == b"x" * 300_000
        rt, _ = await loop.connect_read_pipe(asyncio.Protocol, open(rfd, "rb", buffering=0))
        wt, _ = await loop.connect_write_pipe(asyncio.Protocol, open(wfd, "wb", buffering=0))
        user = (fcntl.fcntl(rfd, F_GETPIPE_SZ), fcntl.fcntl(wfd, F_GETPIPE_SZ))
        rt.close()
        wt.close()
        await asyncio.sleep(0)
        return sizes, user

    sizes, user = run(loop, main())
    assert sizes == [256 * 1024] * 3
    assert user == (default, default)


@pytest.mark.ringloop_only
def test_subprocess_pipes_enlarged_only_for_the_first_children(loop):
    """The extra pipe pages count against the user's fs.pipe-user-pages-soft:
    with 32 children watched, the next child's pipes keep the default size."""
    import fcntl

    from ringloop import _proc

    rfd, wfd = _big_pipe(256 * 1024)
    os.close(rfd)
    os.close(wfd)
    rfd, wfd = os.pipe()
    default = fcntl.fcntl(rfd, F_GETPIPE_SZ)
    os.close(rfd)
    os.close(wfd)

    async def main():
        sleepers = [await asyncio.create_subprocess_exec("sleep", "30")
                    for _ in range(_proc._BIG_PIPES_MAX_CHILDREN)]
        try:
            proc = await asyncio.create_subprocess_exec(
                "cat", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            size = fcntl.fcntl(proc.stdout._transport.get_extra_info("pipe").fileno(),
                               F_GETPIPE_SZ)
            out, _ = await proc.communicate(b"abc")
            assert out == b"abc"
        finally:
            for p in sleepers:
                p.kill()
            for p in sleepers:
                await p.wait()
        return size

    assert run(loop, main()) == default


# -- the native read pipe transport (issue 11): asyncio's semantics ---------------


def _expected_pipe_module():
    """Where the pipe transports come from in this process: the native ones,
    unless RINGLOOP_PIPE_PYTHON=1 asked for asyncio's."""
    if os.environ.get("RINGLOOP_PIPE_PYTHON", "") not in ("", "0"):
        return "ringloop._proc"
    return "ringloop._core"


def _read_pipe(loop, protocol_factory=None):
    rfd, wfd = os.pipe()
    pipeobj = open(rfd, "rb", buffering=0)
    factory = protocol_factory or (lambda: Recorder(loop))
    tr, pr = run(loop, loop.connect_read_pipe(factory, pipeobj))
    return tr, pr, pipeobj, wfd


def test_read_pipe_sets_nonblocking_and_connects_through_call_soon(loop):
    rfd, wfd = os.pipe()
    os.set_blocking(rfd, True)
    pipeobj = open(rfd, "rb", buffering=0)
    pr = Recorder(loop)
    waiter = loop.create_future()
    tr = loop._make_read_pipe_transport(pipeobj, pr, waiter)
    try:
        assert not os.get_blocking(rfd)
        assert pr.events == [] and not waiter.done()  # connection_made comes later
        run_briefly(loop, 3)
        assert pr.events == ["made"] and pr.transport is tr
        assert waiter.done() and waiter.result() is None
    finally:
        tr.close()
        run(loop, pr.lost)
        os.close(wfd)


def test_read_pipe_repr_states(loop):
    tr, pr, pipeobj, wfd = _read_pipe(loop)
    fd = pipeobj.fileno()
    r = repr(tr)
    assert r.startswith("<_UnixReadPipeTransport fd=%d " % fd), r
    assert "closing" not in r and "closed" not in r
    tr.close()
    assert repr(tr).startswith("<_UnixReadPipeTransport closing fd=%d" % fd), repr(tr)
    run(loop, pr.lost)
    assert repr(tr) == "<_UnixReadPipeTransport closed fd=%d closed>" % fd
    os.close(wfd)


def test_read_pipe_extra_info_and_protocol(loop):
    rfd, wfd = os.pipe()
    pipeobj = open(rfd, "rb", buffering=0)
    pr = Recorder(loop)
    waiter = loop.create_future()
    tr = loop._make_read_pipe_transport(pipeobj, pr, waiter, extra={"k": 1})

    async def main():
        await waiter
        assert tr.get_extra_info("pipe") is pipeobj
        assert tr.get_extra_info("k") == 1
        assert tr.get_extra_info("socket") is None
        assert tr.get_extra_info("nothing", 42) == 42
        assert tr.get_protocol() is pr
        other = Recorder(loop)
        tr.set_protocol(other)
        assert tr.get_protocol() is other
        os.write(wfd, b"to the other")
        await until(lambda: other.data == b"to the other")
        assert pr.data == b""
        tr.close()
        assert await other.lost is None

    run(loop, main())
    os.close(wfd)


def test_read_pipe_eof_closes_whatever_eof_received_answers(loop):
    """A read pipe's EOF is the end: eof_received() returning True does not
    keep it open (asyncio ignores the answer)."""

    def factory():
        p = Recorder(loop)
        p.keep_open = True
        return p

    tr, pr, pipeobj, wfd = _read_pipe(loop, factory)

    async def main():
        os.write(wfd, b"x")
        os.close(wfd)
        assert await pr.eof == b"x"
        assert tr.is_closing() and not tr.is_reading()
        assert await pr.lost is None
        assert pr.events == ["made", "data", "eof", "lost"]
        assert pipeobj.closed

    run(loop, main())


def test_read_pipe_close_is_idempotent_and_stops_reading(loop):
    tr, pr, pipeobj, wfd = _read_pipe(loop)

    async def main():
        tr.close()
        tr.close()
        assert tr.is_closing() and not tr.is_reading()
        tr.pause_reading()  # no-ops once closing
        tr.resume_reading()
        assert not tr.is_reading()
        os.write(wfd, b"too late")
        assert await pr.lost is None
        for _ in range(3):
            await asyncio.sleep(0)
        assert pr.events == ["made", "lost"] and pr.data == b""
        assert pipeobj.closed

    run(loop, main())
    os.close(wfd)


def test_read_pipe_data_received_error_is_reported_and_reading_goes_on(loop):
    """An exception from data_received() goes to the exception handler (as a
    failing reader callback) and the pipe keeps being read."""
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))

    class P(Recorder):
        def data_received(self, data):
            super().data_received(data)
            if data == b"boom":
                raise ZeroDivisionError

    try:
        tr, pr, pipeobj, wfd = _read_pipe(loop, lambda: P(loop))

        async def main():
            os.write(wfd, b"boom")
            await until(lambda: errors)
            assert isinstance(errors[0]["exception"], ZeroDivisionError)
            assert not tr.is_closing() and tr.is_reading()
            os.write(wfd, b"more")
            os.close(wfd)
            assert await pr.eof == b"boommore"
            assert await pr.lost is None

        run(loop, main())
        assert len(errors) == 1
    finally:
        loop.set_exception_handler(None)


@pytest.mark.parametrize("err,reported", [(5, False), (9, True)])  # EIO, EBADF
def test_read_pipe_fatal_error(loop, err, reported):
    """_fatal_error(): EIO (a pty whose other side closed) is quiet, any
    other error goes to the exception handler; both end the transport with
    connection_lost(exc)."""
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    try:
        tr, pr, pipeobj, wfd = _read_pipe(loop)
        exc = OSError(err, os.strerror(err))
        tr._fatal_error(exc, "Fatal read error on pipe transport")
        assert tr.is_closing()
        assert run(loop, pr.lost) is exc
        assert pipeobj.closed
        if reported:
            assert len(errors) == 1
            assert errors[0]["message"] == "Fatal read error on pipe transport"
            assert errors[0]["exception"] is exc
            assert errors[0]["transport"] is tr
            assert errors[0]["protocol"] is pr
        else:
            assert errors == []
        os.close(wfd)
    finally:
        loop.set_exception_handler(None)


def test_read_pipe_close_on_closed_loop_raises():
    lp = asyncio.new_event_loop() if os.environ.get("RINGLOOP_TEST_LOOP") == "asyncio" else None
    if lp is None:
        import ringloop

        lp = ringloop.new_event_loop()
    rfd, wfd = os.pipe()
    pipeobj = open(rfd, "rb", buffering=0)
    try:
        tr, pr = lp.run_until_complete(lp.connect_read_pipe(lambda: Recorder(lp), pipeobj))
        lp.close()
        with pytest.raises(RuntimeError, match="Event loop is closed"):
            tr.close()
        # Never closed then: collected with a warning (as asyncio's).
        with pytest.warns(ResourceWarning, match="unclosed transport"):
            del tr, pr
            import gc

            gc.collect()
    finally:
        pipeobj.close()
        os.close(wfd)


@pytest.mark.ringloop_only
def test_read_pipe_is_native_unless_asked_for_python(loop):
    import subprocess
    import sys

    tr, pr, pipeobj, wfd = _read_pipe(loop)
    assert type(tr).__module__ == _expected_pipe_module()
    assert type(tr).__name__ == "_UnixReadPipeTransport"
    assert isinstance(tr, asyncio.ReadTransport)
    tr.close()
    run(loop, pr.lost)
    os.close(wfd)
    code = (
        "import asyncio, os, ringloop\n"
        "async def main():\n"
        "    r, w = os.pipe()\n"
        "    tr, _ = await asyncio.get_running_loop().connect_read_pipe(\n"
        "        asyncio.Protocol, open(r, 'rb', buffering=0))\n"
        "    print(type(tr).__module__, tr.is_reading())\n"
        "    tr.close(); os.close(w)\n"
        "ringloop.run(main())\n"
    )
    env = dict(os.environ, RINGLOOP_PIPE_PYTHON="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert out.split() == ["ringloop._proc", "True"]


def test_read_pipe_forgotten_pipe_is_not_closed_again(loop):
    """Code that closed the pipe itself sets transport._pipe = None (as
    CPython's tests do): then the transport reads as closed and nothing is
    closed or warned about when it is collected."""
    import gc
    import warnings

    tr, pr, pipeobj, wfd = _read_pipe(loop)
    tr.pause_reading()
    pipeobj.close()
    tr._pipe = None
    assert tr._pipe is None
    assert "closed" in repr(tr)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        del tr, pr
        gc.collect()
    os.close(wfd)


# -- the native write pipe transport (issue 11): asyncio's semantics --------------


def _write_pipe(loop, protocol_factory=None):
    rfd, wfd = os.pipe()
    pipeobj = open(wfd, "wb", buffering=0)
    factory = protocol_factory or (lambda: Recorder(loop))
    tr, pr = run(loop, loop.connect_write_pipe(factory, pipeobj))
    return tr, pr, pipeobj, rfd


@pytest.mark.parametrize(
    "kind,message",
    [
        ("read", "Pipe transport is for pipes/sockets only."),
        ("write", "Pipe transport is only for pipes, sockets and character devices"),
    ],
)
def test_regular_file_refused_with_asyncios_message(loop, tmp_path, kind, message):
    path = tmp_path / "regular"
    path.write_bytes(b"")
    with open(path, "rb" if kind == "read" else "wb") as f:
        connect = loop.connect_read_pipe if kind == "read" else loop.connect_write_pipe
        with pytest.raises(ValueError) as info:
            run(loop, connect(asyncio.Protocol, f))
        assert str(info.value) == message


def test_write_pipe_sets_nonblocking_repr_extra(loop):
    rfd, wfd = os.pipe()
    os.set_blocking(wfd, True)
    pipeobj = open(wfd, "wb", buffering=0)
    pr = Recorder(loop)
    waiter = loop.create_future()
    tr = loop._make_write_pipe_transport(pipeobj, pr, waiter, extra={"k": 2})
    assert not os.get_blocking(wfd)
    assert pr.events == [] and not waiter.done()  # connection_made comes later
    run(loop, waiter)
    assert pr.events == ["made"]
    assert isinstance(tr, asyncio.WriteTransport)
    assert tr.get_extra_info("pipe") is pipeobj and tr.get_extra_info("k") == 2
    assert tr.get_extra_info("nothing", 7) == 7
    assert repr(tr).startswith("<_UnixWritePipeTransport fd=%d " % wfd), repr(tr)
    tr.close()
    assert repr(tr).startswith("<_UnixWritePipeTransport closing fd=%d" % wfd), repr(tr)
    assert run(loop, pr.lost) is None
    assert repr(tr) == "<_UnixWritePipeTransport closed fd=%d closed>" % wfd
    assert pipeobj.closed
    os.close(rfd)


def test_write_pipe_write_types_and_writelines(loop):
    tr, pr, pipeobj, rfd = _write_pipe(loop)
    with pytest.raises((TypeError, AssertionError)):  # asyncio asserts
        tr.write("text")
    with pytest.raises(TypeError):
        tr.writelines([b"a", "text"])
    tr.write(b"")
    tr.writelines([b"ab", bytearray(b"cd"), memoryview(b"ef")])
    tr.writelines([])
    tr.close()
    assert run(loop, pr.lost) is None
    with open(rfd, "rb") as r:
        assert r.read() == b"abcdef"


def test_write_pipe_write_eof_drains_then_ends(loop):
    """write_eof() is close(): what is queued still goes out, then
    connection_lost(None); writes after it are dropped, not refused."""
    tr, pr, pipeobj, rfd = _write_pipe(loop)
    assert tr.can_write_eof()
    payload = os.urandom(300_000)  # more than the pipe holds
    tr.write(payload)
    assert tr.get_write_buffer_size() > 0
    tr.write_eof()
    assert tr.is_closing()
    tr.write(b"dropped")
    tr.write_eof()
    tr.close()
    os.set_blocking(rfd, False)

    async def read_all():
        got = bytearray()
        while True:
            try:
                data = os.read(rfd, 1 << 20)
            except BlockingIOError:
                await asyncio.sleep(0.001)
                continue
            if not data:
                return bytes(got)
            got += data

    got = run(loop, read_all())
    os.close(rfd)
    assert run(loop, pr.lost) is None
    assert bytes(got) == payload
    assert pipeobj.closed


def test_write_pipe_writes_after_close_dropped_with_warning(loop, caplog):
    import logging

    tr, pr, pipeobj, rfd = _write_pipe(loop)
    tr.close()
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        for _ in range(5):
            tr.write(b"x")
        assert not [r for r in caplog.records if "pipe closed by peer" in r.getMessage()]
        tr.write(b"x")
        assert [r for r in caplog.records if "pipe closed by peer" in r.getMessage()]
    assert run(loop, pr.lost) is None
    with open(rfd, "rb") as r:
        assert r.read() == b""


def test_write_pipe_epipe_on_write(loop):
    """The reader is gone before the first write: that write fails with
    EPIPE and connection_lost() gets the BrokenPipeError (an OSError: not
    reported to the exception handler)."""
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    try:
        tr, pr, pipeobj, rfd = _write_pipe(loop)
        os.close(rfd)
        tr.write(b"into the void")
        assert tr.is_closing()
        exc = run(loop, pr.lost)
        assert isinstance(exc, BrokenPipeError)
        assert errors == []
        assert pipeobj.closed
    finally:
        loop.set_exception_handler(None)


def test_write_pipe_buffer_limits(loop):
    tr, pr, pipeobj, rfd = _write_pipe(loop)
    assert tr.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
    tr.set_write_buffer_limits(high=100)
    assert tr.get_write_buffer_limits() == (25, 100)
    tr.set_write_buffer_limits(low=10)
    assert tr.get_write_buffer_limits() == (10, 40)
    with pytest.raises(ValueError):
        tr.set_write_buffer_limits(high=1, low=2)
    assert tr.get_write_buffer_size() == 0
    tr.abort()
    assert run(loop, pr.lost) is None
    os.close(rfd)


@pytest.mark.parametrize("make_exc,reported", [(lambda: OSError(5, "x"), False),
                                               (lambda: ZeroDivisionError(), True)])
def test_write_pipe_fatal_error(loop, make_exc, reported):
    """_fatal_error(): any OSError is quiet, anything else goes to the
    exception handler; connection_lost(exc) either way."""
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    try:
        tr, pr, pipeobj, rfd = _write_pipe(loop)
        exc = make_exc()
        tr._fatal_error(exc, "Fatal write error on pipe transport")
        assert run(loop, pr.lost) is exc
        if reported:
            assert len(errors) == 1
            assert errors[0]["message"] == "Fatal write error on pipe transport"
            assert errors[0]["exception"] is exc and errors[0]["transport"] is tr
        else:
            assert errors == []
        os.close(rfd)
    finally:
        loop.set_exception_handler(None)


def _new_loop():
    if os.environ.get("RINGLOOP_TEST_LOOP") == "asyncio":
        return asyncio.new_event_loop()
    import ringloop

    return ringloop.new_event_loop()


def test_write_pipe_unclosed_warns():
    """A write pipe watches its fd (the reader going away), which keeps it
    alive while the loop runs; once the loop closed, an unclosed one is
    collected with asyncio's ResourceWarning and its pipe closed."""
    import gc

    lp = _new_loop()
    tr, pr, pipeobj, rfd = _write_pipe(lp)
    lp.close()
    with pytest.warns(ResourceWarning, match="unclosed transport"):
        del tr, pr
        gc.collect()
    assert pipeobj.closed
    os.close(rfd)


@pytest.mark.ringloop_only
def test_write_pipe_is_native_unless_asked_for_python(loop):
    import subprocess
    import sys

    tr, pr, pipeobj, rfd = _write_pipe(loop)
    assert type(tr).__module__ == _expected_pipe_module()
    assert type(tr).__name__ == "_UnixWritePipeTransport"
    tr.close()
    run(loop, pr.lost)
    os.close(rfd)
    code = (
        "import asyncio, os, ringloop\n"
        "async def main():\n"
        "    r, w = os.pipe()\n"
        "    tr, _ = await asyncio.get_running_loop().connect_write_pipe(\n"
        "        asyncio.Protocol, open(w, 'wb', buffering=0))\n"
        "    print(type(tr).__module__)\n"
        "    tr.close(); os.close(r)\n"
        "ringloop.run(main())\n"
    )
    env = dict(os.environ, RINGLOOP_PIPE_PYTHON="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert out.split() == ["ringloop._proc"]


def test_pipes_debug_logs(loop, caplog):
    """Debug mode: asyncio's log lines for a read pipe's EOF ("was closed by
    peer", INFO), pause/resume_reading (DEBUG), a write pipe's reader going
    away (INFO) and a quiet OSError in _fatal_error (DEBUG, with the
    message)."""
    import logging

    loop.set_debug(True)
    try:
        with caplog.at_level(logging.DEBUG, logger="asyncio"):
            tr, pr, pipeobj, wfd = _read_pipe(loop)
            tr.pause_reading()
            tr.resume_reading()
            os.close(wfd)
            run(loop, pr.lost)
            tw, pw, wpipeobj, rfd = _write_pipe(loop)
            os.close(rfd)
            run(loop, pw.lost)
            tf, pf, fpipeobj, frfd = _write_pipe(loop)
            tf._fatal_error(OSError(5, "x"), "Fatal write error on pipe transport")
            run(loop, pf.lost)
            os.close(frfd)
        msgs = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "asyncio"]
        rrepr = "_UnixReadPipeTransport"
        assert any(lv == logging.DEBUG and rrepr in m and m.endswith("pauses reading")
                   for lv, m in msgs), msgs
        assert any(lv == logging.DEBUG and rrepr in m and m.endswith("resumes reading")
                   for lv, m in msgs), msgs
        assert any(lv == logging.INFO and rrepr in m and m.endswith("was closed by peer")
                   for lv, m in msgs), msgs
        assert any(lv == logging.INFO and "_UnixWritePipeTransport" in m
                   and m.endswith("was closed by peer") for lv, m in msgs), msgs
        assert any(lv == logging.DEBUG and m.endswith(": Fatal write error on pipe transport")
                   for lv, m in msgs), msgs
    finally:
        loop.set_debug(False)
