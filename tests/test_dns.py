"""getaddrinfo/getnameinfo: the numeric fast path against socket.getaddrinfo.

The equivalence grid: for every host x port x family x type x proto x flags
below, whenever the fast path answers, its answer must be exactly
socket.getaddrinfo()'s (same entries, order, enum types and address text),
and it must never answer where socket.getaddrinfo() raises.  Where it does
not answer, ringloop calls the real function, so that is always right."""
import asyncio
import itertools
import socket
from unittest import mock

import pytest

from conftest import is_ringloop
from ringloop import _dns

AI = socket
HOSTS = [
    None, "127.0.0.1", "0.0.0.0", "255.255.255.255", "1.2.3.4", "10.0.0.1",
    "01.2.3.4", "127.1", "1.2.3", "0x7f.0.0.1", "1.2.3.256", " 1.2.3.4",
    "1.2.3.4 ", "::1", "::", "0:0::1", "::0001", "::ffff:1.2.3.4",
    "::ffff:7f00:1", "fe80::1", "fe80::1%lo", "2001:db8::1", "2001:DB8::A",
    "1::2:3:4:5:6:7", "[::1]", "::1::", "localhost", "", b"127.0.0.1", b"::1",
    "\u0661.2.3.4", "1.2.3.4\0", 123,
]
PORTS = [None, 0, 1, 80, 65535, 65536, -1, 2**40, "80", "080", "0", "",
         "65535", "65536", "99999", "+80", " 80", "http", b"80", b"", True,
         8.0]
FAMILIES = [0, socket.AF_INET, socket.AF_INET6, socket.AF_UNIX]
TYPES = [0, socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_RAW,
         socket.SOCK_SEQPACKET]
PROTOS = [0, socket.IPPROTO_TCP, socket.IPPROTO_UDP, 132, 255]
FLAGS = [0, AI.AI_PASSIVE, AI.AI_NUMERICHOST, AI.AI_NUMERICSERV,
         AI.AI_PASSIVE | AI.AI_NUMERICHOST | AI.AI_NUMERICSERV,
         AI.AI_CANONNAME, AI.AI_ADDRCONFIG, AI.AI_V4MAPPED,
         AI.AI_V4MAPPED | AI.AI_ALL]


def real(*args):
    try:
        return socket.getaddrinfo(*args)
    except (OSError, UnicodeError, TypeError, ValueError, OverflowError) as exc:
        return exc


def shape(infos):
    """Compare also the types (enums, not just equal ints)."""
    return [tuple((type(x).__name__, x) for x in e) for e in infos]


@pytest.mark.timeout_s(300)
def test_equivalence_grid():
    answered = compared = 0
    numeric_common = 0
    for host, port, fam, typ, proto, flags in itertools.product(
            HOSTS, PORTS, FAMILIES, TYPES, PROTOS, FLAGS):
        if isinstance(host, str) and not host.isascii() and fam == 0 and typ == 0:
            pass
        try:
            fast = _dns.numeric_addrinfo(host, port, fam, typ, proto, flags)
        except Exception as exc:  # pragma: no cover - a bug
            pytest.fail(f"fast path raised {exc!r} for {(host, port, fam, typ, proto, flags)!r}")
        if fast is None:
            continue
        answered += 1
        want = real(host, port, fam, typ, proto, flags)
        compared += 1
        args = (host, port, fam, typ, proto, flags)
        assert not isinstance(want, Exception), (
            f"fast path answered {fast!r} where getaddrinfo{args!r} raises {want!r}")
        assert shape(fast) == shape(want), f"getaddrinfo{args!r}"
        if (isinstance(host, str) and port in (0, 80, "80") and flags == 0
                and typ in (0, socket.SOCK_STREAM, socket.SOCK_DGRAM) and proto == 0):
            numeric_common += 1
    # The fast path must cover the common cases, or it is useless.
    assert answered > 2000, answered
    assert numeric_common > 100, numeric_common


@pytest.mark.parametrize("host,port,fam,typ", [
    ("127.0.0.1", 80, 0, 0),
    ("::1", 443, 0, socket.SOCK_STREAM),
    ("0.0.0.0", 0, socket.AF_INET, socket.SOCK_DGRAM),
    (None, 8080, socket.AF_INET6, socket.SOCK_STREAM),
    ("2001:db8::1", "53", 0, socket.SOCK_DGRAM),
])
def test_common_numeric_cases_are_fast(host, port, fam, typ):
    flags = socket.AI_PASSIVE if host is None else 0
    assert _dns.numeric_addrinfo(host, port, fam, typ, 0, flags) == socket.getaddrinfo(
        host, port, fam, typ, 0, flags)


@pytest.mark.parametrize("args", [
    ("localhost", 80), ("fe80::1%lo", 80), ("127.0.0.1", "http"),
    ("127.0.0.1", 80, 0, 0, 0, socket.AI_CANONNAME), (None, 80),
    ("127.1", 80), ("::1", 80, socket.AF_INET),
])
def test_ambiguous_cases_fall_back(args):
    assert _dns.numeric_addrinfo(*args) is None


def test_loop_getaddrinfo_numeric_skips_executor(loop):
    calls = []
    real_gai = socket.getaddrinfo

    def spy(*a, **k):
        calls.append(a)
        return real_gai(*a, **k)

    async def main():
        with mock.patch("socket.getaddrinfo", spy):
            infos = await loop.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)
            named = await loop.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
        return infos, named

    infos, named = loop.run_until_complete(main())
    assert infos == real_gai("127.0.0.1", 80, type=socket.SOCK_STREAM)
    assert named == real_gai("localhost", 80, type=socket.SOCK_STREAM)
    if is_ringloop():
        assert calls == [("localhost", 80, 0, socket.SOCK_STREAM, 0, 0)]


def test_loop_getaddrinfo_errors_propagate(loop):
    async def main():
        with pytest.raises(socket.gaierror):
            await loop.getaddrinfo("::1", 80, family=socket.AF_INET,
                                   flags=socket.AI_NUMERICHOST)
        with pytest.raises(socket.gaierror):
            await loop.getaddrinfo("no-such-host.invalid", 80)

    loop.run_until_complete(main())


def test_loop_getnameinfo(loop):
    async def main():
        a = await loop.getnameinfo(("127.0.0.1", 80),
                                   socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
        b = await loop.getnameinfo(("127.0.0.1", 80), socket.NI_NUMERICSERV)
        return a, b

    a, b = loop.run_until_complete(main())
    assert a == ("127.0.0.1", "80")
    assert b == socket.getnameinfo(("127.0.0.1", 80), socket.NI_NUMERICSERV)


def test_loop_getaddrinfo_debug_mode(loop, caplog):
    loop.set_debug(True)
    try:
        with caplog.at_level("DEBUG", logger="asyncio"):
            infos = loop.run_until_complete(loop.getaddrinfo("127.0.0.1", 80))
    finally:
        loop.set_debug(False)
    assert infos == socket.getaddrinfo("127.0.0.1", 80)
    assert any("Get address info 127.0.0.1:80" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("host,port,fam,typ,proto,extra,expect", [
    ("127.0.0.1", 80, 0, socket.SOCK_STREAM, 0, (),
     (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", 80))),
    ("::0001", "53", 0, socket.SOCK_DGRAM, 0, (1, 2),
     (socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_UDP, "", ("::0001", 53, 1, 2))),
    (b"10.0.0.1", None, socket.AF_INET, socket.SOCK_DGRAM, 0, (),
     (socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP, "", ("10.0.0.1", 0))),
    ("localhost", 80, 0, socket.SOCK_STREAM, 0, (), None),
    ("127.0.0.1", "http", 0, socket.SOCK_STREAM, 0, (), None),
    ("fe80::1%lo", 80, 0, socket.SOCK_STREAM, 0, (), None),
    ("127.0.0.1", 80, 0, 0, 0, (), None),
    ("127.0.0.1", 80, 0, socket.SOCK_STREAM, 132, (), None),
])
def test_ip_address_info_matches_asyncio(host, port, fam, typ, proto, extra, expect):
    from asyncio import base_events
    assert _dns.ip_address_info(host, port, fam, typ, proto, *extra) == expect
    assert base_events._ipaddr_info(host, port, fam, typ, proto, *extra) == expect
