"""Address resolution: getaddrinfo/getnameinfo.  Mixed into ringloop.Loop.

Like asyncio, name resolution runs socket.getaddrinfo/getnameinfo in the
default executor (so /etc/hosts, nsswitch, resolv.conf and gai.conf are
the C library's business, never ours).  Two fast paths skip the executor
round trip when the answer needs no lookup at all:

* getaddrinfo() of a numeric host (an IPv4 or IPv6 literal) with a numeric
  or absent port, for the family/type/proto/flags combinations whose answer
  is fixed.  The result is exactly what socket.getaddrinfo() returns (same
  entries, order, enum types, normalised address text); tests/test_dns.py
  proves it over a large grid.  Anything else (host names, scoped IPv6
  literals, service names, flags such as AI_CANONNAME or AI_ADDRCONFIG, an
  unspecified family without a host, odd protocols) goes to the real
  function in the executor.
* getnameinfo() with NI_NUMERICHOST and NI_NUMERICSERV: no lookup happens,
  so socket.getnameinfo() is called inline.

In debug mode both go through the executor with asyncio's debug logging,
as asyncio does."""
import socket
import sys

from asyncio.log import logger

_AF_INET = socket.AF_INET
_AF_INET6 = getattr(socket, "AF_INET6", None)
_AF_UNSPEC = socket.AF_UNSPEC
_SOCK_STREAM = socket.SOCK_STREAM
_SOCK_DGRAM = socket.SOCK_DGRAM
_SOCK_RAW = socket.SOCK_RAW
_TCP = socket.IPPROTO_TCP
_UDP = socket.IPPROTO_UDP
_FAST_FLAGS = socket.AI_PASSIVE | socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
_AddressFamily = socket.AddressFamily
_SocketKind = socket.SocketKind
_inet_pton = socket.inet_pton
_inet_ntop = socket.inet_ntop
_NUMERIC_NI = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV

# (type, proto) -> the (socktype, proto) entries glibc returns, in order.
_KINDS = {
    (0, 0): ((_SOCK_STREAM, _TCP), (_SOCK_DGRAM, _UDP), (_SOCK_RAW, 0)),
    (0, _TCP): ((_SOCK_STREAM, _TCP),),
    (0, _UDP): ((_SOCK_DGRAM, _UDP),),
    (_SOCK_STREAM, 0): ((_SOCK_STREAM, _TCP),),
    (_SOCK_STREAM, _TCP): ((_SOCK_STREAM, _TCP),),
    (_SOCK_DGRAM, 0): ((_SOCK_DGRAM, _UDP),),
    (_SOCK_DGRAM, _UDP): ((_SOCK_DGRAM, _UDP),),
}


def _numeric_port(port):
    """The port number of a numeric service, 0 for None, else None."""
    if port is None:
        return 0
    if type(port) is int:
        return port if 0 <= port <= 65535 else None
    if type(port) is bytes:
        try:
            port = port.decode("ascii")
        except UnicodeDecodeError:
            return None
    if type(port) is str and 0 < len(port) <= 5 and port.isascii() and port.isdigit():
        n = int(port)
        return n if n <= 65535 else None
    return None


def numeric_addrinfo(host, port, family=0, type=0, proto=0, flags=0):
    """socket.getaddrinfo()'s exact answer for a numeric host, or None when
    only the real function can tell (then call it)."""
    if flags & ~_FAST_FLAGS:
        return None
    kinds = _KINDS.get((type, proto))
    if kinds is None:
        return None
    pnum = _numeric_port(port)
    if pnum is None:
        return None
    if host is None:
        if port is None or family not in (_AF_INET, _AF_INET6):
            return None  # AF_UNSPEC: two families in gai.conf's order
        if family == _AF_INET:
            text = "0.0.0.0" if flags & socket.AI_PASSIVE else "127.0.0.1"
        else:
            text = "::" if flags & socket.AI_PASSIVE else "::1"
        af = family
    else:
        if host.__class__ is bytes:
            try:
                host = host.decode("ascii")
            except UnicodeDecodeError:
                return None
        elif host.__class__ is not str:
            return None
        if not host or not host.isascii() or "%" in host or "\0" in host:
            return None
        try:
            packed = _inet_pton(_AF_INET, host)
            af = _AF_INET
        except OSError:
            if _AF_INET6 is None:
                return None
            try:
                packed = _inet_pton(_AF_INET6, host)
                af = _AF_INET6
            except OSError:
                return None  # a name: the resolver's job
        if family != _AF_UNSPEC and family != af:
            return None  # an error, or AI_V4MAPPED rules: the real thing
        text = _inet_ntop(af, packed)
    if af == _AF_INET:
        sa = (text, pnum)
    else:
        sa = (text, pnum, 0, 0)
    afe = _AddressFamily(af)
    return [(afe, _SocketKind(st), pr, "", sa) for st, pr in kinds]


def ip_address_info(host, port, family, type, proto, flowinfo=0, scopeid=0):
    """For _ensure_resolved: one ready (family, type, proto, '', address)
    when host is already an IP address literal (asyncio skips getaddrinfo
    then, and keeps the host text and flowinfo/scope id as given), else
    None."""
    if host is None or proto not in (0, _TCP, _UDP):
        return None
    if type == _SOCK_STREAM:
        proto = _TCP
    elif type == _SOCK_DGRAM:
        proto = _UDP
    else:
        return None
    if port is None or port == b"" or port == "":
        port = 0
    else:
        try:
            port = int(port)  # a service name ("http") goes to getaddrinfo
        except (TypeError, ValueError):
            return None
    if isinstance(host, bytes):
        host = host.decode("idna")
    if "%" in host:
        return None  # inet_pton does not take a zone index
    if family == _AF_UNSPEC:
        candidates = (_AF_INET, _AF_INET6) if socket.has_ipv6 else (_AF_INET,)
    else:
        candidates = (family,)
    for af in candidates:
        try:
            _inet_pton(af, host)
        except OSError:
            continue
        if socket.has_ipv6 and af == _AF_INET6:
            return af, type, proto, "", (host, port, flowinfo, scopeid)
        return af, type, proto, "", (host, port)
    return None


def _getaddrinfo_logged(loop, host, port, family, type, proto, flags):
    parts = [f"{host}:{port!r}"]
    for name, value in (("family", family), ("type", type), ("proto", proto),
                        ("flags", flags)):
        if value:
            parts.append(f"{name}={value!r}")
    what = ", ".join(parts)
    logger.debug("Get address info %s", what)
    t0 = loop.time()
    infos = socket.getaddrinfo(host, port, family, type, proto, flags)
    dt = loop.time() - t0
    text = f"Getting address info {what} took {dt * 1e3:.3f}ms: {infos!r}"
    if dt >= loop.slow_callback_duration:
        logger.info(text)
    else:
        logger.debug(text)
    return infos


class DnsMixin:
    __slots__ = ()

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        if self._debug:
            return await self.run_in_executor(
                None, _getaddrinfo_logged, self, host, port, family, type, proto, flags
            )
        infos = numeric_addrinfo(host, port, family, type, proto, flags)
        if infos is not None:
            return infos
        return await self.run_in_executor(
            None, socket.getaddrinfo, host, port, family, type, proto, flags
        )

    async def getnameinfo(self, sockaddr, flags=0):
        if not self._debug and (flags & _NUMERIC_NI) == _NUMERIC_NI:
            # Numeric host and service: no lookup, nothing to wait for.
            return socket.getnameinfo(sockaddr, flags)
        return await self.run_in_executor(None, socket.getnameinfo, sockaddr, flags)

    async def _ensure_resolved(self, address, *, family=0, type=socket.SOCK_STREAM,
                               proto=0, flags=0, loop=None):
        host, port = address[:2]
        info = ip_address_info(host, port, family, type, proto, *address[2:])
        if info is not None:
            return [info]
        lp = self if loop is None else loop
        return await lp.getaddrinfo(host, port, family=family, type=type,
                                    proto=proto, flags=flags)


if sys.version_info < (3, 11):  # pragma: no cover - 3.11+ only
    raise ImportError("ringloop needs Python 3.11+")
