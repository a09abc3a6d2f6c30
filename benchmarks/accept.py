"""Accepting connections: rate, and fairness between pre-fork workers.

    python3 benchmarks/accept.py                      # all loops, 3 reps (~2 min)
    python3 benchmarks/accept.py --reps 5 --loops asyncio,ringloop-io_uring
    python3 benchmarks/accept.py --cases rate -n 50000 --reps 9
    python3 benchmarks/accept.py --variant main=/tmp/main-build/python
    python3 benchmarks/accept.py --variant one:io_uring=/tmp/main-build/python,RINGLOOP_TEST_URING_NO_MULTISHOT=1

A listening TCP socket is made here and inherited by one or two worker
processes (`--serve`), each serving it with `create_server(sock=...)` on the
loop under test; a connection is answered with the worker's name (one byte)
and closed, so a connection costs the loop an accept, a transport, a write
and a close.  The client is a small C program (built with cc into a
temporary directory) that keeps C connections in flight with epoll, reads
each answer to EOF and counts who answered.

Three measurements per loop, interleaved over the repetitions (the order of
the loops rotates):

* rate    -- one worker; N connections, C=8 in flight: connections/s and
             the worker's CPU time per connection (/proc/<pid>/stat).
* split   -- two workers, both running; connections for 1 s: the share the
             first worker got (50% = even).
* blocked -- two workers; the first one's loop sleeps 2 s in a callback
             (time.sleep) and the client makes connections for 1 s of that
             window (C=4): how many the blocked worker took (those waited
             until it woke: the longest wait is shown).  The blocked worker
             is started first, so its accept is the older one.

`--variant NAME[:BACKEND]=DIR[,KEY=VAL...]` adds `NAME-io_uring` and
`NAME-epoll` (or only `NAME-BACKEND`): the ringloop package found in DIR
(e.g. an older build: `git worktree add /tmp/old REV`, build it there with
scripts/build-inplace.sh, pass /tmp/old/python), with environment variables
for its workers.  The report is Markdown on stdout; progress goes
to stderr.
"""
import argparse
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)

CLIENT_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* client PORT TOTAL SECONDS CONC: TOTAL connections (if > 0), or
 * connections started during SECONDS; CONC in flight. */
typedef struct { int fd; double t0; int ans; } slot;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static struct sockaddr_in sa;
static int ep;

static int start(slot *s)
{
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) { perror("socket"); exit(2); }
    s->t0 = now();
    s->ans = -1;
    if (connect(s->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 &&
        errno != EINPROGRESS) {
        perror("connect");
        exit(2);
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev) < 0) { perror("epoll_ctl"); exit(2); }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 5) { fprintf(stderr, "usage\n"); return 2; }
    int port = atoi(argv[1]);
    long total = atol(argv[2]);
    double dur = atof(argv[3]);
    int conc = atoi(argv[4]);
    long counts[256] = {0};
    long started = 0, done = 0, errors = 0;
    double maxlat = 0;
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ep = epoll_create1(EPOLL_CLOEXEC);
    slot *slots = calloc(conc, sizeof(slot));
    int active = 0;
    double t_start = now(), t_end = t_start;
    for (int i = 0; i < conc; i++) {
        if (total > 0 && started >= total) break;
        start(&slots[i]);
        started++;
        active++;
    }
    while (active > 0) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, 60000);
        if (n == 0) { fprintf(stderr, "stalled: %d in flight\n", active); return 3; }
        if (n < 0) { if (errno == EINTR) continue; perror("epoll_wait"); return 2; }
        for (int i = 0; i < n; i++) {
            slot *s = evs[i].data.ptr;
            char buf[64];
            ssize_t r;
            for (;;) {
                r = read(s->fd, buf, sizeof(buf));
                if (r > 0) { if (s->ans < 0) s->ans = (unsigned char)buf[0]; continue; }
                break;
            }
            if (r < 0 && errno == EAGAIN) continue;
            double t = now();
            if (r < 0 || s->ans < 0) errors++;
            else counts[s->ans]++;
            if (t - s->t0 > maxlat) maxlat = t - s->t0;
            close(s->fd);
            done++;
            t_end = t;
            if ((total > 0 && started < total) || (total <= 0 && t - t_start < dur)) {
                start(s);
                started++;
            }
            else {
                active--;
            }
        }
    }
    printf("conns %ld secs %.6f errors %ld maxlat %.6f\n", done, t_end - t_start,
           errors, maxlat);
    for (int c = 0; c < 256; c++) {
        if (counts[c]) printf("ans %c %ld\n", c, counts[c]);
    }
    return 0;
}
"""


# ---------------------------------------------------------------------------
# worker (--serve): one process serving the inherited listening socket


def serve(args):
    if args.ringloop_path:
        sys.path.insert(0, args.ringloop_path)
    kind = args.serve
    if kind == "asyncio":
        import asyncio
        loop = asyncio.SelectorEventLoop()
    elif kind == "uvloop":
        import asyncio
        import uvloop
        loop = uvloop.Loop()
    else:
        import asyncio
        import ringloop
        backend = kind.rsplit("-", 1)[1]
        loop = ringloop.new_event_loop(backend=backend)
        assert loop.backend == backend, loop.backend
    name = args.name.encode()

    class Answer(asyncio.Protocol):
        def connection_made(self, tr):
            tr.write(name)
            tr.close()

    def say(line):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def block(seconds):
        say("blocked")
        time.sleep(seconds)

    def on_cmd():
        data = os.read(0, 4096)
        for line in data.decode().splitlines():
            cmd = line.split()
            if cmd[0] == "block":
                loop.call_soon(block, float(cmd[1]))
            elif cmd[0] == "quit":
                loop.stop()
        if not data:
            loop.stop()

    sock = socket.socket(fileno=args.fd)
    srv = loop.run_until_complete(loop.create_server(Answer, sock=sock, backlog=1024))
    os.set_blocking(0, False)
    loop.add_reader(0, on_cmd)
    say("ready")
    loop.run_forever()
    loop.remove_reader(0)
    srv.close()
    loop.close()


# ---------------------------------------------------------------------------
# runner


def build_client(outdir):
    src = os.path.join(outdir, "accept_client.c")
    with open(src, "w") as f:
        f.write(CLIENT_C)
    exe = os.path.join(outdir, "accept_client")
    cc = shlex.split(os.environ.get("CC", "cc"))
    subprocess.run(cc + ["-O2", "-Wall", "-o", exe, src], check=True)
    return exe


class Worker:
    def __init__(self, loop, lsock, name, path, env):
        full = dict(os.environ, **env)
        for k in ("PYTHONASYNCIODEBUG", "PYTHONDEVMODE", "RINGLOOP_BACKEND"):
            full.pop(k, None)
        cmd = [sys.executable, os.path.abspath(__file__), "--serve", loop, "--fd",
               str(lsock.fileno()), "--name", name]
        if path:
            cmd += ["--ringloop-path", path]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     pass_fds=(lsock.fileno(),), env=full, text=True)
        self.expect("ready")

    def expect(self, word):
        line = self.proc.stdout.readline().strip()
        if line != word:
            raise RuntimeError(f"worker said {line!r}, expected {word!r}")

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def cpu(self):
        """CPU seconds of every thread of the worker (schedstat: ns)."""
        total = 0
        tdir = f"/proc/{self.proc.pid}/task"
        for tid in os.listdir(tdir):
            try:
                with open(f"{tdir}/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except OSError:
                pass  # a thread that just ended
        return total / 1e9

    def stop(self):
        try:
            self.send("quit")
            self.proc.stdin.close()
        except OSError:
            pass
        if self.proc.wait(30) != 0:
            raise RuntimeError(f"worker exited with {self.proc.returncode}")


def run_client(exe, port, total, seconds, conc):
    out = subprocess.run([exe, str(port), str(total), str(seconds), str(conc)],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"client: {out.returncode} {out.stderr.strip()}")
    res = {"ans": {}}
    for line in out.stdout.splitlines():
        f = line.split()
        if f[0] == "conns":
            res.update(conns=int(f[1]), secs=float(f[3]), errors=int(f[5]),
                       maxlat=float(f[7]))
        elif f[0] == "ans":
            res["ans"][f[1]] = int(f[2])
    return res


def listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(1024)
    return s


def measure_rate(exe, loop, spec, n):
    with listener() as ls:
        w = Worker(loop, ls, "A", *spec)
        try:
            c0 = w.cpu()
            r = run_client(exe, ls.getsockname()[1], n, 0, 8)
            c1 = w.cpu()
        finally:
            w.stop()
    if r["errors"] or r["ans"] != {"A": n}:
        raise RuntimeError(f"rate: {r}")
    return {"rate": r["conns"] / r["secs"], "cpu_us": (c1 - c0) / n * 1e6}


def measure_split(exe, loop, spec):
    with listener() as ls:
        ws = [Worker(loop, ls, name, *spec) for name in "AB"]
        try:
            r = run_client(exe, ls.getsockname()[1], 0, 1.0, 8)
        finally:
            for w in ws:
                w.stop()
    if r["errors"]:
        raise RuntimeError(f"split: {r}")
    return {"share_first": r["ans"].get("A", 0) / r["conns"]}


def measure_blocked(exe, loop, spec):
    with listener() as ls:
        # B (blocked) first: its accept is the older one.
        ws = [Worker(loop, ls, name, *spec) for name in "BA"]
        try:
            ws[0].send("block 2")
            ws[0].expect("blocked")
            r = run_client(exe, ls.getsockname()[1], 0, 1.0, 4)
        finally:
            for w in ws:
                w.stop()
    if r["errors"]:
        raise RuntimeError(f"blocked: {r}")
    return {"taken_by_blocked": r["ans"].get("B", 0), "conns": r["conns"],
            "maxlat": r["maxlat"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--serve")
    ap.add_argument("--fd", type=int)
    ap.add_argument("--name")
    ap.add_argument("--ringloop-path")
    ap.add_argument("--loops", default="asyncio,uvloop,ringloop-io_uring,ringloop-epoll")
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("-n", type=int, default=20000, help="connections of the rate case")
    ap.add_argument("--cases", default="rate,split,blocked")
    args = ap.parse_args()
    if args.serve:
        return serve(args)
    cases = args.cases.split(",")

    specs = {}
    for name in args.loops.split(","):
        specs[name] = (name, (os.path.join(TOP, "python"), {}))
    for v in args.variant:
        name, rest = v.split("=", 1)
        name, _, only = name.partition(":")
        path, *envs = rest.split(",")
        env = dict(e.split("=", 1) for e in envs)
        for b in (only,) if only else ("io_uring", "epoll"):
            specs[f"{name}-{b}"] = (f"ringloop-{b}", (os.path.abspath(path), env))
    names = list(specs)
    results = {n: {"rate": [], "cpu_us": [], "share_first": [], "taken": [],
                   "conns": [], "maxlat": []} for n in names}
    with tempfile.TemporaryDirectory(prefix="ringloop-accept-") as tmp:
        exe = build_client(tmp)
        for rep in range(args.reps):
            order = names[rep % len(names):] + names[:rep % len(names)]
            for name in order:
                loop, spec = specs[name]
                print(f"rep {rep + 1}/{args.reps} {name}", file=sys.stderr)
                if "rate" in cases:
                    r = measure_rate(exe, loop, spec, args.n)
                    results[name]["rate"].append(r["rate"])
                    results[name]["cpu_us"].append(r["cpu_us"])
                if "split" in cases:
                    r = measure_split(exe, loop, spec)
                    results[name]["share_first"].append(r["share_first"])
                if "blocked" in cases:
                    r = measure_blocked(exe, loop, spec)
                    results[name]["taken"].append(r["taken_by_blocked"])
                    results[name]["conns"].append(r["conns"])
                    results[name]["maxlat"].append(r["maxlat"])
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"{args.reps} reps, {args.n} connections per rate run, load average at the end "
          f"{' '.join(load)}, Python {sys.version.split()[0]}, kernel {os.uname().release}\n")
    print("| loop | conns/s (median, min-max) | worker CPU µs/conn | split: 1st worker's share "
          "(each rep) | blocked worker took (of conns made, each rep) | longest wait s |")
    print("|---|---|---|---|---|---|")
    for n in names:
        r = results[n]
        rate = (f"{statistics.median(r['rate']):,.0f} "
                f"({min(r['rate']):,.0f}-{max(r['rate']):,.0f})") if r["rate"] else "-"
        cpu = (f"{statistics.median(r['cpu_us']):.1f} "
               f"({min(r['cpu_us']):.1f}-{max(r['cpu_us']):.1f})") if r["cpu_us"] else "-"
        split = " ".join(f"{x:.0%}" for x in r["share_first"])
        taken = " ".join(f"{t}/{c}" for t, c in zip(r["taken"], r["conns"]))
        lat = f"{max(r['maxlat']):.2f}" if r["maxlat"] else "-"
        print(f"| {n} | {rate} | {cpu} | {split} | {taken} | {lat} |")


if __name__ == "__main__":
    sys.exit(main())
