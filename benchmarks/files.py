"""File I/O cases (group "fs": python3 benchmarks/run.py --cases fs).

Each workload comes in three flavours, run on every loop:
  *_fs        ringloop.fs (io_uring requests on ringloop-io_uring; the
              loop's default executor on every other loop)
  *_aiofiles  aiofiles (a thread hop per call; installed by the benchmark's
              own setup, scripts/bench.sh); the case fails with a
              clear message if it is missing
  *_thread    asyncio.to_thread() around the plain blocking calls, one hop
              per unit of work (the best a thread can do)
Every case reports the process CPU time (all threads) as extra cpu_s, so
the report can show CPU per operation next to the rate.  The files live in
benchmarks' temporary directory on the disk (/tmp, warm page cache: the
cost measured is the loop's and the thread pool's, not the device's), except
the fsync case, whose device cost is the point."""
import asyncio
import os
import tempfile
import time

from cases import _run_main, case, check, fail

SMALL = 4096
CHUNK = 1 << 20
CONCURRENCY = 64
WRITE = 64 << 10

_DIR = os.environ.get("RINGLOOP_BENCH_FS_DIR") or tempfile.gettempdir()


def _small_files(n):
    d = os.path.join(_DIR, "ringloop-fsbench-small")
    os.makedirs(d, exist_ok=True)
    paths = []
    for i in range(n):
        p = os.path.join(d, f"{i}")
        if not os.path.exists(p) or os.path.getsize(p) != SMALL:
            with open(p, "wb") as f:
                f.write(i.to_bytes(4, "little") * (SMALL // 4))
        paths.append(p)
    return paths


def _big_file(mib):
    p = os.path.join(_DIR, "ringloop-fsbench-big")
    if not os.path.exists(p) or os.path.getsize(p) < mib * CHUNK:
        block = bytes(range(256)) * (CHUNK // 256)
        with open(p, "wb") as f:
            for _ in range(mib):
                f.write(block)
    return p


def _timed(loop, main):
    c0 = time.process_time()
    res, secs = _run_main(loop, main)
    return res, secs, time.process_time() - c0


def _aiofiles():
    try:
        import aiofiles
    except ImportError:
        fail("aiofiles is not installed (scripts/bench.sh installs it)")
    return aiofiles


# -- 10,000 small files ------------------------------------------------------

def _small(loop, n, how):
    paths = _small_files(n)
    if how == "fs":
        from ringloop import fs

        async def read(p):
            return await fs.read_bytes(p)
    elif how == "aiofiles":
        aiofiles = _aiofiles()

        async def read(p):
            async with aiofiles.open(p, "rb") as f:
                return await f.read()
    else:
        def sync(p):
            with open(p, "rb") as f:
                return f.read()

        async def read(p):
            return await asyncio.to_thread(sync, p)

    async def main():
        it = iter(enumerate(paths))
        done = [0]

        async def worker():
            for i, p in it:
                data = await read(p)
                if len(data) != SMALL or data[:4] != i.to_bytes(4, "little"):
                    fail(f"file {i}: wrong contents")
                done[0] += 1

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return done[0]

    got, secs, cpu = _timed(loop, main())
    check(got == n, f"{got} files read, expected {n}")
    return n, secs, {"cpu_s": cpu}


for _how in ("fs", "aiofiles", "thread"):
    def _make(how):
        def fn(loop, n):
            return _small(loop, n, how)
        fn.__doc__ = (f"Read n files of 4 KiB each (open, read, close) with {how}, "
                      f"{CONCURRENCY} tasks at a time; checks every file's contents.")
        return fn
    case(f"fs_small_read_{_how}", unit="files", size=10_000, quick=2_000, warmup=200,
         group="fs")(_make(_how))


# -- one big file in 1 MiB chunks ----------------------------------------------

def _big(loop, n, how):
    path = _big_file(n)
    want = bytes(range(256)) * (CHUNK // 256)
    if how == "fs":
        from ringloop import fs

        async def main():
            got = 0
            async with fs.open(path, "rb", buffering=0) as f:
                for _ in range(n):
                    data = await f.read(CHUNK)
                    if data != want:
                        fail(f"chunk at {got} differs")
                    got += 1
            return got
    elif how == "aiofiles":
        aiofiles = _aiofiles()

        async def main():
            got = 0
            async with aiofiles.open(path, "rb", buffering=0) as f:
                for _ in range(n):
                    data = await f.read(CHUNK)
                    if data != want:
                        fail(f"chunk at {got} differs")
                    got += 1
            return got
    else:
        async def main():
            got = 0
            f = open(path, "rb", buffering=0)
            try:
                for _ in range(n):
                    data = await asyncio.to_thread(f.read, CHUNK)
                    if data != want:
                        fail(f"chunk at {got} differs")
                    got += 1
            finally:
                f.close()
            return got

    got, secs, cpu = _timed(loop, main())
    check(got == n, f"{got} chunks, expected {n}")
    return n, secs, {"cpu_s": cpu}


for _how in ("fs", "aiofiles", "thread"):
    def _make(how):
        def fn(loop, n):
            return _big(loop, n, how)
        fn.__doc__ = (f"Read one file sequentially in 1 MiB chunks with {how} "
                      "(n MiB; 1 GiB by default); checks every chunk.")
        return fn
    case(f"fs_big_read_{_how}", unit="MiB", size=1024, quick=256, warmup=16,
         group="fs")(_make(_how))


# -- writes with fsync -----------------------------------------------------------

def _write_fsync(loop, n, how):
    path = os.path.join(_DIR, f"ringloop-fsbench-w-{os.getpid()}")
    block = os.urandom(WRITE)
    if how == "fs":
        from ringloop import fs

        async def main():
            async with fs.open(path, "wb", buffering=0) as f:
                for _ in range(n):
                    await f.write(block)
                    await f.fdatasync()
            return n
    elif how == "aiofiles":
        aiofiles = _aiofiles()
        from aiofiles import os as aos

        async def main():
            async with aiofiles.open(path, "wb", buffering=0) as f:
                for _ in range(n):
                    await f.write(block)
                    await aos.wrap(os.fdatasync)(f.fileno())
            return n
    else:
        async def main():
            f = open(path, "wb", buffering=0)
            try:
                for _ in range(n):
                    await asyncio.to_thread(f.write, block)
                    await asyncio.to_thread(os.fdatasync, f.fileno())
            finally:
                f.close()
            return n

    try:
        got, secs, cpu = _timed(loop, main())
        check(os.path.getsize(path) == n * WRITE, "file size differs")
        with open(path, "rb") as f:
            for i in range(n):
                if f.read(WRITE) != block:
                    fail(f"write {i} differs")
    finally:
        os.unlink(path)
    return got, secs, {"cpu_s": cpu}


for _how in ("fs", "aiofiles", "thread"):
    def _make(how):
        def fn(loop, n):
            return _write_fsync(loop, n, how)
        fn.__doc__ = (f"Append 64 KiB and fdatasync, n times, with {how}; checks the "
                      "size and every byte.")
        return fn
    case(f"fs_write_fsync_{_how}", unit="writes", size=300, quick=100, warmup=10,
         group="fs")(_make(_how))


# -- the README table ----------------------------------------------------------

def summary(path):
    """Markdown table from `run.py --cases fs --json path`: per workload, the
    rate and CPU per operation (all threads) of ringloop.fs on io_uring and
    of aiofiles / to_thread on asyncio and uvloop, and ringloop.fs's ratios
    (median over reps of the ratio within a rep)."""
    import json
    import statistics

    runs = json.load(open(path))["runs"]
    by = {}
    for r in runs:
        if r.get("status") == "ok":
            by.setdefault((r["case"], r["loop"]), {})[r["rep"]] = r
    cols = [("fs", "ringloop-io_uring"), ("aiofiles", "asyncio"), ("aiofiles", "uvloop"),
            ("thread", "asyncio"), ("thread", "uvloop"), ("fs", "ringloop-epoll")]
    out = ["| workload | " + " | ".join(f"{h} on {lp}" for h, lp in cols) + " |",
           "|---|" + "--:|" * len(cols)]
    for work, unit in (("small_read", "files/s"), ("big_read", "MiB/s"),
                       ("write_fsync", "writes/s")):
        rates, cpus, ratios = [], [], []
        base = by.get((f"fs_{work}_fs", "ringloop-io_uring"), {})
        for how, lp in cols:
            reps = by.get((f"fs_{work}_{how}", lp), {})
            if not reps:
                rates.append("n/a")
                cpus.append("n/a")
                ratios.append("")
                continue
            rate = statistics.median(r["rate"] for r in reps.values())
            cpu = statistics.median(r["extra"]["cpu_s"] / r["ops"] * 1e6 for r in reps.values())
            rates.append(f"{rate:,.0f}")
            cpus.append(f"{cpu:,.0f}")
            paired = [base[k]["rate"] / reps[k]["rate"] for k in reps if k in base]
            ratios.append(f"{statistics.median(paired):.2f}x" if paired and reps is not base else "")
        out.append(f"| {work} ({unit}) | " + " | ".join(rates) + " |")
        out.append("| &nbsp; CPU µs per op | " + " | ".join(cpus) + " |")
        out.append("| &nbsp; ringloop.fs io_uring is | " + " | ".join(ratios) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    import sys
    print(summary(sys.argv[1]))
