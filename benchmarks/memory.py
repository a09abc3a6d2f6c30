"""Memory per pending Task and per idle connection, side by side.

Tasks (issue 4's memory target):

For each loop, in a fresh process: N tasks, each awaiting its own future
(created with loop.create_future()), are created and stepped once so that
all are pending; the bytes that Python allocated for them (tracemalloc, so
the same accounting for every loop: task, coroutine and frame, future,
context, callbacks, registry entries) divided by N is the cost of one
pending task.  Then the futures are resolved and every task is checked to
have finished.

Idle connections (issue 5's memory target), --what conns: a server on the
loop under test accepts N TCP connections from a client in another process;
each connection echoes one 100-byte message and then stays idle.  The
server's resident memory (RSS: what the process really holds, including the
C allocations of uvloop/libuv and ringloop that tracemalloc cannot see)
after N connections minus before them, divided by N, is the cost of one idle
connection (transport, protocol, buffers, registrations).  A warm-up round
of connections is made and closed first, so allocator arenas and caches are
already paid for.

    python benchmarks/memory.py [--what tasks|conns|both] [--n N]
                                [--loops asyncio,uvloop,...]
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from loops import LOOPS, Unavailable  # noqa: E402


def measure(loop_name, n):
    import asyncio
    import gc
    import tracemalloc

    loop = LOOPS[loop_name].make()
    try:
        futs = [loop.create_future() for _ in range(n)]

        async def waiter(f):
            return await f

        async def warm():
            fs = [loop.create_future() for _ in range(200)]
            ts = [loop.create_task(waiter(f)) for f in fs]
            await asyncio.sleep(0)
            for f in fs:
                f.set_result(None)
            await asyncio.gather(*ts)

        loop.run_until_complete(warm())
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        tasks = [loop.create_task(waiter(f)) for f in futs]
        loop.run_until_complete(asyncio.sleep(0))
        loop.run_until_complete(asyncio.sleep(0))
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        pending = sum(1 for t in tasks if not t.done())
        if pending != n:
            raise SystemExit(f"{loop_name}: only {pending} of {n} tasks pending")
        # the list of tasks itself is not the tasks' cost
        per_task = (after - before - sys.getsizeof(tasks)) / n
        for i, f in enumerate(futs):
            f.set_result(i)
        res = loop.run_until_complete(asyncio.gather(*tasks))
        if res != list(range(n)):
            raise SystemExit(f"{loop_name}: wrong results")
        return per_task
    finally:
        loop.close()


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


_CLIENT = r"""
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"x" * 100)
    got = b""
    while len(got) < 100:
        chunk = s.recv(100 - len(got))
        if not chunk:
            raise SystemExit("server closed connection %d" % i)
        got += chunk
    socks.append(s)
print("ready", flush=True)
sys.stdin.readline()          # hold the connections until told
"""


def measure_conns(loop_name, n):
    import asyncio
    import gc
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 500), hard))
    loop = LOOPS[loop_name].make()
    conns = []

    class Echo(asyncio.Protocol):
        def connection_made(self, tr):
            self.tr = tr
            conns.append(self)

        def data_received(self, data):
            self.tr.write(data)

    async def round_(server_port, count):
        # The client is a plain subprocess (ringloop has no subprocess
        # support yet); its "ready" line is awaited with add_reader.
        proc = subprocess.Popen(
            [sys.executable, "-c", _CLIENT, str(server_port), str(count)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        readable = loop.create_future()
        fd = proc.stdout.fileno()
        loop.add_reader(fd, lambda: readable.done() or readable.set_result(None))
        try:
            await asyncio.wait_for(readable, 120)
        finally:
            loop.remove_reader(fd)
        if proc.stdout.readline().strip() != b"ready":
            raise SystemExit(f"{loop_name}: client failed")
        return proc

    def finish(proc):
        proc.stdin.write(b"go\n")
        proc.stdin.close()
        proc.stdout.close()
        proc.wait()

    async def main():
        srv = await loop.create_server(Echo, "127.0.0.1", 0, backlog=1024)
        port = srv.sockets[0].getsockname()[1]
        # warm-up: a round of connections, then all closed
        finish(await round_(port, min(n, 200)))
        for _ in range(1000):
            if all(c.tr.is_closing() for c in conns):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        conns.clear()
        gc.collect()
        before = _rss()
        proc = await round_(port, n)
        await asyncio.sleep(0.05)
        gc.collect()
        after = _rss()
        open_ = sum(1 for c in conns if not c.tr.is_closing())
        finish(proc)
        srv.close()
        await srv.wait_closed()
        if open_ != n:
            raise SystemExit(f"{loop_name}: {open_} of {n} connections open")
        return (after - before) / n

    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--what", choices=("tasks", "conns", "both"), default="both")
    ap.add_argument("--n", type=int, help="tasks (default 10000) or connections (default 1000)")
    ap.add_argument("--loops", default="asyncio,uvloop,ringloop-io_uring,ringloop-epoll,"
                    "ringloop-io_uring-stocktasks")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    whats = ("tasks", "conns") if args.what == "both" else (args.what,)
    if args.worker:
        n = args.n or (10_000 if whats[0] == "tasks" else 1000)
        fn = measure if whats[0] == "tasks" else measure_conns
        print(json.dumps(fn(args.worker, n)))
        return
    for what in whats:
        n = args.n or (10_000 if what == "tasks" else 1000)
        loops = args.loops.split(",")
        if what == "conns":
            loops = [x for x in loops if not x.endswith("-stocktasks")]
        report(what, n, loops)
        print()


def report(what, n, loops):
    unit = ("bytes per pending task (tracemalloc)" if what == "tasks"
            else "bytes RSS per idle connection")
    rows = []
    for name in loops:
        r = subprocess.run([sys.executable, __file__, "--worker", name, "--what", what,
                            "--n", str(n)], capture_output=True, text=True)
        if r.returncode != 0:
            rows.append((name, None, r.stderr.strip().splitlines()[-1:] or ["failed"]))
            continue
        rows.append((name, json.loads(r.stdout), None))
    base = {name: v for name, v, _ in rows if v}
    print(f"| loop | {unit} (N={n}) | vs asyncio | vs uvloop |")
    print("|---|--:|--:|--:|")
    for name, v, err in rows:
        if v is None:
            print(f"| {name} | n/a ({err[0]}) | | |")
        else:
            ra = f"{v / base['asyncio']:.2f}x" if "asyncio" in base else ""
            ru = f"{v / base['uvloop']:.2f}x" if "uvloop" in base else ""
            print(f"| {name} | {v:.0f} | {ra} | {ru} |")


if __name__ == "__main__":
    main()
