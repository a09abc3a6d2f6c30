"""TCP echo cases: three server styles x message sizes x connection counts.

The server runs in the worker process, on the loop under test, written
against the public asyncio API only (so it runs on asyncio, uvloop and
ringloop alike):

  proto    asyncio.Protocol: data_received() -> transport.write()
  streams  asyncio.start_server: reader.read(64 KiB) -> writer.write(); drain()
  sock     loop.sock_accept / sock_recv(64 KiB) / sock_sendall

The client is benchmarks/c/loadgen (C, epoll, one thread, checks every
echoed byte), started as a child process.  The reference is
benchmarks/c/uring_echo, a minimal C io_uring echo server (the loop named
c-io_uring-ref; it runs in the proto cases, its numbers are the reference
for all three styles of the same size and connection count).

What is measured: loadgen times the round trips (after one untimed round
trip per connection); the server's CPU time over exactly that window is
read from /proc/<pid>/task/*/schedstat (every thread, io_uring workers
included) when loadgen says READY and DONE.  A case returns round trips,
seconds and {"cpu_s": server CPU seconds, "bytes": bytes each way}.

A loop that lacks what a style needs (ringloop before its stream
transports land: create_server) is reported n/a, not failed.  For the sock
style, a loop whose sock_accept is still asyncio's abstract one gets an
add_reader-based accept here (this script only)."""
import asyncio
import os
import socket
import subprocess
import sys
import threading

from cases import CaseFailure, case, check
from loops import Unavailable

READ_SIZE = 65536
LOADGEN_TIMEOUT = 90.0


class CReference:
    """Stands in for a loop: the echo cases run benchmarks/c/uring_echo."""

    backend = "c"

    def close(self):
        pass

    def set_exception_handler(self, handler):
        pass


def c_binaries():
    """Paths of the C tools built by run.py (RINGLOOP_BENCH_CBIN), or
    Unavailable with the reason they could not be built."""
    err = os.environ.get("RINGLOOP_BENCH_CBIN_ERROR")
    if err:
        raise Unavailable(f"C tools not built: {err}")
    d = os.environ.get("RINGLOOP_BENCH_CBIN")
    if not d:
        from cbuild import build_c_tools
        d, err = build_c_tools()
        if err:
            raise Unavailable(f"C tools not built: {err}")
        os.environ["RINGLOOP_BENCH_CBIN"] = d
    return os.path.join(d, "loadgen"), os.path.join(d, "uring_echo")


def cpu_ns(pid):
    """CPU time of every thread of pid so far (ns)."""
    total = 0
    base = f"/proc/{pid}/task"
    for tid in os.listdir(base):
        try:
            with open(f"{base}/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that just ended
    return total


# ---------------------------------------------------------------------------
# the servers


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def _streams_handler(reader, writer):
    try:
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


def _has_native(loop, name):
    return getattr(type(loop), name, None) is not getattr(asyncio.AbstractEventLoop, name)


async def _accept_fallback(loop, lsock):
    """sock_accept through add_reader, for a loop that has no sock_accept
    yet (ringloop before the stream half of issue 5 lands)."""
    while True:
        try:
            return lsock.accept()
        except (BlockingIOError, InterruptedError):
            pass
        fut = loop.create_future()
        loop.add_reader(lsock.fileno(), fut.set_result, None)
        try:
            await fut
        finally:
            loop.remove_reader(lsock.fileno())


class SockServer:
    def __init__(self, loop, lsock):
        self.loop = loop
        self.lsock = lsock
        self.conns = set()
        self.accept = (loop.sock_accept if _has_native(loop, "sock_accept")
                       else lambda s: _accept_fallback(loop, s))
        self.task = loop.create_task(self.accept_loop())

    async def accept_loop(self):
        while True:
            conn, _ = await self.accept(self.lsock)
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conns.add(self.loop.create_task(self.serve(conn)))

    async def serve(self, conn):
        loop = self.loop
        try:
            while True:
                data = await loop.sock_recv(conn, READ_SIZE)
                if not data:
                    break
                await loop.sock_sendall(conn, data)
        finally:
            conn.close()

    async def close(self):
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass
        if self.conns:
            await asyncio.wait(self.conns, timeout=10)


async def start_server(loop, style, lsock, ssl=None):
    """Start serving lsock (over TLS with an SSLContext); return an async
    close function."""
    if style == "sock":
        srv = SockServer(loop, lsock)
        return srv.close
    try:
        if style == "proto":
            server = await loop.create_server(EchoProtocol, sock=lsock, ssl=ssl)
        else:
            server = await asyncio.start_server(_streams_handler, sock=lsock,
                                                limit=2 * READ_SIZE, ssl=ssl)
    except NotImplementedError:
        raise Unavailable(
            f"{type(loop).__name__}.create_server() is not implemented yet "
            f"(the {style} style needs stream transports)") from None

    async def close():
        server.close()
        await server.wait_closed()
    return close


# ---------------------------------------------------------------------------
# one measurement


def _drive_loadgen(proc, server_pid, out):
    """In a thread: wait for READY, sample CPU, say go, wait for DONE,
    sample CPU again."""
    try:
        line = proc.stdout.readline().strip()
        if line != "READY":
            out["error"] = f"loadgen: {line or 'no output'}"
            return
        c0 = cpu_ns(server_pid)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        line = proc.stdout.readline().strip()
        c1 = cpu_ns(server_pid)
        parts = line.split()
        if len(parts) != 4 or parts[0] != "DONE":
            out["error"] = f"loadgen: {line or 'no output'}"
            return
        out["round_trips"] = int(parts[1])
        out["seconds"] = float(parts[2])
        out["bytes"] = int(parts[3])
        out["cpu_s"] = (c1 - c0) * 1e-9
    except Exception as exc:  # noqa: BLE001 - reported by the case
        out["error"] = f"driver: {exc!r}"
    finally:
        try:
            proc.wait(timeout=LOADGEN_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _loadgen(loadgen, port, conns, size, n, mode=None):
    return subprocess.Popen(
        [loadgen, "127.0.0.1", str(port), str(conns), str(size), str(n),
         str(LOADGEN_TIMEOUT)] + ([mode] if mode else []),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def tls_loadgen():
    """benchmarks/c/tls_loadgen (OpenSSL), or Unavailable."""
    loadgen, _ = c_binaries()
    path = os.path.join(os.path.dirname(loadgen), "tls_loadgen")
    if not os.path.exists(path):
        try:
            with open(path + ".error") as f:
                why = f.read().strip()
        except OSError:
            why = "not built"
        raise Unavailable(f"tls_loadgen: {why[-300:]}")
    return path


def server_ssl_context():
    """The TLS server's context: the self-signed certificate CPython's test
    package ships (Lib/test/certdata), default protocol settings (TLS 1.3,
    the client negotiates TLS_AES_256_GCM_SHA384)."""
    import ssl
    try:
        import test
    except ImportError:
        raise Unavailable("no CPython test package (its certdata holds the certificate)")
    d = os.path.join(os.path.dirname(test.__file__), "certdata")
    if not os.path.exists(os.path.join(d, "ssl_cert.pem")):
        raise Unavailable(f"no certificate in {d}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(d, "ssl_cert.pem"), os.path.join(d, "ssl_key.pem"))
    return ctx


def _result(out, n):
    if "error" in out:
        raise CaseFailure(out["error"])
    check(out.get("round_trips") == n, f"loadgen did {out.get('round_trips')} of {n}")
    return out["round_trips"], out["seconds"], {"cpu_s": out["cpu_s"], "bytes": out["bytes"]}


def run_reference(conns, size, n):
    loadgen, server = c_binaries()
    srv = subprocess.Popen([server, "0", str(conns)], stdout=subprocess.PIPE, text=True)
    try:
        line = srv.stdout.readline().split()
        check(len(line) == 2 and line[0] == "PORT", f"uring_echo said {line!r}")
        out = {}
        _drive_loadgen(_loadgen(loadgen, int(line[1]), conns, size, n), srv.pid, out)
        srv.wait(timeout=30)
        check(srv.returncode == 0, f"uring_echo exited with {srv.returncode}")
        return _result(out, n)
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()


def run_echo(loop, style, conns, size, n, tls=None):
    """tls: None (plain TCP), "echo" or "handshake" (tls_loadgen's mode)."""
    if isinstance(loop, CReference):
        return run_reference(conns, size, n)
    if tls:
        loadgen = tls_loadgen()
        sslctx = server_ssl_context()
    else:
        loadgen, _ = c_binaries()
        sslctx = None
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4096)
    lsock.setblocking(False)
    port = lsock.getsockname()[1]
    try:
        close = loop.run_until_complete(start_server(loop, style, lsock, sslctx))
    except BaseException:
        lsock.close()
        raise
    out = {}
    proc = _loadgen(loadgen, port, conns, size, n, tls)
    done = loop.create_future()

    def drive():
        _drive_loadgen(proc, os.getpid(), out)
        try:
            loop.call_soon_threadsafe(done.set_result, None)
        except RuntimeError:
            pass

    th = threading.Thread(target=drive, daemon=True)
    th.start()
    try:
        loop.run_until_complete(done)
    finally:
        th.join(LOADGEN_TIMEOUT + 10)
        loop.run_until_complete(close())
        lsock.close()
    return _result(out, n)


# ---------------------------------------------------------------------------
# registration

STYLES = ("proto", "streams", "sock")
SIZES = {"1k": 1024, "64k": 65536}
CONNS = (1, 10, 100)
# round trips: (default, --quick)
COUNTS = {
    ("1k", 1): (30_000, 8_000), ("1k", 10): (100_000, 25_000), ("1k", 100): (100_000, 25_000),
    ("64k", 1): (6_000, 1_500), ("64k", 10): (12_000, 3_000), ("64k", 100): (12_000, 3_000),
}


def _register():
    for style in STYLES:
        for sname, size in SIZES.items():
            for conns in CONNS:
                full, quick = COUNTS[(sname, conns)]

                def fn(loop, n, style=style, size=size, conns=conns):
                    return run_echo(loop, style, conns, size, max(n, conns))

                fn.__doc__ = (
                    f"TCP echo, {style} style server, {size}-byte messages, {conns} "
                    f"connection(s) ping-ponging; client benchmarks/c/loadgen "
                    f"(checks every byte).  Rate = round trips/s; also server CPU "
                    f"per round trip.")
                case(f"echo_{style}_{sname}_c{conns}", unit="round trips", size=full,
                     quick=quick, warmup=max(conns, quick // 10), group="echo",
                     reference_ok=(style == "proto"),
                     meta={"style": style, "size": size, "conns": conns,
                           "ref_key": f"{sname}_c{conns}"})(fn)


_register()

# TLS (issue 10): the same servers with ssl=, client benchmarks/c/tls_loadgen
TLS_STYLES = ("proto", "streams")
TLS_COUNTS = {
    ("1k", 1): (10_000, 3_000), ("1k", 10): (30_000, 8_000), ("1k", 100): (30_000, 8_000),
    ("64k", 1): (3_000, 800), ("64k", 10): (6_000, 1_500), ("64k", 100): (6_000, 1_500),
}


def _register_tls():
    for style in TLS_STYLES:
        for sname, size in SIZES.items():
            for conns in CONNS:
                full, quick = TLS_COUNTS[(sname, conns)]

                def fn(loop, n, style=style, size=size, conns=conns):
                    return run_echo(loop, style, conns, size, max(n, conns), tls="echo")

                fn.__doc__ = (
                    f"TLS echo (TLS 1.3, AES-256-GCM), {style} style server with ssl=, "
                    f"{size}-byte messages, {conns} connection(s) ping-ponging; client "
                    f"benchmarks/c/tls_loadgen (OpenSSL, checks every byte).  Rate = "
                    f"round trips/s; also server CPU per round trip.")
                case(f"tls_echo_{style}_{sname}_c{conns}", unit="round trips", size=full,
                     quick=quick, warmup=max(conns, quick // 10), group="tls",
                     meta={"style": style, "size": size, "conns": conns,
                           "ref_key": None})(fn)

    def handshake(loop, n):
        return run_echo(loop, "proto", 1, 1024, n, tls="handshake")

    handshake.__doc__ = (
        "TLS handshakes: the client (tls_loadgen) connects, does a full TLS 1.3 "
        "handshake (no resumption), one 1 KiB round trip and close_notify, one "
        "connection at a time; proto style server.  Rate = handshakes/s; also "
        "server CPU per handshake.")
    case("tls_handshake_c1", unit="handshakes", size=2_000, quick=500, warmup=50,
         group="tls", meta={"style": "proto", "size": 1024, "conns": 1,
                            "ref_key": None})(handshake)


_register_tls()


if __name__ == "__main__":  # pragma: no cover - manual check
    import loops
    lp = loops.LOOPS[sys.argv[1]].make()
    print(run_echo(lp, sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])))
    lp.close()
