"""A child forked from a process whose loop is running must not disturb the
parent's loop, whatever it does with the inherited objects (issue 9, defect
1): the reactor is inert in the child (no SQE reaches the parent's ring, no
epoll_ctl on the parent's epoll set), so the parent keeps serving."""
import asyncio
import gc
import os
import socket

import pytest


class Echo(asyncio.Protocol):
    def __init__(self, registry):
        self.registry = registry

    def connection_made(self, transport):
        self.transport = transport
        self.registry.append(transport)

    def data_received(self, data):
        self.transport.write(data)


async def _echo_once(loop, port, payload):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        return await reader.readexactly(len(payload))
    finally:
        writer.close()
        await writer.wait_closed()


def _child(loop, server, server_side, client_tr, writer, rsock, sock_req_sock):
    """Everything a child might do to objects it inherited; returns the
    exit status for the parent to check."""
    try:
        for tr in server_side:
            tr.abort()
        client_tr.abort()
        loop.remove_reader(rsock)
        loop.add_reader(rsock, lambda: None)
        loop.remove_reader(rsock)
        # a sock_* call on an inherited socket: stepped once (it arms an op)
        # then dropped, which cancels it
        coro = loop.sock_recv(sock_req_sock, 10)
        try:
            next(coro.__await__())
        except StopIteration:
            pass
        coro.close()
        loop.call_soon_threadsafe(lambda: None)
        server.close()
        writer.close()
        del writer
        gc.collect()
        return 0
    except BaseException as e:  # report, never return into the loop
        try:
            os.write(2, f"child failed: {e!r}\n".encode())
        except OSError:
            pass
        return 3


# asyncio's own loop fails this test: its remove_reader() in the child
# deletes the parent's registration from the shared epoll set (the parent's
# reader never fires again), and its Server.close() does the same to the
# listening socket.  ringloop does not touch the kernel in the child at all.
@pytest.mark.ringloop_only
@pytest.mark.timeout_s(60)
def test_child_touching_inherited_loop_leaves_parent_serving(loop):
    server_side = []
    rsock, wsock = socket.socketpair()
    qsock, psock = socket.socketpair()
    rsock.setblocking(False)
    qsock.setblocking(False)
    fired = []

    async def main():
        server = await loop.create_server(
            lambda: Echo(server_side), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        # a connection with traffic before the fork
        client_tr, _ = await loop.create_connection(asyncio.Protocol,
                                                    "127.0.0.1", port)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello")
        assert await reader.readexactly(5) == b"hello"
        # a reader watch and a pending sock_recv, both armed over the fork
        loop.add_reader(rsock, lambda: fired.append(rsock.recv(100)))
        pending = asyncio.ensure_future(loop.sock_recv(qsock, 100))
        await asyncio.sleep(0.01)
        assert not pending.done()

        pid = os.fork()
        if pid == 0:
            os._exit(_child(loop, server, list(server_side), client_tr,
                            writer, rsock, qsock))
        _, status = await loop.run_in_executor(None, os.waitpid, pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status

        # the parent's pending ops complete
        psock.send(b"queued")
        assert await asyncio.wait_for(pending, 10) == b"queued"
        wsock.send(b"ping")
        for _ in range(1000):
            if fired:
                break
            await asyncio.sleep(0.01)
        assert fired == [b"ping"]
        # the connection made before the fork still works
        writer.write(b"again")
        assert await asyncio.wait_for(reader.readexactly(5), 10) == b"again"
        # and the server accepts and serves new connections
        for i in range(20):
            data = b"x%d" % i
            assert await asyncio.wait_for(_echo_once(loop, port, data),
                                          10) == data
        loop.remove_reader(rsock)
        client_tr.close()
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    try:
        loop.run_until_complete(main())
    finally:
        for s in (rsock, wsock, qsock, psock):
            s.close()
