"""Stream transport safety (issue 9, defects 4 and 7, and their class):
an error must never leave the transport's state machine stuck, and a peer's
reset must be reported as asyncio reports it.

Loop-generic: with RINGLOOP_TEST_LOOP=asyncio these run on stock asyncio
and pass there (they assert asyncio's behaviour)."""
import asyncio
import socket
import struct
import sys

import pytest

from netutil import Recorder, ringloop_only, tcp_pair, until

try:
    import _testcapi
except ImportError:  # a Python built without its test modules
    _testcapi = None

PY312 = sys.version_info >= (3, 12)
BIG = 8 << 20


def run(loop, coro, timeout=30):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def reset(sock):
    """Close with SO_LINGER 0: the peer gets a RST."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def recv_all(sock, n=None):
    """Blocking read of everything until EOF (or n bytes)."""
    sock.setblocking(True)
    sock.settimeout(10)
    out = bytearray()
    while n is None or len(out) < n:
        b = sock.recv(1 << 20)
        if not b:
            break
        out += b
    return bytes(out)


class NoEof(Recorder):
    """A protocol without its own eof_received() answer (aiohttp's,
    BaseProtocol's default: None, so the transport closes itself)."""


class BufRecorder(asyncio.BufferedProtocol, Recorder):
    def __init__(self, loop):
        Recorder.__init__(self, loop)
        self.buf = bytearray(65536)

    def get_buffer(self, sizehint):
        return self.buf

    def buffer_updated(self, nbytes):
        self.data += self.buf[:nbytes]


# ---------------------------------------------------------------------------
# defect 4: a peer reset while data is queued is an error, not an EOF


@pytest.mark.parametrize("proto", [NoEof, BufRecorder])
def test_reset_with_queued_data_is_connection_reset(loop, proto):
    """The peer resets while our write buffer is full: asyncio (and uvloop)
    give connection_lost(ConnectionResetError), never eof_received() then
    connection_lost(None)."""

    async def main():
        c, s = tcp_pair(rcvbuf=4096, sndbuf=4096)
        pr = proto(loop)
        tr, _ = await loop.connect_accepted_socket(lambda: pr, s)
        await pr.made
        tr.write(b"x" * BIG)
        assert tr.get_write_buffer_size() > 0
        await asyncio.sleep(0.01)  # the queue's send is in flight
        reset(c)
        exc = await pr.lost
        assert isinstance(exc, ConnectionResetError), (exc, pr.events)
        assert pr.events == ["made", "pause", "lost"], pr.events
        assert tr.get_write_buffer_size() == 0
        assert tr.is_closing()

    run(loop, main())


def test_reset_with_queued_data_after_close(loop):
    """close() waits for the queue; the reset fails it:
    connection_lost(ConnectionResetError)."""

    async def main():
        c, s = tcp_pair(rcvbuf=4096, sndbuf=4096)
        pr = NoEof(loop)
        tr, _ = await loop.connect_accepted_socket(lambda: pr, s)
        await pr.made
        tr.write(b"x" * BIG)
        tr.close()
        await asyncio.sleep(0.01)
        assert not pr.lost.done()
        reset(c)
        exc = await pr.lost
        assert isinstance(exc, ConnectionResetError), (exc, pr.events)
        assert "eof" not in pr.events

    run(loop, main())


def test_reset_with_queued_data_streams(loop):
    """Streams style (what aiohttp-like handlers see): the handler blocked
    in drain() gets ConnectionResetError, and so does a later read."""

    async def main():
        seen = {}
        blocked = loop.create_future()
        done = loop.create_future()

        async def handler(reader, writer):
            try:
                writer.write(b"x" * BIG)
                blocked.set_result(None)
                try:
                    await writer.drain()
                    seen["drain"] = None
                except Exception as e:
                    seen["drain"] = e
                try:
                    seen["read"] = await reader.read(100)
                except Exception as e:
                    seen["read"] = e
            finally:
                writer.close()
                done.set_result(None)

        with socket.socket() as lsock:
            lsock.bind(("127.0.0.1", 0))
            lsock.listen(1)
            srv = await asyncio.start_server(handler, sock=lsock.dup())
        async with srv:
            c = socket.socket()
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.setblocking(False)
            await loop.sock_connect(c, srv.sockets[0].getsockname())
            await blocked
            await asyncio.sleep(0.01)
            reset(c)
            await done
        assert isinstance(seen["drain"], ConnectionResetError), seen
        assert seen["drain"].errno is not None, seen  # the socket's error
        assert isinstance(seen["read"], ConnectionResetError), seen

    run(loop, main())


# ---------------------------------------------------------------------------
# defect 7: writelines() that fails part-way changes nothing


def _released():
    mv = memoryview(b"released")
    mv.release()
    return mv


# What asyncio raises for it: 3.11 joins the items (b''.join: TypeError),
# 3.12+ takes memoryview(item) of each (ValueError).
RELEASED_EXC = ValueError if PY312 else TypeError


def test_writelines_released_memoryview_idle(loop):
    """Nothing is sent when a later item cannot be read (asyncio 3.11 joins
    first, 3.12+ takes a memoryview of every item first); the transport
    then works as before."""

    async def main():
        c, s = tcp_pair()
        with c:
            pr = Recorder(loop)
            tr, _ = await loop.connect_accepted_socket(lambda: pr, s)
            with pytest.raises(RELEASED_EXC):
                tr.writelines([b"first", bytearray(b"second"), _released()])
            assert tr.get_write_buffer_size() == 0
            tr.write(b"after")
            tr.writelines([b"-", memoryview(b"lines")])
            tr.close()
            assert await pr.lost is None
            assert recv_all(c) == b"after-lines"

    run(loop, main())


def test_writelines_released_memoryview_queued(loop):
    """The same behind a full buffer: nothing joins the queue, and the
    queue still drains and close() still reaches connection_lost()."""

    async def main():
        c, s = tcp_pair(rcvbuf=4096, sndbuf=4096)
        with c:
            pr = Recorder(loop)
            tr, _ = await loop.connect_accepted_socket(lambda: pr, s)
            head = b"h" * (1 << 20)
            tr.write(head)
            size = tr.get_write_buffer_size()
            assert size > 0
            with pytest.raises(RELEASED_EXC):
                tr.writelines([b"a" * 10, b"b" * 5000, _released()])
            assert tr.get_write_buffer_size() == size
            tr.writelines([b"t" * 10, b"u" * 5000])
            tr.write(b"end")
            tr.close()
            got = await loop.run_in_executor(None, recv_all, c)
            assert await pr.lost is None
            assert got == head + b"t" * 10 + b"u" * 5000 + b"end"

    run(loop, main())


@pytest.mark.skipif(not PY312, reason="__buffer__ (PEP 688) is 3.12+")
@pytest.mark.parametrize("queued", [False, True])
def test_writelines_memoryerror_on_later_item(loop, queued):
    """An item whose buffer export raises MemoryError: the call raises it,
    nothing of it is sent or queued, and the transport keeps working."""

    class NoMem:
        def __buffer__(self, flags):
            raise MemoryError

    async def main():
        c, s = tcp_pair(rcvbuf=4096, sndbuf=4096)
        with c:
            pr = Recorder(loop)
            tr, _ = await loop.connect_accepted_socket(lambda: pr, s)
            head = b"h" * (1 << 20) if queued else b""
            if head:
                tr.write(head)
            size = tr.get_write_buffer_size()
            with pytest.raises(MemoryError):
                tr.writelines([b"a" * 10, b"b" * 5000, NoMem()])
            assert tr.get_write_buffer_size() == size
            tr.write(b"after")
            tr.close()
            got = await loop.run_in_executor(None, recv_all, c)
            assert await pr.lost is None
            assert got == head + b"after"

    run(loop, main())


@pytest.mark.skipif(not PY312, reason="__buffer__ (PEP 688) is 3.12+")
def test_writelines_item_buffer_mutates_the_list(loop):
    """A __buffer__ that empties the list being written (evil): no crash;
    asyncio stops at the change, ringloop writes the items it was given."""

    async def main():
        c, s = tcp_pair()
        with c:
            pr = Recorder(loop)
            tr, _ = await loop.connect_accepted_socket(lambda: pr, s)
            items = []

            class Evil:
                def __buffer__(self, flags):
                    items.clear()
                    return memoryview(b"x")

            items += [b"a", Evil(), bytearray(b"c" * 5000), b"d"]
            tr.writelines(items)
            tr.close()
            got = await loop.run_in_executor(None, recv_all, c)
            assert await pr.lost is None
            assert got in (b"ax", b"ax" + b"c" * 5000 + b"d"), got[:20]

    run(loop, main())


def _attempt(tr, items, k):
    """writelines(items) with every allocation after the k-th failing."""
    _testcapi.set_nomemory(k, 0)
    try:
        tr.writelines(items)
    except MemoryError:
        _testcapi.remove_mem_hooks()
        return False
    _testcapi.remove_mem_hooks()
    return True


@ringloop_only("asyncio 3.11 may raise MemoryError after queueing")
@pytest.mark.skipif(_testcapi is None, reason="needs _testcapi.set_nomemory")
def test_writelines_out_of_memory_is_all_or_nothing(loop):
    """Allocation failures at every point of a queued writelines(): each
    call either queues all of its items or raises MemoryError and queues
    none; the peer then receives exactly what was accepted, in order, and
    close() reaches connection_lost()."""

    async def main():
        c, s = tcp_pair(rcvbuf=4096, sndbuf=4096)
        with c:
            pr = Recorder(loop)
            tr, _ = await loop.connect_accepted_socket(lambda: pr, s)
            tr.set_write_buffer_limits(high=1 << 30)
            expect = bytearray(b"h" * (1 << 20))
            tr.write(bytes(expect))
            assert tr.get_write_buffer_size() > 0
            failures = 0
            for k in range(0, 64):
                tag = b"%02d" % k
                items = [tag * 5, bytearray(tag * 2000), tag * 7,
                         memoryview(tag * 1500), b"." * 3000]
                before = tr.get_write_buffer_size()
                if _attempt(tr, items, k):
                    expect += b"".join(items)
                    assert tr.get_write_buffer_size() == before + sum(map(len, items))
                else:
                    failures += 1
                    assert tr.get_write_buffer_size() == before
            assert failures > 0
            tr.write(b"end")
            expect += b"end"
            tr.close()
            got = await loop.run_in_executor(None, recv_all, c)
            assert await pr.lost is None
            assert got == bytes(expect)

    run(loop, main())


# ---------------------------------------------------------------------------
# the same class: an error between "took something" and "submitted it"


@ringloop_only("asyncio lets the error out of its reader and calls "
               "eof_received() again on every iteration")
def test_eof_received_answer_without_truth_value(loop, loop_errors):
    """eof_received() returns an object whose truth value raises: reported
    as a failing eof_received() and the transport ends (it used to leave
    the exception set and the transport neither reading nor closing)."""

    class NoTruth:
        def __bool__(self):
            raise ValueError("no truth value")

    class P(Recorder):
        def eof_received(self):
            self.events.append("eof")
            return NoTruth()

    async def main():
        c, s = tcp_pair()
        with c:
            pr = P(loop)
            tr, _ = await loop.connect_accepted_socket(lambda: pr, s)
            await pr.made
            c.shutdown(socket.SHUT_WR)
            exc = await pr.lost
            assert isinstance(exc, ValueError), exc
            assert pr.events == ["made", "eof", "lost"]
            assert tr.is_closing()
        assert [e["message"] for e in loop_errors] == [
            "Fatal error: protocol.eof_received() call failed."
        ]
        assert isinstance(loop_errors[0]["exception"], ValueError)

    run(loop, main())
