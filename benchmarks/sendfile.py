"""loop.sendfile() throughput (group "sendfile": python3 benchmarks/run.py --cases sendfile).

A 64 MiB file (page-cached) goes to a TCP socket whose reader is another
process, with each loop's loop.sendfile() over its own stream transport:
asyncio's native path (os.sendfile on writer readiness), ringloop's
(sendfile(2) inside the C transport).  uvloop has no loop.sendfile()
(NotImplementedError), so it runs asyncio's fallback algorithm, as an
application would have to: 16 KiB reads from the file and transport.write()
under the protocol's flow control (BaseEventLoop._sendfile_fallback, whose
own code needs an asyncio _FlowControlMixin transport, restated here)."""
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import zlib

from cases import _run_main, case, check

FILE_MIB = 64
MiB = 1 << 20
FALLBACK_BLOCK = 16384  # asyncio's _sendfile_fallback block size

_READER = r"""
import socket, sys, zlib
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
buf = bytearray(1 << 20)
view = memoryview(buf)
total, a = 0, 1
while True:
    k = s.recv_into(buf)
    if not k:
        break
    a = zlib.adler32(view[:k], a)
    total += k
print(total, a, flush=True)
"""


class _Sender(asyncio.Protocol):
    def __init__(self, loop):
        self.lost = loop.create_future()
        self.drained = None
        self.loop = loop

    def pause_writing(self):
        self.drained = self.loop.create_future()

    def resume_writing(self):
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)
        self.drained = None

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)
        if self.drained is not None and not self.drained.done():
            self.drained.set_exception(ConnectionError("lost"))


async def _fallback(tr, proto, f):
    """asyncio's _sendfile_fallback loop, on any transport."""
    total = 0
    f.seek(0)
    while True:
        if proto.drained is not None:
            await proto.drained
        data = f.read(FALLBACK_BLOCK)  # a fresh bytes: uvloop may keep it queued
        if not data:
            return total
        tr.write(data)
        total += len(data)


@case("sendfile_64mib", unit="MiB", size=1024, quick=256, warmup=64, group="sendfile")
def sendfile_64mib(loop, n):
    """loop.sendfile(transport, file) of a 64 MiB file, n / 64 times in a row
    over one TCP connection, to a reader in another process (recv_into 1 MiB
    + adler32).  uvloop: asyncio's fallback algorithm (it has no sendfile).
    Timed from the first sendfile to connection_lost after close() (the
    data left the transport), with the sender's CPU time alongside; checks every sendfile's count and the
    reader's byte count and adler32 of the whole stream."""
    sends = max(1, n // FILE_MIB)
    block = os.urandom(MiB)
    f = tempfile.TemporaryFile()
    expect_a = 1
    for i in range(FILE_MIB):
        chunk = block[i:] + block[:i]
        f.write(chunk)
    f.flush()
    f.seek(0)
    content = f.read()
    for _ in range(sends):
        expect_a = zlib.adler32(content, expect_a)
    del content
    f.seek(0)
    native = hasattr(loop, "sendfile") and type(loop).__module__.split(".")[0] != "uvloop"

    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    reader = subprocess.Popen([sys.executable, "-c", _READER, str(lsock.getsockname()[1])],
                              stdout=subprocess.PIPE, text=True)
    try:
        conn, _ = lsock.accept()
        conn.setblocking(False)

        async def main():
            tr, proto = await loop.connect_accepted_socket(lambda: _Sender(loop), conn)
            total = 0
            for _ in range(sends):
                if native:
                    sent = await loop.sendfile(tr, f)
                    f.seek(0)
                else:
                    sent = await _fallback(tr, proto, f)
                check(sent == FILE_MIB * MiB, f"sendfile sent {sent} bytes")
                total += sent
            tr.close()
            await proto.lost
            return total

        cpu0 = time.process_time()
        total, secs = _run_main(loop, main())
        cpu_s = time.process_time() - cpu0
        out, _ = reader.communicate(timeout=120)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
        lsock.close()
        f.close()
    got, a = (int(x) for x in out.split())
    check(total == sends * FILE_MIB * MiB, f"sent {total}")
    check(got == total, f"the reader got {got} bytes of {total}")
    check(a == expect_a, "the reader's adler32 differs")
    return sends * FILE_MIB, secs, {"cpu_s": cpu_s}
