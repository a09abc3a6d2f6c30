"""Address resolution: getaddrinfo/getnameinfo.  Mixed into ringloop.Loop."""
import socket


class DnsMixin:
    __slots__ = ()

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        return await self.run_in_executor(
            None, socket.getaddrinfo, host, port, family, type, proto, flags
        )

    async def getnameinfo(self, sockaddr, flags=0):
        return await self.run_in_executor(None, socket.getnameinfo, sockaddr, flags)
