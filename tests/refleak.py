"""Refleak runner: each test N times in one process, on a debug CPython.

    python3.11-dbg tests/refleak.py [-R WARMUP:RUNS] [pytest arguments...]

Every selected test runs WARMUP times (caches fill: interned strings, type
caches, free lists, asyncio's and pytest's own lazily built state), then
RUNS more times while the interpreter's total reference count
(sys.gettotalrefcount(), debug builds only), its allocated memory blocks
(sys.getallocatedblocks()) and the process's open file descriptors are
read before and after each run.  A test leaks when every measured run grew
the references, or every measured run grew the blocks, or any measured run
changed the fds (the rules CPython's regrtest -R applies).  An
over-release shows the other way: a test after which None's, True's or
False's own reference count fell in every measured run releases a
reference it never took (on 3.11 these are not immortal, and the count
reaching zero aborts the interpreter in none_dealloc).  A leaking test
is reported as a failure naming it and its per-run deltas; the exit status
is pytest's.

Each run of a test sets up and tears down all its fixtures (nextitem=None),
so session-scoped state does not count as a leak.
"""
import array
import gc
import os
import sys

import pytest
from _pytest.runner import runtestprotocol


def _fds():
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def _settle():
    # Whatever a finished test left for the collector, and the type
    # attribute cache (it keeps references to looked-up objects).
    gc.collect()
    sys._clear_type_cache()


_SINGLETONS = (("None", None), ("True", True), ("False", False))


def _singleton_refs():
    return [sys.getrefcount(obj) for _, obj in _SINGLETONS]


def _leaks(deltas, single_deltas=()):
    refs = [d[0] for d in deltas]
    blocks = [d[1] for d in deltas]
    fds = [d[2] for d in deltas]
    found = []
    for k, (name, _) in enumerate(_SINGLETONS):
        ds = [d[k] for d in single_deltas]
        if ds and all(d <= -1 for d in ds):
            found.append(f"{name} over-released {ds}")
    if all(r >= 1 for r in refs):
        found.append(f"references {refs}")
    if all(b >= 1 for b in blocks):
        found.append(f"memory blocks {blocks}")
    if any(fds):
        found.append(f"file descriptors {fds}")
    return found


class RefleakPlugin:
    def __init__(self, warmup, runs):
        self.warmup = warmup
        self.runs = runs
        self.leakers = []

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item, nextitem):
        ihook = item.ihook
        ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        # One reading after each run, stored without allocating (an array,
        # not a list of tuples); a delta is the growth over one run, read the
        # same way every time, so the cost of reading cancels out.
        n = self.warmup + self.runs
        refs = array.array("q", [0]) * (n + 1)
        blocks = array.array("q", [0]) * (n + 1)
        fds = array.array("q", [0]) * (n + 1)
        single = array.array("q", [0]) * (3 * (n + 1))
        reports = []
        done = 0
        _settle()
        refs[0], blocks[0], fds[0] = sys.gettotalrefcount(), sys.getallocatedblocks(), _fds()
        single[0:3] = array.array("q", _singleton_refs())
        while done < n:
            reports = runtestprotocol(item, nextitem=None, log=False)
            if any(r.failed or r.skipped for r in reports):
                break
            # The reports are dropped before counting, and so is the captured
            # output pytest files with the item (it grows by one entry per run).
            reports = []
            item._report_sections.clear()
            done += 1
            _settle()
            refs[done], blocks[done], fds[done] = (
                sys.gettotalrefcount(), sys.getallocatedblocks(), _fds())
            single[3 * done:3 * done + 3] = array.array("q", _singleton_refs())
        deltas = [(refs[i] - refs[i - 1], blocks[i] - blocks[i - 1], fds[i] - fds[i - 1])
                  for i in range(self.warmup + 1, done + 1)]
        single_deltas = [tuple(single[3 * i + k] - single[3 * (i - 1) + k] for k in range(3))
                         for i in range(self.warmup + 1, done + 1)]
        if not reports:
            # Passed every run: one last run whose reports are shown.
            reports = runtestprotocol(item, nextitem=None, log=False)
            found = _leaks(deltas, single_deltas) if len(deltas) == self.runs else []
            if found and all(r.passed for r in reports):
                self.leakers.append((item.nodeid, found))
                for r in reports:
                    if r.when == "call":
                        r.outcome = "failed"
                        r.longrepr = f"{item.nodeid} leaked: " + "; ".join(found)
        for r in reports:
            ihook.pytest_runtest_logreport(report=r)
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True

    def pytest_terminal_summary(self, terminalreporter):
        tr = terminalreporter
        tr.section("refleak")
        tr.write_line(f"{self.warmup} warm-up + {self.runs} measured runs per test")
        if not self.leakers:
            tr.write_line("no leaks found")
        for nodeid, found in self.leakers:
            tr.write_line(f"LEAK {nodeid}: " + "; ".join(found))


def main(argv):
    if not hasattr(sys, "gettotalrefcount"):
        sys.exit("refleak.py needs a debug build of CPython (e.g. python3.11-dbg)")
    warmup, runs = 3, 3
    if argv[:1] == ["-R"]:
        warmup, runs = (int(x) for x in argv[1].split(":"))
        argv = argv[2:]
    return pytest.main(argv, plugins=[RefleakPlugin(warmup, runs)])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
