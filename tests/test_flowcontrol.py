"""Write flow control (water marks, pause_writing/resume_writing) and read
flow control (pause_reading/resume_reading) of the stream transport."""
import asyncio
import os
import socket

import pytest

from netutil import Recorder, tcp_pair, until


def run(loop, coro, timeout=30):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def test_write_buffer_limits_api(loop):
    async def main():
        c, s = tcp_pair()
        with c:
            tr, pr = await loop.connect_accepted_socket(lambda: Recorder(loop), s)
            assert tr.get_write_buffer_limits() == (16384, 65536)
            tr.set_write_buffer_limits(high=1000)
            assert tr.get_write_buffer_limits() == (250, 1000)
            tr.set_write_buffer_limits(low=100)
            assert tr.get_write_buffer_limits() == (100, 400)
            tr.set_write_buffer_limits(high=50, low=10)
            assert tr.get_write_buffer_limits() == (10, 50)
            tr.set_write_buffer_limits(0, 0)
            assert tr.get_write_buffer_limits() == (0, 0)
            tr.set_write_buffer_limits()
            assert tr.get_write_buffer_limits() == (16384, 65536)
            with pytest.raises(ValueError, match="must be >= low"):
                tr.set_write_buffer_limits(high=1, low=2)
            with pytest.raises(ValueError):
                tr.set_write_buffer_limits(high=-1)
            tr.close()
            await pr.lost

    run(loop, main())


def test_slow_reader_pauses_writer(loop):
    """The peer reads slowly: pause_writing() once the buffer passes the
    high-water mark, resume_writing() when it drains to the low one; all the
    data arrives."""

    async def main():
        c, s = tcp_pair(rcvbuf=16384, sndbuf=16384)
        with c:
            pr = Recorder(loop)
            tr, _ = await loop.connect_accepted_socket(lambda: pr, s)
            tr.set_write_buffer_limits(high=64 * 1024, low=16 * 1024)
            data = os.urandom(2 << 20)
            pos = 0
            while pr.paused == pr.resumed and pos < len(data):
                tr.write(data[pos : pos + 8192])
                pos += 8192
            assert pr.paused == 1 and pr.resumed == 0
            assert tr.get_write_buffer_size() > 64 * 1024
            assert tr._protocol_paused is True  # asyncio's attribute
            c.setblocking(False)
            got = bytearray()
            while pos < len(data) or len(got) < len(data):
                try:
                    got += c.recv(4096)  # slowly
                except BlockingIOError:
                    pass
                await asyncio.sleep(0)
                if pr.paused == pr.resumed and pos < len(data):
                    tr.write(data[pos : pos + 8192])
                    pos += 8192
            assert got == data
            assert pr.resumed >= 1
            assert pr.paused - pr.resumed in (0, 1)
            await until(lambda: tr.get_write_buffer_size() == 0)
            assert pr.paused == pr.resumed
            tr.close()
            await pr.lost

    run(loop, main())


def test_set_limits_pauses_at_once(loop):
    async def main():
        c, s = tcp_pair(rcvbuf=4096, sndbuf=4096)
        with c:
            pr = Recorder(loop)
            tr, _ = await loop.connect_accepted_socket(lambda: pr, s)
            tr.write(b"x" * (1 << 20))
            assert tr.get_write_buffer_size() > 0
            assert pr.paused == 1  # above the default 64 KiB
            tr.set_write_buffer_limits(high=1 << 30)
            assert pr.paused == 1  # no resume from set_write_buffer_limits
            tr.abort()
            await pr.lost

    run(loop, main())


def test_pause_resume_writing_errors_reported(loop, loop_errors):
    async def main():
        c, s = tcp_pair(rcvbuf=4096, sndbuf=4096)
        with c:
            class Bad(Recorder):
                def pause_writing(self):
                    super().pause_writing()
                    raise ValueError("pause")

                def resume_writing(self):
                    super().resume_writing()
                    raise ValueError("resume")

            pr = Bad(loop)
            tr, _ = await loop.connect_accepted_socket(lambda: pr, s)
            tr.write(b"x" * (1 << 20))
            assert pr.paused == 1
            c.setblocking(False)
            n = 0
            while n < (1 << 20):
                try:
                    n += len(c.recv(1 << 16))
                except BlockingIOError:
                    await asyncio.sleep(0.001)
            await until(lambda: pr.resumed == 1)
            msgs = sorted(e["message"] for e in loop_errors)
            assert msgs == ["protocol.pause_writing() failed", "protocol.resume_writing() failed"]
            assert all(e["transport"] is tr for e in loop_errors)
            tr.close()
            await pr.lost

    run(loop, main())


def test_resume_writing_then_write_from_it(loop):
    """resume_writing() may write again (it runs from the loop, after the
    buffer went under the low mark)."""

    async def main():
        c, s = tcp_pair(rcvbuf=4096, sndbuf=4096)
        with c:
            total = 4 << 20
            sent = 0

            class Pump(Recorder):
                def resume_writing(self):
                    super().resume_writing()
                    pump()

            pr = Pump(loop)
            tr, _ = await loop.connect_accepted_socket(lambda: pr, s)

            def pump():
                nonlocal sent
                while sent < total and pr.paused == pr.resumed:
                    tr.write(b"p" * 65536)
                    sent += 65536
                if sent >= total:
                    tr.write_eof()

            pump()
            c.setblocking(False)
            got = 0
            while True:
                try:
                    b = c.recv(1 << 20)
                except BlockingIOError:
                    await asyncio.sleep(0.001)
                    continue
                if not b:
                    break
                got += len(b)
            assert got == total
            assert pr.resumed >= 1
            tr.close()
            await pr.lost

    run(loop, main())


def test_paused_reader_is_not_read(loop):
    """While reading is paused, data_received() is not called and the
    kernel's buffers fill so the peer's writes block."""

    async def main():
        c, s = tcp_pair()
        with c:
            pr = Recorder(loop)
            tr, _ = await loop.connect_accepted_socket(lambda: pr, s)
            tr.pause_reading()
            c.setblocking(False)
            total = 0
            chunk = b"r" * 65536
            while True:
                try:
                    total += c.send(chunk)
                except BlockingIOError:
                    break
                assert total < (128 << 20)
            for _ in range(20):
                await asyncio.sleep(0.005)
                assert len(pr.data) == 0
            assert not tr.is_reading()
            tr.resume_reading()
            await until(lambda: len(pr.data) == total)
            tr.close()
            await pr.lost

    run(loop, main())


def test_pause_reading_from_connection_made(loop):
    async def main():
        c, s = tcp_pair()
        with c:
            class P(Recorder):
                def connection_made(self, tr):
                    super().connection_made(tr)
                    tr.pause_reading()

            pr = P(loop)
            tr, _ = await loop.connect_accepted_socket(lambda: pr, s)
            c.sendall(b"waiting")
            await asyncio.sleep(0.05)
            assert pr.data == b""
            tr.resume_reading()
            await until(lambda: pr.data == b"waiting")
            tr.close()
            await pr.lost

    run(loop, main())


def test_pause_resume_many_times(loop):
    async def main():
        c, s = tcp_pair()
        with c:
            pr = Recorder(loop)
            tr, _ = await loop.connect_accepted_socket(lambda: pr, s)
            payload = os.urandom(1 << 20)
            c.setblocking(False)
            view = memoryview(payload)
            pos = 0
            for i in range(2000):
                if i % 2:
                    tr.pause_reading()
                else:
                    tr.resume_reading()
                if pos < len(payload):
                    try:
                        pos += c.send(view[pos : pos + 4096])
                    except BlockingIOError:
                        pass
                await asyncio.sleep(0)
            tr.resume_reading()
            while pos < len(payload):
                try:
                    pos += c.send(view[pos:])
                except BlockingIOError:
                    await asyncio.sleep(0.001)
            await until(lambda: len(pr.data) == len(payload))
            assert pr.data == payload
            tr.close()
            await pr.lost

    run(loop, main())


def test_close_while_paused_writing_then_drained(loop):
    async def main():
        c, s = tcp_pair(rcvbuf=4096, sndbuf=4096)
        with c:
            pr = Recorder(loop)
            tr, _ = await loop.connect_accepted_socket(lambda: pr, s)
            tr.write(b"w" * (2 << 20))
            assert pr.paused == 1
            tr.close()
            c.setblocking(False)
            n = 0
            while True:
                try:
                    b = c.recv(1 << 20)
                except BlockingIOError:
                    await asyncio.sleep(0.001)
                    continue
                if not b:
                    break
                n += len(b)
            assert n == 2 << 20
            assert await pr.lost is None

    run(loop, main())
