"""Helpers shared by the networking tests (test_tcp, test_unix,
test_streams, test_flowcontrol)."""
import asyncio
import socket

import pytest

from conftest import is_ringloop


class Recorder(asyncio.Protocol):
    """A protocol that records what happens to it."""

    def __init__(self, loop=None):
        loop = loop or asyncio.get_event_loop()
        self.transport = None
        self.events = []
        self.data = bytearray()
        self.made = loop.create_future()
        self.lost = loop.create_future()
        self.eof = loop.create_future()
        self.keep_open = False
        self.paused = 0
        self.resumed = 0

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")
        self.made.set_result(transport)

    def data_received(self, data):
        if not self.events or self.events[-1] != "data":
            self.events.append("data")
        self.data += data

    def eof_received(self):
        self.events.append("eof")
        self.eof.set_result(bytes(self.data))
        return self.keep_open

    def pause_writing(self):
        self.paused += 1
        self.events.append("pause")

    def resume_writing(self):
        self.resumed += 1
        self.events.append("resume")

    def connection_lost(self, exc):
        self.events.append("lost")
        if not self.lost.done():
            self.lost.set_result(exc)


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):
        return False


async def until(pred, timeout=10.0, step=0.001):
    """Wait (running the loop) until pred() is true."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(step)


def fill_socket(sock, chunk=65536):
    """Write to a non-blocking socket until the kernel refuses more."""
    total = 0
    data = b"x" * chunk
    while True:
        try:
            n = sock.send(data)
        except (BlockingIOError, InterruptedError):
            return total
        total += n


def ringloop_only(reason="ringloop internals"):
    return pytest.mark.skipif(not is_ringloop(), reason=reason)


def net_counters(loop):
    if hasattr(loop, "_net_counters"):
        return loop._net_counters()
    return None


async def settle(loop, iterations=5):
    for _ in range(iterations):
        await asyncio.sleep(0)


def tcp_pair(rcvbuf=None, sndbuf=None):
    """A connected (client, server) pair of TCP sockets on 127.0.0.1.

    rcvbuf: the client's SO_RCVBUF, set before connecting (shrinking it on
    an established connection can stall loopback TCP for seconds);
    sndbuf: the server side's SO_SNDBUF, so that its writes queue early."""
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        c = socket.socket()
        if rcvbuf is not None:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        c.connect(lsock.getsockname())
        s, _ = lsock.accept()
    if sndbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    return c, s
