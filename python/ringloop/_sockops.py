"""loop.sock_* as real coroutines.

The work is done in C (src/net/sockops.c, src/net/ops.c): each `_sock_*`
method returns a request object that is awaited here.  The thin `async def`
is what makes `loop.sock_recv(...)` a coroutine in every respect users can
see, as asyncio's own: `inspect.getcoroutinestate()`, `cr_frame`,
`cr_running`, `cr_await`, `Task.get_stack()`/`print_stack()`, and the
"coroutine ... was never awaited" RuntimeWarning when it is dropped.
Awaiting the request steps it through its `am_send` slot: the wrapper costs
one coroutine object per call (see ARCHITECTURE.md "loop.sock_*" for the
measurement)."""


class SockMixin:
    """The public sock_* methods of ringloop.Loop."""

    __slots__ = ()

    async def sock_recv(self, sock, n):
        return await self._sock_recv(sock, n)

    async def sock_recv_into(self, sock, buf):
        return await self._sock_recv_into(sock, buf)

    async def sock_recvfrom(self, sock, bufsize):
        return await self._sock_recvfrom(sock, bufsize)

    async def sock_recvfrom_into(self, sock, buf, nbytes=0):
        return await self._sock_recvfrom_into(sock, buf, nbytes)

    async def sock_sendall(self, sock, data):
        return await self._sock_sendall(sock, data)

    async def sock_sendto(self, sock, data, address):
        return await self._sock_sendto(sock, data, address)

    async def sock_connect(self, sock, address):
        return await self._sock_connect(sock, address)

    async def sock_accept(self, sock):
        return await self._sock_accept(sock)
