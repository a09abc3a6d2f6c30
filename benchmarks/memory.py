"""Memory per pending Task, side by side (issue 4's memory target).

For each loop, in a fresh process: N tasks, each awaiting its own future
(created with loop.create_future()), are created and stepped once so that
all are pending; the bytes that Python allocated for them (tracemalloc, so
the same accounting for every loop: task, coroutine and frame, future,
context, callbacks, registry entries) divided by N is the cost of one
pending task.  Then the futures are resolved and every task is checked to
have finished.

    python benchmarks/memory.py [--n 10000] [--loops asyncio,uvloop,...]
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--loops", default="asyncio,uvloop,ringloop-io_uring,ringloop-epoll,"
                    "ringloop-io_uring-stocktasks")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args.n)))
        return
    rows = []
    for name in args.loops.split(","):
        r = subprocess.run([sys.executable, __file__, "--worker", name, "--n", str(args.n)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            rows.append((name, None, r.stderr.strip().splitlines()[-1:] or ["failed"]))
            continue
        rows.append((name, json.loads(r.stdout), None))
    base = {name: v for name, v, _ in rows if v}
    print(f"| loop | bytes per pending task (N={args.n}) | vs asyncio |")
    print("|---|--:|--:|")
    for name, v, err in rows:
        if v is None:
            print(f"| {name} | n/a ({err[0]}) | |")
        else:
            ratio = f"{v / base['asyncio']:.2f}x" if "asyncio" in base else ""
            print(f"| {name} | {v:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
