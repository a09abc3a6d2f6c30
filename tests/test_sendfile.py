"""loop.sendfile() over the native stream transport and loop.sock_sendfile()
on a socket: byte-for-byte with a slow reader (flow control), an offset and
count in the middle, writes before and after, the file position afterwards,
and sock_sendfile's zero-copy path (os.sendfile) really taken.

RINGLOOP_TEST_SENDFILE_MB sets the file size (default 16 MiB; the issue's
full check is 256)."""
import asyncio
import os
import socket

import pytest

from netutil import until

SIZE = int(os.environ.get("RINGLOOP_TEST_SENDFILE_MB", "16")) * 1024 * 1024 + 12345


@pytest.fixture(scope="module")
def datafile(tmp_path_factory):
    path = tmp_path_factory.mktemp("sendfile") / "data.bin"
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(SIZE // len(block) + 1):
            f.write(block[i:] + block[:i])
        f.truncate(SIZE)
    return path


def run(loop, coro, timeout=120):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


class SlowSink(asyncio.Protocol):
    """Takes what arrives, pausing its reads every 256 KiB for a few loop
    iterations, so the sender's flow control has to hold it back."""

    def __init__(self, loop):
        self.loop = loop
        self.data = bytearray()
        self.lost = loop.create_future()
        self.since_pause = 0

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.data += data
        self.since_pause += len(data)
        if self.since_pause >= 256 * 1024:
            self.since_pause = 0
            self.transport.pause_reading()
            self.loop.call_later(0.001, self.transport.resume_reading)

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


async def _pair(loop):
    sink = SlowSink(loop)
    srv = await loop.create_server(lambda: sink, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    tr, pr = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    tr.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    tr.set_write_buffer_limits(high=128 * 1024)
    return srv, sink, tr


@pytest.mark.timeout_s(180)
def test_transport_sendfile_whole_file_slow_reader(loop, datafile):
    expected = datafile.read_bytes()

    async def main():
        srv, sink, tr = await _pair(loop)
        with open(datafile, "rb") as f:
            tr.write(b"BEFORE")
            sent = await loop.sendfile(tr, f)
            tr.write(b"AFTER")
            assert sent == SIZE
            assert f.tell() == SIZE
        tr.close()
        await sink.lost
        srv.close()
        await srv.wait_closed()
        assert len(sink.data) == SIZE + 11
        assert sink.data[:6] == b"BEFORE" and sink.data[-5:] == b"AFTER"
        assert sink.data[6:-5] == expected

    run(loop, main(), timeout=170)


def test_transport_sendfile_offset_count_in_the_middle(loop, datafile):
    offset, count = 3_000_017, 5_000_011
    expected = datafile.read_bytes()[offset:offset + count]

    async def main():
        srv, sink, tr = await _pair(loop)
        with open(datafile, "rb") as f:
            sent = await loop.sendfile(tr, f, offset, count)
            assert sent == count
            assert f.tell() == offset + count
        tr.close()
        await sink.lost
        srv.close()
        await srv.wait_closed()
        assert sink.data == expected

    run(loop, main())


def test_transport_sendfile_errors(loop, datafile):
    async def main():
        srv, sink, tr = await _pair(loop)
        with open(datafile, "rb") as f:
            with pytest.raises(ValueError, match="offset must be a non-negative integer"):
                await loop.sendfile(tr, f, -1)
            with pytest.raises(ValueError, match="count must be a positive integer"):
                await loop.sendfile(tr, f, 0, 0)
            tr.close()
            with pytest.raises(RuntimeError, match="Transport is closing"):
                await loop.sendfile(tr, f)
            assert f.tell() == 0
        await sink.lost
        srv.close()
        await srv.wait_closed()

    run(loop, main())


@pytest.mark.parametrize("offset,count", [(0, None), (1_000_003, 2_000_029)])
def test_sock_sendfile_uses_os_sendfile(loop, datafile, monkeypatch, offset, count):
    calls = []
    real = os.sendfile

    def counting_sendfile(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(os, "sendfile", counting_sendfile)
    content = datafile.read_bytes()
    expected = content[offset:offset + count] if count else content[offset:]

    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        got = bytearray()

        async def drain():
            while True:
                chunk = await loop.sock_recv(b, 1 << 20)
                if not chunk:
                    return
                got.extend(chunk)

        reader = asyncio.ensure_future(drain())
        try:
            with open(datafile, "rb") as f:
                sent = await loop.sock_sendfile(a, f, offset, count)
                assert sent == len(expected)
                assert f.tell() == offset + len(expected)
            a.shutdown(socket.SHUT_WR)
            await reader
        finally:
            a.close()
            b.close()
        assert got == expected
        assert calls, "os.sendfile was not used"

    run(loop, main())


def test_sock_sendfile_fallback_for_a_non_file(loop):
    import io

    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        try:
            src = io.BytesIO(b"not a regular file " * 1000)
            sent = await loop.sock_sendfile(a, src)
            assert sent == 19000
            got = bytearray()
            await until(lambda: got.extend(b.recv(65536) if _readable(b) else b"") or len(got) == 19000)
            assert bytes(got) == b"not a regular file " * 1000
            with pytest.raises(asyncio.SendfileNotAvailableError):
                await loop.sock_sendfile(a, io.BytesIO(b"x"), fallback=False)
        finally:
            a.close()
            b.close()

    run(loop, main())


def _readable(sock):
    import select

    return bool(select.select([sock], [], [], 0)[0])
