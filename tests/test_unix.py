"""Unix stream sockets: create_unix_server/create_unix_connection, abstract
names, sock=, cleanup_socket (3.13), sock_connect/sock_accept on AF_UNIX,
connect_accepted_socket on a socketpair."""
import asyncio
import os
import socket
import stat
import sys

import pytest

from netutil import Echo, Recorder, until

PY313 = sys.version_info >= (3, 13)


def run(loop, coro, timeout=30):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def test_unix_server_and_connection(loop, tmp_path):
    path = str(tmp_path / "s.sock")

    async def main():
        srv = await loop.create_unix_server(Echo, path)
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        async with srv:
            assert srv.sockets[0].family == socket.AF_UNIX
            tr, pr = await loop.create_unix_connection(lambda: Recorder(loop), path)
            assert isinstance(tr, asyncio.Transport)
            assert tr.get_extra_info("peername") == path
            assert tr.get_extra_info("sockname") == ""
            assert tr.get_extra_info("socket").family == socket.AF_UNIX
            tr.write(b"unix!")
            await until(lambda: pr.data == b"unix!")
            tr.write_eof()
            assert await pr.eof == b"unix!"
            assert await pr.lost is None
        await srv.wait_closed()
        # 3.13 removes the socket file when the server closes
        assert os.path.exists(path) == (not PY313)

    run(loop, main())


def test_unix_server_pathlike_and_stale_socket(loop, tmp_path):
    path = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()  # a stale socket file stays behind

    async def main():
        srv = await loop.create_unix_server(Echo, path)  # removed and rebound
        async with srv:
            r, w = await asyncio.open_unix_connection(path)
            w.write(b"ping")
            assert await r.readexactly(4) == b"ping"
            w.close()
            await w.wait_closed()

    run(loop, main())


def test_unix_server_path_in_use(loop, tmp_path):
    path = str(tmp_path / "busy.sock")

    async def main():
        srv = await loop.create_unix_server(Echo, path)
        async with srv:
            with open(path + ".txt", "w"):
                pass
            # a regular file where the socket should go is not removed
            with pytest.raises(OSError):
                await loop.create_unix_server(Echo, path + ".txt")

    run(loop, main())


def test_unix_abstract_name(loop):
    name = f"\0ringloop-test-{os.getpid()}-{id(loop)}"

    async def main():
        srv = await loop.create_unix_server(Echo, name)
        async with srv:
            tr, pr = await loop.create_unix_connection(lambda: Recorder(loop), name)
            tr.write(b"abstract")
            await until(lambda: pr.data == b"abstract")
            assert tr.get_extra_info("peername") == name.encode()
            tr.close()
            await pr.lost

    run(loop, main())


def test_unix_server_sock_and_cleanup_socket(loop, tmp_path):
    path = str(tmp_path / "given.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)

    async def main():
        kw = {"cleanup_socket": False} if PY313 else {}
        srv = await loop.create_unix_server(Echo, sock=sock, **kw)
        async with srv:
            r, w = await asyncio.open_unix_connection(path)
            w.write(b"x")
            assert await r.readexactly(1) == b"x"
            w.close()
            await w.wait_closed()
        assert os.path.exists(path)
        if not PY313:
            with pytest.raises(TypeError):
                await loop.create_unix_server(Echo, path + "2", cleanup_socket=True)

    run(loop, main())
    assert sock.fileno() == -1


def test_unix_wrong_socket_kinds(loop):
    async def main():
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as d:
            with pytest.raises(ValueError, match="UNIX Domain Stream Socket"):
                await loop.create_unix_connection(asyncio.Protocol, sock=d)
            with pytest.raises(ValueError, match="UNIX Domain Stream Socket"):
                await loop.create_unix_server(asyncio.Protocol, sock=d)
        with pytest.raises(ValueError):
            await loop.create_unix_connection(asyncio.Protocol)
        with pytest.raises(ValueError):
            await loop.create_unix_server(asyncio.Protocol)

    run(loop, main())


def test_unix_connect_missing_path(loop, tmp_path):
    async def main():
        with pytest.raises(FileNotFoundError):
            await loop.create_unix_connection(asyncio.Protocol, str(tmp_path / "none"))

    run(loop, main())


def test_unix_connection_refused(loop, tmp_path):
    path = str(tmp_path / "refused.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)  # bound, not listening

    async def main():
        with pytest.raises(ConnectionRefusedError):
            await loop.create_unix_connection(asyncio.Protocol, path)

    try:
        run(loop, main())
    finally:
        s.close()


def test_unix_sock_connect_accept(loop, tmp_path):
    path = str(tmp_path / "ops.sock")

    async def main():
        with socket.socket(socket.AF_UNIX) as lsock:
            lsock.bind(path)
            lsock.listen(1)
            lsock.setblocking(False)
            c = socket.socket(socket.AF_UNIX)
            c.setblocking(False)
            acc = asyncio.ensure_future(loop.sock_accept(lsock))
            await loop.sock_connect(c, path)
            conn, addr = await acc
            with c, conn:
                assert addr == ""  # an unnamed client
                assert conn.family == socket.AF_UNIX
                c.send(b"u")
                await until(lambda: _peek(conn))

    run(loop, main())


def _peek(s):
    try:
        return s.recv(1, socket.MSG_PEEK) == b"u"
    except BlockingIOError:
        return False


def test_socketpair_connect_accepted_socket(loop):
    async def main():
        a, b = socket.socketpair()
        with b:
            tr, pr = await loop.connect_accepted_socket(lambda: Recorder(loop), a)
            b.sendall(b"pair")
            await until(lambda: pr.data == b"pair")
            tr.write(b"back")
            b.settimeout(5)
            assert b.recv(10) == b"back"
            b.shutdown(socket.SHUT_WR)
            await pr.eof
            assert await pr.lost is None
            assert a.fileno() == -1
            # a Unix socket has no TCP_NODELAY: made without error
            assert tr.get_extra_info("socket").family == socket.AF_UNIX

    run(loop, main())


def test_unix_many_clients_and_big_transfer(loop, tmp_path):
    path = str(tmp_path / "big.sock")
    payload = os.urandom(3 << 20)

    async def main():
        srv = await loop.create_unix_server(Echo, path)
        async with srv:
            async def one():
                r, w = await asyncio.open_unix_connection(path)
                w.write(payload)
                w.write_eof()
                got = await r.read()
                w.close()
                await w.wait_closed()
                return got

            results = await asyncio.gather(*[one() for _ in range(8)])
            assert all(x == payload for x in results)

    run(loop, main(), timeout=60)
