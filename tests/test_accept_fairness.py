"""Pre-fork servers: worker processes that share one listening socket (issue
9, defect 5).

A connection made while one worker's loop is blocked in a callback must be
served by a worker whose loop is running, as with asyncio and uvloop: an
armed accept must not take connections for a loop that will not serve them
soon (io_uring's multishot ACCEPT did: it accepts in the kernel, on behalf
of the blocked process).
"""
import os
import selectors
import socket
import subprocess
import sys
import time

import pytest

# A worker: serves the shared listening socket with create_server(sock=...),
# answers each connection with its name and closes it.  Commands arrive on a
# pipe read with add_reader: b"b" blocks the loop inside that callback until
# the next byte (the test's release), b"q" (or EOF) stops the loop.
_WORKER = r"""
import asyncio, os, socket, sys
sys.path.insert(0, os.environ["TESTS_DIR"])
from conftest import new_loop
name, lfd, ctl = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def say(what):
    sys.stdout.write(what + "\n")
    sys.stdout.flush()
loop = new_loop()
class Answer(asyncio.Protocol):
    def connection_made(self, tr):
        tr.write(name.encode())
        tr.close()
def on_ctl():
    cmd = os.read(ctl, 1)
    if cmd == b"b":
        say("blocked")
        os.set_blocking(ctl, True)
        os.read(ctl, 1)          # the loop is blocked until the test says so
        os.set_blocking(ctl, False)
        say("released")
    elif cmd in (b"q", b""):
        loop.stop()
async def start():
    sock = socket.socket(fileno=lfd)
    return await loop.create_server(Answer, sock=sock)
srv = loop.run_until_complete(start())
os.set_blocking(ctl, False)
loop.add_reader(ctl, on_ctl)
say("ready")
loop.run_forever()
loop.remove_reader(ctl)
srv.close()
loop.run_until_complete(srv.wait_closed())
loop.close()
say("done")
"""


class Worker:
    def __init__(self, name, lsock, script):
        self.name = name
        ctl_r, self.ctl = os.pipe()
        env = dict(os.environ, TESTS_DIR=os.path.dirname(__file__))
        # the ringloop this pytest imported (in-tree build or installed copy)
        env["PYTHONPATH"] = os.pathsep.join(sys.path)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, str(script), name, str(lsock.fileno()), str(ctl_r)],
                pass_fds=(lsock.fileno(), ctl_r), stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=env,
            )
        finally:
            os.close(ctl_r)
        self.buf = b""

    def send(self, cmd):
        os.write(self.ctl, cmd)

    def wait_line(self, want, timeout=60):
        """Wait for the line `want` from the worker (a hang guard, not a
        measurement: the worker says it as soon as it gets there)."""
        end = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            lines = self.buf.split(b"\n")
            if want.encode() in lines[:-1]:
                self.buf = b"\n".join(lines[lines.index(want.encode()) + 1:])
                return
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"worker {self.name}: no {want!r} line; got {self.buf!r}")
            sel = selectors.DefaultSelector()
            with sel:
                sel.register(fd, selectors.EVENT_READ)
                if sel.select(left):
                    data = os.read(fd, 4096)
                    if not data:
                        raise AssertionError(
                            f"worker {self.name} exited ({self.proc.wait()}) before {want!r}: "
                            f"{self.proc.stderr.read().decode(errors='replace')}")
                    self.buf += data

    def finish(self):
        try:
            self.send(b"rq")  # release (if blocked), then quit
        except OSError:
            pass
        os.close(self.ctl)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        err = self.proc.stderr.read().decode(errors="replace")
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.proc.returncode, err


def collect(socks, answers, timeout):
    """Read the answer of every socket in `socks` that has not answered yet,
    until all did or `timeout` passed (a bound on how long a wrong answer
    can take to show, not a measurement)."""
    end = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    with sel:
        for i, s in enumerate(socks):
            if answers[i] is None:
                sel.register(s, selectors.EVENT_READ, i)
        while sel.get_map():
            left = end - time.monotonic()
            if left <= 0:
                break
            for key, _ in sel.select(left):
                s, i = key.fileobj, key.data
                data = s.recv(64)
                if data:
                    answers[i] = (answers[i] or b"") + data
                else:
                    sel.unregister(s)


@pytest.mark.timeout_s(180)
@pytest.mark.parametrize("family", ["tcp", "unix"])
def test_blocked_worker_does_not_take_connections(tmp_path, family):
    """Two worker processes share one listening socket; worker B's loop is
    blocked in a callback while a client makes several connections: worker
    A, whose loop runs, answers all of them while B is still blocked."""
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    if family == "tcp":
        lsock = socket.create_server(("127.0.0.1", 0), backlog=64)
        addr = lsock.getsockname()
    else:
        addr = str(tmp_path / "s.sock")
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(addr)
        lsock.listen(64)
    workers = []
    socks = []
    try:
        # B starts serving first, so its accept is the older one (on main,
        # the one the kernel gives connections to).
        for name in ("B", "A"):
            w = Worker(name, lsock, script)
            workers.append(w)
            w.wait_line("ready")
        b, a = workers
        b.send(b"b")
        b.wait_line("blocked")
        n = 6
        for _ in range(n):
            s = socket.socket(lsock.family, socket.SOCK_STREAM)
            socks.append(s)
            s.connect(addr)
        answers = [None] * n
        collect(socks, answers, timeout=30)
        during = list(answers)
        b.send(b"r")
        b.wait_line("released")
        # What B took while blocked shows up now (with the wrong name).
        collect(socks, answers, timeout=30)
        assert answers == [b"A"] * n, (
            f"answers after B's release: {answers}; while B was blocked: {during}")
        assert during == [b"A"] * n, during
    finally:
        for s in socks:
            s.close()
        lsock.close()
        results = [(w.name, *w.finish()) for w in workers]
    for name, rc, err in results:
        assert rc == 0, f"worker {name} exited with {rc}: {err}"


@pytest.mark.timeout_s(180)
def test_running_workers_share_connections(tmp_path):
    """Two running workers share one listening socket: both serve some of
    the connections (the kernel wakes both, the first to accept wins), as
    with asyncio and uvloop; not every connection goes to the worker whose
    accept was armed first."""
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    lsock = socket.create_server(("127.0.0.1", 0), backlog=64)
    workers = []
    seen = {}
    try:
        for name in ("B", "A"):
            w = Worker(name, lsock, script)
            workers.append(w)
            w.wait_line("ready")
        # One connection at a time, until both answered (or many did not).
        for _ in range(3000):
            with socket.create_connection(lsock.getsockname(), timeout=60) as s:
                ans = b""
                while True:
                    data = s.recv(64)
                    if not data:
                        break
                    ans += data
            seen[ans] = seen.get(ans, 0) + 1
            if len(seen) == 2:
                break
        assert set(seen) == {b"A", b"B"}, seen
    finally:
        lsock.close()
        results = [(w.name, *w.finish()) for w in workers]
    for name, rc, err in results:
        assert rc == 0, f"worker {name} exited with {rc}: {err}"
