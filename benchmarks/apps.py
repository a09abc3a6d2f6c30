"""Real applications (group "apps": python3 benchmarks/run.py --only apps).

Servers, each in the worker process on the loop under test, loaded by wrk
(Debian's package; 1 thread, 50 connections, keep-alive) in another process:

  aiohttp_{hello,json}                     aiohttp.web
  uvicorn_{httptools,h11}_{hello,json}     uvicorn with a bare ASGI app
  uvicorn_{httptools,h11}_starlette        uvicorn with one Starlette route (hello)
  websocket_echo_1k                        the websockets package's server,
                                           echoing 1 KiB binary messages to
                                           benchmarks/apps_peer.py wsclient

hello: "Hello, World!" as text/plain; json: a 10 KiB JSON document,
serialised per request (json.dumps, as users' code does).

Clients, each in the worker process on the loop under test, against a
server in another process (apps_peer.py httpserver, not on the loop under
test): http_client_{aiohttp,httpx}, n GETs by 10 concurrent tasks sharing
one client (10 keep-alive connections), every status and body checked.

Size n: seconds of wrk load for the servers, messages for the websocket
case, requests for the clients.  Before the load, a correctness pre-check
(a few requests with the standard library's http.client, status, headers
and body compared with what was expected); during it, wrk must see no
non-2xx response and no socket error.  A wrong response fails the case on
that loop (the run goes on).  RINGLOOP_BENCH_BREAK=1 makes every server
(and the client cases' peer) send one wrong byte: the smoke test checks
that the cases fail then.

Extra numbers: p50_us, p99_us (latency), cpu_s (CPU time of the worker
process over the loaded window: the server for server cases, the client
for client cases)."""
import asyncio
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from cases import CaseFailure, case, check
from loops import Unavailable

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(HERE, "apps_peer.py")
WRK_CONNS = 50
WS_CONNS = 10
WS_SIZE = 1024
CLIENT_CONCURRENCY = 10
PEER_TIMEOUT = 120.0

HELLO = b"Hello, World!"
# A 10 KiB JSON document (list of records), serialised per request.
JSON_DOC = [{"id": i, "name": f"item-{i:04d}", "price": round(i * 1.25, 2),
             "tags": ["alpha", "beta", "gamma"][: 1 + i % 3], "active": i % 2 == 0}
            for i in range(110)]
JSON_BODY = json.dumps(JSON_DOC).encode()
CLIENT_BODY = bytes(range(256)) * 4  # 1 KiB the client cases receive


def smoke():
    """RINGLOOP_BENCH_SMOKE=1 (worker.py smoke): the server cases serve the
    correctness pre-check only, no wrk (which cannot load for less than a
    second), so the test suite can run every case on every loop in seconds."""
    return os.environ.get("RINGLOOP_BENCH_SMOKE") == "1"


def broken():
    return os.environ.get("RINGLOOP_BENCH_BREAK") == "1"


def break_body(body):
    """The body a server sends: one byte wrong under RINGLOOP_BENCH_BREAK=1."""
    if not broken():
        return body
    return body[:-1] + bytes([body[-1] ^ 1])


def dumps_json():
    return break_body(json.dumps(JSON_DOC).encode())


def cpu_ns():
    """CPU time of every thread of this process so far (ns)."""
    from echo import cpu_ns as cpu
    return cpu(os.getpid())


def _need(*modules):
    import importlib
    for m in modules:
        try:
            importlib.import_module(m)
        except ImportError as exc:
            raise Unavailable(f"cannot import {m}: {exc} (pip install -r "
                              f"benchmarks/requirements.txt)") from None


def _listen():
    # proto=IPPROTO_TCP as getaddrinfo() gives it to create_server(host, port):
    # asyncio sets TCP_NODELAY on accepted sockets only when sock.proto says
    # TCP (with proto 0, uvicorn on asyncio waits 40 ms for delayed ACKs).
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(4096)
    s.setblocking(False)
    return s


# ---------------------------------------------------------------------------
# the servers


def aiohttp_app():
    from aiohttp import web

    async def hello(request):
        return web.Response(body=break_body(HELLO), content_type="text/plain")

    async def json_(request):
        return web.Response(body=dumps_json(), content_type="application/json")

    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_get("/json", json_)
    return app


async def start_aiohttp(sock):
    from aiohttp import web
    runner = web.AppRunner(aiohttp_app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()

    async def stop():
        await runner.cleanup()
    return stop


async def asgi_app(scope, receive, send):
    """A bare ASGI application: the two endpoints, nothing else."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/json":
        body, ctype = dumps_json(), b"application/json"
    else:
        body, ctype = break_body(HELLO), b"text/plain"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", ctype),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def starlette_app():
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def hello(request):
        return Response(break_body(HELLO), media_type="text/plain")
    return Starlette(routes=[Route("/", hello)])


def uvicorn_config(app, http):
    """The uvicorn Config users write.  The loop: users pass it as an import
    string, `--loop ringloop:new_event_loop` or Config(loop=...); uvicorn
    (>= 0.36) resolves it in get_loop_factory() and runs Server.serve() on
    the loop it makes.  The worker already built the loop under test, so we
    run serve() on that loop, after checking that this uvicorn accepts the
    users' spelling."""
    import uvicorn
    cfg = uvicorn.Config(app, http=http, lifespan="off", access_log=False,
                         log_level="warning", loop="ringloop:new_event_loop")
    try:
        import ringloop
        check(cfg.get_loop_factory() is ringloop.new_event_loop,
              "uvicorn did not resolve --loop ringloop:new_event_loop")
    except ImportError:
        pass
    return uvicorn.Server(cfg)


def make_uvicorn_starter(kind, http):
    async def start(sock):
        import uvicorn  # noqa: F401
        app = starlette_app() if kind == "starlette" else asgi_app
        server = uvicorn_config(app, http)
        # Server.serve() installs signal handlers (main thread only; the
        # worker's main thread runs the loop) and restores them on exit.
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                task.result()
                raise CaseFailure("uvicorn stopped before it started")
            await asyncio.sleep(0.01)

        async def stop():
            server.should_exit = True
            await task
        return stop
    return start


async def start_websockets(sock):
    from websockets.asyncio.server import serve

    async def echo(ws):
        async for msg in ws:
            await ws.send(break_body(msg) if isinstance(msg, bytes) else msg)

    server = await serve(echo, sock=sock, compression=None, max_size=1 << 20)

    async def stop():
        server.close()
        await server.wait_closed()
    return stop


# ---------------------------------------------------------------------------
# correctness pre-check and wrk

WRK_LUA = r"""
done = function(summary, latency, requests)
  io.write(string.format(
    "WRKJSON {\"requests\": %d, \"duration_us\": %d, \"bytes\": %d, " ..
    "\"connect\": %d, \"read\": %d, \"write\": %d, \"status\": %d, \"timeout\": %d, " ..
    "\"p50_us\": %d, \"p99_us\": %d}\n",
    summary.requests, summary.duration, summary.bytes,
    summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def precheck(port, path, expect_body, expect_ctype, count=5):
    """count GETs on one keep-alive connection with http.client: status 200,
    the content type and the exact body, or CaseFailure."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for i in range(count):
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read()
            check(r.status == 200, f"pre-check GET {path}: status {r.status} {r.reason}")
            ctype = r.getheader("Content-Type", "")
            check(ctype.split(";")[0].strip() == expect_ctype,
                  f"pre-check GET {path}: Content-Type {ctype!r}, expected {expect_ctype!r}")
            check(body == expect_body,
                  f"pre-check GET {path}: wrong body ({len(body)} bytes, expected "
                  f"{len(expect_body)}; first difference at byte "
                  f"{next((k for k, (a, b) in enumerate(zip(body, expect_body)) if a != b), min(len(body), len(expect_body)))})")
    finally:
        conn.close()


def wrk_binary():
    path = shutil.which("wrk")
    if not path:
        raise Unavailable("wrk is not installed (scripts/bench.sh installs Debian's wrk)")
    return path


def run_wrk(port, path, seconds, out):
    """In a thread: wrk for `seconds`, this process's CPU around it."""
    d = tempfile.mkdtemp(prefix="ringloop-wrk-")
    try:
        script = os.path.join(d, "report.lua")
        with open(script, "w") as f:
            f.write(WRK_LUA)
        c0 = cpu_ns()
        proc = subprocess.run(
            [wrk_binary(), "-t1", f"-c{WRK_CONNS}", f"-d{seconds}s", "--timeout", "10s",
             "-s", script, f"http://127.0.0.1:{port}{path}"],
            capture_output=True, text=True, timeout=seconds + 60)
        c1 = cpu_ns()
        m = re.search(r"^WRKJSON (.*)$", proc.stdout, re.M)
        if proc.returncode != 0 or not m:
            out["error"] = (f"wrk exit {proc.returncode}: "
                            f"{(proc.stderr or proc.stdout).strip()[-500:]}")
            return
        res = json.loads(m.group(1))
        res["cpu_s"] = (c1 - c0) * 1e-9
        out.update(res)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run_server_case(loop, start, path, expect_body, expect_ctype, seconds):
    sock = _listen()
    port = sock.getsockname()[1]
    try:
        stop = loop.run_until_complete(start(sock))
    except BaseException:
        sock.close()
        raise
    out = {}
    done = loop.create_future()

    def drive():
        try:
            t0 = time.perf_counter()
            c0 = cpu_ns()
            precheck(port, path, expect_body, expect_ctype, count=20 if smoke() else 5)
            if smoke():
                secs = time.perf_counter() - t0
                out.update(requests=20, duration_us=secs * 1e6, cpu_s=(cpu_ns() - c0) * 1e-9,
                           p50_us=secs / 20 * 1e6, p99_us=secs / 20 * 1e6, bytes=0,
                           connect=0, read=0, write=0, status=0, timeout=0)
            else:
                run_wrk(port, path, seconds, out)
        except CaseFailure as exc:
            out["error"] = str(exc)
        except Exception as exc:  # noqa: BLE001 - reported by the case
            out["error"] = f"driver: {exc!r}"
        try:
            loop.call_soon_threadsafe(done.set_result, None)
        except RuntimeError:
            pass

    th = threading.Thread(target=drive, daemon=True)
    th.start()
    try:
        loop.run_until_complete(done)
    finally:
        th.join(seconds + 90)
        loop.run_until_complete(stop())
        sock.close()
    if "error" in out:
        raise CaseFailure(out["error"])
    bad = {k: out[k] for k in ("connect", "read", "write", "status") if out[k]}
    check(not bad, f"wrk saw errors {bad} in {out['requests']} requests "
                   f"(status: non-2xx/3xx responses)")
    check(out["requests"] > 0, "wrk completed no request")
    secs = out["duration_us"] * 1e-6
    return out["requests"], secs, {"cpu_s": out["cpu_s"], "p50_us": out["p50_us"],
                                   "p99_us": out["p99_us"], "timeouts": out["timeout"],
                                   "bytes": out["bytes"]}


SERVERS = {
    # name: (modules, starter, path, expected body, content type)
    "aiohttp_hello": (("aiohttp",), lambda: start_aiohttp, "/", lambda: HELLO, "text/plain"),
    "aiohttp_json": (("aiohttp",), lambda: start_aiohttp, "/json", lambda: JSON_BODY,
                     "application/json"),
}
for _http in ("httptools", "h11"):
    SERVERS[f"uvicorn_{_http}_hello"] = (
        ("uvicorn", _http), lambda h=_http: make_uvicorn_starter("asgi", h), "/",
        lambda: HELLO, "text/plain")
    SERVERS[f"uvicorn_{_http}_json"] = (
        ("uvicorn", _http), lambda h=_http: make_uvicorn_starter("asgi", h), "/json",
        lambda: JSON_BODY, "application/json")
    SERVERS[f"uvicorn_{_http}_starlette"] = (
        ("uvicorn", _http, "starlette"), lambda h=_http: make_uvicorn_starter("starlette", h),
        "/", lambda: HELLO, "text/plain")


def _register_server(name):
    modules, starter, path, body, ctype = SERVERS[name]

    def fn(loop, n):
        _need(*modules)
        if not smoke():
            wrk_binary()
        return run_server_case(loop, starter(), path, body(), ctype, n)
    fn.__doc__ = (f"wrk, {WRK_CONNS} keep-alive connections, GET {path} on "
                  f"{name.rsplit('_', 1)[0].replace('_', ' with ')}; n = seconds of load. "
                  f"Pre-check of status, Content-Type and body; wrk must see no error.")
    # --quick keeps the hello endpoints of aiohttp and uvicorn-httptools
    # and the Starlette route on h11.
    quick_skip = name not in ("aiohttp_hello", "uvicorn_httptools_hello",
                              "uvicorn_h11_starlette")
    case(name, unit="requests", size=4, quick=1, warmup=0, group="apps",
         meta={"kind": "server", "lat": True}, quick_skip=quick_skip)(fn)


for _name in SERVERS:
    _register_server(_name)


# ---------------------------------------------------------------------------
# peers in other processes


def _peer(args):
    return subprocess.Popen([sys.executable, PEER] + args, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _peer_fail(proc, what):
    try:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    except Exception:  # noqa: BLE001
        err = ""
    return f"{what}; peer stderr: {(err or '').strip()[-500:]}"


@case("websocket_echo_1k", unit="messages", size=40_000, quick=8_000, warmup=0,
      group="apps", meta={"kind": "server", "lat": True})
def websocket_echo_1k(loop, n):
    """The websockets package's server (websockets.asyncio.server.serve, no
    compression) echoing 1 KiB binary messages; the client (apps_peer.py
    wsclient, another process) keeps 10 connections, one message in flight
    on each, and checks every echoed frame byte for byte.  Messages/s;
    server CPU per message; round-trip latency at the client."""
    _need("websockets")
    sock = _listen()
    port = sock.getsockname()[1]
    try:
        stop = loop.run_until_complete(start_websockets(sock))
    except BaseException:
        sock.close()
        raise
    out = {}
    done = loop.create_future()
    proc = _peer(["wsclient", str(port), str(WS_CONNS), str(WS_SIZE), str(n)])

    def drive():
        try:
            line = proc.stdout.readline().strip()
            if line != "READY":
                out["error"] = _peer_fail(proc, f"wsclient: {line or 'no output'}")
                return
            c0 = cpu_ns()
            proc.stdin.write("go\n")
            proc.stdin.flush()
            line = proc.stdout.readline().strip()
            c1 = cpu_ns()
            parts = line.split()
            if len(parts) != 6 or parts[0] != "DONE":
                out["error"] = _peer_fail(proc, f"wsclient: {line or 'no output'}")
                return
            out.update(msgs=int(parts[1]), seconds=float(parts[2]), bytes=int(parts[3]),
                       p50_us=float(parts[4]), p99_us=float(parts[5]),
                       cpu_s=(c1 - c0) * 1e-9)
            proc.wait(timeout=PEER_TIMEOUT)
        except Exception as exc:  # noqa: BLE001
            out["error"] = f"driver: {exc!r}"
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            try:
                loop.call_soon_threadsafe(done.set_result, None)
            except RuntimeError:
                pass

    th = threading.Thread(target=drive, daemon=True)
    th.start()
    try:
        loop.run_until_complete(done)
    finally:
        th.join(PEER_TIMEOUT + 10)
        loop.run_until_complete(stop())
        sock.close()
        for f in (proc.stdin, proc.stdout, proc.stderr):
            f.close()
    if "error" in out:
        raise CaseFailure(out["error"])
    check(out["msgs"] == n, f"wsclient echoed {out['msgs']} of {n}")
    return n, out["seconds"], {"cpu_s": out["cpu_s"], "p50_us": out["p50_us"],
                               "p99_us": out["p99_us"], "bytes": out["bytes"]}


def run_client_case(loop, n, make_client, get):
    """n GETs by CLIENT_CONCURRENCY tasks sharing one client, against
    apps_peer.py httpserver; every status and body checked."""
    proc = _peer(["httpserver"])
    try:
        line = proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "PORT":
            raise CaseFailure(_peer_fail(proc, f"httpserver said {line!r}"))
        url = f"http://127.0.0.1:{line[1]}/"
        lat = []
        errors = []

        async def main():
            client = make_client()
            try:
                async def worker(k):
                    pc = time.perf_counter
                    for _ in range(k):
                        t = pc()
                        status, body = await get(client, url)
                        lat.append(pc() - t)
                        if status != 200 or body != CLIENT_BODY:
                            errors.append((status, len(body)))
                            raise CaseFailure(f"GET: status {status}, {len(body)}-byte body "
                                              f"{'equal to' if body == CLIENT_BODY else 'differing from'}"
                                              f" the expected {len(CLIENT_BODY)} bytes")
                # Untimed: open the connections, one request each.
                await asyncio.gather(*(worker(1) for _ in range(CLIENT_CONCURRENCY)))
                lat.clear()
                per = [n // CLIENT_CONCURRENCY + (i < n % CLIENT_CONCURRENCY)
                       for i in range(CLIENT_CONCURRENCY)]
                c0 = cpu_ns()
                t0 = time.perf_counter()
                await asyncio.gather(*(worker(k) for k in per))
                t1 = time.perf_counter()
                c1 = cpu_ns()
                return t1 - t0, (c1 - c0) * 1e-9
            finally:
                await client_close(client)

        secs, cpu = loop.run_until_complete(main())
    finally:
        if proc.poll() is None:
            proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        if proc.stdin and not proc.stdin.closed:
            proc.stdin.close()
    check(len(lat) == n, f"{len(lat)} requests completed, expected {n}")
    lat.sort()
    return n, secs, {"cpu_s": cpu, "p50_us": lat[len(lat) // 2] * 1e6,
                     "p99_us": lat[min(n - 1, int(n * 0.99))] * 1e6}


async def client_close(client):
    close = getattr(client, "aclose", None) or client.close
    await close()


@case("http_client_aiohttp", unit="requests", size=10_000, quick=2_000, warmup=0,
      group="apps", meta={"kind": "client", "lat": True})
def http_client_aiohttp(loop, n):
    """aiohttp.ClientSession (TCPConnector, 10 connections) on the loop under
    test: n GETs by 10 concurrent tasks of a 1 KiB body from a keep-alive
    server in another process (apps_peer.py, uvloop); status and body
    checked on every response.  CPU = the client process's."""
    _need("aiohttp")
    import aiohttp

    def make():
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CLIENT_CONCURRENCY))

    async def get(client, url):
        async with client.get(url) as r:
            return r.status, await r.read()
    return run_client_case(loop, n, make, get)


@case("http_client_httpx", unit="requests", size=1_000, quick=300, warmup=0,
      group="apps", meta={"kind": "client", "lat": True}, quick_skip=True)
def http_client_httpx(loop, n):
    """httpx.AsyncClient (10 connections) on the loop under test: n GETs by
    10 concurrent tasks, as http_client_aiohttp.  httpx costs several times
    aiohttp's CPU per request, so n is smaller."""
    _need("httpx")
    import httpx

    def make():
        return httpx.AsyncClient(limits=httpx.Limits(max_connections=CLIENT_CONCURRENCY))

    async def get(client, url):
        r = await client.get(url)
        return r.status_code, r.content
    return run_client_case(loop, n, make, get)
