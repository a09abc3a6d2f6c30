"""Loop-core safety: races with close(), odd deadlines, huge fds, signals
raised by C code, recycled handles (issue 9)."""
import asyncio
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import BACKEND, TEST_LOOP, new_loop

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHONPATH = os.path.join(os.path.dirname(HERE), "python")


def run_script(code, *args, timeout=120, env=None):
    """Run `code` in a fresh interpreter with the loop under test."""
    e = dict(os.environ)
    e["PYTHONPATH"] = PYTHONPATH + os.pathsep + HERE + os.pathsep + e.get("PYTHONPATH", "")
    e["RINGLOOP_BACKEND"] = BACKEND
    e["RINGLOOP_TEST_LOOP"] = TEST_LOOP
    if env:
        e.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=e,
    )


# --- call_soon_threadsafe racing close() (issue 9, defect 2) ---------------

RACE_CLOSE = r"""
import asyncio, gc, sys, threading, time
from conftest import new_loop

debug = sys.argv[1] == "1"
rounds = int(sys.argv[2])
sys.setswitchinterval(1e-6)   # switch threads as often as possible
gc.set_threshold(20)          # GC passes (finalizers) inside the calls


class Cycle:
    def __init__(self):
        self.me = self

    def __del__(self):
        pass


bad = []
for _ in range(rounds):
    lp = new_loop()
    lp.set_debug(debug)
    posted = [0]
    started = threading.Barrier(9)

    def worker():
        started.wait()
        while True:
            Cycle()
            try:
                lp.call_soon_threadsafe(lambda: None)
            except RuntimeError as exc:
                if str(exc) != "Event loop is closed":
                    bad.append(repr(exc))
                return
            posted[0] += 1
            if posted[0] % 8 == 0:
                time.sleep(0)  # let the loop's thread in: no flood

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    started.wait()
    # Run the loop a little (each pass re-arms the wake-up the workers'
    # next call makes), then close it under their feet.
    while posted[0] < 20:
        lp.run_until_complete(asyncio.sleep(0))
    lp.close()
    for t in threads:
        t.join()
    counters = getattr(lp, "_debug_counters", None)
    if counters is not None and counters()["ready"]:
        bad.append(f"callbacks queued on a closed loop: {counters()}")
assert not bad, bad[:3]
print("survived", rounds)
"""


@pytest.mark.timeout_s(240)
@pytest.mark.parametrize("debug", [0, 1], ids=["nodebug", "debug"])
def test_call_soon_threadsafe_racing_close(debug):
    r = run_script(RACE_CLOSE, debug, 300, timeout=200)
    assert r.returncode == 0, (r.returncode, r.stderr[-3000:])
    assert "survived 300" in r.stdout


RUN_SHUTDOWN = r"""
import asyncio, sys, threading, time
from conftest import new_loop

sys.setswitchinterval(1e-6)
bad = []


async def main(loop):
    futs = [loop.create_future() for _ in range(8)]

    def worker(fut):
        # Post results until the loop is gone, as a thread pool whose
        # results nobody waits for does.
        n = 0
        while True:
            try:
                loop.call_soon_threadsafe(lambda: None)
                if n == 20:
                    loop.call_soon_threadsafe(fut.set_result, n)
            except RuntimeError as exc:
                if str(exc) != "Event loop is closed":
                    bad.append(repr(exc))
                return
            n += 1
            if n % 16 == 0:
                time.sleep(0)  # let the loop thread run

    threads = [threading.Thread(target=worker, args=(f,)) for f in futs]
    for t in threads:
        t.start()
    await asyncio.gather(*futs)
    return threads


for i in range(int(sys.argv[1])):
    with asyncio.Runner(loop_factory=new_loop, debug=bool(i % 2)) as runner:
        threads = runner.run(main(runner.get_loop()))
    for t in threads:
        t.join()
assert not bad, bad[:3]
print("survived")
"""


@pytest.mark.timeout_s(240)
def test_runner_shutdown_while_threads_post():
    r = run_script(RUN_SHUTDOWN, 100, timeout=200)
    assert r.returncode == 0, (r.returncode, r.stderr[-3000:])
    assert "survived" in r.stdout
