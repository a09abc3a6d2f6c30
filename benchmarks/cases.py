"""Benchmark cases.

A case is a function ``fn(loop, n) -> (ops, seconds)`` registered with
@case.  It gets a fresh, not running loop and a size n; it sets up what it
needs untimed, times only the inner work with time.perf_counter(), checks
its own result and raises CaseFailure if anything is wrong, so that a broken
loop can never produce a fast number.  ``ops`` is the number of operations
the rate is computed from (the unit says what one operation is).

An exception raised inside a loop callback does not reach the case: the
loop hands it to its exception handler.  The worker installs a handler that
records it and stops the loop, and fails the measurement afterwards, so a
check inside a callback may simply raise.

The worker first runs the case once with the warm-up size on the same loop
(results checked, time discarded), then once with the real size.

To add a case: write the function below and decorate it; nothing else
needs to change."""
import random
import threading
import time
from queue import Empty, SimpleQueue

perf_counter = time.perf_counter

CASES = {}


class CaseFailure(Exception):
    """The loop produced a wrong result: the measurement is void."""


def check(cond, message):
    # Not `assert`: it would vanish under python -O.
    if not cond:
        raise CaseFailure(message)


def fail(message):
    # For checks in the measured loops: `if not cond: fail(f"...")` formats
    # the message only on failure, so every loop is not charged for an
    # f-string per item (which would dilute the differences between loops).
    raise CaseFailure(message)


class Case:
    def __init__(self, fn, name, unit, size, quick, warmup, single_cpu, doc,
                 group="core", reference_ok=False, meta=None, quick_skip=False):
        self.fn = fn
        # --quick leaves it out when it comes with its group (named alone,
        # it still runs): a slower variant of a case the quick run keeps.
        self.quick_skip = quick_skip
        self.name = name
        self.unit = unit          # what one op is, e.g. "callbacks"
        self.size = size          # n for a default run
        self.quick = quick        # n for --quick
        self.warmup = warmup      # n for the untimed warm-up run
        self.single_cpu = single_cpu  # the worker pins itself to one CPU
        self.doc = doc
        self.group = group        # "core" (the default run) or "echo"
        self.reference_ok = reference_ok  # runs on a C reference "loop" too
        self.meta = meta or {}    # free-form facts the report may use

    def sizes(self, quick=False, scale=1.0):
        n = self.quick if quick else self.size
        n = max(1, int(n * scale))
        # warmup=0: no warm-up run (the case warms up inside, e.g. the
        # application cases' correctness pre-check).
        return n, (max(1, min(self.warmup, n)) if self.warmup else 0)


def case(name, *, unit, size, quick, warmup=None, single_cpu=False, group="core",
         reference_ok=False, meta=None, quick_skip=False):
    """Register a case.  size/quick: n for a default and a --quick run;
    warmup: n for the untimed warm-up (default quick // 5); single_cpu: run
    the whole worker (all its threads) on one CPU, for cases whose number
    is otherwise dominated by cross-CPU wake-up latency; group: "core" cases
    run by default, other groups when named in --cases; reference_ok: the
    case also runs on the C reference loop (LoopSpec kind "reference").

    fn(loop, n) returns (ops, seconds) or (ops, seconds, extra) where extra
    is a dict of numbers (e.g. {"cpu_s": ...}) the report may show."""
    def register(fn):
        doc = " ".join((fn.__doc__ or "").split())
        CASES[name] = Case(fn, name, unit, size, quick,
                           warmup if warmup is not None else max(1, quick // 5),
                           single_cpu, doc, group, reference_ok, meta, quick_skip)
        return fn
    return register


# ---------------------------------------------------------------------------
# call_soon


@case("call_soon_chain", unit="callbacks", size=400_000, quick=100_000)
def call_soon_chain(loop, n):
    """One callback re-schedules itself with call_soon(cb, i + 1) n times, so
    every loop iteration runs exactly one callback: the cost of a full turn
    of the loop (including its zero-timeout poll) per callback.  Checks
    that the arguments arrive in order and that exactly n callbacks ran."""
    state = [0]
    call_soon = loop.call_soon
    stop = loop.stop

    def step(i):
        if not (i == state[0]):  # no message formatted per item
            fail(f"callback {state[0]} received argument {i}")
        i += 1
        state[0] = i
        if i < n:
            call_soon(step, i)
        else:
            stop()

    call_soon(step, 0)
    t0 = perf_counter()
    loop.run_forever()
    t1 = perf_counter()
    check(state[0] == n, f"{state[0]} callbacks ran, expected {n}")
    return n, t1 - t0


IO_LATENESS_MAX = 10  # iterations a ready fd may wait while callbacks run


@case("call_soon_chain_fd", unit="callbacks", size=400_000, quick=100_000)
def call_soon_chain_fd(loop, n):
    """call_soon_chain with one socket registered with add_reader, as in any
    program with a socket open: a loop may skip its per-iteration poll when
    nothing is registered, but not here.  Halfway through, the chain writes
    one byte to the socket's peer; the reader must run (and read it) within
    IO_LATENESS_MAX=10 iterations, so a loop that starves I/O while
    callbacks keep coming cannot post a fast number.  Checks the chain as
    call_soon_chain does, and that the reader ran exactly once, in time."""
    import socket
    rsock, wsock = socket.socketpair()
    rsock.setblocking(False)
    state = [0]
    seen = []  # chain position at which the reader ran
    call_soon = loop.call_soon
    stop = loop.stop
    half = n // 2

    def on_readable():
        data = rsock.recv(16)
        check(data == b"x", f"reader got {data!r}")
        seen.append(state[0])

    def step(i):
        if not (i == state[0]):  # no message formatted per item
            fail(f"callback {state[0]} received argument {i}")
        if i == half:
            wsock.send(b"x")
        i += 1
        state[0] = i
        if i < n:
            call_soon(step, i)
        else:
            stop()

    loop.add_reader(rsock.fileno(), on_readable)
    try:
        call_soon(step, 0)
        t0 = perf_counter()
        loop.run_forever()
        t1 = perf_counter()
    finally:
        loop.remove_reader(rsock.fileno())
        rsock.close()
        wsock.close()
    check(state[0] == n, f"{state[0]} callbacks ran, expected {n}")
    check(len(seen) == 1, f"the reader ran {len(seen)} times, expected once")
    late = seen[0] - (half + 1)
    check(0 <= late <= IO_LATENESS_MAX,
          f"the reader ran {late} iterations after its fd became readable "
          f"(at most {IO_LATENESS_MAX} allowed): I/O starved by callbacks")
    return n, t1 - t0


BATCH = 1000


@case("call_soon_batch", unit="callbacks", size=1_000_000, quick=250_000)
def call_soon_batch(loop, n):
    """A driver callback schedules BATCH=1000 callbacks with call_soon and
    then itself; the next loop iteration runs the 1000 callbacks and the
    driver, which schedules the next batch.  n rounded up to whole batches.
    Measures call_soon plus dispatch per callback, with the per-iteration
    cost spread over 1000 callbacks.  Checks FIFO order (each callback gets
    its global index) and that each batch completed within one turn before
    the driver ran again."""
    batches = -(-n // BATCH)
    total = batches * BATCH
    state = [0, 0]  # callbacks run, batches scheduled
    call_soon = loop.call_soon
    stop = loop.stop

    def cb(i):
        if not (i == state[0]):  # no message formatted per item
            fail(f"callback {state[0]} received argument {i} (FIFO broken)")
        state[0] = i + 1

    def driver():
        done = state[1] * BATCH
        check(state[0] == done,
              f"driver ran after {state[0]} callbacks, expected {done}")
        if state[1] == batches:
            stop()
            return
        state[1] += 1
        for i in range(done, done + BATCH):
            call_soon(cb, i)
        call_soon(driver)

    call_soon(driver)
    t0 = perf_counter()
    loop.run_forever()
    t1 = perf_counter()
    check(state[0] == total, f"{state[0]} callbacks ran, expected {total}")
    return total, t1 - t0


# ---------------------------------------------------------------------------
# timers

TIMER_SEED = 20261123
TIMER_MIN_DELAY = 0.001   # uvloop turns delays under 0.5 ms into call_soon
TIMER_MAX_DELAY = 0.002


@case("call_later_cancel_half", unit="timers", size=200_000, quick=60_000)
def call_later_cancel_half(loop, n):
    """n timers with call_later and seeded random delays of 1-2 ms, then every
    other one (odd index) cancelled; the loop runs until the n/2 remaining
    fired.  Rate = n / (time to schedule + cancel + fire); the delays are
    short next to that, so the loop is busy, not waiting.  Checks that
    exactly the uncancelled timers fired, each once, in order of their
    when(), and none before its when() by the loop's clock."""
    rng = random.Random(TIMER_SEED)
    delays = [rng.uniform(TIMER_MIN_DELAY, TIMER_MAX_DELAY) for _ in range(n)]
    expected = (n + 1) // 2
    fired = []
    append = fired.append
    early = []
    whens = None  # filled in untimed between scheduling and running
    clock = loop.time
    stop = loop.stop

    def cb(i):
        append(i)
        if clock() < whens[i] - 1e-6:
            early.append((i, whens[i], clock()))
        if len(fired) == expected:
            stop()

    call_later = loop.call_later
    t0 = perf_counter()
    handles = [call_later(d, cb, i) for i, d in enumerate(delays)]
    for h in handles[1::2]:
        h.cancel()
    t1 = perf_counter()
    whens = [h.when() for h in handles]  # untimed
    t2 = perf_counter()
    loop.run_forever()
    t3 = perf_counter()

    check(len(fired) == expected, f"{len(fired)} timers fired, expected {expected}")
    check(len(set(fired)) == expected, "a timer fired more than once")
    odd = [i for i in fired if i % 2]
    check(not odd, f"{len(odd)} cancelled timers fired, e.g. #{odd[:3]}")
    check(not early, f"{len(early)} timers fired before their when(), "
                     f"first (index, when, time): {early[0] if early else None}")
    prev = -1.0
    for pos, i in enumerate(fired):
        w = whens[i]
        check(w >= prev, f"timer #{i} (when={w!r}) fired at position {pos} after "
                         f"one with when={prev!r}")
        prev = w
    return n, (t1 - t0) + (t3 - t2)


# ---------------------------------------------------------------------------
# call_soon_threadsafe

THREAD_JOIN_TIMEOUT = 30.0


def _run_with_thread(loop, target):
    """Run target in a thread and the loop until stopped; time only from the
    moment the thread is let go to run_forever's return.  An exception in the
    thread stops the loop and is re-raised."""
    go = threading.Event()
    errors = []

    def body():
        go.wait()
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)
            try:
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:
                pass  # the loop is already closed: the case has failed anyway

    th = threading.Thread(target=body, name="bench-producer", daemon=True)
    th.start()
    t0 = perf_counter()
    go.set()
    loop.run_forever()
    t1 = perf_counter()
    th.join(THREAD_JOIN_TIMEOUT + 5.0)  # longer than the producer's own waits
    check(not th.is_alive(), "the producer thread did not finish")
    if errors:
        raise CaseFailure(f"producer thread failed: {errors[0]!r}") from errors[0]
    return t1 - t0


@case("call_soon_threadsafe", unit="callbacks", size=200_000, quick=60_000)
def call_soon_threadsafe(loop, n):
    """Another thread calls call_soon_threadsafe(cb, i) n times as fast as it
    can; the loop stops when the n-th callback ran.  Measures the cross-thread
    submit path and how well the loop coalesces wake-ups.  On CPython both
    threads share the GIL, so this also measures GIL hand-offs.  Checks FIFO
    order and the count."""
    state = [0]
    stop = loop.stop

    def cb(i):
        if not (i == state[0]):  # no message formatted per item
            fail(f"callback {state[0]} received argument {i} (FIFO broken)")
        i += 1
        state[0] = i
        if i == n:
            stop()

    def produce():
        cst = loop.call_soon_threadsafe
        for i in range(n):
            cst(cb, i)

    secs = _run_with_thread(loop, produce)
    check(state[0] == n, f"{state[0]} callbacks ran, expected {n}")
    return n, secs


@case("call_soon_threadsafe_pingpong", unit="round trips", size=30_000, quick=8_000,
      warmup=1_000, single_cpu=True)
def call_soon_threadsafe_pingpong(loop, n):
    """Another thread sends call_soon_threadsafe(cb, i) and blocks on a
    queue.SimpleQueue until the callback, run by the loop, puts i back; then
    it sends i + 1.  Each round trip wakes the sleeping loop once: it
    measures the wake-up path (eventfd/pipe write, poll return, GIL hand-off,
    two context switches), not throughput.  The worker runs on one CPU:
    across two CPUs the number is dominated by the kernel's cross-CPU wake-up
    latency and varies 2x from run to run.  Checks that every reply carries
    the value sent and the count."""
    state = [0]
    replies = SimpleQueue()
    stop = loop.stop

    def cb(i):
        if not (i == state[0]):  # no message formatted per item
            fail(f"callback {state[0]} received argument {i}")
        i += 1
        state[0] = i
        replies.put(i - 1)
        if i == n:
            stop()

    def produce():
        cst = loop.call_soon_threadsafe
        get = replies.get
        for i in range(n):
            cst(cb, i)
            try:
                r = get(timeout=THREAD_JOIN_TIMEOUT)
            except Empty:
                raise CaseFailure(f"no reply to round trip {i} within "
                                  f"{THREAD_JOIN_TIMEOUT} s") from None
            if r != i:
                raise CaseFailure(f"round trip {i} got reply {r}")

    secs = _run_with_thread(loop, produce)
    check(state[0] == n, f"{state[0]} round trips, expected {n}")
    return n, secs


# ---------------------------------------------------------------------------
# tasks and futures (issue 4).  Each case drives one coroutine with
# run_until_complete and times it; the loop's create_task/create_future
# decide whose Task/Future types are measured (ringloop's native ones, or
# asyncio's for the *-stocktasks loops and for asyncio/uvloop).


def _run_main(loop, coro):
    t0 = perf_counter()
    try:
        result = loop.run_until_complete(coro)
    except RuntimeError as exc:
        if "stopped before Future completed" in str(exc):
            # a lost wake-up: the work never finished
            raise CaseFailure(f"the case never finished: {exc}") from None
        raise
    return result, perf_counter() - t0


@case("task_create_await", unit="tasks", size=200_000, quick=50_000)
def task_create_await(loop, n):
    """Create a task for a trivial coroutine and await it, n times in a row:
    create_task, one step, completion, and the awaiting task's wake-up.
    Checks every result and that each task is done."""
    import asyncio

    async def trivial(i):
        return i

    async def main():
        create = loop.create_task
        total = 0
        for i in range(n):
            t = create(trivial(i))
            r = await t
            if not (r == i and t.done()):  # no message formatted per item
                fail(f"task {i} returned {r}")
            total += r
        return total

    total, secs = _run_main(loop, main())
    check(total == n * (n - 1) // 2, f"sum of results {total}")
    return n, secs


@case("gather", unit="coroutines", size=200_000, quick=50_000)
def gather(loop, n):
    """asyncio.gather() of 100 coroutines that each yield once, repeated
    n / 100 times (gather wraps each in a task of the loop).  Checks every
    result list."""
    import asyncio

    async def child(i):
        await asyncio.sleep(0)
        return i

    async def main():
        expect = list(range(100))
        for _ in range(n // 100):
            res = await asyncio.gather(*[child(i) for i in range(100)])
            check(res == expect, "gather returned wrong results")
        return n // 100 * 100

    done, secs = _run_main(loop, main())
    return done, secs


@case("sleep0_switches", unit="switches", size=400_000, quick=100_000)
def sleep0_switches(loop, n):
    """Ten tasks each `await asyncio.sleep(0)` n / 10 times: a task switch
    through the loop per sleep.  Checks the interleaving is fair (round
    robin) and the count."""
    import asyncio

    per = n // 10
    log = []

    async def worker(w):
        for _ in range(per):
            log.append(w)
            await asyncio.sleep(0)

    async def main():
        await asyncio.gather(*[worker(w) for w in range(10)])

    _, secs = _run_main(loop, main())
    check(len(log) == per * 10, f"{len(log)} switches, expected {per * 10}")
    check(log[:20] == list(range(10)) * 2, f"not round robin: {log[:20]}")
    return per * 10, secs


@case("future_roundtrip", unit="round trips", size=200_000, quick=50_000)
def future_roundtrip(loop, n):
    """Two tasks ping-pong: each round trip, one sets a future's result and
    awaits a fresh future that the other sets (create_future, set_result,
    two wake-ups).  Checks every value comes back."""
    import asyncio

    box = {}

    async def echo():
        for i in range(n):
            v = await box["ping"]
            if not (v == i):  # no message formatted per item
                fail(f"echo got {v}, expected {i}")
            box["ping"] = loop.create_future()
            box["pong"].set_result(v)

    async def main():
        box["ping"] = loop.create_future()
        t = loop.create_task(echo())
        for i in range(n):
            box["pong"] = loop.create_future()
            box["ping"].set_result(i)
            v = await box["pong"]
            if not (v == i):  # no message formatted per item
                fail(f"round trip {i} returned {v}")
        await t
        return n

    done, secs = _run_main(loop, main())
    return done, secs


@case("taskgroup", unit="tasks", size=200_000, quick=50_000)
def taskgroup(loop, n):
    """asyncio.TaskGroup with 100 children that each yield once, repeated
    n / 100 times.  Checks every child's result."""
    import asyncio

    async def child(i):
        await asyncio.sleep(0)
        return i

    async def main():
        for _ in range(n // 100):
            async with asyncio.TaskGroup() as tg:
                ts = [tg.create_task(child(i)) for i in range(100)]
            check([t.result() for t in ts] == list(range(100)), "taskgroup results")
        return n // 100 * 100

    done, secs = _run_main(loop, main())
    return done, secs


@case("queue", unit="items", size=200_000, quick=50_000)
def queue(loop, n):
    """asyncio.Queue(maxsize=16): a producer task puts n items, a consumer
    task gets them; the bounded queue makes them block and wake each other.
    Checks FIFO order."""
    import asyncio

    async def main():
        q = asyncio.Queue(maxsize=16)

        async def producer():
            for i in range(n):
                await q.put(i)

        async def consumer():
            for i in range(n):
                v = await q.get()
                if not (v == i):  # no message formatted per item
                    fail(f"got {v}, expected {i}")

        await asyncio.gather(producer(), consumer())
        return n

    done, secs = _run_main(loop, main())
    return done, secs



# ---------------------------------------------------------------------------
# TCP echo (group "echo": python3 benchmarks/run.py --cases echo)

import echo  # noqa: E402,F401  (registers the echo cases)

# ---------------------------------------------------------------------------
# subprocesses and pipes (group "proc": python3 benchmarks/run.py --cases proc)

import proc  # noqa: E402,F401  (registers the proc cases)

# ---------------------------------------------------------------------------
# loop.sendfile (group "sendfile": python3 benchmarks/run.py --cases sendfile)

import sendfile  # noqa: E402,F401  (registers the sendfile case)

# real applications (group "apps": python3 benchmarks/run.py --only apps)

import apps  # noqa: E402,F401  (registers the application cases)

# file I/O (group "fs": python3 benchmarks/run.py --cases fs)

import files  # noqa: E402,F401  (registers the fs cases)
