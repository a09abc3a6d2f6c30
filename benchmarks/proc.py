"""Subprocess and pipe cases (group "proc": python3 benchmarks/run.py --cases proc).

Both go through asyncio's public API (asyncio.create_subprocess_exec and the
Process' StreamReader/StreamWriter), so they measure what an application
gets from each loop: the spawn, the child watcher, the pipe transports and
the loop's readiness path under them."""
import asyncio
import os

from cases import _run_main, case, check, fail


@case("subprocess_spawn_wait", unit="processes", size=1_000, quick=300, warmup=20,
      group="proc")
def subprocess_spawn_wait(loop, n):
    """`await (await asyncio.create_subprocess_exec("true")).wait()` n times in
    a row: spawn (fork/vfork + exec), connecting no pipes, the child watcher
    noticing the exit, reaping, and the waiter's wake-up.  Checks every
    return code."""

    async def main():
        done = 0
        for _ in range(n):
            proc = await asyncio.create_subprocess_exec(
                "true", stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL)
            rc = await proc.wait()
            if rc != 0:
                fail(f"true exited with {rc}")
            done += 1
        return done

    done, secs = _run_main(loop, main())
    check(done == n, f"{done} processes, expected {n}")
    return n, secs


CHUNK = 1 << 20


@case("pipe_cat_throughput", unit="MiB", size=512, quick=128, warmup=16, group="proc")
def pipe_cat_throughput(loop, n):
    """n chunks of 1 MiB written to `cat`'s stdin (write + drain) while a
    second task reads its stdout (read(1 MiB) until EOF): a write pipe
    transport and a read pipe transport, both at full speed.  Checks the
    byte count and every byte (each chunk is a distinct pattern)."""
    base = os.urandom(CHUNK)
    chunks = [base[k:] + base[:k] for k in range(0, 64 * 4099, 4099)]  # 64 distinct

    async def main():
        proc = await asyncio.create_subprocess_exec(
            "cat", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)

        async def writer():
            for i in range(n):
                proc.stdin.write(chunks[i % 64])
                await proc.stdin.drain()
            proc.stdin.close()

        async def reader():
            got = 0
            pending = bytearray()
            i = 0
            while True:
                data = await proc.stdout.read(CHUNK)
                if not data:
                    break
                got += len(data)
                pending += data
                while len(pending) >= CHUNK:
                    if pending[:CHUNK] != chunks[i % 64]:
                        fail(f"chunk {i} differs")
                    del pending[:CHUNK]
                    i += 1
            if pending:
                fail(f"{len(pending)} trailing bytes")
            return got

        _, got = await asyncio.gather(writer(), reader())
        rc = await proc.wait()
        check(rc == 0, f"cat exited with {rc}")
        return got

    got, secs = _run_main(loop, main())
    check(got == n * CHUNK, f"{got} bytes through cat, expected {n * CHUNK}")
    return n, secs
