"""The one op-ownership model of the networking code (issue 9): an op owns
its buffer and a reference to its owner until its final completion, and a
completion whose delivery is queued blocks re-arming.

Differential where the behaviour is asyncio's (RINGLOOP_TEST_LOOP=asyncio
runs the tests not marked ringloop_only against stock asyncio)."""
import asyncio
import gc
import os
import socket
import tempfile
import weakref

import pytest

from conftest import is_ringloop


def run(loop, coro, timeout=20):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def test_datagram_send_completion_queued_then_sendto(loop):
    """A queued datagram's send completes; before the record that pops it
    from the queue runs, the protocol's code calls sendto() again.  The send
    op must not be re-armed under the queued completion: every datagram
    arrives exactly once, in order (AF_UNIX datagrams block when the peer's
    queue is full, so the transport queues)."""
    n = 400

    async def main():
        d = tempfile.mkdtemp()
        path = os.path.join(d, "b")
        b = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        b.bind(path)
        b.setblocking(False)
        got = []
        state = {"next": 0}

        def drain():
            while True:
                try:
                    got.append(b.recv(64))
                except BlockingIOError:
                    return

        tr, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=path, family=socket.AF_UNIX)
        try:
            # Fill the peer's queue first: what follows is queued.
            while tr.get_write_buffer_size() == 0 and state["next"] < n:
                tr.sendto(b"%d" % state["next"])
                state["next"] += 1

            def tick():
                # Runs each iteration before the I/O records of that
                # iteration (it was scheduled in the previous one).
                if state["next"] < n:
                    tr.sendto(b"%d" % state["next"])
                    state["next"] += 1
                    loop.call_soon(tick)

            loop.call_soon(tick)
            loop.add_reader(b.fileno(), drain)
            end = loop.time() + 10
            while len(got) < n and loop.time() < end:
                await asyncio.sleep(0.005)
            loop.remove_reader(b.fileno())
            drain()
        finally:
            tr.close()
            b.close()
            os.unlink(path)
            os.rmdir(d)
        assert got == [b"%d" % i for i in range(n)]

    run(loop, main())


@pytest.mark.ringloop_only
def test_reading_transport_is_held_by_its_op(loop):
    """An armed op holds a reference to its owner: a datagram transport the
    program dropped stays alive while its receive is armed (asyncio's reader
    Handle does the same), and is released once it is closed."""
    async def main():
        tr, pr = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        await asyncio.sleep(0.01)  # reading: the RECVMSG op is armed
        assert loop._net_counters()["ops_held"] >= 1
        ref = weakref.ref(tr)
        tr.close()
        del tr
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        gc.collect()
        assert ref() is None
        assert loop._net_counters()["ops_held"] == 0

    run(loop, main())


@pytest.mark.ringloop_only
def test_sock_request_op_is_a_held_netop(loop):
    """A pending sock_recv's op is an rl_netop: it is listed among the ops
    the loop holds, and gives its reference back at its final completion."""
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    try:
        async def main():
            t = asyncio.ensure_future(loop.sock_recv(a, 10))
            await asyncio.sleep(0.01)
            assert loop._net_counters()["ops_held"] == 1
            b.send(b"x")
            assert await t == b"x"
            assert loop._net_counters()["ops_held"] == 0
            lst = socket.socket()
            lst.bind(("127.0.0.1", 0))
            lst.listen(1)
            lst.setblocking(False)
            try:
                t = asyncio.ensure_future(loop.sock_accept(lst))
                await asyncio.sleep(0.01)
                assert loop._net_counters()["ops_held"] == 1
                t.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await t
                await asyncio.sleep(0)
                assert loop._net_counters()["ops_held"] == 0
            finally:
                lst.close()

        run(loop, main())
    finally:
        a.close()
        b.close()
