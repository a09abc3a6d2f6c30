"""Soak: a mixed workload on ringloop, checking that every byte arrives and
that RSS and open fds stay flat (issue 13, point 5).

    python tests/soak.py [--minutes N | --seconds S] [--backend io_uring|epoll]

Each round runs, concurrently: a protocol echo over many TCP connections
(random chunk sizes, every byte compared), an asyncio-streams echo, a UDP
ping-pong (every datagram compared), a timer burst (order checked), tasks
created and cancelled, and call_soon_threadsafe from several threads.
After a warm-up the RSS and fd count are sampled after each round; the run
fails if a byte is lost or corrupted, if the fd count at the end differs
from the one after warm-up, or if RSS grew by more than --rss-slack-mib
over the run.  The workload helpers are also used by tests/test_faults.py
and tests/test_hostile.py (run in child processes under fault switches).
"""
import argparse
import asyncio
import hashlib
import os
import random
import socket
import sys
import threading
import time


def _ringloop():
    import ringloop
    return ringloop


# ---------------------------------------------------------------------------
# workload pieces (each checks its own results and raises AssertionError)

class _EchoServer(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):
        # Falsy: the transport closes itself once what was echoed is sent.
        # (Keeping it half-open would leave it open after the client goes:
        # Server.wait_closed() waits for it from 3.12 on, on every loop.)
        return None


class _EchoClient(asyncio.Protocol):
    def __init__(self, loop, payload, rng, max_chunk):
        self.payload = payload
        self.rng = rng
        self.max_chunk = max_chunk
        self.got = bytearray()
        self.done = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        p = self.payload
        i = 0
        while i < len(p):
            n = self.rng.randint(1, self.max_chunk)
            transport.write(p[i:i + n])
            i += n
        transport.write_eof()

    def data_received(self, data):
        self.got += data

    def eof_received(self):
        return None  # both sides have sent EOF: the transport closes

    def connection_lost(self, exc):
        if not self.done.done():
            if exc is not None:
                self.done.set_exception(exc)
            else:
                self.done.set_result(bytes(self.got))


async def echo_connections(loop, nconn, nbytes, max_chunk=65536, seed=0,
                           tolerate=()):
    """nconn concurrent TCP connections each echoing nbytes of random data
    through a protocol server.  Returns (bytes checked, errors tolerated)."""
    rng = random.Random(seed)
    server = await loop.create_server(_EchoServer, "127.0.0.1", 0,
                                      backlog=min(nconn, 4096))
    port = server.sockets[0].getsockname()[1]
    checked = 0
    tolerated = []

    async def one(i):
        nonlocal checked
        payload = rng.randbytes(nbytes)
        try:
            tr, pr = await loop.create_connection(
                lambda: _EchoClient(loop, payload, random.Random(i), max_chunk),
                "127.0.0.1", port)
            try:
                got = await pr.done
            finally:
                tr.close()
        except tolerate as e:
            tolerated.append(e)
            return
        assert len(got) == len(payload), (i, len(got), len(payload))
        assert got == payload, f"connection {i}: bytes differ"
        checked += len(got)

    try:
        await asyncio.gather(*(one(i) for i in range(nconn)))
    finally:
        server.close()
        await server.wait_closed()
    return checked, tolerated


async def streams_echo(loop, nconn, nbytes, seed=1):
    rng = random.Random(seed)

    async def handle(reader, writer):
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    checked = 0

    async def one():
        nonlocal checked
        payload = rng.randbytes(nbytes)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        async def send():
            for i in range(0, len(payload), 4096):
                writer.write(payload[i:i + 4096])
                await writer.drain()
            writer.write_eof()

        sender = asyncio.ensure_future(send())
        got = await reader.read()
        await sender
        writer.close()
        await writer.wait_closed()
        assert got == payload, "streams echo: bytes differ"
        checked += len(got)

    try:
        await asyncio.gather(*(one() for _ in range(nconn)))
    finally:
        server.close()
        await server.wait_closed()
    return checked


class _UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


class _UdpClient(asyncio.DatagramProtocol):
    def __init__(self, loop):
        self.q = asyncio.Queue()

    def datagram_received(self, data, addr):
        self.q.put_nowait(data)


async def udp_pingpong(loop, count, seed=2):
    """count datagrams, one in flight at a time (loopback UDP may drop under
    a burst; one at a time it does not), each compared."""
    rng = random.Random(seed)
    st, _ = await loop.create_datagram_endpoint(
        _UdpEcho, local_addr=("127.0.0.1", 0))
    addr = st.get_extra_info("sockname")
    ct, cp = await loop.create_datagram_endpoint(
        lambda: _UdpClient(loop), remote_addr=addr)
    checked = 0
    try:
        for _ in range(count):
            d = rng.randbytes(rng.randint(1, 1400))
            ct.sendto(d)
            got = await asyncio.wait_for(cp.q.get(), 30)
            assert got == d, "udp: datagram differs"
            checked += len(d)
    finally:
        ct.close()
        st.close()
    return checked


async def timers_burst(loop, count, seed=3):
    rng = random.Random(seed)
    fired = []
    done = loop.create_future()
    delays = sorted(rng.random() * 0.05 for _ in range(count))
    for i, d in enumerate(delays):
        loop.call_later(d, fired.append, i)
    cancelled = [loop.call_later(1000, fired.append, -1) for _ in range(count)]
    for h in cancelled:
        h.cancel()
    loop.call_later(0.06, done.set_result, None)
    await done
    assert fired == list(range(count)), "timers fired out of order or lost"
    return count


async def tasks_churn(loop, count):
    async def sleeper():
        await asyncio.sleep(10)

    async def quick(i):
        await asyncio.sleep(0)
        return i

    tasks = [loop.create_task(sleeper()) for _ in range(count)]
    results = await asyncio.gather(*(quick(i) for i in range(count)))
    assert results == list(range(count))
    for t in tasks:
        t.cancel()
    res = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in res)
    return count


async def threadsafe_calls(loop, nthreads, per_thread):
    got = []
    done = loop.create_future()
    total = nthreads * per_thread

    def cb(x):
        got.append(x)
        if len(got) == total and not done.done():
            done.set_result(None)

    def worker(t):
        for i in range(per_thread):
            loop.call_soon_threadsafe(cb, (t, i))

    threads = [threading.Thread(target=worker, args=(t,))
               for t in range(nthreads)]
    for th in threads:
        th.start()
    try:
        await asyncio.wait_for(done, 60)
    finally:
        for th in threads:
            th.join()
    for t in range(nthreads):
        mine = [i for (tt, i) in got if tt == t]
        assert mine == list(range(per_thread)), "threadsafe calls lost/reordered"
    return total


async def mixed_round(loop, scale=1, seed=0):
    """One round of everything at once.  Returns the bytes checked."""
    res = await asyncio.gather(
        echo_connections(loop, 20 * scale, 64 * 1024, seed=seed),
        streams_echo(loop, 5 * scale, 128 * 1024, seed=seed + 1),
        udp_pingpong(loop, 100 * scale, seed=seed + 2),
        timers_burst(loop, 200 * scale, seed=seed + 3),
        tasks_churn(loop, 200 * scale),
        threadsafe_calls(loop, 4, 250 * scale),
    )
    return res[0][0] + res[1] + res[2]


# ---------------------------------------------------------------------------
# measurement

def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def nfds():
    return len(os.listdir("/proc/self/fd"))


def soak(seconds, backend=None, rss_slack_mib=16, out=sys.stdout):
    if backend:
        os.environ["RINGLOOP_BACKEND"] = backend
    ringloop = _ringloop()
    loop = ringloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        total = 0
        rounds = 0
        # warm-up: free lists, executor threads, allocator arenas
        for i in range(3):
            total += loop.run_until_complete(mixed_round(loop, seed=1000 + i))
        import gc
        gc.collect()
        rss0, fds0 = rss_kib(), nfds()
        rss_max = rss0
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            total += loop.run_until_complete(mixed_round(loop, seed=rounds))
            rounds += 1
            gc.collect()
            rss_max = max(rss_max, rss_kib())
        gc.collect()
        rss1, fds1 = rss_kib(), nfds()
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        asyncio.set_event_loop(None)
    kind = getattr(loop, "_backend", None) or os.environ.get("RINGLOOP_BACKEND", "auto")
    drift = rss1 - rss0
    print(f"soak[{kind}]: {rounds} rounds in {time.monotonic() - t0:.0f} s, "
          f"{total / 1e6:.1f} MB checked, RSS {rss0} -> {rss1} KiB "
          f"(drift {drift:+d} KiB, max {rss_max}), fds {fds0} -> {fds1}",
          file=out, flush=True)
    ok = True
    if fds1 != fds0:
        print(f"soak: FAIL: open fds went from {fds0} to {fds1}", file=out)
        ok = False
    if drift > rss_slack_mib * 1024:
        print(f"soak: FAIL: RSS grew {drift} KiB (> {rss_slack_mib} MiB)",
              file=out)
        ok = False
    if rounds == 0:
        print("soak: FAIL: no round completed", file=out)
        ok = False
    return ok


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float)
    ap.add_argument("--seconds", type=float, default=90)
    ap.add_argument("--backend", choices=["io_uring", "epoll", "auto"])
    ap.add_argument("--rss-slack-mib", type=float, default=16)
    a = ap.parse_args(argv)
    seconds = a.minutes * 60 if a.minutes is not None else a.seconds
    return 0 if soak(seconds, a.backend, a.rss_slack_mib) else 1


if __name__ == "__main__":
    sys.exit(main())
