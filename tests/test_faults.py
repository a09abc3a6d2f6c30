"""Fault injection (issue 13, point 2): what the kernel, signals and peers
can do to a loop mid-flight.  Cases already covered elsewhere are listed in
README.md ("Reliability"); this file holds the rest.

Switches used (src/reactor/, read when a loop is created):
  RINGLOOP_URING_ENTRIES / RINGLOOP_URING_CQ_ENTRIES   tiny SQ/CQ
  RINGLOOP_TEST_URING_ENTER_EAGAIN=N   every Nth io_uring_enter -> -EAGAIN
  RINGLOOP_TEST_SUBMIT_FAIL=N[:E]      every Nth submit() -> -E (ENOMEM)
They are read at loop creation, so each case runs in a child process.
"""
import asyncio
import errno
import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import ringloop
from conftest import BACKEND, is_ringloop, new_loop

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
# the ringloop that pytest imported (in-tree build or CI's installed copy)
RINGLOOP_ROOT = os.path.dirname(os.path.dirname(ringloop.__file__))


def run_child(code, env_extra=None, timeout=120, loop_kind=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([RINGLOOP_ROOT, TESTS_DIR])
    env.pop("RINGLOOP_TEST_TIMEOUT", None)
    if loop_kind is not None:
        env["RINGLOOP_TEST_LOOP"] = loop_kind
    env.update(env_extra or {})
    prelude = "import faulthandler; faulthandler.dump_traceback_later(%d, exit=True)\n" % (timeout - 10)
    r = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                       capture_output=True, text=True, timeout=timeout, env=env)
    return r


def check(r, marker="OK"):
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert marker in r.stdout, out[-4000:]
    for bad in ("Fatal Python error", "Segmentation fault", "AddressSanitizer"):
        assert bad not in out, out[-4000:]
    return r.stdout


ringloop_only = pytest.mark.skipif(not is_ringloop(), reason="ringloop's fault switches")

# ---------------------------------------------------------------------------
# tiny rings: the SQ fills (get_sqe flushes), the CQ overflows (NODROP)

ECHO_CHILD = """
import asyncio, os, sys
import soak
from conftest import new_loop
loop = new_loop()
errs = []
loop.set_exception_handler(lambda l, c: errs.append(c))
sq = None
for fd in os.listdir("/proc/self/fd"):
    try:
        if "io_uring" in os.readlink("/proc/self/fd/" + fd):
            for line in open("/proc/self/fdinfo/" + fd):
                if line.startswith(("SqMask", "CqMask")):
                    print(line.strip())
    except OSError:
        pass
n, size = int(sys.argv[1]) if len(sys.argv) > 1 else %d, %d
checked, _ = loop.run_until_complete(soak.echo_connections(loop, n, size, max_chunk=3000))
assert checked == n * size, checked
checked2 = loop.run_until_complete(soak.streams_echo(loop, 20, 200000))
assert checked2 == 20 * 200000
loop.run_until_complete(soak.udp_pingpong(loop, 200))
loop.close()
assert not errs, errs
print("OK", checked + checked2)
"""


@ringloop_only
@pytest.mark.timeout_s(180)
@pytest.mark.parametrize("env", [
    {"RINGLOOP_URING_ENTRIES": "2", "RINGLOOP_URING_CQ_ENTRIES": "2"},
    {"RINGLOOP_URING_ENTRIES": "4", "RINGLOOP_URING_CQ_ENTRIES": "8",
     "RINGLOOP_TEST_URING_ENTER_EAGAIN": "2"},
    {"RINGLOOP_URING_ENTRIES": "1", "RINGLOOP_TEST_URING_ENTER_EAGAIN": "3",
     "RINGLOOP_TEST_URING_NO_MULTISHOT": "1"},
], ids=["sq2-cq2", "sq4-cq8-eagain2", "sq1-eagain3-nomultishot"])
def test_tiny_ring_echo_delivers_every_byte(env):
    """300 connections x 100 kB echoed (chunks of 1..3000 bytes), a streams
    echo and UDP through a ring of 1-4 SQEs and 2-8 CQEs, with io_uring_enter
    refusing every 2nd/3rd time: every byte arrives, nothing is reported."""
    out = check(run_child(ECHO_CHILD % (300, 100_000), env, timeout=170))
    if BACKEND == "io_uring":
        sq = int(env["RINGLOOP_URING_ENTRIES"])
        assert f"SqMask:\t{hex(max(sq, 1) - 1)}" in out or \
            f"SqMask: {hex(max(sq, 1) - 1)}" in out, out


# ---------------------------------------------------------------------------
# submit() refusing ops (ENOMEM / EAGAIN from submission)

SUBMIT_FAIL_CHILD = """
import asyncio, errno, os, sys
import soak
from conftest import new_loop

class Server(asyncio.Protocol):
    errors = []
    def connection_made(self, tr): self.tr = tr
    def data_received(self, d): self.tr.write(d)
    def eof_received(self):
        return None  # closes once the echo is sent (wait_closed waits for it from 3.12 on)
    def connection_lost(self, exc):
        if exc is not None: Server.errors.append(exc)

class Client(asyncio.Protocol):
    def __init__(self, payload, fut):
        self.payload, self.fut, self.got = payload, fut, bytearray()
    def connection_made(self, tr):
        for i in range(0, len(self.payload), 1000):
            tr.write(self.payload[i:i + 1000])
        tr.write_eof()
    def data_received(self, d): self.got += d
    def connection_lost(self, exc):
        if not self.fut.done():
            self.fut.set_result((exc, bytes(self.got)))

loop = new_loop()
handler_calls = []
loop.set_exception_handler(lambda l, c: handler_calls.append(c))
stats = {"ok": 0, "client_err": 0, "short": 0, "server_start_err": 0}
want = int(os.environ["FAULT_ERRNO"])

async def main():
    srv = None
    for _ in range(50):
        try:
            srv = await loop.create_server(Server, "127.0.0.1", 0, backlog=512)
            break
        except OSError as e:
            assert e.errno == want, e
            stats["server_start_err"] += 1
    port = srv.sockets[0].getsockname()[1]
    async def one(i):
        payload = os.urandom(20000)
        fut = loop.create_future()
        try:
            tr, _ = await loop.create_connection(lambda: Client(payload, fut), "127.0.0.1", port)
        except OSError as e:
            assert e.errno == want, e
            stats["client_err"] += 1
            return
        try:
            exc, got = await asyncio.wait_for(fut, 60)
        finally:
            tr.close()
        if exc is not None:
            assert isinstance(exc, OSError), exc
            stats["client_err"] += 1
        elif got == payload:
            stats["ok"] += 1
        else:
            assert payload.startswith(got), "bytes corrupted"
            stats["short"] += 1
    await asyncio.gather(*(one(i) for i in range(200)))
    srv.close()
    await srv.wait_closed()

loop.run_until_complete(main())
loop.close()
# every connection that ended early is explained by an error someone saw
server_errs = [e for e in Server.errors if isinstance(e, OSError)]
assert all(e.errno in (want, errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN) for e in server_errs), server_errs
assert stats["short"] <= len(server_errs) + len(handler_calls), (stats, server_errs, handler_calls)
print("STATS", stats, "server_errors", len(server_errs), "handler", len(handler_calls))
# a loop made without the switch works normally in the same process
del os.environ["RINGLOOP_TEST_SUBMIT_FAIL"]
loop = new_loop()
checked, _ = loop.run_until_complete(soak.echo_connections(loop, 20, 50000))
assert checked == 20 * 50000
loop.close()
print("OK")
"""


@ringloop_only
@pytest.mark.timeout_s(180)
@pytest.mark.parametrize("spec", ["7:ENOMEM", "13:EAGAIN", "2:ENOMEM"])
def test_submit_failures_surface_as_errors(spec):
    """Every Nth op submission refused: each of 200 echo connections either
    delivers every byte or ends with an OSError that some side saw (never a
    corrupted stream, a hang or a crash), and the process can go on."""
    name = spec.split(":")[1]
    r = run_child(SUBMIT_FAIL_CHILD, {"RINGLOOP_TEST_SUBMIT_FAIL": spec,
                                      "FAULT_ERRNO": str(getattr(errno, name))},
                  timeout=170)
    out = check(r)
    stats = eval(out.split("STATS", 1)[1].split("server_errors")[0])
    faults = stats["client_err"] + stats["short"] + stats["server_start_err"] + \
        int(out.split("server_errors")[1].split()[0])
    assert faults > 0, out  # the switch did inject something


# ---------------------------------------------------------------------------
# EINTR: a signal storm during I/O, sleeps, executor jobs and sock_* ops

@pytest.mark.timeout_s(120)
def test_signal_storm_during_io_and_sleeps(loop):
    hits = [0]

    def on_alarm(signum, frame):
        hits[0] += 1

    import soak
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
    try:
        async def sleeps():
            for d in (0.001, 0.01, 0.05, 0.1):
                t0 = time.monotonic()
                await asyncio.sleep(d)
                assert time.monotonic() - t0 >= d * 0.999

        async def sockops():
            a, b = socket.socketpair()
            a.setblocking(False)
            b.setblocking(False)
            try:
                payload = os.urandom(1 << 20)
                rx = bytearray()

                async def reader():
                    while len(rx) < len(payload):
                        d = await loop.sock_recv(b, 65536)
                        assert d
                        rx.extend(d)

                await asyncio.gather(loop.sock_sendall(a, payload), reader())
                assert bytes(rx) == payload
            finally:
                a.close()
                b.close()

        async def main():
            r = await asyncio.gather(
                soak.echo_connections(loop, 50, 200_000, max_chunk=5000),
                soak.streams_echo(loop, 5, 300_000),
                sleeps(), sockops(),
                loop.run_in_executor(None, time.sleep, 0.2),
            )
            return r[0][0]

        checked = loop.run_until_complete(main())
        assert checked == 50 * 200_000
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, old)
    assert hits[0] > 10  # the storm really happened


# ---------------------------------------------------------------------------
# peers that reset mid-read and mid-write; half-close both ways

def _rst(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class _Rec(asyncio.Protocol):
    def __init__(self, loop):
        self.lost = loop.create_future()
        self.got = bytearray()
        self.eof = False

    def connection_made(self, tr):
        self.tr = tr

    def data_received(self, d):
        self.got += d

    def eof_received(self):
        self.eof = True
        return True

    def connection_lost(self, exc):
        self.lost.set_result(exc)


def test_reset_mid_read(loop):
    """The peer sends half a message then resets: the data already read is
    delivered, then connection_lost(ConnectionResetError), as asyncio."""
    async def main():
        lsock = socket.create_server(("127.0.0.1", 0))
        c = socket.create_connection(lsock.getsockname())
        s, _ = lsock.accept()
        lsock.close()
        s.setblocking(False)
        tr, pr = await loop.connect_accepted_socket(lambda: _Rec(loop), s)
        c.sendall(b"a" * 1000)
        while len(pr.got) < 1000:
            await asyncio.sleep(0.005)
        _rst(c)
        exc = await asyncio.wait_for(pr.lost, 30)
        assert bytes(pr.got) == b"a" * 1000
        assert isinstance(exc, ConnectionResetError), exc
        assert not pr.eof
        tr.close()

    loop.run_until_complete(main())


def test_reset_mid_write(loop):
    """We write 16 MiB to a peer that reads a little then resets: the write
    fails with ConnectionResetError/BrokenPipeError in connection_lost,
    never silently, and the transport is closed."""
    async def main():
        lsock = socket.create_server(("127.0.0.1", 0))
        c = socket.create_connection(lsock.getsockname())
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s, _ = lsock.accept()
        lsock.close()
        s.setblocking(False)
        tr, pr = await loop.connect_accepted_socket(lambda: _Rec(loop), s)
        tr.write(b"x" * (16 << 20))
        await asyncio.sleep(0.05)
        c.recv(1000)
        _rst(c)
        tr.write(b"more")
        exc = await asyncio.wait_for(pr.lost, 30)
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError)), exc
        assert tr.is_closing()

    loop.run_until_complete(main())


def test_half_close_both_ways(loop):
    """Client EOF first, server keeps writing; then the reverse: each side
    reads everything after the other's EOF."""
    async def one(client_first):
        srv_pr = []

        def factory():
            p = _Rec(loop)
            srv_pr.append(p)
            return p

        srv = await loop.create_server(factory, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        ctr, cpr = await loop.create_connection(lambda: _Rec(loop), "127.0.0.1", port)
        while not srv_pr:
            await asyncio.sleep(0.001)
        sp = srv_pr[0]
        first, first_pr, second, second_pr = (
            (ctr, cpr, sp.tr, sp) if client_first else (sp.tr, sp, ctr, cpr))
        first.write(b"1" * 100_000)
        first.write_eof()
        while not second_pr.eof:
            await asyncio.sleep(0.001)
        # the side that got EOF can still write, and the other side reads it
        second.write(b"2" * 300_000)
        second.write_eof()
        while not first_pr.eof:
            await asyncio.sleep(0.001)
        assert bytes(second_pr.got) == b"1" * 100_000
        assert bytes(first_pr.got) == b"2" * 300_000
        ctr.close()
        sp.tr.close()
        assert await cpr.lost is None
        assert await sp.lost is None
        srv.close()
        await srv.wait_closed()

    loop.run_until_complete(one(True))
    loop.run_until_complete(one(False))


# ---------------------------------------------------------------------------
# EMFILE on connect (accept: test_tcp.py::test_accept_emfile_pauses_then_serves)

EMFILE_CHILD = """
import asyncio, resource, socket, errno, os
from conftest import new_loop
loop = new_loop()
lsock = socket.create_server(("127.0.0.1", 0), backlog=100)
addr = lsock.getsockname()
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 2, hard))
async def main():
    held, errs = [], []
    for i in range(10):
        try:
            tr, _ = await loop.create_connection(asyncio.Protocol, *addr)
            held.append(tr)
        except OSError as e:
            errs.append(e.errno)
    r = []
    for i in range(3):
        try:
            s = socket.socket()
        except OSError as e:
            r.append(("socket", e.errno))
            continue
        s.setblocking(False)
        try:
            await loop.sock_connect(s, addr)
            r.append("ok")
        except OSError as e:
            r.append(e.errno)
        finally:
            s.close()
    for tr in held:
        tr.close()
    await asyncio.sleep(0)
    return len(held), sorted(set(errs)), r
held, errs, r = loop.run_until_complete(main())
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
# the loop works again once fds are available
async def after():
    tr, _ = await loop.create_connection(asyncio.Protocol, *addr)
    tr.close()
    await asyncio.sleep(0)
loop.run_until_complete(after())
loop.close()
lsock.close()
print("OK", held > 0, errs, r)
"""


def test_emfile_on_connect_matches_asyncio():
    """RLIMIT_NOFILE lowered in a child: create_connection raises
    OSError(EMFILE) like asyncio's, and the loop recovers."""
    ours = check(run_child(EMFILE_CHILD))
    theirs = check(run_child(EMFILE_CHILD, loop_kind="asyncio"))
    assert f"[{errno.EMFILE}]" in ours, ours
    assert ours.split("OK", 1)[1] == theirs.split("OK", 1)[1], (ours, theirs)


# ---------------------------------------------------------------------------
# closing the loop with pending timers, executor jobs and sock_* ops
# (pending reads/writes on transports: test_tcp.py::test_loop_closed_with_live_transports)

CLOSE_PENDING_CHILD = """
import asyncio, gc, os, socket, threading, time, warnings
from conftest import new_loop
warnings.simplefilter("always")
fds0 = len(os.listdir("/proc/self/fd"))
loop = new_loop()
a, b = socket.socketpair()
a.setblocking(False); b.setblocking(False)
c, d = socket.socketpair()
c.setblocking(False); d.setblocking(False)
c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
lsock = socket.create_server(("127.0.0.1", 0)); lsock.setblocking(False)
release = threading.Event()
async def main():
    loop.call_later(3600, print, "never")
    loop.call_at(loop.time() + 0.001, lambda: None)
    job = loop.run_in_executor(None, release.wait)
    pend = [loop.create_task(loop.sock_recv(a, 100)),
            loop.create_task(loop.sock_recv_into(a, bytearray(10))),
            loop.create_task(loop.sock_sendall(c, b"x" * (8 << 20))),
            loop.create_task(loop.sock_accept(lsock)),
            loop.create_task(asyncio.sleep(3600))]
    await asyncio.sleep(0.05)
    return job, pend
job, pend = loop.run_until_complete(main())
loop.close()
release.set()
assert loop.is_closed()
del pend, job
gc.collect()
for s in (a, b, c, d, lsock):
    s.close()
# the executor thread ends; nothing left open
import concurrent.futures
time.sleep(0.1)
gc.collect()
print("OK", len(os.listdir("/proc/self/fd")) - fds0)
"""


def test_close_loop_with_pending_timers_executor_and_sockops():
    out = check(run_child(CLOSE_PENDING_CHILD))
    assert out.split()[-1] == "0", out  # no fd left behind
    theirs = check(run_child(CLOSE_PENDING_CHILD, loop_kind="asyncio"))
    assert theirs.split()[-1] == "0", theirs


# ---------------------------------------------------------------------------
# loops, transports and servers collected unclosed: asyncio's warnings

GC_CHILD = """
import asyncio, gc, os, socket, warnings
from conftest import new_loop
got = []
warnings.showwarning = lambda m, c, *a, **k: got.append((c.__name__, str(m).split(" <")[0].split(":")[0]))
warnings.simplefilter("always")
fds0 = len(os.listdir("/proc/self/fd"))
def make():
    loop = new_loop()
    async def main():
        srv = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        addr = srv.sockets[0].getsockname()
        tr, _ = await loop.create_connection(asyncio.Protocol, *addr)
        u, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        await asyncio.sleep(0.01)
        return srv, tr, u
    return loop, loop.run_until_complete(main())
loop, objs = make()
del loop, objs
for _ in range(3):
    gc.collect()
print("OK", sorted(set(got)), len(os.listdir("/proc/self/fd")) - fds0)
"""


def test_gc_of_unclosed_loop_transports_server_warns_like_asyncio():
    ours = check(run_child(GC_CHILD))
    theirs = check(run_child(GC_CHILD, loop_kind="asyncio"))
    assert "unclosed event loop" in ours, ours
    assert "unclosed transport" in ours, ours
    # same warnings as stock asyncio
    assert ours.split("OK", 1)[1].rsplit(" ", 1)[0] == theirs.split("OK", 1)[1].rsplit(" ", 1)[0], (ours, theirs)
    assert ours.split()[-1] == "0", ours  # every fd closed by the collection


# ---------------------------------------------------------------------------
# KeyboardInterrupt from data_received (callbacks, run_forever, task steps:
# test_callbacks.py, test_lifecycle.py, test_core_safety.py)

def test_keyboard_interrupt_in_data_received_propagates(loop):
    class P(asyncio.Protocol):
        calls = 0

        def data_received(self, d):
            P.calls += 1
            if P.calls == 1:
                raise KeyboardInterrupt

    async def setup():
        srv = await loop.create_server(P, "127.0.0.1", 0)
        c = socket.create_connection(srv.sockets[0].getsockname())
        return srv, c

    srv, c = loop.run_until_complete(setup())
    try:
        c.sendall(b"boom")
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(asyncio.sleep(30))
        assert P.calls == 1
        # the loop is usable afterwards and the connection still reads
        c.sendall(b"again")

        async def wait_calls():
            while P.calls < 2:
                await asyncio.sleep(0.005)

        loop.run_until_complete(asyncio.wait_for(wait_calls(), 30))
    finally:
        c.close()
        srv.close()
        loop.run_until_complete(srv.wait_closed())
