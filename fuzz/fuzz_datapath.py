"""Coverage-guided fuzzing of ringloop's data path (issue 13, point 4).

    python fuzz/fuzz_datapath.py [--minutes N | --seconds S] [--backend B]

The input is a script of operations on one loop: a stream transport pair
(random chunked writes, pause/resume reading, write_eof, close, abort at
random moments), sock_* operations on a socketpair cancelled at random, and
loop iterations in between.  Invariants checked at each input:
  - what the peer received is a prefix of what was written, in order, and
    all of it once the writer closed cleanly (no abort);
  - sock_recv never returns more than was sent and never corrupts;
  - nothing is reported to the loop's exception handler, the loop closes,
    and no fd stays open.
A violation raises, which atheris reports as a crash with the input.
libFuzzer prints the number of executions at the end ("Done N runs").
"""
import argparse
import asyncio
import os
import socket
import sys
import time

import atheris

with atheris.instrument_imports():
    import ringloop

EXECS = [0]


class Sink(asyncio.Protocol):
    def __init__(self, loop):
        self.got = bytearray()
        self.eof = False
        self.lost = loop.create_future()

    def connection_made(self, tr):
        self.tr = tr

    def data_received(self, d):
        self.got += d

    def eof_received(self):
        self.eof = True
        return True

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


def one_input(data):
    EXECS[0] += 1
    fdp = atheris.FuzzedDataProvider(data)
    fds0 = len(os.listdir("/proc/self/fd"))
    loop = ringloop.new_event_loop()
    asyncio.set_event_loop(loop)
    errors = []
    loop.set_exception_handler(lambda _l, ctx: errors.append(ctx))
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    for s in (c, d):
        s.setblocking(False)
    try:
        wtr, wpr = loop.run_until_complete(loop.connect_accepted_socket(lambda: Sink(loop), a))
        rtr, rpr = loop.run_until_complete(loop.connect_accepted_socket(lambda: Sink(loop), b))
        written = bytearray()
        aborted = closed = False
        sent_raw = bytearray()
        recv_raw = bytearray()
        pending = []
        for _ in range(fdp.ConsumeIntInRange(1, 40)):
            op = fdp.ConsumeIntInRange(0, 9)
            if op <= 2 and not closed:
                chunk = bytes([len(written) % 251]) * fdp.ConsumeIntInRange(0, 200_000)
                wtr.write(chunk)
                written += chunk
            elif op == 3:
                rtr.pause_reading()
            elif op == 4:
                rtr.resume_reading()
            elif op == 5 and not closed:
                if fdp.ConsumeBool():
                    wtr.write_eof()
                else:
                    wtr.close()
                closed = True
            elif op == 6 and not closed:
                wtr.abort()
                aborted = closed = True
            elif op == 7:
                n = fdp.ConsumeIntInRange(1, 70_000)
                t = loop.create_task(loop.sock_recv(d, n))
                pending.append(t)
            elif op == 8:
                if pending:
                    pending[fdp.ConsumeIntInRange(0, len(pending) - 1)].cancel()
                payload = bytes([len(sent_raw) % 253]) * fdp.ConsumeIntInRange(0, 5000)
                try:
                    c.send(payload)
                    sent_raw += payload
                except BlockingIOError:
                    pass
            else:
                steps = fdp.ConsumeIntInRange(0, 5)
                for _ in range(steps):
                    loop.run_until_complete(asyncio.sleep(0))
            for t in [t for t in pending if t.done()]:
                pending.remove(t)
                if not t.cancelled():
                    recv_raw += t.result()
            assert bytes(rpr.got) == bytes(written[:len(rpr.got)]), "stream corrupted"
            assert bytes(recv_raw) == bytes(sent_raw[:len(recv_raw)]), "sock_recv corrupted"
        # finish: read everything
        rtr.resume_reading()
        if not closed:
            wtr.close()
        for t in pending:
            t.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending))
        for t in pending:
            if not t.cancelled() and t.exception() is None:
                recv_raw += t.result()
        assert bytes(recv_raw) == bytes(sent_raw[:len(recv_raw)]), "sock_recv corrupted"
        if not aborted:
            deadline = time.monotonic() + 30
            while len(rpr.got) < len(written) and time.monotonic() < deadline:
                loop.run_until_complete(asyncio.sleep(0.001))
            assert bytes(rpr.got) == bytes(written), (len(rpr.got), len(written))
        assert bytes(rpr.got) == bytes(written[:len(rpr.got)]), "stream corrupted"
        rtr.close()
        loop.run_until_complete(asyncio.sleep(0))
        assert not errors, errors
    finally:
        loop.close()
        asyncio.set_event_loop(None)
        for s in (a, b, c, d):
            s.close()
    fds1 = len(os.listdir("/proc/self/fd"))
    assert fds1 <= fds0, f"fd leak: {fds0} -> {fds1}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--backend", choices=["io_uring", "epoll", "auto"])
    a, rest = ap.parse_known_args()
    if a.backend:
        os.environ["RINGLOOP_BACKEND"] = a.backend
    secs = int(a.minutes * 60 if a.minutes is not None else a.seconds)
    argv = [sys.argv[0], f"-max_total_time={secs}", "-rss_limit_mb=4096",
            "-artifact_prefix=" + os.environ.get("FUZZ_ARTIFACTS", "/tmp/ringloop-fuzz-")] + rest
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
