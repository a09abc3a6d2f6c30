"""Instructions per aiohttp request, loop vs framework (issue 12's profile).

Runs an aiohttp "hello" server on one loop, serving N keep-alive requests
from a plain http.client in another process, then exits.  Run it under
callgrind twice (N=200 and N=1200) per loop and divide the difference by
1000: start-up cancels out and what is left is one request's instructions,
split by object file (the loop's own module vs libpython/aiohttp).

    for L in ringloop uvloop; do for N in 200 1200; do
      valgrind --tool=callgrind --callgrind-out-file=cg.$L.$N \\
        python3.11 benchmarks/profile_aiohttp.py $L $N; done; done

(Use the interpreter binary itself, not a pyenv shim script.)  Results:
benchmarks/results/2026-12-03-aiohttp-callgrind.md.
"""
import asyncio, os, subprocess, sys
from aiohttp import web
which, n = sys.argv[1], int(sys.argv[2])
if which == "uvloop":
    import uvloop; loop = uvloop.new_event_loop()
else:
    import ringloop; loop = ringloop.new_event_loop()
asyncio.set_event_loop(loop)
count = 0
done = loop.create_future()
async def hello(request):
    global count
    count += 1
    if count == n and not done.done():
        done.set_result(None)
    return web.Response(text="Hello, World!")
async def main():
    app = web.Application(); app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None); await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0); await site.start()
    port = site._server.sockets[0].getsockname()[1]
    client = subprocess.Popen([sys.executable, "-c", f"""
import http.client
c = http.client.HTTPConnection('127.0.0.1', {port})
for i in range({n}):
    c.request('GET', '/'); r = c.getresponse(); assert r.read() == b'Hello, World!'
"""], env={k: v for k, v in os.environ.items() if not k.startswith("LD_")})
    await done
    await runner.cleanup()
    client.wait()
loop.run_until_complete(main())
