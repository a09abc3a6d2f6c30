"""loop.sock_recv/_into, sock_recvfrom/_into, sock_sendall, sock_sendto.

Run against ringloop on the backend of RINGLOOP_BACKEND (CI runs both), or
against stock asyncio with RINGLOOP_TEST_LOOP=asyncio: every test that is not
marked ringloop_only asserts asyncio's own behaviour.  Each test that
involves receiving runs twice on ringloop: with the inline first attempt
(asyncio's order) and with the op armed directly."""
import asyncio
import contextlib
import errno
import gc
import os
import socket
import ssl
import struct
import sys
import tempfile

import pytest

from conftest import is_ringloop

HAS_IPV6 = socket.has_ipv6
try:
    _s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    _s.bind(("::1", 0))
    _s.close()
except OSError:
    HAS_IPV6 = False


@pytest.fixture(params=["inline", "direct"])
def recv_mode(request, loop):
    """Both receive strategies on ringloop (asyncio: only its own)."""
    if request.param == "direct":
        if not is_ringloop():
            pytest.skip("ringloop-specific receive strategy")
        loop._sock_set_recv_inline(False)
    elif is_ringloop():
        loop._sock_set_recv_inline(True)
    return request.param


@contextlib.contextmanager
def pair(family=socket.AF_UNIX, type=socket.SOCK_STREAM):
    if family == socket.AF_UNIX:
        a, b = socket.socketpair(family, type)
    else:
        lst = socket.socket(family, type)
        lst.bind(("127.0.0.1" if family == socket.AF_INET else "::1", 0))
        lst.listen(1)
        a = socket.socket(family, type)
        a.connect(lst.getsockname())
        b, _ = lst.accept()
        lst.close()
    a.setblocking(False)
    b.setblocking(False)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def run(loop, coro, timeout=10):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def stashes(loop):
    return loop._sock_debug()["stashes"] if is_ringloop() else None


# ---------------------------------------------------------------------------
# basics


def test_is_a_coroutine_and_lazy(loop):
    with pair() as (a, b):
        b.send(b"data")
        c = loop.sock_recv(a, 10)
        assert asyncio.iscoroutine(c)
        # Nothing happens until it is awaited: the bytes stay in the socket.
        c.close()
        assert a.recv(10) == b"data"

        async def main():
            t = asyncio.create_task(loop.sock_recv(a, 10))
            await asyncio.sleep(0)
            b.send(b"more")
            return await t

        assert run(loop, main()) == b"more"


def _sock_calls(loop, a, buf):
    """One call of every sock_* method (none of them awaited yet)."""
    return {
        "sock_recv": lambda: loop.sock_recv(a, 10),
        "sock_recv_into": lambda: loop.sock_recv_into(a, buf),
        "sock_recvfrom": lambda: loop.sock_recvfrom(a, 10),
        "sock_recvfrom_into": lambda: loop.sock_recvfrom_into(a, buf),
        "sock_sendall": lambda: loop.sock_sendall(a, b"x"),
        "sock_sendto": lambda: loop.sock_sendto(a, b"x", None),
        "sock_connect": lambda: loop.sock_connect(a, "nowhere"),
        "sock_accept": lambda: loop.sock_accept(a),
    }


def test_full_coroutine_states_and_stack(loop):
    """Issue 9, defect 12: what sock_* return is a coroutine in every respect
    users can see, as asyncio's `async def sock_*` (inspect's states,
    cr_frame/cr_running/cr_await, Task.get_stack()/print_stack())."""
    import inspect
    import io

    with pair() as (a, b):
        buf = bytearray(10)
        for name, make in _sock_calls(loop, a, buf).items():
            c = make()
            assert inspect.iscoroutine(c), name
            assert inspect.getcoroutinestate(c) == inspect.CORO_CREATED, name
            assert c.cr_running is False and c.cr_await is None, name
            assert c.cr_frame is not None, name
            assert c.__qualname__.endswith(name), name
            c.close()
            assert inspect.getcoroutinestate(c) == inspect.CORO_CLOSED, name

        async def main():
            t = asyncio.create_task(loop.sock_recv(a, 10))
            await asyncio.sleep(0)
            c = t.get_coro()
            assert inspect.getcoroutinestate(c) == inspect.CORO_SUSPENDED
            assert c.cr_await is not None
            frames = t.get_stack()
            assert frames and frames[0].f_code.co_name == "sock_recv"
            out = io.StringIO()
            t.print_stack(file=out)
            assert "sock_recv" in out.getvalue()
            b.send(b"hi")
            assert await t == b"hi"
            assert inspect.getcoroutinestate(c) == inspect.CORO_CLOSED

        run(loop, main())


@pytest.mark.parametrize("name", list(_sock_calls(None, None, None)))
def test_never_awaited_warns(loop, name):
    """Issue 9, defect 12: dropping a sock_* coroutine unawaited gives
    "coroutine ... was never awaited", as asyncio's does; nothing is done
    on the socket."""
    import warnings

    with pair() as (a, b):
        b.send(b"data")
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            c = _sock_calls(loop, a, bytearray(10))[name]()
            del c
            gc.collect()
        msgs = [str(x.message) for x in w if issubclass(x.category, RuntimeWarning)]
        assert any(name in m and "was never awaited" in m for m in msgs), msgs
        assert a.recv(10) == b"data"


def test_socket_closed_under_pending_recv(loop, recv_mode):
    """Issue 9, defect 12: a socket closed under a pending sock_recv.  asyncio
    (3.11-3.13) leaves the call pending and the socket really closes: the
    peer sees EOF.  io_uring's armed RECV held the file: the peer saw
    nothing and the call completed with its next bytes."""
    with pair() as (a, b):
        async def main():
            t = asyncio.ensure_future(loop.sock_recv(a, 10))
            await asyncio.sleep(0.01)  # armed
            a.close()
            assert await asyncio.wait_for(loop.sock_recv(b, 10), 5) == b""
            try:
                b.send(b"late")
            except OSError:
                pass
            await asyncio.sleep(0.05)
            assert not t.done()
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t

        run(loop, main())


@pytest.mark.timeout_s(30)
def test_socket_closed_under_pending_connect(loop):
    """Issue 9, defect 12: a socket closed under a pending sock_connect (the
    server's backlog is full, the SYN goes unanswered).  asyncio leaves the
    call pending and the connection attempt dies with the socket; io_uring's
    armed CONNECT kept the socket alive, and the connection was made once
    the backlog had room."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    lst.setblocking(False)
    fillers = []
    try:
        async def main():
            for _ in range(3):
                f = socket.socket()
                f.setblocking(False)
                fillers.append(f)
                with contextlib.suppress(BlockingIOError):
                    f.connect(lst.getsockname())
            await asyncio.sleep(0.05)
            c = socket.socket()
            c.setblocking(False)
            t = asyncio.ensure_future(loop.sock_connect(c, lst.getsockname()))
            await asyncio.sleep(0.1)
            if t.done():
                c.close()
                pytest.skip("the backlog did not hold the connection back")
            c.close()
            # Make room: accept whatever is queued, for longer than the
            # first SYN retransmission (1 s) of a socket kept alive.
            accepted = 0
            end = loop.time() + 2.5
            while loop.time() < end:
                try:
                    conn, _ = lst.accept()
                except BlockingIOError:
                    await asyncio.sleep(0.02)
                    continue
                conn.close()
                accepted += 1
            assert not t.done()
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t

        run(loop, main())
    finally:
        for f in fillers:
            f.close()
        lst.close()


def test_awaited_twice(loop):
    with pair() as (a, b):
        b.send(b"x")
        c = loop.sock_recv(a, 10)

        async def main():
            assert await c == b"x"
            with pytest.raises(RuntimeError):
                await c

        run(loop, main())


@pytest.mark.parametrize("family", ["unix", "inet", "inet6"])
def test_stream_roundtrip(loop, recv_mode, family):
    fam = {"unix": socket.AF_UNIX, "inet": socket.AF_INET,
           "inet6": socket.AF_INET6}[family]
    if fam == socket.AF_INET6 and not HAS_IPV6:
        pytest.skip("no IPv6")
    with pair(fam) as (a, b):
        async def main():
            t = asyncio.create_task(loop.sock_recv(a, 100))
            await asyncio.sleep(0)
            assert await loop.sock_sendall(b, b"hello") is None
            assert await t == b"hello"
            await loop.sock_sendall(b, bytearray(b"abc"))
            await loop.sock_sendall(b, memoryview(b"--def--")[2:5])
            got = b""
            while len(got) < 6:
                got += await loop.sock_recv(a, 100)
            assert got == b"abcdef"
            # recv(0) and an empty sendall
            assert await loop.sock_recv(a, 0) == b""
            await loop.sock_sendall(b, b"")
            b.close()
            assert await loop.sock_recv(a, 100) == b""  # EOF

        run(loop, main())


def test_keywords_and_arg_errors(loop):
    with pair() as (a, b):
        with pytest.raises(TypeError):
            loop.sock_recv(a)
        with pytest.raises(TypeError):
            loop.sock_recv(a, 1, 2)
        with pytest.raises(TypeError):
            loop.sock_recv(a, nbytes=1)

        async def main():
            b.send(b"kw")
            assert await loop.sock_recv(sock=a, n=10) == b"kw"
            with pytest.raises(ValueError, match="negative buffersize in recv"):
                await loop.sock_recv(a, -1)
            with pytest.raises(TypeError):
                await loop.sock_recv(a, "10")
            with pytest.raises(TypeError):
                await loop.sock_recv_into(a, b"read-only")
            with pytest.raises(TypeError):
                await loop.sock_sendall(b, "text")

        run(loop, main())


def test_recv_into_memoryview_slices(loop, recv_mode):
    with pair() as (a, b):
        async def main():
            buf = bytearray(16)
            mv = memoryview(buf)
            b.send(b"0123")
            assert await loop.sock_recv_into(a, mv[4:8]) == 4
            t = asyncio.create_task(loop.sock_recv_into(a, mv[10:]))
            await asyncio.sleep(0)
            await loop.sock_sendall(b, b"abcdefghij")
            assert await t == 6
            assert bytes(buf) == b"\0\0\0\0" + b"0123" + b"\0\0" + b"abcdef"
            assert await loop.sock_recv_into(a, mv[:2]) == 2
            assert bytes(buf[:2]) == b"gh"
            mv.release()

        run(loop, main())


def test_closed_socket(loop):
    s = socket.socket()
    s.setblocking(False)
    s.close()

    async def main():
        with pytest.raises(OSError) as ei:
            await loop.sock_recv(s, 10)
        assert ei.value.errno == errno.EBADF
        with pytest.raises(OSError):
            await loop.sock_sendall(s, b"x")

    run(loop, main())


def test_debug_requires_nonblocking(loop):
    with pair() as (a, b):
        a.setblocking(True)
        loop.set_debug(True)

        async def main():
            for coro in (loop.sock_recv(a, 1), loop.sock_recv_into(a, bytearray(1)),
                         loop.sock_recvfrom(a, 1),
                         loop.sock_recvfrom_into(a, bytearray(1)),
                         loop.sock_sendall(a, b"x"), loop.sock_sendto(a, b"x", None)):
                with pytest.raises(ValueError, match="the socket must be non-blocking"):
                    await coro

        run(loop, main())
        loop.set_debug(False)


def test_ssl_socket_rejected(loop):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.socket()
    sslsock = ctx.wrap_socket(raw, do_handshake_on_connect=False)
    try:
        async def main():
            with pytest.raises(TypeError, match="SSLSocket"):
                await loop.sock_recv(sslsock, 1)
            with pytest.raises(TypeError, match="SSLSocket"):
                await loop.sock_sendall(sslsock, b"x")

        run(loop, main())
    finally:
        sslsock.close()


def test_errors_are_oserror_subclasses(loop):
    with pair(socket.AF_INET) as (a, b):
        # RST on close: the next receive fails with ECONNRESET.
        b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        b.close()

        async def main():
            with pytest.raises(ConnectionResetError):
                await loop.sock_recv(a, 10)
            with pytest.raises((BrokenPipeError, ConnectionResetError)):
                for _ in range(10):
                    await loop.sock_sendall(a, b"x" * 65536)

        run(loop, main())


def test_error_while_waiting(loop, recv_mode):
    with pair(socket.AF_INET) as (a, b):
        async def main():
            t = asyncio.create_task(loop.sock_recv(a, 10))
            await asyncio.sleep(0.01)
            b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            b.close()
            with pytest.raises(ConnectionResetError):
                await t

        run(loop, main())


# ---------------------------------------------------------------------------
# sendall


@pytest.mark.timeout_s(60)
def test_large_sendall_slow_reader(loop):
    # (AF_UNIX: tiny TCP windows on loopback stall in the kernel's
    # zero-window probing, on asyncio as well.)
    data = os.urandom(8 * 1024 * 1024)
    with pair() as (a, b):
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)

        async def main():
            t = asyncio.create_task(loop.sock_sendall(a, data))
            got = bytearray()
            n = 0
            while len(got) < len(data):
                chunk = await loop.sock_recv(b, 4096)
                assert chunk
                got += chunk
                n += 1
                if n % 200 == 0:
                    await asyncio.sleep(0.001)  # a slow reader
            assert await t is None
            assert got == data

        run(loop, main(), timeout=50)


def fill(sock):
    """Fill sock's send buffer (and the peer's receive buffer)."""
    total = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            total += sock.send(b" " * 65536)
    return total


def test_sendall_cancel_partial_then_more(loop):
    """A cancelled sendall may have sent a prefix (asyncio says so); what the
    next sendall sends follows it, never mixed into it."""
    with pair() as (a, b):
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        payload = bytes(range(256)) * 4096  # 1 MiB, recognisable

        async def main():
            filled = fill(a)
            t = asyncio.create_task(loop.sock_sendall(a, payload))
            await asyncio.sleep(0)
            # The reader drains a little so that part of payload goes out.
            got = bytearray()
            while len(got) < filled + 100_000:
                got += await loop.sock_recv(b, 65536)
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t

            async def read_to_eof():
                while True:
                    chunk = await loop.sock_recv(b, 65536)
                    if not chunk:
                        return
                    got.extend(chunk)

            reader = asyncio.create_task(read_to_eof())
            await loop.sock_sendall(a, b"<END>")
            a.shutdown(socket.SHUT_WR)
            await reader
            body = bytes(got[filled:])
            assert body.endswith(b"<END>")
            sent = body[:-5]
            assert payload.startswith(sent), "the cancelled sendall sent a non-prefix"

        run(loop, main(), timeout=30)


@pytest.mark.ringloop_only
def test_concurrent_sendall_fifo(loop):
    """Two sendalls on one socket: each message goes out whole, in order.
    (asyncio's second add_writer replaces the first: it hangs.)"""
    with pair() as (a, b):
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        m1, m2 = b"1" * 300_000, b"2" * 300_000

        async def main():
            t1 = asyncio.create_task(loop.sock_sendall(a, m1))
            t2 = asyncio.create_task(loop.sock_sendall(a, m2))
            got = bytearray()
            while len(got) < len(m1) + len(m2):
                got += await loop.sock_recv(b, 65536)
            await t1
            await t2
            assert bytes(got) == m1 + m2

        run(loop, main())


# ---------------------------------------------------------------------------
# cancellation of receives


def test_cancel_before_first_step(loop):
    with pair() as (a, b):
        async def main():
            b.send(b"keep")
            t = asyncio.create_task(loop.sock_recv(a, 10))
            t.cancel()  # before the task ever ran
            with pytest.raises(asyncio.CancelledError):
                await t
            assert a.recv(10) == b"keep"

        run(loop, main())


def test_cancel_while_waiting(loop, recv_mode):
    with pair() as (a, b):
        async def main():
            t = asyncio.create_task(loop.sock_recv(a, 10))
            await asyncio.sleep(0.01)
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t
            b.send(b"next")
            assert await loop.sock_recv(a, 10) == b"next"

        run(loop, main())


@pytest.mark.parametrize("kind", ["recv", "recv_into", "recvfrom", "recvfrom_into"])
def test_cancel_racing_completion_keeps_data(loop, recv_mode, kind):
    """The bytes reach the socket and the task is cancelled in the same loop
    iteration: the receive op may complete with the data after its Future
    was cancelled.  Nothing may be lost: the next receive gets them."""
    with pair() as (a, b):
        buf = bytearray(64)

        def start():
            if kind == "recv":
                return loop.sock_recv(a, 64)
            if kind == "recv_into":
                return loop.sock_recv_into(a, buf)
            if kind == "recvfrom":
                return loop.sock_recvfrom(a, 64)
            return loop.sock_recvfrom_into(a, buf)

        async def main():
            t = asyncio.create_task(start())
            await asyncio.sleep(0.01)  # the op is armed
            b.send(b"precious")
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t
            # The caller reuses its buffer at once.
            buf[:] = b"\xff" * 64
            got = bytearray()
            other = bytearray(64)
            while len(got) < 8:
                if kind in ("recv", "recvfrom"):
                    r = await (loop.sock_recv(a, 64) if kind == "recv"
                               else loop.sock_recvfrom(a, 64))
                    got += r if kind == "recv" else r[0]
                else:
                    r = await (loop.sock_recv_into(a, other) if kind == "recv_into"
                               else loop.sock_recvfrom_into(a, other))
                    n = r if kind == "recv_into" else r[0]
                    got += other[:n]
            assert bytes(got) == b"precious"

        run(loop, main())


@pytest.mark.parametrize("style", ["recv", "recv_into", "wrapped"])
@pytest.mark.parametrize("seed", range(6))
def test_random_cancellation_keeps_every_byte(loop, recv_mode, style, seed):
    """Issue 9, defect 6: 1 MB through a stream while receives are cancelled
    at random points, among them after the receive completed but before the
    awaiting task resumed (its Future holds the bytes).  asyncio keeps every
    byte; so must we (the bytes go back to the stash for the next receive)."""
    import random

    rng = random.Random(seed)
    total = 1 << 20
    payload = rng.randbytes(total)
    with pair() as (a, b):
        async def send():
            await loop.sock_sendall(b, payload)
            b.shutdown(socket.SHUT_WR)

        async def wrapped(n):
            return await loop.sock_recv(a, n)

        async def main():
            sender = asyncio.ensure_future(send())
            got = bytearray()
            buf = bytearray(65536)
            cancelled = 0
            while True:
                n = rng.choice([1, 100, 4096, 65536])
                if style == "recv":
                    t = asyncio.ensure_future(loop.sock_recv(a, n))
                elif style == "recv_into":
                    t = asyncio.ensure_future(
                        loop.sock_recv_into(a, memoryview(buf)[:n]))
                else:
                    t = asyncio.ensure_future(wrapped(n))
                for _ in range(rng.randrange(3)):
                    await asyncio.sleep(0)
                if rng.random() < 0.5:
                    t.cancel()
                try:
                    r = await t
                except asyncio.CancelledError:
                    cancelled += 1
                    continue
                data = bytes(buf[:r]) if style == "recv_into" else r
                if not data:
                    break
                got += data
            await sender
            assert cancelled > 0
            assert len(got) == total
            assert bytes(got) == payload

        run(loop, main(), timeout=60)


@pytest.mark.ringloop_only
def test_cancel_race_uses_the_stash(loop, recv_mode):
    """White box: the race above really happens (the op completed after the
    cancellation) and the stash served it."""
    with pair() as (a, b):
        async def main():
            t = asyncio.create_task(loop.sock_recv(a, 64))
            await asyncio.sleep(0.01)
            b.send(b"abcdef")
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t
            assert stashes(loop) == 1
            assert await loop.sock_recv(a, 2) == b"ab"  # a stream keeps the rest
            assert stashes(loop) == 1
            assert await loop.sock_recv(a, 64) == b"cdef"
            assert stashes(loop) == 0
            assert loop._sock_debug()["queued"] == 0

        run(loop, main())


@pytest.mark.ringloop_only
def test_stash_not_served_to_another_socket(loop):
    with pair() as (a, b):
        async def main():
            t = asyncio.create_task(loop.sock_recv(a, 64))
            await asyncio.sleep(0.01)
            b.send(b"for a")
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t
            assert stashes(loop) == 1
            fd = a.fileno()
            a.close()
            # A new socket under the same fd number must not get a's bytes.
            c, d = socket.socketpair()
            try:
                if c.fileno() != fd:
                    c, d = d, c
                c.setblocking(False)
                d.send(b"for c")
                assert await loop.sock_recv(c, 64) == b"for c"
                assert stashes(loop) == 0
            finally:
                c.close()
                d.close()

        run(loop, main())


@pytest.mark.ringloop_only
def test_concurrent_recv_fifo(loop, recv_mode):
    """Concurrent receives on one socket are served in order.  (asyncio's
    second add_reader replaces the first: the first never completes.)"""
    with pair(type=socket.SOCK_DGRAM) as (a, b):
        async def main():
            tasks = [asyncio.create_task(loop.sock_recv(a, 64)) for _ in range(5)]
            await asyncio.sleep(0.01)
            for i in range(5):
                b.send(b"m%d" % i)
            assert [await t for t in tasks] == [b"m%d" % i for i in range(5)]

        run(loop, main())


@pytest.mark.ringloop_only
def test_cancel_middle_of_queue(loop, recv_mode):
    with pair(type=socket.SOCK_DGRAM) as (a, b):
        async def main():
            tasks = [asyncio.create_task(loop.sock_recv(a, 64)) for _ in range(3)]
            await asyncio.sleep(0.01)
            tasks[1].cancel()
            await asyncio.sleep(0)
            b.send(b"one")
            b.send(b"two")
            assert await tasks[0] == b"one"
            assert await tasks[2] == b"two"
            with pytest.raises(asyncio.CancelledError):
                await tasks[1]

        run(loop, main())


def test_wait_for_timeout_then_recv(loop, recv_mode):
    with pair() as (a, b):
        async def main():
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(loop.sock_recv(a, 10), 0.01)
            b.send(b"late")
            assert await loop.sock_recv(a, 10) == b"late"

        run(loop, main())


# ---------------------------------------------------------------------------
# buffers stay pinned while the kernel may write into them


@pytest.mark.ringloop_only
def test_recv_into_buffer_pinned_until_final_completion(loop, recv_mode):
    with pair() as (a, b):
        ba = bytearray(32)

        async def main():
            t = asyncio.create_task(loop.sock_recv_into(a, ba))
            await asyncio.sleep(0.01)
            with pytest.raises(BufferError):
                ba.extend(b"x")  # exported to the kernel
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t
            # Cancelled, but the op's final completion may not be there yet.
            for _ in range(5):
                await asyncio.sleep(0)
            ba.extend(b"x")  # released after the final completion
            assert loop._sock_debug()["queued"] == 0

        run(loop, main())


def test_recv_into_buffer_released_after_completion(loop, recv_mode):
    with pair() as (a, b):
        ba = bytearray(8)

        async def main():
            t = asyncio.create_task(loop.sock_recv_into(a, ba))
            await asyncio.sleep(0.01)
            b.send(b"12345678")
            assert await t == 8
            ba.extend(b"more")  # no export left
            assert ba == b"12345678more"

        run(loop, main())


@pytest.mark.ringloop_only
def test_loop_close_with_ops_in_flight(loop_errors):
    import ringloop
    lp = ringloop.new_event_loop()
    a, peer_a = socket.socketpair()
    peer_b, b = socket.socketpair()  # nobody reads peer_b: sendall blocks
    for s in (a, b, peer_a, peer_b):
        s.setblocking(False)
    ba = bytearray(16)
    data = b"z" * (4 * 1024 * 1024)
    try:
        async def main():
            lp.create_task(lp.sock_recv_into(a, ba))
            lp.create_task(lp.sock_sendall(b, data))
            await asyncio.sleep(0.01)

        lp.run_until_complete(main())
        with pytest.raises(BufferError):
            ba.extend(b"x")
        before = sys.getrefcount(data)
        lp.close()  # the kernel lets go of everything; nothing crashes
        ba.extend(b"x")
        gc.collect()
        assert sys.getrefcount(data) <= before - 1
    finally:
        for s in (a, b, peer_a, peer_b):
            s.close()


# ---------------------------------------------------------------------------
# datagrams


def dgram_pair(family):
    host = {socket.AF_INET: "127.0.0.1", socket.AF_INET6: "::1"}[family]
    s1 = socket.socket(family, socket.SOCK_DGRAM)
    s2 = socket.socket(family, socket.SOCK_DGRAM)
    s1.bind((host, 0))
    s2.bind((host, 0))
    s1.setblocking(False)
    s2.setblocking(False)
    return s1, s2


@pytest.mark.parametrize("family", ["inet", "inet6"])
def test_sendto_recvfrom_ip(loop, recv_mode, family):
    fam = socket.AF_INET if family == "inet" else socket.AF_INET6
    if fam == socket.AF_INET6 and not HAS_IPV6:
        pytest.skip("no IPv6")
    s1, s2 = dgram_pair(fam)
    try:
        async def main():
            t = asyncio.create_task(loop.sock_recvfrom(s1, 100))
            await asyncio.sleep(0)
            assert await loop.sock_sendto(s2, b"ping", s1.getsockname()) == 4
            data, addr = await t
            assert data == b"ping"
            assert addr == s2.getsockname()
            buf = bytearray(100)
            await loop.sock_sendto(s1, memoryview(b"pong"), addr)
            n, addr2 = await loop.sock_recvfrom_into(s2, buf)
            assert (n, bytes(buf[:n]), addr2) == (4, b"pong", s1.getsockname())
            # nbytes limits the read; the rest of the datagram is discarded
            await loop.sock_sendto(s1, b"123456", addr)
            n, _ = await loop.sock_recvfrom_into(s2, buf, 3)
            assert bytes(buf[:n]) == b"123"
            # a hostname goes through the socket's own resolution
            await loop.sock_sendto(s2, b"byname",
                                   ("localhost", s1.getsockname()[1]) if fam == socket.AF_INET
                                   else s1.getsockname())
            assert (await loop.sock_recvfrom(s1, 100))[0] == b"byname"

        run(loop, main())
    finally:
        s1.close()
        s2.close()


def test_unix_datagram(loop, recv_mode):
    with tempfile.TemporaryDirectory() as d:
        p1, p2 = os.path.join(d, "s1"), os.path.join(d, "s2")
        s1 = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s2 = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s3 = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # unnamed
        s4 = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            s1.bind(p1)
            s2.bind(p2)
            abstract = b"\0ringloop-test-%d" % os.getpid()
            s4.bind(abstract)
            for s in (s1, s2, s3, s4):
                s.setblocking(False)

            async def main():
                await loop.sock_sendto(s2, b"a", p1)
                assert await loop.sock_recvfrom(s1, 10) == (b"a", p2)
                await loop.sock_sendto(s3, b"b", p1.encode())
                # an unnamed sender: no address (CPython gives None)
                assert await loop.sock_recvfrom(s1, 10) == (b"b", None)
                await loop.sock_sendto(s1, b"c", abstract)
                buf = bytearray(10)
                assert await loop.sock_recvfrom_into(s4, buf) == (1, p1)
                await loop.sock_sendto(s4, b"d", p1)
                assert await loop.sock_recvfrom(s1, 10) == (b"d", abstract)

            run(loop, main())
        finally:
            for s in (s1, s2, s3, s4):
                s.close()


def test_recvfrom_on_stream_socket(loop):
    with pair(socket.AF_INET) as (a, b):
        async def main():
            b.send(b"tcp")
            assert await loop.sock_recvfrom(a, 10) == (b"tcp", None)

        run(loop, main())


def test_sendto_errors(loop):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    try:
        async def main():
            with pytest.raises(OverflowError):
                await loop.sock_sendto(s, b"x", ("127.0.0.1", 70000))
            with pytest.raises(TypeError):
                await loop.sock_sendto(s, b"x", "not a tuple")
            with pytest.raises(socket.gaierror):
                await loop.sock_sendto(s, b"x", ("no-such-host.invalid", 1))

        run(loop, main())
    finally:
        s.close()


def test_connected_udp_icmp_error(loop, recv_mode):
    """ICMP port unreachable on a connected UDP socket: the next receive
    raises ConnectionRefusedError."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    dead = probe.getsockname()
    probe.close()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    s.connect(dead)
    try:
        async def main():
            t = asyncio.create_task(loop.sock_recv(s, 10))
            await asyncio.sleep(0)
            await loop.sock_sendall(s, b"anyone?")
            with pytest.raises(ConnectionRefusedError):
                await t

        run(loop, main())
    finally:
        s.close()


# ---------------------------------------------------------------------------
# the generic path: objects that are not plain sockets


class RecordingSocket(socket.socket):
    """A subclass: asyncio calls its methods, so must we."""
    calls = None

    def recv(self, n, *args):
        self.calls.append(("recv", n))
        return super().recv(n, *args)

    def send(self, data, *args):
        self.calls.append(("send", len(data)))
        return super().send(data, *args)


def test_subclass_methods_are_called(loop, recv_mode):
    a0, b = socket.socketpair()
    a = RecordingSocket(fileno=a0.detach())
    a.calls = []
    a.setblocking(False)
    b.setblocking(False)
    try:
        async def main():
            t = asyncio.create_task(loop.sock_recv(a, 10))
            await asyncio.sleep(0.01)
            b.send(b"sub")
            assert await t == b"sub"
            await loop.sock_sendall(a, b"out")
            assert b.recv(10) == b"out"

        run(loop, main())
        assert ("recv", 10) in a.calls
        assert ("send", 3) in a.calls
    finally:
        a.close()
        b.close()


# ---------------------------------------------------------------------------
# reference counts


def test_refcounts(loop, recv_mode):
    with pair() as (a, b):
        data = b"q" * 1000
        ba = bytearray(100)
        before = (sys.getrefcount(a), sys.getrefcount(data), sys.getrefcount(ba))

        async def main():
            for _ in range(50):
                t = asyncio.create_task(loop.sock_recv_into(a, ba))
                await asyncio.sleep(0)
                await loop.sock_sendall(b, data[:10])
                assert await t == 10
                t = asyncio.create_task(loop.sock_recv(a, 5))
                await asyncio.sleep(0)
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
                await loop.sock_sendall(b, data)
                got = 0
                while got < len(data):
                    got += len(await loop.sock_recv(a, 4096))

        run(loop, main())
        for _ in range(3):
            loop.run_until_complete(asyncio.sleep(0))
        gc.collect()
        assert (sys.getrefcount(a), sys.getrefcount(data), sys.getrefcount(ba)) == before
        if is_ringloop():
            assert loop._sock_debug() == {"queued": 0, "stashes": 0,
                                          "recv_inline": recv_mode == "inline"}
