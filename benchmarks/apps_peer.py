"""The other side of the application cases (benchmarks/apps.py), run as a
separate process so that it is never on the loop under test.

    apps_peer.py wsclient PORT CONNS SIZE N     websocket echo client
    apps_peer.py httpserver                     HTTP/1.1 keep-alive server

Both run on uvloop when it is installed (the fastest peer we have, so the
measured side is the bottleneck as far as 2 cores allow), else on stock
asyncio; the choice is printed on stderr.

wsclient: opens CONNS websocket connections (no compression offered), says
READY, waits for "go" on stdin, then each connection ping-pongs one binary
message of SIZE bytes at a time until N messages were echoed in total, and
says "DONE n seconds bytes p50_us p99_us".  Every echoed frame is compared
byte for byte with the frame a correct server sends (0x82, the length, the
payload: messages differ per connection and per round).

httpserver: listens on 127.0.0.1 (an ephemeral port), says "PORT p", and
answers every GET with the response that apps.expected_client_response()
describes (RINGLOOP_BENCH_BREAK=1: one byte of the body wrong)."""
import asyncio
import base64
import os
import random
import statistics
import sys
import time


def new_loop():
    try:
        import uvloop
        sys.stderr.write("peer loop: uvloop\n")
        return uvloop.new_event_loop()
    except ImportError:
        sys.stderr.write("peer loop: asyncio\n")
        return asyncio.new_event_loop()


# ---------------------------------------------------------------------------
# websocket client

POOL = random.Random(1234).randbytes(1 << 16)
MASK = b"\x11\x22\x33\x44"


def ws_payload(conn, rnd, size):
    off = (conn * 7919 + rnd * 104729) % (len(POOL) - size)
    return POOL[off:off + size]


def ws_frame_header(size, masked):
    mbit = 0x80 if masked else 0
    if size < 126:
        return bytes((0x82, mbit | size))
    if size < 65536:
        return bytes((0x82, mbit | 126)) + size.to_bytes(2, "big")
    return bytes((0x82, mbit | 127)) + size.to_bytes(8, "big")


def ws_mask(payload):
    m = (MASK * (len(payload) // 4 + 1))[:len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(m, "big")).to_bytes(len(payload), "big")


class WsConn(asyncio.Protocol):
    def __init__(self, idx, size, state):
        self.idx = idx
        self.size = size
        self.state = state
        self.buf = bytearray()
        self.handshaken = asyncio.get_event_loop().create_future()
        self.rnd = 0
        self.expect = None
        self.sent_at = 0.0
        self.lost = asyncio.get_event_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write((f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                         f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                         f"Sec-WebSocket-Version: 13\r\n\r\n").encode())

    def send_next(self):
        st = self.state
        if st["sent"] >= st["n"]:
            self.expect = None
            st["idle"] += 1
            if st["idle"] == st["conns"]:
                st["done"].set_result(None)
            return
        st["sent"] += 1
        p = ws_payload(self.idx, self.rnd, self.size)
        self.rnd += 1
        self.expect = ws_frame_header(self.size, False) + p
        self.sent_at = time.perf_counter()
        self.transport.write(ws_frame_header(self.size, True) + MASK + ws_mask(p))

    def data_received(self, data):
        self.buf += data
        if not self.handshaken.done():
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end])
            del self.buf[:end + 4]
            if not head.startswith(b"HTTP/1.1 101"):
                self.handshaken.set_exception(RuntimeError(f"handshake: {head[:200]!r}"))
                return
            self.handshaken.set_result(None)
        st = self.state
        if self.expect is None:
            if self.buf and not getattr(self, "closing", False):
                st["error"] = f"unexpected data {bytes(self.buf[:40])!r}"
            return
        while self.expect is not None and len(self.buf) >= len(self.expect):
            got = bytes(self.buf[:len(self.expect)])
            del self.buf[:len(self.expect)]
            if got != self.expect:
                if not st["error"]:
                    st["error"] = (f"connection {self.idx} round {self.rnd}: wrong echo "
                                   f"{got[:16]!r}... expected {self.expect[:16]!r}...")
                st["done"].set_result(None) if not st["done"].done() else None
                self.expect = None
                return
            if st["timing"]:
                st["lat"].append(time.perf_counter() - self.sent_at)
            st["echoed"] += 1
            st["bytes"] += self.size
            self.send_next()

    def close(self):
        # A close frame (code 1000), masked as a client must; the server
        # answers with its own and closes the TCP connection.
        self.closing = True
        self.transport.write(bytes((0x88, 0x82)) + MASK + ws_mask(b"\x03\xe8"))

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(None)
        st = self.state
        if self.expect is not None and not st["done"].done():
            st["error"] = f"connection {self.idx} lost: {exc!r}"
            st["done"].set_result(None)


async def wsclient(port, conns, size, n):
    loop = asyncio.get_running_loop()
    st = {"n": n, "sent": 0, "echoed": 0, "bytes": 0, "idle": 0, "conns": conns,
          "error": None, "done": loop.create_future(), "timing": False, "lat": []}
    protos = []
    for i in range(conns):
        _, p = await loop.create_connection(lambda i=i: WsConn(i, size, st), "127.0.0.1", port)
        protos.append(p)
    for p in protos:
        await p.handshaken
    # One untimed round per connection.
    st["n"] = conns
    for p in protos:
        p.send_next()
    await st["done"]
    if st["error"]:
        print(f"ERROR {st['error']}", flush=True)
        return 1
    print("READY", flush=True)
    line = await loop.run_in_executor(None, sys.stdin.readline)
    if line.strip() != "go":
        return 1
    st.update(n=n, sent=0, echoed=0, bytes=0, idle=0, done=loop.create_future(), timing=True)
    t0 = time.perf_counter()
    for p in protos:
        p.send_next()
    await st["done"]
    t1 = time.perf_counter()
    if st["error"]:
        print(f"ERROR {st['error']}", flush=True)
        return 1
    lat = sorted(st["lat"])
    p50 = statistics.median(lat) * 1e6
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e6
    print(f"DONE {st['echoed']} {t1 - t0:.6f} {st['bytes']} {p50:.1f} {p99:.1f}", flush=True)
    for p in protos:
        p.close()
    try:
        await asyncio.wait_for(asyncio.gather(*(p.lost for p in protos)), 10)
    except asyncio.TimeoutError:
        pass
    for p in protos:
        p.transport.close()
    return 0


# ---------------------------------------------------------------------------
# HTTP server for the client cases


def http_response():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from apps import CLIENT_BODY, break_body
    body = break_body(CLIENT_BODY)
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body


class HttpServer(asyncio.Protocol):
    response = b""

    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""

    def data_received(self, data):
        buf = self.buf + data
        k = buf.count(b"\r\n\r\n")
        if k:
            self.transport.write(self.response * k)
            buf = buf[buf.rfind(b"\r\n\r\n") + 4:]
        self.buf = buf


async def httpserver():
    loop = asyncio.get_running_loop()
    HttpServer.response = http_response()
    server = await loop.create_server(HttpServer, "127.0.0.1", 0, backlog=1024)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    # Until stdin closes (the worker ended).
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()
    return 0


def main(argv):
    loop = new_loop()
    try:
        if argv[0] == "wsclient":
            port, conns, size, n = map(int, argv[1:5])
            return loop.run_until_complete(wsclient(port, conns, size, n))
        if argv[0] == "httpserver":
            return loop.run_until_complete(httpserver())
        raise SystemExit(f"unknown mode {argv[0]}")
    finally:
        loop.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
