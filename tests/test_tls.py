"""TLS (issue 10): ssl= on create_connection/create_server/the Unix variants/
connect_accepted_socket, loop.start_tls(), asyncio's streams over TLS.

Loop-generic: with RINGLOOP_TEST_LOOP=asyncio they run on stock asyncio and
must pass there too (they assert asyncio's behaviour, exceptions and
callbacks).  The certificates are the ones CPython's test package ships
(Lib/test/certdata of the running interpreter)."""
import asyncio
import gc
import os
import random
import socket
import ssl
import struct
import sys
import threading
import weakref
from pathlib import Path

import pytest

import test as _cpython_test
from conftest import is_ringloop
from netutil import Echo, Recorder, until


CERTDIR = Path(_cpython_test.__file__).parent / "certdata"
ONLYCERT = str(CERTDIR / "ssl_cert.pem")  # self-signed, CN=localhost
ONLYKEY = str(CERTDIR / "ssl_key.pem")
SIGNED_CERTFILE = str(CERTDIR / "keycert3.pem")  # localhost, signed by the CA
SIGNING_CA = str(CERTDIR / "pycacert.pem")

# 16 MiB for CI time; RINGLOOP_TEST_HEAVY=1 runs the 100 MiB
# (RINGLOOP_TLS_ECHO_MIB=N: any other size)
_HEAVY = os.environ.get("RINGLOOP_TEST_HEAVY", "") not in ("", "0")
PAYLOAD_SIZE = int(os.environ.get("RINGLOOP_TLS_ECHO_MIB", "100" if _HEAVY else "16")) << 20


def run(loop, coro, timeout=60):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def server_ctx(certfile=ONLYCERT, keyfile=ONLYKEY):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile, keyfile)
    return ctx


def client_ctx(verify=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(SIGNING_CA)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def payload(n, seed=1):
    return random.Random(seed).randbytes(n)


def chunks(data, seed=2, lo=1, hi=256 * 1024):
    rnd = random.Random(seed)
    i = 0
    while i < len(data):
        n = rnd.randint(lo, hi)
        yield data[i:i + n]
        i += n


async def tls_echo_server(loop, **kw):
    srv = await loop.create_server(Echo, "127.0.0.1", 0, ssl=server_ctx(), **kw)
    return srv, srv.sockets[0].getsockname()


# ---------------------------------------------------------------------------
# Arguments: the same checks and messages as asyncio


def test_argument_errors(loop, tmp_path):
    ctx = client_ctx()

    async def main():
        cases = [
            (ValueError, "server_hostname is only meaningful with ssl",
             loop.create_connection(asyncio.Protocol, "127.0.0.1", 1, server_hostname="x")),
            (ValueError, "You must set server_hostname when using ssl without a host",
             loop.create_connection(asyncio.Protocol, port=1, ssl=ctx)),
            (ValueError, "ssl_handshake_timeout is only meaningful with ssl",
             loop.create_connection(asyncio.Protocol, "127.0.0.1", 1, ssl_handshake_timeout=1)),
            (ValueError, "ssl_shutdown_timeout is only meaningful with ssl",
             loop.create_connection(asyncio.Protocol, "127.0.0.1", 1, ssl_shutdown_timeout=1)),
            (TypeError, "ssl argument must be an SSLContext or None",
             loop.create_server(asyncio.Protocol, "127.0.0.1", 0, ssl=True)),
            (ValueError, "ssl_handshake_timeout is only meaningful with ssl",
             loop.create_server(asyncio.Protocol, "127.0.0.1", 0, ssl_handshake_timeout=1)),
            (ValueError, "ssl_shutdown_timeout is only meaningful with ssl",
             loop.create_server(asyncio.Protocol, "127.0.0.1", 0, ssl_shutdown_timeout=1)),
            (ValueError, "you have to pass server_hostname when using ssl",
             loop.create_unix_connection(asyncio.Protocol, str(tmp_path / "s"), ssl=ctx)),
            (ValueError, "server_hostname is only meaningful with ssl",
             loop.create_unix_connection(asyncio.Protocol, str(tmp_path / "s"),
                                         server_hostname="x")),
            (ValueError, "ssl_handshake_timeout is only meaningful with ssl",
             loop.create_unix_connection(asyncio.Protocol, str(tmp_path / "s"),
                                         ssl_handshake_timeout=1)),
            (ValueError, "ssl_shutdown_timeout is only meaningful with ssl",
             loop.create_unix_connection(asyncio.Protocol, str(tmp_path / "s"),
                                         ssl_shutdown_timeout=1)),
            (TypeError, "ssl argument must be an SSLContext or None",
             loop.create_unix_server(asyncio.Protocol, str(tmp_path / "s"), ssl=True)),
            (ValueError, "ssl_handshake_timeout is only meaningful with ssl",
             loop.create_unix_server(asyncio.Protocol, str(tmp_path / "s"),
                                     ssl_handshake_timeout=1)),
            (ValueError, "ssl_shutdown_timeout is only meaningful with ssl",
             loop.create_unix_server(asyncio.Protocol, str(tmp_path / "s"),
                                     ssl_shutdown_timeout=1)),
        ]
        for exc_type, message, coro in cases:
            with pytest.raises(exc_type) as info:
                await coro
            assert str(info.value) == message
        a, b = socket.socketpair()
        with a, b:
            for kw, message in [
                ({"ssl_handshake_timeout": 1}, "ssl_handshake_timeout is only meaningful with ssl"),
                ({"ssl_shutdown_timeout": 1}, "ssl_shutdown_timeout is only meaningful with ssl"),
            ]:
                with pytest.raises(ValueError) as info:
                    await loop.connect_accepted_socket(asyncio.Protocol, a, **kw)
                assert str(info.value) == message

    run(loop, main())


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.parametrize("which", ["handshake", "shutdown"])
def test_timeout_must_be_positive(loop, which):
    """SSLProtocol checks the timeouts once the socket is connected, as in
    asyncio."""

    async def main():
        srv, addr = await tls_echo_server(loop)
        async with srv:
            with pytest.raises(ValueError) as info:
                await loop.create_connection(
                    asyncio.Protocol, *addr, ssl=client_ctx(), **{f"ssl_{which}_timeout": -1}
                )
            assert str(info.value) == f"ssl_{which}_timeout should be a positive number, got -1"

    run(loop, main())
    gc.collect()  # asyncio leaves the connected socket to the collector


def test_start_tls_argument_errors(loop):
    async def main():
        srv = await loop.create_server(Echo, "127.0.0.1", 0)
        async with srv:
            tr, pr = await loop.create_connection(
                lambda: Recorder(loop), *srv.sockets[0].getsockname()
            )
            with pytest.raises(TypeError) as info:
                await loop.start_tls(tr, pr, "ctx")
            assert str(info.value) == (
                "sslcontext is expected to be an instance of ssl.SSLContext, got 'ctx'"
            )

            class NotCompatible(asyncio.Transport):
                pass

            other = NotCompatible()
            with pytest.raises(TypeError) as info:
                await loop.start_tls(other, pr, client_ctx())
            assert str(info.value) == f"transport {other!r} is not supported by start_tls()"
            tr.close()
            await pr.lost

    run(loop, main())


# ---------------------------------------------------------------------------
# Echo of a large payload in random-sized chunks, every byte checked


class TLSClient(asyncio.Protocol):
    def __init__(self, loop, expected):
        self.loop = loop
        self.expected = expected
        self.received = bytearray()
        self.done = loop.create_future()
        self.lost = loop.create_future()
        self.resume = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.received += data
        if len(self.received) >= self.expected and not self.done.done():
            self.done.set_result(None)

    def pause_writing(self):
        self.resume = self.loop.create_future()

    def resume_writing(self):
        self.resume.set_result(None)
        self.resume = None

    def connection_lost(self, exc):
        self.lost.set_result(exc)


class TLSBufferedClient(TLSClient, asyncio.BufferedProtocol):
    """A BufferedProtocol: SSLProtocol decrypts into get_buffer()'s buffer."""

    def __init__(self, loop, expected):
        super().__init__(loop, expected)
        # a memoryview: SSLProtocol decrypts into slices of it (a bytearray's
        # slices would be copies)
        self.buf = memoryview(bytearray(65536))
        self.buffer_calls = 0

    def get_buffer(self, sizehint):
        return self.buf

    def buffer_updated(self, nbytes):
        self.buffer_calls += 1
        self.data_received(bytes(self.buf[:nbytes]))


async def _protocol_echo(loop, proto_cls, addr, data, connect):
    tr, pr = await connect(lambda: proto_cls(loop, len(data)), addr)
    for chunk in chunks(data):
        tr.write(chunk)
        if pr.resume is not None:
            await pr.resume
    await pr.done
    assert len(pr.received) == len(data)
    assert pr.received == data  # every byte
    tr.close()
    assert await pr.lost is None
    return pr


async def _tcp_connect(loop, factory, addr):
    return await loop.create_connection(factory, *addr, ssl=client_ctx())


@pytest.mark.timeout_s(600 if _HEAVY else 120)
@pytest.mark.parametrize("style", ["protocol", "buffered", "streams"])
def test_echo_large_payload(loop, style):
    data = payload(PAYLOAD_SIZE)

    async def main():
        srv, addr = await tls_echo_server(loop)
        async with srv:
            if style == "streams":
                reader, writer = await asyncio.open_connection(*addr, ssl=client_ctx())
                got = bytearray()

                async def read_all():
                    while len(got) < len(data):
                        part = await reader.read(random.randint(1, 1 << 20))
                        assert part, "EOF before the whole payload came back"
                        got.extend(part)

                reading = asyncio.ensure_future(read_all())
                for chunk in chunks(data):
                    writer.write(chunk)
                    await writer.drain()
                await reading
                assert got == data
                writer.close()
                await writer.wait_closed()
            else:
                cls = TLSBufferedClient if style == "buffered" else TLSClient
                pr = await _protocol_echo(
                    loop, cls, addr, data, lambda f, a: _tcp_connect(loop, f, a)
                )
                if style == "buffered":
                    assert pr.buffer_calls > 0

    run(loop, main(), timeout=590 if _HEAVY else 110)


def test_echo_unix(loop, tmp_path):
    data = payload(1 << 20)
    path = str(tmp_path / "tls.sock")

    async def main():
        srv = await loop.create_unix_server(Echo, path, ssl=server_ctx())
        async with srv:
            await _protocol_echo(
                loop, TLSClient, path, data,
                lambda f, a: loop.create_unix_connection(
                    f, a, ssl=client_ctx(), server_hostname="localhost"),
            )

    run(loop, main())


def test_connect_accepted_socket_echo(loop):
    data = payload(1 << 20)

    async def main():
        a, b = socket.socketpair()
        accept = asyncio.ensure_future(
            loop.connect_accepted_socket(Echo, a, ssl=server_ctx())
        )
        tr, pr = await loop.create_connection(
            lambda: TLSClient(loop, len(data)), sock=b, ssl=client_ctx(), server_hostname=""
        )
        server_tr, _ = await accept
        tr.write(data)
        await pr.done
        assert pr.received == data
        tr.close()
        assert await pr.lost is None
        await until(lambda: server_tr.is_closing())

    run(loop, main())


def test_extra_info_and_no_half_close(loop):
    async def main():
        srv = await loop.create_server(
            Echo, "127.0.0.1", 0, ssl=server_ctx(SIGNED_CERTFILE, SIGNED_CERTFILE)
        )
        async with srv:
            addr = srv.sockets[0].getsockname()
            ctx = client_ctx(verify=True)
            tr, pr = await loop.create_connection(
                lambda: Recorder(loop), *addr, ssl=ctx, server_hostname="localhost"
            )
            sslobj = tr.get_extra_info("ssl_object")
            assert isinstance(sslobj, ssl.SSLObject)
            assert tr.get_extra_info("sslcontext") is ctx
            assert tr.get_extra_info("peercert") == sslobj.getpeercert()
            assert tr.get_extra_info("peercert")["subject"]
            assert tr.get_extra_info("cipher") == sslobj.cipher()
            assert tr.get_extra_info("compression") == sslobj.compression()
            assert tr.get_extra_info("peername") == addr
            sock = tr.get_extra_info("socket")
            assert sock.getpeername() == addr
            assert tr.get_extra_info("sockname") == sock.getsockname()
            assert tr.get_extra_info("nope", "default") == "default"
            assert not tr.can_write_eof()
            with pytest.raises(NotImplementedError):
                tr.write_eof()
            tr.writelines([b"a", bytearray(b"b"), memoryview(b"c")])
            await until(lambda: bytes(pr.data) == b"abc")
            tr.close()
            assert await pr.lost is None
            # the peer answers close_notify by closing: eof_received()
            assert pr.events == ["made", "data", "eof", "lost"]

    run(loop, main())


def test_ssl_true_uses_default_context(loop):
    """ssl=True: ssl.create_default_context(), which verifies the server."""

    async def main():
        srv, addr = await tls_echo_server(loop)
        async with srv:
            with pytest.raises(ssl.SSLCertVerificationError):
                await loop.create_connection(asyncio.Protocol, *addr, ssl=True)

    run(loop, main())


# ---------------------------------------------------------------------------
# Flow control both ways


def test_flow_control_both_ways(loop):
    """The reader pauses: the writer's protocol gets pause_writing(); the
    reader resumes: resume_writing(), and every byte arrives in order."""
    data = payload(16 << 20, seed=7)

    class Sink(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            self.got = bytearray()
            transport.pause_reading()

        def data_received(self, d):
            self.got += d

    sinks = []

    async def main():
        lsock = socket.socket()
        # accepted sockets inherit it: the kernel pushes back early
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        lsock.bind(("127.0.0.1", 0))
        srv = await loop.create_server(
            lambda: sinks.append(Sink()) or sinks[-1], sock=lsock, ssl=server_ctx()
        )
        async with srv:
            addr = srv.sockets[0].getsockname()
            tr, pr = await loop.create_connection(
                lambda: Recorder(loop), *addr, ssl=client_ctx()
            )
            await until(lambda: sinks and hasattr(sinks[0], "transport"))
            sink = sinks[0]
            assert not sink.transport.is_reading()
            pending = chunks(data, hi=64 * 1024)
            while not pr.paused:
                # the peer reads nothing: the kernel's buffers fill, the
                # transport under TLS pauses, then the TLS transport
                await asyncio.sleep(0)
                tr.write(next(pending))
            assert pr.paused == 1 and pr.resumed == 0
            assert tr.get_write_buffer_size() > 0
            sink.transport.resume_reading()
            assert sink.transport.is_reading()
            await until(lambda: pr.resumed == 1)
            for chunk in pending:
                tr.write(chunk)
            await until(lambda: len(sink.got) == len(data), timeout=30)
            assert sink.got == data
            tr.close()
            assert await pr.lost is None

    run(loop, main())


# ---------------------------------------------------------------------------
# start_tls in the middle of a plain connection


def test_start_tls_upgrade_streams(loop):
    sctx = server_ctx()
    data = payload(1 << 20, seed=3)

    async def handler(reader, writer):
        assert await reader.readline() == b"STARTTLS\n"
        writer.write(b"GO\n")
        await writer.drain()
        await writer.start_tls(sctx)
        assert writer.get_extra_info("ssl_object") is not None
        got = await reader.readexactly(len(data))
        writer.write(got)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        srv = await asyncio.start_server(handler, "127.0.0.1", 0)
        async with srv:
            addr = srv.sockets[0].getsockname()
            reader, writer = await asyncio.open_connection(*addr)
            assert writer.get_extra_info("ssl_object") is None
            writer.write(b"STARTTLS\n")
            assert await reader.readline() == b"GO\n"
            await writer.start_tls(client_ctx())
            assert writer.get_extra_info("ssl_object") is not None
            writer.write(data)
            assert await reader.readexactly(len(data)) == data
            assert await reader.read() == b""
            writer.close()
            await writer.wait_closed()

    run(loop, main())


def test_start_tls_upgrade_protocol(loop):
    """loop.start_tls() on transports of both sides; the server side with a
    BufferedProtocol."""
    sctx = server_ctx()
    upgraded = loop.create_future()

    class Server(asyncio.BufferedProtocol):
        def connection_made(self, transport):
            self.transport = transport
            self.buf = bytearray(1024)

        def get_buffer(self, n):
            return self.buf

        def buffer_updated(self, n):
            data = bytes(self.buf[:n])
            if data == b"upgrade":
                async def up():
                    self.transport.write(b"ok")
                    self.transport = await loop.start_tls(
                        self.transport, self, sctx, server_side=True
                    )
                    upgraded.set_result(None)

                asyncio.ensure_future(up())
            else:
                self.transport.write(data.upper())

    async def main():
        srv = await loop.create_server(Server, "127.0.0.1", 0)
        async with srv:
            addr = srv.sockets[0].getsockname()
            tr, pr = await loop.create_connection(lambda: Recorder(loop), *addr)
            tr.write(b"upgrade")
            await until(lambda: bytes(pr.data) == b"ok")
            tls = await loop.start_tls(tr, pr, client_ctx())
            await upgraded
            assert tls.get_extra_info("ssl_object") is not None
            tls.write(b"hello")
            await until(lambda: bytes(pr.data) == b"okHELLO")
            tls.close()
            assert await pr.lost is None

    run(loop, main())


# ---------------------------------------------------------------------------
# Failures: asyncio's exceptions and callbacks


def test_handshake_failure_verify(loop, loop_errors):
    """The client rejects the certificate: SSLCertVerificationError from
    create_connection(); the server's application protocol is never made and
    nothing reaches the exception handler (SSL errors are OSErrors)."""
    made = []

    class App(asyncio.Protocol):
        def connection_made(self, transport):
            made.append(transport)

    async def main():
        srv = await loop.create_server(App, "127.0.0.1", 0, ssl=server_ctx())
        async with srv:
            addr = srv.sockets[0].getsockname()
            with pytest.raises(ssl.SSLCertVerificationError):
                await loop.create_connection(
                    asyncio.Protocol, *addr, ssl=client_ctx(verify=True),
                    server_hostname="localhost",
                )
            await asyncio.sleep(0.05)
        assert made == []

    run(loop, main())
    assert list(loop_errors) == []


def test_handshake_failure_server_side_reported_in_debug(loop, loop_errors):
    """A client that is not TLS at all: the server side fails its handshake;
    in debug mode asyncio reports it as 'Error on transport creation for
    incoming connection' (and logs the SSL error)."""

    async def main():
        loop.set_debug(True)
        srv = await loop.create_server(Echo, "127.0.0.1", 0, ssl=server_ctx())
        async with srv:
            addr = srv.sockets[0].getsockname()
            r, w = await asyncio.open_connection(*addr)
            w.write(b"GET / HTTP/1.0\r\n\r\n" * 10)
            try:
                await r.read()
            except ConnectionResetError:
                pass
            w.close()
            try:
                await w.wait_closed()
            except ConnectionResetError:
                pass
            await until(lambda: list.__len__(loop_errors) > 0)
        loop.set_debug(False)

    run(loop, main())
    msgs = [ctx["message"] for ctx in loop_errors]
    assert msgs == ["Error on transport creation for incoming connection"]
    assert isinstance(loop_errors[0]["exception"], ssl.SSLError)


class _RawServer:
    """A plain TCP listener on the loop whose accepted sockets the test
    handles by hand (non-TLS peers, misbehaving peers)."""

    def __init__(self, loop):
        self.loop = loop
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen()
        self.lsock.setblocking(False)
        self.addr = self.lsock.getsockname()
        self.conns = []

    async def accept(self):
        conn, _ = await self.loop.sock_accept(self.lsock)
        self.conns.append(conn)
        return conn

    def close(self):
        for c in self.conns:
            c.close()
        self.lsock.close()


def test_handshake_timeout(loop):
    """The server never answers the ClientHello."""

    async def main():
        raw = _RawServer(loop)
        try:
            accept = asyncio.ensure_future(raw.accept())
            with pytest.raises(ConnectionAbortedError) as info:
                await loop.create_connection(
                    asyncio.Protocol, *raw.addr, ssl=client_ctx(), ssl_handshake_timeout=0.2
                )
            assert str(info.value) == (
                "SSL handshake is taking longer than 0.2 seconds: aborting the connection"
            )
            conn = await accept
            # the client closed its socket
            assert await loop.sock_recv(conn, 65536) != b""  # the ClientHello
            while await loop.sock_recv(conn, 65536):
                pass
        finally:
            raw.close()

    run(loop, main())


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_peer_closes_mid_handshake(loop, how):
    """The peer reads the ClientHello and closes (FIN) or resets (RST):
    ConnectionResetError from create_connection(), as asyncio."""

    async def main():
        raw = _RawServer(loop)
        try:
            accept = asyncio.ensure_future(raw.accept())
            connecting = asyncio.ensure_future(
                loop.create_connection(asyncio.Protocol, *raw.addr, ssl=client_ctx())
            )
            conn = await accept
            assert await loop.sock_recv(conn, 65536)  # ClientHello
            if how == "rst":
                # linger on, 0 s: close() sends RST
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            with pytest.raises(ConnectionResetError):
                await connecting
        finally:
            raw.close()

    run(loop, main())


def test_shutdown_timeout(loop):
    """close() sends close_notify; the peer never reads it: after
    ssl_shutdown_timeout the connection is dropped and the application's
    connection_lost() gets TimeoutError('SSL shutdown timed out')."""

    class Deaf(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            transport.pause_reading()

    servers = []

    async def main():
        srv = await loop.create_server(
            lambda: servers.append(Deaf()) or servers[-1], "127.0.0.1", 0, ssl=server_ctx()
        )
        async with srv:
            addr = srv.sockets[0].getsockname()
            tr, pr = await loop.create_connection(
                lambda: Recorder(loop), *addr, ssl=client_ctx(), ssl_shutdown_timeout=0.2
            )
            await until(lambda: servers)
            tr.close()
            exc = await pr.lost
            assert isinstance(exc, asyncio.TimeoutError)
            assert str(exc) == "SSL shutdown timed out"
            assert pr.events == ["made", "lost"]
            servers[0].transport.abort()

    run(loop, main())


def test_peer_closes_without_close_notify(loop):
    """After the handshake the peer closes the TCP connection without a
    close_notify: the application gets its data, eof_received(), then
    connection_lost(None), as asyncio."""
    data = payload(100_000, seed=5)

    async def main():
        raw = _RawServer(loop)
        sctx = server_ctx()
        try:
            accept = asyncio.ensure_future(raw.accept())
            connecting = asyncio.ensure_future(
                loop.create_connection(lambda: Recorder(loop), *raw.addr, ssl=client_ctx())
            )
            conn = await accept
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            sobj = sctx.wrap_bio(incoming, outgoing, server_side=True)
            while True:
                try:
                    sobj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    if outgoing.pending:
                        await loop.sock_sendall(conn, outgoing.read())
                    incoming.write(await loop.sock_recv(conn, 65536))
            if outgoing.pending:
                await loop.sock_sendall(conn, outgoing.read())
            tr, pr = await connecting
            sobj.write(data)
            await loop.sock_sendall(conn, outgoing.read())
            await until(lambda: len(pr.data) == len(data))
            conn.shutdown(socket.SHUT_RDWR)  # no close_notify
            assert await pr.lost is None
            assert pr.data == data
            assert pr.events == ["made", "data", "eof", "lost"]
        finally:
            raw.close()

    run(loop, main())


# ---------------------------------------------------------------------------
# Close: what was written goes out before close_notify (stream.c regression)


def test_close_after_large_write_delivers_everything(loop):
    """The application writes 8 MiB and closes at once: everything and the
    close_notify reach the peer.  (SSLProtocol writes its last records from
    resume_writing(), after close(): see the plain-TCP test below, and
    CPython's test_ssl test_remote_shutdown_receives_trailing_data, which
    hung on ringloop before stream.c honoured that order.)"""
    data = payload(8 << 20, seed=9)
    got = loop.create_future()

    class Collect(asyncio.Protocol):
        def __init__(self):
            self.buf = bytearray()
            self.eof = False

        def data_received(self, d):
            self.buf += d

        def eof_received(self):
            self.eof = True  # a close_notify (asyncio: eof_received())

        def connection_lost(self, exc):
            got.set_result((bytes(self.buf), self.eof, exc))

    async def main():
        srv = await loop.create_server(Collect, "127.0.0.1", 0, ssl=server_ctx())
        async with srv:
            addr = srv.sockets[0].getsockname()
            tr, pr = await loop.create_connection(
                lambda: Recorder(loop), *addr, ssl=client_ctx()
            )
            tr.write(data)
            tr.close()
            buf, eof, exc = await got
            assert len(buf) == len(data)
            assert buf == data
            assert eof
            assert exc is None
            await pr.lost

    run(loop, main())


def test_plain_write_from_resume_writing_after_close(loop):
    """Plain TCP, the same rule: a protocol paused for writing calls
    close(); when the buffer drains, resume_writing() runs first (asyncio's
    _write_send order) and what it writes is sent before the connection
    is closed."""
    # more than the loopback socket buffers can hold (tcp_wmem/tcp_rmem
    # maxima: 4 + 6 MiB by default, 4 + 32 MiB seen on this machine)
    data = payload(4 << 20, seed=11)

    class Writer(asyncio.Protocol):
        def __init__(self):
            self.lost = loop.create_future()
            self.paused = False

        def connection_made(self, transport):
            self.transport = transport

        def pause_writing(self):
            self.paused = True

        def resume_writing(self):
            self.transport.write(b"TAIL")

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    async def main():
        lsock = socket.socket()
        # Small kernel buffers on both sides, so the 4 MiB write cannot all
        # leave at once however the machine tunes loopback TCP.
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        lsock.setblocking(False)
        try:
            accept = asyncio.ensure_future(loop.sock_accept(lsock))
            tr, pr = await loop.create_connection(Writer, *lsock.getsockname())
            tr.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)
            conn, _ = await accept
            with conn:
                tr.write(data)
                assert pr.paused
                tr.close()
                received = bytearray()
                while True:
                    part = await loop.sock_recv(conn, 1 << 20)
                    if not part:
                        break
                    received += part
                assert await pr.lost is None
                assert len(received) == len(data) + 4
                assert received == data + b"TAIL"
        finally:
            lsock.close()

    run(loop, main())


# ---------------------------------------------------------------------------
# Interoperability with stock asyncio in another thread


class _OtherLoop:
    """A stock asyncio loop in a thread."""

    def __init__(self):
        self.loop = asyncio.SelectorEventLoop()
        self.thread = threading.Thread(target=self.loop.run_forever)
        self.thread.start()

    def call(self, coro, timeout=30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def test_client_here_server_on_stock_asyncio(loop):
    other = _OtherLoop()
    data = payload(4 << 20, seed=13)
    try:
        async def start():
            return await asyncio.start_server(
                _stream_echo_handler, "127.0.0.1", 0, ssl=server_ctx()
            )

        srv = other.call(start())
        try:
            addr = srv.sockets[0].getsockname()

            async def main():
                reader, writer = await asyncio.open_connection(*addr, ssl=client_ctx())
                writer.write(data)
                assert await reader.readexactly(len(data)) == data
                writer.close()
                await writer.wait_closed()

            run(loop, main())
        finally:
            async def stop():
                srv.close()
                await srv.wait_closed()

            other.call(stop())
    finally:
        other.close()


def test_server_here_client_on_stock_asyncio(loop):
    data = payload(4 << 20, seed=14)

    async def main():
        srv = await asyncio.start_server(_stream_echo_handler, "127.0.0.1", 0, ssl=server_ctx())
        async with srv:
            addr = srv.sockets[0].getsockname()

            async def client():
                reader, writer = await asyncio.open_connection(*addr, ssl=client_ctx())
                writer.write(data)
                got = await reader.readexactly(len(data))
                writer.close()
                await writer.wait_closed()
                return got

            result = await asyncio.to_thread(asyncio.run, client())
            assert result == data

    run(loop, main())


async def _stream_echo_handler(reader, writer):
    try:
        while True:
            d = await reader.read(1 << 16)
            if not d:
                break
            writer.write(d)
            await writer.drain()
    finally:
        writer.close()


# ---------------------------------------------------------------------------
# No leaks over many connections


# (connect/handshake/close cycles: test_tls_extra.test_cycles_leave_nothing_behind)


@pytest.mark.timeout_s(240)
def test_many_concurrent_connections(loop):
    """1,000 TLS connections open at once (streams), each echoing its own
    message, then all closed: every byte right, nothing left behind."""
    n = 1000

    async def main():
        srv = await asyncio.start_server(
            _stream_echo_handler, "127.0.0.1", 0, ssl=server_ctx(), backlog=n
        )
        async with srv:
            addr = srv.sockets[0].getsockname()
            ctx = client_ctx()
            sem = asyncio.Semaphore(200)  # connect in waves (the backlog)

            async def connect(i):
                async with sem:
                    return await asyncio.open_connection(*addr, ssl=ctx)

            conns = await asyncio.gather(*(connect(i) for i in range(n)))
            assert len(conns) == n

            async def one(i, reader, writer):
                msg = payload(1024, seed=100 + i)
                writer.write(msg)
                assert await reader.readexactly(len(msg)) == msg

            await asyncio.gather(*(one(i, r, w) for i, (r, w) in enumerate(conns)))
            for _, w in conns:
                w.close()
            await asyncio.gather(*(w.wait_closed() for _, w in conns))

    run(loop, main(), timeout=230)


def test_transport_and_protocol_freed_after_close(loop):
    """The TLS transport and both protocols are collectable once the
    connection ended (weakrefs die without a gc pass being needed for the
    transport under them)."""

    async def main():
        srv, addr = await tls_echo_server(loop)
        async with srv:
            tr, pr = await loop.create_connection(
                lambda: Recorder(loop), *addr, ssl=client_ctx()
            )
            ssl_proto = tr._ssl_protocol
            refs = [weakref.ref(x) for x in (tr, pr, ssl_proto)]
            tr.close()
            await pr.lost
            del tr, pr, ssl_proto
            await asyncio.sleep(0.05)
            gc.collect()
            assert [r() for r in refs] == [None, None, None]

    run(loop, main())
