"""Datagram endpoints: create_datagram_endpoint and the transport factory.
Mixed into ringloop.Loop.  The transport itself is native
(_core.DatagramTransport, src/net/dgram.c); this is the cold setup, with
asyncio's arguments, checks and messages for the running Python version."""
import os
import socket
import stat
import sys

from asyncio import trsock
from asyncio.log import logger

_PY313 = sys.version_info >= (3, 13)


def _set_reuseport(sock):
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("reuse_port not supported by socket module")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError:
        raise ValueError(
            "reuse_port not supported by socket module, "
            "SO_REUSEPORT defined but not implemented."
        )


def _remove_stale_unix_socket(path):
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        # The directory may only allow creating sockets.
        logger.error("Unable to check or remove stale UNIX socket %r: %r", path, err)


class DatagramMixin:
    __slots__ = ()

    def _make_datagram_transport(self, sock, protocol, address=None, waiter=None, extra=None):
        """asyncio's factory: a transport for a bound (and maybe connected)
        non-blocking datagram socket."""
        if extra is None:
            extra = {}
        extra["socket"] = trsock.TransportSocket(sock)
        try:
            extra["sockname"] = sock.getsockname()
        except OSError:
            extra["sockname"] = None
        if "peername" not in extra:
            try:
                extra["peername"] = sock.getpeername()
            except OSError:
                extra["peername"] = None
        return self._dgram_new(sock, protocol, address, waiter, extra, bool(extra["peername"]))

    async def create_datagram_endpoint(self, protocol_factory, local_addr=None,
                                       remote_addr=None, *, family=0, proto=0,
                                       flags=0, reuse_port=None,
                                       allow_broadcast=None, sock=None):
        """Create a datagram endpoint: (transport, protocol)."""
        if sock is not None:
            if _PY313:
                if sock.type == socket.SOCK_STREAM:
                    raise ValueError(f"A datagram socket was expected, got {sock!r}")
            elif sock.type != socket.SOCK_DGRAM:
                raise ValueError(f"A UDP Socket was expected, got {sock!r}")
            given = dict(local_addr=local_addr, remote_addr=remote_addr,
                         family=family, proto=proto, flags=flags,
                         reuse_port=reuse_port, allow_broadcast=allow_broadcast)
            if any(given.values()):
                problems = ", ".join(f"{k}={v}" for k, v in given.items() if v)
                raise ValueError(
                    f"socket modifier keyword arguments can not be used "
                    f"when sock is specified. ({problems})"
                )
            sock.setblocking(False)
            r_addr = None
        else:
            if not (local_addr or remote_addr):
                if family == 0:
                    raise ValueError("unexpected address family")
                pairs = (((family, proto), (None, None)),)
            elif hasattr(socket, "AF_UNIX") and family == socket.AF_UNIX:
                for addr in (local_addr, remote_addr):
                    if addr is not None and not isinstance(addr, str):
                        raise TypeError("string is expected")
                if local_addr and local_addr[0] not in (0, "\x00"):
                    _remove_stale_unix_socket(local_addr)
                pairs = (((family, proto), (local_addr, remote_addr)),)
            else:
                # (family, proto) -> [local address, remote address]
                by_key = {}
                for idx, addr in ((0, local_addr), (1, remote_addr)):
                    if addr is None:
                        continue
                    if not (isinstance(addr, tuple) and len(addr) == 2):
                        raise TypeError("2-tuple is expected")
                    infos = await self._ensure_resolved(
                        addr, family=family, type=socket.SOCK_DGRAM,
                        proto=proto, flags=flags)
                    if not infos:
                        raise OSError("getaddrinfo() returned empty list")
                    for fam, _, pro, _, address in infos:
                        by_key.setdefault((fam, pro), [None, None])[idx] = address
                # Only pairs that have every address asked for.
                pairs = [
                    (key, tuple(both)) for key, both in by_key.items()
                    if not ((local_addr and both[0] is None)
                            or (remote_addr and both[1] is None))
                ]
                if not pairs:
                    raise ValueError("can not get address information")

            errors = []
            for (fam, pro), (local_address, remote_address) in pairs:
                sock = None
                r_addr = None
                try:
                    sock = socket.socket(family=fam, type=socket.SOCK_DGRAM, proto=pro)
                    if reuse_port:
                        _set_reuseport(sock)
                    if allow_broadcast:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                    sock.setblocking(False)
                    if local_addr:
                        sock.bind(local_address)
                    if remote_addr:
                        if not allow_broadcast:
                            # asyncio awaits sock_connect(); a datagram
                            # connect() never waits, so do it directly.
                            sock.connect(remote_address)
                        r_addr = remote_address
                except OSError as exc:
                    if sock is not None:
                        sock.close()
                    errors.append(exc)
                except BaseException:
                    if sock is not None:
                        sock.close()
                    raise
                else:
                    break
            else:
                raise errors[0]

        protocol = protocol_factory()
        waiter = self.create_future()
        transport = self._make_datagram_transport(sock, protocol, r_addr, waiter)
        if self._debug:
            if local_addr:
                logger.info(
                    "Datagram endpoint local_addr=%r remote_addr=%r created: (%r, %r)",
                    local_addr, remote_addr, transport, protocol)
            else:
                logger.debug(
                    "Datagram endpoint remote_addr=%r created: (%r, %r)",
                    remote_addr, transport, protocol)
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        return transport, protocol
