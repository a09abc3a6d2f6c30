"""TCP: sock_connect/sock_accept, create_connection/create_server, the stream
transport's protocol semantics, errors and lifecycle.

Loop-generic unless marked: with RINGLOOP_TEST_LOOP=asyncio they run on stock
asyncio and must pass there too (they assert asyncio's behaviour)."""
import asyncio
import contextvars
import gc
import os
import random
import socket
import struct
import sys
import warnings
import weakref

import pytest

from conftest import is_ringloop
from netutil import Echo, Recorder, net_counters, ringloop_only, settle, tcp_pair, until

PY312 = sys.version_info >= (3, 12)
PY313 = sys.version_info >= (3, 13)


def run(loop, coro, timeout=30):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


async def echo_server(loop, **kw):
    srv = await loop.create_server(Echo, "127.0.0.1", 0, **kw)
    return srv, srv.sockets[0].getsockname()


# ---------------------------------------------------------------------------
# sock_connect / sock_accept


def test_sock_connect_accept(loop):
    async def main():
        with socket.socket() as lsock:
            lsock.bind(("127.0.0.1", 0))
            lsock.listen(1)
            lsock.setblocking(False)
            addr = lsock.getsockname()
            c = socket.socket()
            c.setblocking(False)
            acc = asyncio.ensure_future(loop.sock_accept(lsock))
            await loop.sock_connect(c, addr)
            conn, peer = await acc
            with c, conn:
                assert peer == c.getsockname()
                assert conn.gettimeout() == 0.0
                assert conn.family == socket.AF_INET
                assert conn.type == socket.SOCK_STREAM
                c.send(b"ping")
                await until(lambda: _readable(conn))
                assert conn.recv(10) == b"ping"

    run(loop, main())


def _readable(sock):
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False


def test_sock_connect_is_a_coroutine_for_create_task(loop):
    """asyncio.create_task(loop.sock_connect(...)) works, as with asyncio's
    own `async def` (CPython's test_sock_lowlevel does this)."""

    async def main():
        with socket.socket() as lsock:
            lsock.bind(("127.0.0.1", 0))
            lsock.listen(1)
            with socket.socket() as c:
                c.setblocking(False)
                aw = loop.sock_connect(c, lsock.getsockname())
                assert asyncio.iscoroutine(aw)
                await asyncio.create_task(aw)
                lsock.accept()[0].close()

    run(loop, main())


def test_sock_connect_refused(loop):
    async def main():
        with socket.socket() as lsock:
            lsock.bind(("127.0.0.1", 0))
            addr = lsock.getsockname()  # bound, not listening: refused
            with socket.socket() as c:
                c.setblocking(False)
                with pytest.raises(ConnectionRefusedError) as ei:
                    await loop.sock_connect(c, addr)
                assert ei.value.errno == 111
                assert "Connect call failed" in str(ei.value)

    run(loop, main())


def test_sock_connect_hostname(loop):
    """A host name goes through loop.getaddrinfo first."""

    async def main():
        with socket.socket() as lsock:
            lsock.bind(("127.0.0.1", 0))
            lsock.listen(1)
            port = lsock.getsockname()[1]
            with socket.socket() as c:
                c.setblocking(False)
                await loop.sock_connect(c, ("localhost", port))
                assert c.getpeername() == ("127.0.0.1", port)
                lsock.accept()[0].close()

    run(loop, main())


def test_sock_connect_ipv6(loop):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")

    async def main():
        try:
            lsock = socket.socket(socket.AF_INET6)
            lsock.bind(("::1", 0))
        except OSError as e:
            pytest.skip(f"no ::1 here: {e}")
        with lsock:
            lsock.listen(1)
            with socket.socket(socket.AF_INET6) as c:
                c.setblocking(False)
                await loop.sock_connect(c, lsock.getsockname()[:2])
                conn, addr = lsock.accept()
                conn.close()
                assert addr[0] == "::1"

    run(loop, main())


def test_sock_accept_cancelled_then_socket_closed(loop):
    """Cancelling sock_accept() and closing the socket at once is safe: the
    op is cancelled before the fd can be reused."""

    async def main():
        for _ in range(20):
            lsock = socket.socket()
            lsock.bind(("127.0.0.1", 0))
            lsock.listen(1)
            lsock.setblocking(False)
            t = asyncio.ensure_future(loop.sock_accept(lsock))
            await asyncio.sleep(0)
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t
            lsock.close()
            # The next socket likely gets the same fd number: it must not
            # be touched by the cancelled op.
            with socket.socket() as other:
                other.bind(("127.0.0.1", 0))
                other.listen(1)
                other.setblocking(False)
                c = socket.create_connection(other.getsockname())
                conn, _ = await loop.sock_accept(other)
                conn.close()
                c.close()

    run(loop, main())
    if is_ringloop():
        assert loop._net_counters()["ops_held"] == 0


def test_sock_connect_cancelled(loop):
    async def main():
        # A connect that never completes: a full backlog of a listener that
        # never accepts is not reliable, so use a blackhole address and
        # cancel right away.
        with socket.socket() as c:
            c.setblocking(False)
            t = asyncio.ensure_future(loop.sock_connect(c, ("10.255.255.1", 9)))
            await asyncio.sleep(0.01)
            t.cancel()
            try:
                await t
            except (asyncio.CancelledError, OSError):
                pass

    run(loop, main())


def test_sock_connect_cancelled_after_refusal_leaves_error_in_socket(loop):
    """A sock_connect() cancelled once its connection was refused must not
    consume the socket's pending error: the next connect() on the socket
    reports the refusal (as with asyncio), not ECONNABORTED, and a retry
    after the listener listens connects (CPython's
    test_sock_client_connect_racing)."""
    async def main():
        with socket.socket() as listener, socket.socket() as sock:
            listener.bind(("127.0.0.1", 0))
            addr = listener.getsockname()
            sock.setblocking(False)
            task = asyncio.ensure_future(loop.sock_connect(sock, addr))
            await asyncio.sleep(0)
            task.cancel()
            listener.listen(1)
            refused = 0
            for _ in range(128):
                try:
                    await loop.sock_connect(sock, addr)
                    break
                except ConnectionRefusedError:
                    refused += 1
            else:
                pytest.fail("never connected")
            conn, _ = listener.accept()
            conn.close()
            try:
                await task
            except (asyncio.CancelledError, ConnectionRefusedError):
                pass
            return refused

    run(loop, main())


# ---------------------------------------------------------------------------
# create_connection / create_server basics


def test_echo_and_extra_info(loop):
    async def main():
        srv, addr = await echo_server(loop)
        async with srv:
            tr, pr = await loop.create_connection(lambda: Recorder(loop), *addr)
            assert isinstance(tr, asyncio.Transport)
            assert isinstance(tr, asyncio.WriteTransport)
            assert tr.get_protocol() is pr
            assert pr.events == ["made"]
            tr.write(b"hello ")
            tr.write(bytearray(b"world"))
            tr.write(memoryview(b"!!"))
            await until(lambda: len(pr.data) == 13)
            assert bytes(pr.data) == b"hello world!!"
            sock = tr.get_extra_info("socket")
            assert isinstance(sock, asyncio.trsock.TransportSocket)
            assert sock.family == socket.AF_INET
            assert tr.get_extra_info("sockname") == sock.getsockname()
            assert tr.get_extra_info("peername") == addr
            assert tr.get_extra_info("nope", 42) == 42
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            assert tr.get_write_buffer_size() == 0
            assert tr.get_write_buffer_limits() == (16384, 65536)
            assert tr.is_reading()
            assert tr.can_write_eof()
            assert "fd=" in repr(tr)
            tr.close()
            assert tr.is_closing()
            assert await pr.lost is None
            assert pr.events[-1] == "lost"
            assert tr.get_protocol() is None or not is_ringloop()

    run(loop, main())


def test_server_transport_extra_info(loop):
    async def main():
        got = loop.create_future()

        class P(asyncio.Protocol):
            def connection_made(self, tr):
                got.set_result(tr)

        srv = await loop.create_server(P, "127.0.0.1", 0)
        async with srv:
            addr = srv.sockets[0].getsockname()
            c = socket.create_connection(addr)
            with c:
                tr = await got
                assert tr.get_extra_info("peername") == c.getsockname()
                assert tr.get_extra_info("sockname") == addr
                s = tr.get_extra_info("socket")
                assert s.getpeername() == c.getsockname()
                tr.close()
                await settle(loop)

    run(loop, main())


def test_connection_made_before_data_and_waiter(loop):
    """connection_made() runs before any data_received() and before
    create_connection() returns."""

    async def main():
        srv, addr = await echo_server(loop)
        order = []

        class P(Recorder):
            def connection_made(self, tr):
                order.append("made")
                tr.write(b"early")
                super().connection_made(tr)

            def data_received(self, data):
                order.append("data")
                super().data_received(data)

        async with srv:
            tr, pr = await loop.create_connection(lambda: P(loop), *addr)
            order.append("returned")
            await until(lambda: len(pr.data) == 5)
            assert order[:2] == ["made", "returned"]
            tr.close()
            await pr.lost

    run(loop, main())


def test_create_connection_refused(loop):
    async def main():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            with pytest.raises(ConnectionRefusedError):
                await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)

    run(loop, main())


def test_create_connection_all_errors(loop):
    async def main():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if PY312:
                with pytest.raises(ExceptionGroup) as ei:
                    await loop.create_connection(
                        asyncio.Protocol, "127.0.0.1", port, all_errors=True
                    )
                assert isinstance(ei.value.exceptions[0], ConnectionRefusedError)
            else:
                with pytest.raises(TypeError):
                    await loop.create_connection(
                        asyncio.Protocol, "127.0.0.1", port, all_errors=True
                    )

    run(loop, main())


def test_create_connection_happy_eyeballs(loop):
    async def main():
        srv, addr = await echo_server(loop)
        async with srv:
            tr, pr = await loop.create_connection(
                lambda: Recorder(loop), "localhost", addr[1], happy_eyeballs_delay=0.05
            )
            tr.write(b"x")
            await until(lambda: pr.data == b"x")
            tr.close()
            await pr.lost

    run(loop, main())


def test_create_connection_local_addr_and_sock(loop):
    async def main():
        srv, addr = await echo_server(loop)
        async with srv:
            tr, pr = await loop.create_connection(
                lambda: Recorder(loop), *addr, local_addr=("127.0.0.1", 0)
            )
            assert tr.get_extra_info("sockname")[0] == "127.0.0.1"
            tr.close()
            await pr.lost
            # sock=: the transport owns the socket once made
            sock = socket.create_connection(addr)
            tr, pr = await loop.create_connection(lambda: Recorder(loop), sock=sock)
            assert tr.get_extra_info("socket").fileno() == sock.fileno()
            tr.write(b"abc")
            await until(lambda: pr.data == b"abc")
            tr.close()
            await pr.lost
            assert sock.fileno() == -1

    run(loop, main())


def test_connect_accepted_socket(loop):
    async def main():
        c, s = tcp_pair()
        with c:
            tr, pr = await loop.connect_accepted_socket(lambda: Recorder(loop), s)
            c.sendall(b"hi")
            await until(lambda: pr.data == b"hi")
            tr.write(b"back")
            c.settimeout(5)
            assert c.recv(10) == b"back"
            c.close()
            await pr.eof
            assert await pr.lost is None
            assert s.fileno() == -1

    run(loop, main())


def test_make_transport_on_fd_in_use(loop):
    if not is_ringloop():
        pytest.skip("asyncio checks this too, through _ensure_fd_no_transport")

    async def main():
        c, s = tcp_pair()
        with c:
            tr, pr = await loop.connect_accepted_socket(lambda: Recorder(loop), s)
            with pytest.raises(RuntimeError, match="is used by transport"):
                loop.add_reader(s.fileno(), lambda: None)
            with pytest.raises(RuntimeError, match="is used by transport"):
                await loop.sock_accept(s)
            tr.close()
            await pr.lost

    run(loop, main())


# ---------------------------------------------------------------------------
# writing


def test_write_type_errors_and_eof(loop):
    async def main():
        srv, addr = await echo_server(loop)
        async with srv:
            tr, pr = await loop.create_connection(lambda: Recorder(loop), *addr)
            with pytest.raises(TypeError, match="bytes-like object, not 'str'"):
                tr.write("text")
            with pytest.raises(TypeError):
                tr.writelines(["text"])
            tr.write(b"")
            tr.write_eof()
            with pytest.raises(RuntimeError, match=r"Cannot call write\(\) after write_eof\(\)"):
                tr.write(b"x")
            tr.write_eof()  # again: nothing
            assert await pr.eof == b""  # echo server closes on EOF
            assert await pr.lost is None

    run(loop, main())


def test_write_after_close_dropped_and_logged(loop, caplog):
    async def main():
        srv, addr = await echo_server(loop)
        async with srv:
            tr, pr = await loop.create_connection(lambda: Recorder(loop), *addr)
            tr.close()
            with caplog.at_level("WARNING", logger="asyncio"):
                for _ in range(7):
                    tr.write(b"dropped")
            await pr.lost
            msgs = [r.getMessage() for r in caplog.records]
            assert msgs.count("socket.send() raised exception.") == 3

    run(loop, main())


def test_writelines_one_vectored_send(loop):
    async def main():
        srv, addr = await echo_server(loop)
        async with srv:
            tr, pr = await loop.create_connection(lambda: Recorder(loop), *addr)
            parts = [b"a" * 10, bytearray(b"b" * 5000), memoryview(b"c" * 3), b"", b"d"]
            tr.writelines(parts)
            tr.writelines(iter([b"e", b"f"]))
            want = b"".join(bytes(p) for p in parts) + b"ef"
            await until(lambda: len(pr.data) == len(want))
            assert bytes(pr.data) == want
            tr.close()
            await pr.lost

    run(loop, main())


def test_bytearray_changed_after_write_is_not_sent(loop):
    """What was passed to write() is what goes out, even if it is queued and
    the caller reuses its buffer (ringloop copies mutable buffers)."""
    if not is_ringloop() and PY312:
        pytest.skip("asyncio 3.12+ keeps a reference to the caller's buffer")

    async def main():
        c, s = tcp_pair(rcvbuf=4096, sndbuf=4096)
        with c:
            tr, pr = await loop.connect_accepted_socket(lambda: Recorder(loop), s)
            big = b"x" * (4 << 20)
            tr.write(big)  # fills the socket: the rest is queued
            assert tr.get_write_buffer_size() > 0
            buf = bytearray(b"A" * 100000)
            tr.write(buf)
            buf[:] = b"B" * 100000
            small = bytearray(b"C" * 100)
            tr.write(small)
            small[:] = b"D" * 100
            c.setblocking(False)
            got = bytearray()
            want = len(big) + 100000 + 100
            while len(got) < want:
                try:
                    got += c.recv(1 << 20)
                except BlockingIOError:
                    await asyncio.sleep(0.001)
            assert got[len(big):] == b"A" * 100000 + b"C" * 100
            tr.close()
            await pr.lost

    run(loop, main())


def test_write_ordering_under_eagain(loop):
    """Writes made while earlier data waits for the socket (EAGAIN, a SEND in
    flight) go out after it, in order."""

    async def main():
        c, s = tcp_pair(rcvbuf=4096, sndbuf=4096)
        with c:
            tr, pr = await loop.connect_accepted_socket(lambda: Recorder(loop), s)
            tr.set_write_buffer_limits(high=1 << 30)
            rnd = random.Random(1)
            expected = bytearray()
            n = 0
            for i in range(3000):
                size = rnd.choice([1, 7, 100, 3000, 70000])
                chunk = struct.pack("!I", i) * (size // 4 + 1)
                chunk = chunk[:size]
                expected += chunk
                kind = i % 3
                if kind == 0:
                    tr.write(chunk)
                elif kind == 1:
                    tr.write(bytearray(chunk))
                else:
                    tr.writelines([chunk[: size // 2], memoryview(chunk)[size // 2 :]])
                n += 1
                if i % 500 == 0:
                    await asyncio.sleep(0)
            assert tr.get_write_buffer_size() > 0
            c.setblocking(False)
            got = bytearray()
            while len(got) < len(expected):
                try:
                    got += c.recv(1 << 20)
                except BlockingIOError:
                    await asyncio.sleep(0)
            assert got == expected
            await until(lambda: tr.get_write_buffer_size() == 0)
            tr.close()
            await pr.lost

    run(loop, main())


def test_small_write_goes_out_at_once(loop):
    """A small write is sent at once (no grouping until a high-water mark,
    uvloop#631)."""

    async def main():
        c, s = tcp_pair()
        with c:
            tr, pr = await loop.connect_accepted_socket(lambda: Recorder(loop), s)
            tr.write(b"now")
            # no loop iteration: the bytes are already in the kernel
            c.settimeout(2)
            assert c.recv(10) == b"now"
            tr.close()
            await pr.lost

    run(loop, main())


# ---------------------------------------------------------------------------
# reading, EOF, half-close


def test_half_close(loop):
    """write_eof() on one side: the other gets eof_received(); returning True
    keeps it open for writing; it then closes after its reply."""

    async def main():
        got_eof = loop.create_future()

        class Server(asyncio.Protocol):
            def connection_made(self, tr):
                self.tr = tr
                self.buf = b""

            def data_received(self, data):
                self.buf += data

            def eof_received(self):
                got_eof.set_result(self.buf)
                self.tr.write(b"reply:" + self.buf)
                self.tr.close()
                return True  # keep open: our close() decides

        srv = await loop.create_server(Server, "127.0.0.1", 0)
        async with srv:
            addr = srv.sockets[0].getsockname()
            tr, pr = await loop.create_connection(lambda: Recorder(loop), *addr)
            tr.write(b"question")
            tr.write_eof()
            assert await got_eof == b"question"
            assert await pr.eof == b"reply:question"
            assert await pr.lost is None

    run(loop, main())


def test_eof_received_keep_open_then_write(loop):
    async def main():
        c, s = tcp_pair()
        with c:
            pr = Recorder(loop)
            pr.keep_open = True
            tr, _ = await loop.connect_accepted_socket(lambda: pr, s)
            c.shutdown(socket.SHUT_WR)
            await pr.eof
            assert not tr.is_closing()
            tr.write(b"still here")
            c.settimeout(2)
            assert c.recv(100) == b"still here"
            tr.close()
            assert await pr.lost is None
            assert c.recv(100) == b""

    run(loop, main())


def test_rst_mid_transfer_connection_lost_exc(loop):
    """A reset from the peer: connection_lost(ConnectionResetError), not
    None and never an ECANCELED from our own cancellations."""

    async def main():
        c, s = tcp_pair()
        pr = Recorder(loop)
        tr, _ = await loop.connect_accepted_socket(lambda: pr, s)
        c.sendall(b"some data")
        await until(lambda: len(pr.data) == 9)
        tr.write(b"y" * 100000)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()  # RST
        exc = await pr.lost
        assert isinstance(exc, ConnectionResetError), exc
        assert pr.events[-1] == "lost"
        assert "eof" not in pr.events

    run(loop, main())


def test_rst_while_writing(loop):
    async def main():
        c, s = tcp_pair(rcvbuf=4096, sndbuf=4096)
        pr = Recorder(loop)
        tr, _ = await loop.connect_accepted_socket(lambda: pr, s)
        tr.pause_reading()
        tr.set_write_buffer_limits(high=1 << 30)
        for _ in range(64):
            tr.write(b"z" * 65536)
        assert tr.get_write_buffer_size() > 0
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        exc = await pr.lost
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError)), exc
        assert tr.get_write_buffer_size() == 0

    run(loop, main())


def test_abort_connection_lost_none(loop):
    async def main():
        c, s = tcp_pair(rcvbuf=4096, sndbuf=4096)
        with c:
            pr = Recorder(loop)
            tr, _ = await loop.connect_accepted_socket(lambda: pr, s)
            tr.write(b"q" * (8 << 20))
            assert tr.get_write_buffer_size() > 0
            tr.abort()
            assert tr.is_closing()
            assert await pr.lost is None
            assert tr.get_write_buffer_size() == 0
            tr.abort()
            tr.close()

    run(loop, main())


def test_close_flushes_pending_writes(loop):
    async def main():
        c, s = tcp_pair(rcvbuf=4096, sndbuf=4096)
        with c:
            pr = Recorder(loop)
            tr, _ = await loop.connect_accepted_socket(lambda: pr, s)
            data = os.urandom(3 << 20)
            tr.write(data)
            tr.close()
            assert not pr.lost.done()
            c.setblocking(False)
            got = bytearray()
            while True:
                try:
                    b = c.recv(1 << 20)
                except BlockingIOError:
                    await asyncio.sleep(0.001)
                    continue
                if not b:
                    break
                got += b
            assert got == data
            assert await pr.lost is None

    run(loop, main())


def test_data_received_raises(loop, loop_errors):
    async def main():
        c, s = tcp_pair()
        with c:
            class Bad(Recorder):
                def data_received(self, data):
                    raise ZeroDivisionError("boom")

            pr = Bad(loop)
            tr, _ = await loop.connect_accepted_socket(lambda: pr, s)
            c.sendall(b"x")
            exc = await pr.lost
            assert isinstance(exc, ZeroDivisionError)
            assert len(loop_errors) == 1
            ctx = loop_errors[0]
            assert ctx["message"] == "Fatal error: protocol.data_received() call failed."
            assert ctx["transport"] is tr
            assert ctx["protocol"] is pr

    run(loop, main())


def test_connection_made_raises_is_reported(loop, loop_errors):
    async def main():
        c, s = tcp_pair()
        with c:
            class Bad(Recorder):
                def connection_made(self, tr):
                    super().connection_made(tr)
                    raise KeyError("cm")

            pr = Bad(loop)
            tr, _ = await loop.connect_accepted_socket(lambda: pr, s)
            c.sendall(b"after")
            await until(lambda: pr.data == b"after")  # reading started anyway
            assert any(isinstance(e.get("exception"), KeyError) for e in loop_errors)
            tr.close()
            await pr.lost

    run(loop, main())


def test_pause_resume_reading(loop):
    """A paused reader is not read: no data_received(), and the peer's
    writes back up; resume_reading() delivers everything in order."""

    async def main():
        c, s = tcp_pair()
        with c:
            pr = Recorder(loop)
            tr, _ = await loop.connect_accepted_socket(lambda: pr, s)
            c.sendall(b"first")
            await until(lambda: pr.data == b"first")
            tr.pause_reading()
            assert not tr.is_reading()
            tr.pause_reading()
            c.setblocking(False)
            sent = 0
            data = os.urandom(1 << 16)
            while True:
                try:
                    sent += c.send(data)
                except BlockingIOError:
                    break
                if sent > (64 << 20):
                    raise AssertionError("peer never blocked: reader not paused")
            await asyncio.sleep(0.05)
            assert pr.data == b"first"
            tr.resume_reading()
            assert tr.is_reading()
            await until(lambda: len(pr.data) == 5 + sent)
            tr.close()
            await pr.lost

    run(loop, main())


def test_pause_reading_in_data_received(loop):
    async def main():
        c, s = tcp_pair()
        with c:
            chunks = []

            class P(Recorder):
                def data_received(self, data):
                    chunks.append(data)
                    self.transport.pause_reading()
                    loop.call_later(0.01, self.transport.resume_reading)

            pr = P(loop)
            tr, _ = await loop.connect_accepted_socket(lambda: pr, s)
            payload = os.urandom(300000)
            c.sendall(payload)
            await until(lambda: sum(map(len, chunks)) == len(payload))
            assert b"".join(chunks) == payload
            tr.close()
            await pr.lost

    run(loop, main())


def test_set_protocol(loop):
    async def main():
        c, s = tcp_pair()
        with c:
            p1 = Recorder(loop)
            tr, _ = await loop.connect_accepted_socket(lambda: p1, s)
            c.sendall(b"one")
            await until(lambda: p1.data == b"one")
            p2 = Recorder(loop)
            tr.set_protocol(p2)
            assert tr.get_protocol() is p2
            c.sendall(b"two")
            await until(lambda: p2.data == b"two")
            assert p1.data == b"one"
            tr.close()
            await p2.lost
            assert not p1.lost.done()

    run(loop, main())


# ---------------------------------------------------------------------------
# BufferedProtocol


class BufProto(asyncio.BufferedProtocol):
    def __init__(self, loop, size=100):
        self.size = size
        self.buf = bytearray(size)
        self.data = bytearray()
        self.lost = loop.create_future()
        self.calls = 0

    def connection_made(self, tr):
        self.transport = tr

    def get_buffer(self, sizehint):
        self.calls += 1
        return memoryview(self.buf)

    def buffer_updated(self, nbytes):
        self.data += self.buf[:nbytes]

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        self.lost.set_result(exc)


def test_buffered_protocol(loop):
    async def main():
        c, s = tcp_pair()
        with c:
            pr = BufProto(loop, size=1000)
            tr, _ = await loop.connect_accepted_socket(lambda: pr, s)
            payload = os.urandom(200000)
            c.sendall(payload)
            await until(lambda: len(pr.data) == len(payload))
            assert pr.data == payload
            c.close()
            assert await pr.lost is None

    run(loop, main())


def test_buffered_protocol_get_buffer_errors(loop, loop_errors):
    async def main():
        for bad, msg in [
            (lambda: bytearray(0), "get_buffer() returned an empty buffer"),
            (lambda: 1 / 0, None),
        ]:
            c, s = tcp_pair()
            with c:
                pr = BufProto(loop)
                pr.get_buffer = lambda hint, bad=bad: bad()
                tr, _ = await loop.connect_accepted_socket(lambda: pr, s)
                c.sendall(b"x")
                exc = await pr.lost
                assert exc is not None
                if msg:
                    assert isinstance(exc, RuntimeError) and msg in str(exc)
        assert len(loop_errors) == 2
        assert all(
            e["message"] == "Fatal error: protocol.get_buffer() call failed." for e in loop_errors
        )

    run(loop, main())


def test_switch_protocol_kind_mid_stream(loop):
    """set_protocol() between a Protocol and a BufferedProtocol keeps every
    byte, in order."""

    async def main():
        c, s = tcp_pair()
        with c:
            p1 = Recorder(loop)
            tr, _ = await loop.connect_accepted_socket(lambda: p1, s)
            c.sendall(b"a" * 10)
            await until(lambda: len(p1.data) == 10)
            p2 = BufProto(loop, size=7)
            tr.set_protocol(p2)
            c.sendall(b"b" * 50)
            await until(lambda: len(p2.data) == 50)
            p3 = Recorder(loop)
            tr.set_protocol(p3)
            c.sendall(b"c" * 20)
            await until(lambda: len(p3.data) == 20)
            assert p2.data == b"b" * 50 and p3.data == b"c" * 20
            tr.close()
            await p3.lost

    run(loop, main())


# ---------------------------------------------------------------------------
# contexts


def test_protocol_callbacks_run_in_transport_context(loop):
    """Every protocol callback of a connection runs in a copy of the context
    its transport was made in (as asyncio's reader Handle), also when close()
    is called from another context (uvloop's test_context does this)."""
    cvar = contextvars.ContextVar("cvar", default="outer")

    async def main():
        seen = {}
        lost = loop.create_future()

        class P(asyncio.Protocol):
            def connection_made(self, tr):
                seen["made"] = cvar.get()
                seen["tr"] = tr

            def data_received(self, data):
                seen["data"] = cvar.get()
                cvar.set("changed-in-data")

            def eof_received(self):
                seen["eof"] = cvar.get()
                return True

            def connection_lost(self, exc):
                seen["lost"] = cvar.get()
                lost.set_result(None)

        def factory():
            seen["factory"] = cvar.get()
            return P()

        cvar.set("server")
        srv = await loop.create_server(factory, "127.0.0.1", 0)
        cvar.set("main")
        async with srv:
            c = socket.create_connection(srv.sockets[0].getsockname())
            with c:
                c.sendall(b"x")
                c.shutdown(socket.SHUT_WR)
                await until(lambda: "eof" in seen)

                def close_elsewhere():
                    cvar.set("closer")
                    seen["tr"].close()
                ctx = contextvars.Context()
                ctx.run(close_elsewhere)
                await lost
        assert seen["factory"] == "server"
        assert seen["made"] == "server"
        assert seen["data"] == "server"
        assert seen["eof"] == "changed-in-data"  # same context as data
        if is_ringloop():
            assert seen["lost"] == "changed-in-data"
        assert cvar.get() == "main"

    run(loop, main())


# ---------------------------------------------------------------------------
# servers


def test_server_api(loop):
    async def main():
        srv = await loop.create_server(Echo, "127.0.0.1", 0, start_serving=False)
        assert isinstance(srv, asyncio.AbstractServer)
        assert srv.get_loop() is loop
        assert not srv.is_serving()
        assert len(srv.sockets) == 1
        assert isinstance(srv.sockets[0], asyncio.trsock.TransportSocket)
        await srv.start_serving()
        assert srv.is_serving()
        addr = srv.sockets[0].getsockname()
        r, w = await asyncio.open_connection(*addr)
        w.write(b"abc")
        assert await r.readexactly(3) == b"abc"
        w.close()
        await w.wait_closed()
        srv.close()
        assert not srv.is_serving()
        assert srv.sockets == ()
        await srv.wait_closed()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(addr, timeout=2).close()

    run(loop, main())


def test_server_multiple_hosts_and_reuse_port(loop):
    async def main():
        srv = await loop.create_server(
            Echo, ["127.0.0.1", "localhost"], 0, reuse_port=True
        )
        async with srv:
            assert 1 <= len(srv.sockets) <= 2
            for s in srv.sockets:
                assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
                assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)

    run(loop, main())


def test_server_keep_alive(loop):
    async def main():
        if PY313:
            srv = await loop.create_server(Echo, "127.0.0.1", 0, keep_alive=True)
            async with srv:
                assert srv.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        else:
            with pytest.raises(TypeError):
                await loop.create_server(Echo, "127.0.0.1", 0, keep_alive=True)

    run(loop, main())


def test_server_serve_forever_cancel(loop):
    async def main():
        srv = await loop.create_server(Echo, "127.0.0.1", 0, start_serving=False)
        task = asyncio.ensure_future(srv.serve_forever())
        await asyncio.sleep(0.01)
        assert srv.is_serving()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not srv.is_serving()
        assert srv.sockets == ()

    run(loop, main())


def test_server_close_with_live_connections(loop):
    """Server.close() stops accepting but leaves live connections alone;
    wait_closed() (3.12.1+) waits for them; close_clients()/abort_clients()
    (3.13) end them."""

    async def main():
        protos = []

        def factory():
            p = Recorder(loop)
            protos.append(p)
            return p

        srv = await loop.create_server(factory, "127.0.0.1", 0)
        addr = srv.sockets[0].getsockname()
        clients = [socket.create_connection(addr) for _ in range(4)]
        await until(lambda: len(protos) == 4)
        srv.close()
        await settle(loop)
        assert all(not p.lost.done() for p in protos)
        # the connections still work
        clients[0].sendall(b"alive")
        await until(lambda: protos[0].data == b"alive")
        waiter = asyncio.ensure_future(srv.wait_closed())
        await asyncio.sleep(0.01)
        if PY312:
            assert not waiter.done()
        if hasattr(srv, "close_clients"):
            srv.close_clients()
            for p in protos:
                assert await p.lost is None
        else:
            for p in protos:
                p.transport.close()
                await p.lost
        await waiter
        for c in clients:
            c.close()

    run(loop, main())


def test_server_abort_clients(loop):
    if not PY313:
        pytest.skip("Server.abort_clients() is 3.13+ (as asyncio's)")

    async def main():
        protos = []

        def factory():
            p = Recorder(loop)
            protos.append(p)
            return p

        srv = await loop.create_server(factory, "127.0.0.1", 0)
        addr = srv.sockets[0].getsockname()
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.connect(addr)
        await until(lambda: len(protos) == 1)
        protos[0].transport.write(b"x" * (4 << 20))
        srv.close()
        srv.abort_clients()
        assert await protos[0].lost is None
        await srv.wait_closed()
        c.close()

    run(loop, main())


def test_server_protocol_factory_raises(loop):
    async def main():
        n = 0

        def factory():
            nonlocal n
            n += 1
            if n == 1:
                raise RuntimeError("factory failed")
            return Echo()

        srv = await loop.create_server(factory, "127.0.0.1", 0)
        async with srv:
            addr = srv.sockets[0].getsockname()
            c1 = socket.create_connection(addr)
            c1.settimeout(5)
            # the first connection is dropped (closed), the server goes on
            assert await loop.run_in_executor(None, c1.recv, 10) == b""
            c1.close()
            r, w = await asyncio.open_connection(*addr)
            w.write(b"ok")
            assert await r.readexactly(2) == b"ok"
            w.close()
            await w.wait_closed()

    with warnings.catch_warnings():
        # asyncio leaves the accepted socket to the GC (ResourceWarning)
        warnings.simplefilter("ignore", ResourceWarning)
        run(loop, main())
        gc.collect()


def test_many_connections_accepted_in_one_batch(loop):
    async def main():
        srv, addr = await echo_server(loop, backlog=1000)
        async with srv:
            socks = [socket.create_connection(addr) for _ in range(200)]
            for i, s in enumerate(socks):
                s.sendall(struct.pack("!I", i))
            def check():
                for i, s in enumerate(socks):
                    s.settimeout(10)
                    assert s.recv(4) == struct.pack("!I", i)
                    s.close()

            await loop.run_in_executor(None, check)

    run(loop, main())


# ---------------------------------------------------------------------------
# lifecycle


@ringloop_only()
def test_transport_gc_while_open_warns(loop):
    """A transport nobody references and that no op keeps alive (reading
    paused) is collected: ResourceWarning "unclosed transport", socket
    closed, as asyncio's __del__."""

    async def main():
        c, s = tcp_pair()
        with c:
            fd = s.fileno()
            pr = Recorder(loop)
            tr, _ = await loop.connect_accepted_socket(lambda: pr, s)
            tr.pause_reading()
            await settle(loop)
            ref = weakref.ref(tr)
            pr.transport = None
            del tr, pr
            with pytest.warns(ResourceWarning, match="unclosed transport"):
                for _ in range(3):
                    gc.collect()
                    await settle(loop)
                    if ref() is None:
                        break
            assert ref() is None
            assert s.fileno() == -1
            c.settimeout(5)
            assert c.recv(10) == b""
            with pytest.raises(OSError):
                os.fstat(fd)

    run(loop, main())


def test_loop_closed_with_live_transports(python_exe, tmp_path):
    """Closing the loop with transports open (reading, writing, a server):
    no crash, nothing left for the kernel, sockets closed when the transports
    go (ResourceWarning)."""
    script = tmp_path / "live.py"
    script.write_text(
        """
import asyncio, gc, os, socket, sys, warnings
sys.path.insert(0, os.environ["TESTS_DIR"])
from conftest import new_loop
warnings.simplefilter("always")
loop = new_loop()
class P(asyncio.Protocol):
    def connection_made(self, tr): self.tr = tr
async def main():
    srv = await loop.create_server(P, "127.0.0.1", 0)
    addr = srv.sockets[0].getsockname()
    trs = []
    for i in range(5):
        tr, pr = await loop.create_connection(P, *addr)
        trs.append(tr)
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.connect(addr)
    await asyncio.sleep(0.05)
    trs[0].write(b"x" * (8 << 20))   # a SEND in flight
    trs[1].pause_reading()
    return srv, trs, c
srv, trs, c = loop.run_until_complete(main())
before = len(os.listdir("/proc/self/fd"))
loop.close()
counters = getattr(loop, "_net_counters", lambda: None)()
del trs
srv = None
gc.collect()
after = len(os.listdir("/proc/self/fd"))
c.close()
print("closed-ok", counters, before - after)
"""
    )
    import subprocess

    env = dict(os.environ, TESTS_DIR=os.path.dirname(__file__), PYTHONWARNINGS="always")
    # the ringloop this pytest imported (in-tree build or installed copy)
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    r = subprocess.run([python_exe, str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "closed-ok" in r.stdout, r.stdout + r.stderr
    if is_ringloop():
        assert "'ops_held': 0" in r.stdout, r.stdout
        assert "unclosed transport" in r.stderr
    # the 5 client transports and the 5 accepted ones were closed by GC
    closed = int(r.stdout.split()[-1])
    assert closed >= 10, r.stdout + r.stderr


@ringloop_only()
def test_no_ops_left_after_close(loop):
    async def main():
        srv, addr = await echo_server(loop)
        async with srv:
            trs = []
            for _ in range(10):
                tr, pr = await loop.create_connection(lambda: Recorder(loop), *addr)
                trs.append((tr, pr))
            for tr, pr in trs:
                tr.write(b"x" * 1000)
                tr.close()
            for tr, pr in trs:
                await pr.lost
        await settle(loop, 10)
        c = loop._net_counters()
        assert c == {"ops_held": 0, "transports": 0}, c

    run(loop, main())


# ---------------------------------------------------------------------------
# the big one


@pytest.mark.timeout_s(300)
def test_1000_connections_echo_1mib_random_chunks(loop):
    """1,000 concurrent connections each echo 1 MiB written in random-sized
    chunks; every byte is checked."""
    N = 1000 if os.environ.get("RINGLOOP_BIG_TESTS", "1") != "0" else 50
    SIZE = 1 << 20
    pattern = os.urandom(SIZE + 4096)

    class Client(asyncio.Protocol):
        def __init__(self, i, done):
            self.off = (i * 37) % 4096
            self.want = memoryview(pattern)[self.off : self.off + SIZE]
            self.got = 0
            self.done = done
            self.rnd = random.Random(i)

        def connection_made(self, tr):
            self.tr = tr
            tr.set_write_buffer_limits(high=256 * 1024)
            self.sent = 0
            self.paused = False
            self.pump()

        def pump(self):
            while self.sent < SIZE and not self.paused:
                n = min(self.rnd.choice((1, 17, 512, 1460, 4096, 65536, 200000)), SIZE - self.sent)
                chunk = self.want[self.sent : self.sent + n]
                if self.rnd.random() < 0.5:
                    chunk = bytes(chunk)
                self.tr.write(chunk)
                self.sent += n

        def pause_writing(self):
            self.paused = True

        def resume_writing(self):
            self.paused = False
            self.pump()

        def data_received(self, data):
            n = len(data)
            if self.want[self.got : self.got + n] != data:
                self.done.set_exception(AssertionError(f"corrupt at {self.got}"))
                self.tr.abort()
                return
            self.got += n
            if self.got == SIZE:
                self.tr.close()

        def connection_lost(self, exc):
            if not self.done.done():
                if exc is not None:
                    self.done.set_exception(exc)
                elif self.got != SIZE:
                    self.done.set_exception(AssertionError(f"short: {self.got}"))
                else:
                    self.done.set_result(None)

    async def main():
        srv = await loop.create_server(Echo, "127.0.0.1", 0, backlog=2048)
        addr = srv.sockets[0].getsockname()
        async with srv:
            dones = []
            conns = []
            for i in range(N):
                done = loop.create_future()
                dones.append(done)
                conns.append(loop.create_connection(lambda i=i, d=done: Client(i, d), *addr))
            await asyncio.gather(*conns)
            await asyncio.gather(*dones)

    run(loop, main(), timeout=280)
    if is_ringloop():
        gc.collect()
        loop.run_until_complete(settle(loop, 10))
        assert loop._net_counters()["ops_held"] == 0


# ---------------------------------------------------------------------------
# out of file descriptors

_EMFILE_SERVER = r"""
import asyncio, os, resource, sys, time
sys.path.insert(0, os.environ["TESTS_DIR"])
from conftest import new_loop
loop = new_loop()
def handler(loop, ctx):
    exc = ctx.get("exception")
    print("HANDLER", ctx["message"], type(exc).__name__, getattr(exc, "errno", None), flush=True)
loop.set_exception_handler(handler)
class Echo(asyncio.Protocol):
    def connection_made(self, tr): self.tr = tr
    def data_received(self, data): self.tr.write(data)
async def main():
    # start the executor's thread (and import concurrent.futures.thread)
    # while fds are plenty: main() waits in run_in_executor() below
    await loop.run_in_executor(None, int)
    # The limit is set before the server starts: io_uring's accept takes
    # RLIMIT_NOFILE when the op is prepared.
    nfds = len(os.listdir("/proc/self/fd"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (nfds + 9, hard))
    srv = await loop.create_server(Echo, "127.0.0.1", 0, backlog=100)
    print("PORT", srv.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the test is done
    srv.close()
loop.run_until_complete(main())
print("CPU", time.process_time(), flush=True)
"""


@pytest.mark.timeout_s(120)
def test_accept_emfile_pauses_then_serves(python_exe, tmp_path):
    """Out of fds, the server logs "socket.accept() out of system resource",
    pauses accepting (no busy loop: low CPU while stuck) and serves the
    waiting connections once fds are free again."""
    import subprocess
    import threading
    import time

    script = tmp_path / "emfile_server.py"
    script.write_text(_EMFILE_SERVER)
    env = dict(os.environ, TESTS_DIR=os.path.dirname(__file__))
    # the ringloop this pytest imported (in-tree build or installed copy)
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    proc = subprocess.Popen(
        [python_exe, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True, env=env,
    )
    lines = []
    got_line = threading.Condition()

    def reader():
        for line in proc.stdout:
            with got_line:
                lines.append(line.strip())
                got_line.notify_all()

    th = threading.Thread(target=reader, daemon=True)
    th.start()

    def wait_line(prefix, timeout=20):
        end = time.monotonic() + timeout
        with got_line:
            while True:
                for ln in lines:
                    if ln.startswith(prefix):
                        return ln
                left = end - time.monotonic()
                if left <= 0 or proc.poll() is not None:
                    raise AssertionError(f"no {prefix!r} line; got {lines}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}")
                got_line.wait(left)

    clients = []
    try:
        port = int(wait_line("PORT").split()[1])
        for i in range(24):
            c = socket.create_connection(("127.0.0.1", port))
            c.setblocking(False)
            c.sendall(struct.pack("!I", i))
            clients.append(c)
        wait_line("HANDLER socket.accept() out of system resource")
        assert any(" 24" in ln for ln in lines if ln.startswith("HANDLER")), lines  # EMFILE
        # Stuck: the server must sleep, not spin, while it cannot accept.
        def cpu():
            with open(f"/proc/{proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        t0 = cpu()
        time.sleep(1.5)
        used = cpu() - t0
        assert used < 0.5, f"server used {used:.2f}s CPU in 1.5s while out of fds"
        # Free fds by closing the served clients: the others get served.
        served = set()
        end = time.monotonic() + 40
        while len(served) < len(clients) and time.monotonic() < end:
            for i, c in enumerate(clients):
                if i in served:
                    continue
                try:
                    data = c.recv(4)
                except BlockingIOError:
                    continue
                assert data == struct.pack("!I", i)
                served.add(i)
                c.close()
            time.sleep(0.05)
        assert len(served) == len(clients), (sorted(served), lines)
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
        wait_line("CPU")
    finally:
        for c in clients:
            c.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for f in (proc.stdin, proc.stdout, proc.stderr):
            f.close()
