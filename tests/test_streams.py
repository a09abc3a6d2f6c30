"""asyncio streams (open_connection, start_server, the Unix variants) run
unchanged over ringloop's transports."""
import asyncio
import os
import socket
import sys

import pytest

from netutil import until

PY312 = sys.version_info >= (3, 12)


def run(loop, coro, timeout=60):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


async def _echo_handler(reader, writer):
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            writer.write(line.upper())
            await writer.drain()
    finally:
        writer.close()
        await writer.wait_closed()


def test_start_server_open_connection(loop):
    async def main():
        srv = await asyncio.start_server(_echo_handler, "127.0.0.1", 0)
        async with srv:
            addr = srv.sockets[0].getsockname()
            r, w = await asyncio.open_connection(*addr)
            assert w.get_extra_info("peername") == addr
            for i in range(100):
                w.write(f"line {i}\n".encode())
                await w.drain()
                assert await r.readline() == f"LINE {i}\n".encode()
            w.write(b"no newline")
            w.write_eof()
            assert await r.read() == b"NO NEWLINE"
            assert r.at_eof()
            w.close()
            await w.wait_closed()

    run(loop, main())


def test_unix_streams(loop, tmp_path):
    path = str(tmp_path / "streams.sock")

    async def main():
        srv = await asyncio.start_unix_server(_echo_handler, path)
        async with srv:
            r, w = await asyncio.open_unix_connection(path)
            w.write(b"hello\n")
            assert await r.readline() == b"HELLO\n"
            w.close()
            await w.wait_closed()

    run(loop, main())


def test_readexactly_big_and_drain_flow_control(loop):
    """drain() blocks while the peer does not read (the transport paused
    the protocol at the high-water mark) and resumes as it reads."""
    payload = os.urandom(8 << 20)

    async def main():
        got = loop.create_future()
        release = asyncio.Event()

        async def handler(reader, writer):
            await release.wait()
            data = await reader.readexactly(len(payload))
            got.set_result(data)
            writer.close()
            await writer.wait_closed()

        srv = await asyncio.start_server(handler, "127.0.0.1", 0)
        async with srv:
            r, w = await asyncio.open_connection(*srv.sockets[0].getsockname())
            w.transport.set_write_buffer_limits(high=64 * 1024)
            w.write(payload)
            drain = asyncio.ensure_future(w.drain())
            await asyncio.sleep(0.05)
            assert not drain.done()  # paused: the server is not reading
            assert w.transport.get_write_buffer_size() > 64 * 1024
            release.set()
            await drain
            assert await got == payload
            w.close()
            await w.wait_closed()

    run(loop, main())


def test_reader_limit_pauses_transport(loop):
    """StreamReader pauses reading when its buffer exceeds 2*limit; the
    peer's writes then back up until the reader consumes."""

    async def main():
        done = loop.create_future()
        sent = []

        async def handler(reader, writer):
            chunk = b"z" * 65536
            total = 0
            try:
                while total < (32 << 20):
                    writer.write(chunk)
                    total += len(chunk)
                    await writer.drain()
                    sent.append(total)
            finally:
                writer.close()
                await writer.wait_closed()
                done.set_result(total)

        srv = await asyncio.start_server(handler, "127.0.0.1", 0)
        async with srv:
            addr = srv.sockets[0].getsockname()
            r, w = await asyncio.open_connection(*addr, limit=65536)
            await asyncio.sleep(0.2)
            # The reader holds at most ~2*limit plus what the kernel buffers;
            # the server could not push all 32 MiB.
            assert len(r._buffer) <= 4 * 65536 + 256 * 1024
            assert sent and sent[-1] < (32 << 20)
            n = 0
            while True:
                d = await r.read(1 << 20)
                if not d:
                    break
                n += len(d)
            assert n == await done
            w.close()
            await w.wait_closed()

    run(loop, main())


def test_stream_server_close_and_wait_closed(loop):
    async def main():
        conns = []

        async def handler(reader, writer):
            conns.append(writer)
            await reader.read()
            writer.close()
            await writer.wait_closed()

        srv = await asyncio.start_server(handler, "127.0.0.1", 0)
        addr = srv.sockets[0].getsockname()
        r, w = await asyncio.open_connection(*addr)
        await until(lambda: len(conns) == 1)
        srv.close()
        waiter = asyncio.ensure_future(srv.wait_closed())
        await asyncio.sleep(0.02)
        if PY312:
            assert not waiter.done()  # a connection is still open
        w.close()
        await w.wait_closed()
        await waiter
        with pytest.raises(OSError):
            await asyncio.open_connection(*addr)

    run(loop, main())


def test_connection_reset_surfaces_in_reader(loop):
    async def main():
        async def handler(reader, writer):
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            writer.transport.abort()

        srv = await asyncio.start_server(handler, "127.0.0.1", 0)
        async with srv:
            r, w = await asyncio.open_connection(*srv.sockets[0].getsockname())
            with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
                await r.readexactly(10)
            w.close()
            with pytest.raises(ConnectionResetError):
                await w.wait_closed()

    run(loop, main())
