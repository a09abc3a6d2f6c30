"""loop.sendfile() over the native stream transport and loop.sock_sendfile()
on a socket.

The transport tests check, by hash, a large file sent with a slow reader
(flow control), an offset/count in the middle, data written before (queued:
the sendfile waits behind it) and after (ordering), a cancelled sendfile,
the peer closing and the transport aborted or closed mid-way, and that the
zero-copy path is the one taken (ringloop: not asyncio's read+write
fallback, and write() refused meanwhile).

File size: 64 MiB; 256 MiB (the issue's full check) with
RINGLOOP_TEST_HEAVY=1; RINGLOOP_TEST_SENDFILE_MB overrides both."""
import asyncio
import hashlib
import io
import os
import socket
import sys

import pytest

from conftest import is_ringloop
from netutil import until

_MB = os.environ.get("RINGLOOP_TEST_SENDFILE_MB") or (
    "256" if os.environ.get("RINGLOOP_TEST_HEAVY") == "1" else "64")
SIZE = int(_MB) * 1024 * 1024 + 12345
MiB = 1 << 20

ringloop_only = pytest.mark.skipif(not is_ringloop(), reason="ringloop's native path")


@pytest.fixture(scope="module")
def datafile(tmp_path_factory):
    path = tmp_path_factory.mktemp("sendfile") / "data.bin"
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        for i in range(SIZE // len(block) + 1):
            f.write(block[i:] + block[:i])
        f.truncate(SIZE)
    return path


def file_hash(path, offset=0, count=None, prefix=b"", suffix=b""):
    h = hashlib.sha256(prefix)
    left = SIZE - offset if count is None else count
    with open(path, "rb") as f:
        f.seek(offset)
        while left > 0:
            chunk = f.read(min(left, 4 * MiB))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
    h.update(suffix)
    return h.hexdigest()


def file_bytes(path, offset, count):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(count)


def run(loop, coro, timeout=150):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


class Sink(asyncio.Protocol):
    """Hashes what arrives (keeping it too when asked).  slow: pauses its
    reads every 256 KiB for a few milliseconds, so the sender's flow control
    has to hold it back.  stop_at: pauses reading for good once that many
    bytes arrived (until go() is called)."""

    def __init__(self, loop, *, slow=True, keep=False, stop_at=None, abort_at=None):
        self.loop = loop
        self.hash = hashlib.sha256()
        self.n = 0
        self.data = bytearray() if keep else None
        self.slow = slow
        self.stop_at = stop_at
        self.abort_at = abort_at
        self.stopped = False
        self.lost = loop.create_future()
        self.since_pause = 0

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.hash.update(data)
        self.n += len(data)
        if self.data is not None:
            self.data += data
        if self.abort_at is not None and self.n >= self.abort_at:
            self.abort_at = None
            self.transport.abort()
            return
        if self.stop_at is not None and self.n >= self.stop_at:
            self.stop_at = None
            self.stopped = True
            self.transport.pause_reading()
            return
        self.since_pause += len(data)
        if self.slow and self.since_pause >= 256 * 1024:
            self.since_pause = 0
            self.transport.pause_reading()
            self.loop.call_later(0.002, self._resume)

    def _resume(self):
        if not self.stopped and not self.transport.is_closing():
            self.transport.resume_reading()

    def go(self):
        self.stopped = False
        self.transport.resume_reading()

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


class Client(asyncio.Protocol):
    def __init__(self, loop):
        self.lost = loop.create_future()
        self.paused = 0

    def pause_writing(self):
        self.paused += 1

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


async def _pair(loop, **sink_kw):
    sink = Sink(loop, **sink_kw)
    srv = await loop.create_server(lambda: sink, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    tr, client = await loop.create_connection(lambda: Client(loop), "127.0.0.1", port)
    tr.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    tr.set_write_buffer_limits(high=128 * 1024)
    await until(lambda: hasattr(sink, "transport"), timeout=60)
    return srv, sink, tr, client


async def _finish(srv, sink, tr):
    if not tr.is_closing():
        tr.close()
    await sink.lost
    srv.close()
    await srv.wait_closed()


@pytest.mark.timeout_s(300)
def test_whole_file_slow_reader_with_data_before_and_after(loop, datafile):
    before = os.urandom(MiB) + b"BEFORE"  # queued: the sendfile waits behind it
    after = b"AFTER" * 1000

    async def main():
        srv, sink, tr, client = await _pair(loop)
        with open(datafile, "rb") as f:
            tr.write(before)
            assert tr.get_write_buffer_size() > 0
            sent = await loop.sendfile(tr, f)
            assert sent == SIZE
            assert f.tell() == SIZE
            tr.write(after)
        await _finish(srv, sink, tr)
        assert sink.n == len(before) + SIZE + len(after)
        assert sink.hash.hexdigest() == file_hash(datafile, prefix=before, suffix=after)

    run(loop, main(), timeout=280)


@pytest.mark.timeout_s(300)
def test_offset_count_in_the_middle(loop, datafile):
    offset, count = SIZE // 3 + 17, SIZE // 3 + 11

    async def main():
        srv, sink, tr, client = await _pair(loop)
        with open(datafile, "rb") as f:
            sent = await loop.sendfile(tr, f, offset, count)
            assert sent == count
            assert f.tell() == offset + count
            # count past the end of the file: what is there
            sent = await loop.sendfile(tr, f, SIZE - 1000, 5000)
            assert sent == 1000
            assert f.tell() == SIZE
        await _finish(srv, sink, tr)
        assert sink.n == count + 1000
        tail = file_bytes(datafile, SIZE - 1000, 1000)
        assert sink.hash.hexdigest() == file_hash(datafile, offset, count, suffix=tail)

    run(loop, main(), timeout=280)


def test_small_offsets_and_reading_paused_meanwhile(loop, datafile):
    async def main():
        srv, sink, tr, client = await _pair(loop, slow=False, keep=True)
        assert tr.is_reading()
        with open(datafile, "rb") as f:
            task = asyncio.ensure_future(loop.sendfile(tr, f, 5, 3 * MiB))
            await until(lambda: not tr.is_reading(), timeout=60)
            assert await task == 3 * MiB
            assert tr.is_reading()  # resumed afterwards, as asyncio does
            assert await loop.sendfile(tr, f, 1, 1) == 1
            assert f.tell() == 2
        await _finish(srv, sink, tr)
        assert sink.data == file_bytes(datafile, 5, 3 * MiB) + file_bytes(datafile, 1, 1)

    run(loop, main())


def test_write_refused_while_sendfile_runs(loop, datafile):
    async def main():
        srv, sink, tr, client = await _pair(loop, slow=False, stop_at=MiB)
        with open(datafile, "rb") as f:
            task = asyncio.ensure_future(loop.sendfile(tr, f, 0, 4 * MiB))
            await until(lambda: sink.stopped, timeout=60)
            with pytest.raises(RuntimeError, match=r"^unable to write; sendfile is in progress$"):
                tr.write(b"x")
            msg = "writelines" if sys.version_info >= (3, 12) else "write"
            with pytest.raises(RuntimeError, match=rf"^unable to {msg}; sendfile is in progress$"):
                tr.writelines([b"x"])
            sink.go()
            assert await task == 4 * MiB
            tr.write(b"tail")
        await _finish(srv, sink, tr)
        assert sink.n == 4 * MiB + 4

    run(loop, main())


def test_cancelled_mid_way(loop, datafile):
    async def main():
        srv, sink, tr, client = await _pair(loop, slow=False, keep=True, stop_at=MiB)
        with open(datafile, "rb") as f:
            task = asyncio.ensure_future(loop.sendfile(tr, f, 100))
            await until(lambda: sink.stopped, timeout=60)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            pos = f.tell()
            # The transport is usable again.
            assert not tr.is_closing()
            tr.write(b"TAIL")
            sink.go()
        await _finish(srv, sink, tr)
        # What went out is a prefix of the file, then what was written.
        sent = len(sink.data) - 4
        assert MiB <= sent < SIZE
        assert bytes(sink.data) == file_bytes(datafile, 100, sent) + b"TAIL"
        if is_ringloop():
            # The file position says how far it got (asyncio leaves it
            # where it was when cancelled).
            assert pos == 100 + sent

    run(loop, main())


def test_peer_closes_mid_way(loop, datafile):
    async def main():
        srv, sink, tr, client = await _pair(loop, slow=False, abort_at=MiB)
        with open(datafile, "rb") as f:
            with pytest.raises(ConnectionError):
                await loop.sendfile(tr, f)
            assert MiB <= f.tell() < SIZE
        await until(lambda: tr.is_closing(), timeout=60)
        await client.lost
        await _finish(srv, sink, tr)

    run(loop, main())


@ringloop_only
def test_aborted_mid_way(loop, datafile):
    async def main():
        srv, sink, tr, client = await _pair(loop, slow=False, stop_at=MiB)
        with open(datafile, "rb") as f:
            task = asyncio.ensure_future(loop.sendfile(tr, f))
            await until(lambda: sink.stopped, timeout=60)
            tr.abort()
            with pytest.raises(ConnectionError):
                await task
            assert MiB <= f.tell() < SIZE
        assert await client.lost is None
        sink.go()
        await _finish(srv, sink, tr)

    run(loop, main())


@ringloop_only
def test_closed_while_waiting_behind_queued_data(loop, datafile):
    before = os.urandom(4 * MiB)

    async def main():
        srv, sink, tr, client = await _pair(loop, slow=False, keep=True, stop_at=MiB)
        with open(datafile, "rb") as f:
            tr.write(before)
            task = asyncio.ensure_future(loop.sendfile(tr, f))
            await until(lambda: sink.stopped, timeout=60)
            assert tr.get_write_buffer_size() > 0
            tr.close()  # waits for the queue; the sendfile behind it ends
            sink.go()
            with pytest.raises(ConnectionError):
                await task
            assert f.tell() == 0
        assert await client.lost is None
        await _finish(srv, sink, tr)
        assert bytes(sink.data) == before

    run(loop, main())


@ringloop_only
def test_zero_copy_path_is_taken(loop, datafile, monkeypatch):
    def no_fallback(*args):
        raise AssertionError("the read+write fallback ran")

    monkeypatch.setattr(loop, "_sendfile_fallback", no_fallback)

    async def main():
        srv, sink, tr, client = await _pair(loop, slow=False, keep=True)
        with open(datafile, "rb") as f:
            assert await loop.sendfile(tr, f, 7, 2 * MiB, fallback=False) == 2 * MiB
        await _finish(srv, sink, tr)
        assert sink.data == file_bytes(datafile, 7, 2 * MiB)
        assert client.paused == 0  # nothing was buffered in user space

    run(loop, main())


def test_not_a_regular_file_falls_back(loop):
    payload = b"not a regular file " * 10000

    async def main():
        srv, sink, tr, client = await _pair(loop, slow=False, keep=True)
        with pytest.raises(asyncio.SendfileNotAvailableError):
            await loop.sendfile(tr, io.BytesIO(payload), fallback=False)
        src = io.BytesIO(payload)
        assert await loop.sendfile(tr, src) == len(payload)
        assert src.tell() == len(payload)
        tr.write(b"!")
        await _finish(srv, sink, tr)
        assert sink.data == payload + b"!"

    run(loop, main())


def test_transport_sendfile_errors(loop, datafile):
    async def main():
        srv, sink, tr, client = await _pair(loop)
        with open(datafile, "rb") as f:
            with pytest.raises(ValueError, match="offset must be a non-negative integer"):
                await loop.sendfile(tr, f, -1)
            with pytest.raises(ValueError, match="count must be a positive integer"):
                await loop.sendfile(tr, f, 0, 0)
            tr.close()
            with pytest.raises(RuntimeError, match="Transport is closing"):
                await loop.sendfile(tr, f)
            assert f.tell() == 0
        await _finish(srv, sink, tr)

    run(loop, main())


@pytest.mark.parametrize("offset,count", [(0, None), (1_000_003, 2_000_029)])
def test_sock_sendfile_uses_os_sendfile(loop, datafile, monkeypatch, offset, count):
    calls = []
    real = os.sendfile

    def counting_sendfile(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(os, "sendfile", counting_sendfile)
    length = count if count else SIZE - offset

    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        h = hashlib.sha256()
        got = 0

        async def drain():
            nonlocal got
            while True:
                chunk = await loop.sock_recv(b, 1 << 20)
                if not chunk:
                    return
                h.update(chunk)
                got += len(chunk)

        reader = asyncio.ensure_future(drain())
        try:
            with open(datafile, "rb") as f:
                sent = await loop.sock_sendfile(a, f, offset, count)
                assert sent == length
                assert f.tell() == offset + length
            a.shutdown(socket.SHUT_WR)
            await reader
        finally:
            a.close()
            b.close()
        assert got == length
        assert h.hexdigest() == file_hash(datafile, offset, length)
        assert calls, "os.sendfile was not used"

    run(loop, main(), timeout=280)


def test_sock_sendfile_fallback_for_a_non_file(loop):
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
