#!/usr/bin/env python3
"""The library gate: real libraries' own test suites, from their PyPI source
distributions, each run with the same selection on stock asyncio and on
ringloop (issue 14 point 4).

    integration/run.py --ringloop WHEEL_OR_SOURCE_DIR [--python PY] [--work DIR]
                       [--suites anyio,pytest-asyncio,aiohttp] [--backend io_uring]

For each suite: the pinned sdist is downloaded (pip download --no-binary) and
unpacked, a venv of its own gets ringloop, the library and its test extras,
and pytest runs the selection twice at once: RINGLOOP_GATE_LOOP=asyncio and
=ringloop (integration/inject/sitecustomize.py makes ringloop asyncio's
default policy in every process of the second run and counts the loops both
runs make: the ringloop run must have made ringloop loops, the asyncio run
none).  Then:

  * a test that fails on ringloop and passes on asyncio is run once more on
    ringloop (with the others of its kind only, to tell a flake from a failure); if it still fails only on
    ringloop, the gate fails and names it, unless it is listed in
    integration/known-failures.txt as a known ringloop bug ("ringloop");
  * a test that fails on both must be listed there ("both") with its reason;
    an unlisted one fails the gate too, so the file stays the whole list;
  * a listed test that now passes is reported, so the file can be pruned.

websockets is not run: its sdist prunes its tests, and PyPI publishes no
other source of the same release (its wheels carry no tests either).

Prints one line per suite and a closing "libgate: N passed, N failed, N
skipped" (the ringloop runs' counts, failed = tests the gate fails on).
Exit status 0 only if the gate passes."""
import argparse
import fnmatch
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
INJECT = os.path.join(HERE, "inject")
KNOWN = os.path.join(HERE, "known-failures.txt")



def _localhost_has_ipv6():
    try:
        return bool(socket.getaddrinfo("localhost", 0, socket.AF_INET6))
    except OSError:
        return False


# Where localhost has no IPv6 address (these machines: /etc/hosts maps only
# 127.0.0.1) anyio's ipv6-parametrised socket tests fail on every loop, and
# their failure paths leave sockets unclosed: the garbage collector then
# reports them (ResourceWarning, fatal under anyio's -W error) inside
# whichever test runs at that moment, on either loop -- a test that fails
# by chance.  They are left out there (known-failures.txt lists them for
# machines that run them).
_NO_IPV6_K = "" if _localhost_has_ipv6() else " and not ipv6"

# Each suite: the PyPI release (pinned: the known-failures file is about this
# release), what its tests need (from its own test requirements, less
# coverage/benchmark/lint tools), the env its install needs, and the
# selection: the same arguments for both runs.
SUITES = {
    "anyio": {
        "dist": "anyio",
        "version": "4.16.0",
        "deps": ["pytest>=9", "trustme", "hypothesis", "psutil", "pytest-mock",
                 "pytest-timeout", "truststore", "blockbuster"],
        "install_env": {},
        # the asyncio backend only (trio and uvloop are not installed; their
        # parameters skip themselves, -k drops them from the count)
        # the modules that drive the event loop (the rest tests anyio's own
        # utilities, or pytest's plugin through pytester subprocesses with 3 s
        # time limits)
        "args": ["-k", "not trio and not uvloop" + _NO_IPV6_K, "-p", "no:cacheprovider",
                 "--timeout=120",
                 "tests/streams", "tests/test_sockets.py", "tests/test_taskgroups.py",
                 "tests/test_synchronization.py", "tests/test_eventloop.py",
                 "tests/test_from_thread.py", "tests/test_to_thread.py",
                 "tests/test_lowlevel.py", "tests/test_signals.py",
                 "tests/test_subprocesses.py", "tests/test_debugging.py",
                 "tests/test_contextmanagers.py", "tests/test_concurrency_utils.py"],
    },
    "pytest-asyncio": {
        "dist": "pytest-asyncio",
        "version": "1.5.0",
        "deps": ["hypothesis"],
        "install_env": {},
        # the loop-related modules (the rest is mode/config/doctest handling,
        # and the whole suite costs ~4 min a loop: pytester subprocesses)
        "args": ["-p", "no:cacheprovider", "tests/markers", "tests/async_fixtures",
                 "tests/test_event_loop_fixture.py", "tests/test_simple.py",
                 "tests/test_set_event_loop.py", "tests/test_task_cleanup.py",
                 "tests/test_subprocess.py", "tests/test_loop_factory_parametrization.py"],
    },
    "aiohttp": {
        "dist": "aiohttp",
        "version": "3.14.5",
        "deps": ["pytest-mock", "pytest-timeout", "trustme", "freezegun", "coverage",
                 "blockbuster", "brotli", "isal", "zlib-ng"],
        # the pure-Python build: no C compiler run for aiohttp's extensions
        "install_env": {"AIOHTTP_NO_EXTENSIONS": "1"},
        # its pytest.ini's addopts bring xdist, coverage and doctests: replaced
        "args": ["-o", "addopts=", "-p", "no:cacheprovider", "--timeout=120",
                 "-m", "not dev_mode and not autobahn and not internal",
                 "tests/test_web_functional.py", "tests/test_client_functional.py",
                 "tests/test_client_ws_functional.py", "tests/test_web_server.py",
                 "tests/test_web_sendfile_functional.py"],
    },
}


def log(msg):
    print(f"libgate: {msg}", flush=True)


def sh(cmd, **kw):
    subprocess.run(cmd, check=True, **kw)


def prepare(name, suite, args):
    """Unpacked sdist and a venv with everything installed: (venv_python, srcdir)."""
    work = args.work
    sdists = os.path.join(work, "sdists")
    os.makedirs(sdists, exist_ok=True)
    stem = f"{suite['dist'].replace('-', '_')}-{suite['version']}"
    found = glob.glob(os.path.join(sdists, f"{stem}.tar.gz")) + glob.glob(
        os.path.join(sdists, f"{suite['dist']}-{suite['version']}.tar.gz"))
    if not found:
        sh([args.python, "-m", "pip", "download", "-q", "--disable-pip-version-check",
            "--no-deps", "--no-binary", ":all:", "-d", sdists,
            f"{suite['dist']}=={suite['version']}"])
        found = glob.glob(os.path.join(sdists, f"{stem}.tar.gz")) + glob.glob(
            os.path.join(sdists, f"{suite['dist']}-{suite['version']}.tar.gz"))
    if not found:
        raise RuntimeError(f"{name}: sdist not found after pip download")
    src_root = os.path.join(work, "src")
    os.makedirs(src_root, exist_ok=True)
    with tarfile.open(found[0]) as tf:
        top = tf.getnames()[0].split("/")[0]
        srcdir = os.path.join(src_root, top)
        if not os.path.isdir(srcdir):
            tf.extractall(src_root, filter="data") if hasattr(tarfile, "data_filter") \
                else tf.extractall(src_root)
    venv = os.path.join(work, f"venv-{name}")
    py = os.path.join(venv, "bin", "python")
    stamp = os.path.join(venv, "libgate-stamp.json")
    want = json.dumps([suite["version"], suite["deps"], sys.version])
    if not (os.path.exists(stamp) and open(stamp).read() == want):
        shutil.rmtree(venv, ignore_errors=True)
        sh([args.python, "-m", "venv", venv])
        pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        sh(pip + ["--upgrade", "pip"], stdout=subprocess.DEVNULL)
        sh(pip + suite["deps"])
        sh(pip + [srcdir], env={**os.environ, **suite["install_env"]})
        with open(stamp, "w") as f:
            f.write(want)
    # ringloop: always the one under test
    sh([py, "-m", "pip", "install", "-q", "--disable-pip-version-check",
        "--force-reinstall", "--no-deps", args.ringloop])
    return py, srcdir


def run_pytest(name, py, srcdir, loop, extra, args, tag):
    """Start one pytest run; returns (Popen, report path, counts dir, log path)."""
    out = os.path.join(args.work, "runs", f"{name}-{loop}-{tag}")
    shutil.rmtree(out, ignore_errors=True)
    counts = os.path.join(out, "counts")
    os.makedirs(counts)
    report = os.path.join(out, "report.json")
    logp = os.path.join(out, "pytest.log")
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": INJECT,
        "RINGLOOP_GATE_LOOP": loop,
        "RINGLOOP_GATE_COUNTS": counts,
        "RINGLOOP_GATE_REPORT": report,
        "RINGLOOP_BACKEND": args.backend,
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    env.pop("PYTEST_ADDOPTS", None)
    # run from the unpacked sdist as its authors do (python -m pytest: the
    # source tree first on sys.path; pytest-asyncio's tests need it)
    cmd = [py, "-m", "pytest", "-q", "-p", "ringloop_gate_report", "-rN"] + extra
    f = open(logp, "w")
    p = subprocess.Popen(cmd, cwd=srcdir, env=env, stdout=f, stderr=subprocess.STDOUT,
                         start_new_session=True)
    p._logfile = f
    return p, report, counts, logp


def finish(run, timeout):
    p, report, counts, logp = run
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 9)
        p.wait()
    p._logfile.close()
    try:
        with open(report) as f:
            results = json.load(f)
    except (OSError, ValueError):
        results = None
    made = {"ringloop": 0, "asyncio": 0}
    for path in glob.glob(os.path.join(counts, "*.json")):
        try:
            with open(path) as f:
                c = json.load(f)
        except (OSError, ValueError):
            continue
        made["ringloop"] += c["ringloop"]
        made["asyncio"] += c["asyncio"]
    return p.returncode, results, made, logp


def load_known():
    """{(suite, nodeid pattern): (kind, reason)} from known-failures.txt
    (a pattern is an fnmatch pattern: * and ? and [...] — a nodeid's own
    brackets are written [[] and []])."""
    known = {}
    with open(KNOWN) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            head, _, reason = line.partition(" -- ")
            parts = head.split()
            if len(parts) != 3 or parts[0] not in ("both", "ringloop") or not reason.strip():
                raise SystemExit(f"{KNOWN}:{n}: expected 'both|ringloop SUITE NODEID -- reason'")
            known[(parts[1], parts[2])] = (parts[0], reason.strip())
    return known


def lookup(known, suite, nodeid):
    """The known-failures entry matching this test: (pattern, kind, reason) or None."""
    for (s, pat), (kind, reason) in known.items():
        if s == suite and (pat == nodeid or fnmatch.fnmatchcase(nodeid, pat)):
            return pat, kind, reason
    return None


def gate_suite(name, suite, args, known):
    t0 = time.monotonic()
    py, srcdir = prepare(name, suite, args)
    t_prep = time.monotonic() - t0
    runs = {loop: run_pytest(name, py, srcdir, loop, suite["args"], args, "full")
            for loop in ("asyncio", "ringloop")}
    res = {loop: finish(run, args.timeout) for loop, run in runs.items()}
    problems = []
    for loop, (rc, results, made, logp) in res.items():
        if results is None:
            problems.append(f"{loop} run: pytest exited {rc} without results (see {logp})")
        elif rc not in (0, 1):
            # the results were written; the process died after them (at exit)
            msg = f"{loop} run: pytest wrote its results, then exited {rc} (see the end of {logp})"
            if loop == "ringloop":
                problems.append(msg)
            else:
                log(f"{name}: note: {msg}; the baseline's results are used")
    if problems:
        return {"problems": problems, "passed": 0, "failed": 0, "skipped": 0}
    (_, aio, aio_made, _), (_, rl, rl_made, rl_log) = res["asyncio"], res["ringloop"]
    if rl_made["ringloop"] == 0:
        problems.append(f"ringloop run made no ringloop loop ({rl_made}): the injection failed")
    if aio_made["ringloop"] != 0:
        problems.append(f"asyncio run made {aio_made['ringloop']} ringloop loops")

    def failed(r, nid):
        return r.get(nid, ("missing", ""))[0] == "failed"

    only_rl = sorted(n for n in rl if failed(rl, n) and aio.get(n, ("",))[0] == "passed")
    both = sorted(n for n in rl if failed(rl, n) and failed(aio, n))
    flaky = []
    if only_rl:
        # once more, alone, on both loops: a flake passes now
        again = {loop: finish(run_pytest(name, py, srcdir, loop,
                                         [a for a in suite["args"]
                                          if a != "tests" and not a.startswith("tests/")] + only_rl,
                                         args, "again"), args.timeout)
                 for loop in ("ringloop",)}
        r2 = again["ringloop"][1] or {}
        still = [n for n in only_rl if r2.get(n, ("failed",))[0] != "passed"]
        flaky = [n for n in only_rl if n not in still]
        only_rl = still
    gate_fail, known_rl, listed_both, unlisted_both = [], [], [], []
    for n in only_rl:
        k = lookup(known, name, n)
        if k and k[1] == "ringloop":
            known_rl.append((n, k[2]))
        else:
            gate_fail.append((n, rl[n][1]))
    for n in both:
        if lookup(known, name, n):
            listed_both.append(n)
        else:
            unlisted_both.append((n, rl[n][1], aio[n][1]))
    # a listed test (an exact nodeid, not a pattern) that passes on ringloop
    now_pass = sorted(nid for (s, nid), _ in known.items()
                      if s == name and rl.get(nid, ("",))[0] == "passed"
                      and nid not in flaky)
    counts = {k: sum(1 for v in rl.values() if v[0] == k) for k in ("passed", "failed", "skipped")}
    aio_counts = {k: sum(1 for v in aio.values() if v[0] == k) for k in ("passed", "failed", "skipped")}
    return {
        "problems": problems, "gate_fail": gate_fail, "known_rl": known_rl,
        "listed_both": listed_both, "unlisted_both": unlisted_both, "flaky": flaky,
        "now_pass": now_pass, "rl": counts, "aio": aio_counts, "made": (rl_made, aio_made),
        "secs": time.monotonic() - t0, "prep": t_prep, "log": rl_log,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ringloop", required=True, help="ringloop wheel or source dir to pip install")
    ap.add_argument("--python", default=sys.executable, help="base Python for the venvs")
    ap.add_argument("--work", default="/tmp/ringloop-libgate")
    ap.add_argument("--suites", default=",".join(SUITES))
    ap.add_argument("--backend", default="io_uring")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per pytest run")
    args = ap.parse_args()
    args.work = os.path.abspath(args.work)
    args.ringloop = os.path.abspath(args.ringloop)
    os.makedirs(args.work, exist_ok=True)
    known = load_known()
    t0 = time.monotonic()
    tp = tf = ts = 0
    bad = False
    log("websockets: not run (its sdist prunes its tests; PyPI has no other source of the release)")
    for name in args.suites.split(","):
        r = gate_suite(name, SUITES[name], args, known)
        if r["problems"]:
            bad = True
            for p in r["problems"]:
                log(f"{name}: PROBLEM: {p}")
            if "rl" not in r:
                tf += 1
                continue
        for n, why in r["gate_fail"]:
            log(f"{name}: FAILS ON RINGLOOP ONLY: {n}: {why}")
        for n, why in r["known_rl"]:
            log(f"{name}: known ringloop failure: {n} ({why})")
        for n, w_rl, w_aio in r["unlisted_both"]:
            log(f"{name}: fails on both loops, not in known-failures.txt: {n}: {w_rl}")
        for n in r["flaky"]:
            log(f"{name}: failed once on ringloop only, passed when run again: {n}")
        for n in r["now_pass"]:
            log(f"{name}: listed in known-failures.txt but passes now on ringloop: {n}")
        nfail = len(r["gate_fail"]) + len(r["unlisted_both"])
        bad |= bool(nfail)
        rl, aio = r["rl"], r["aio"]
        log(f"{name}: ringloop {rl['passed']} passed, {rl['failed']} failed, {rl['skipped']} skipped"
            f" | asyncio {aio['passed']} passed, {aio['failed']} failed, {aio['skipped']} skipped"
            f" | loops made: {r['made'][0]['ringloop']} ringloop + {r['made'][0]['asyncio']} asyncio-explicit"
            f" | known: {len(r['listed_both'])} both, {len(r['known_rl'])} ringloop"
            f" | {r['secs']:.0f}s ({r['prep']:.0f}s setup)")
        tp += rl["passed"]
        tf += nfail + len(r["problems"])
        ts += rl["skipped"]
    log(f"done in {time.monotonic() - t0:.0f}s")
    print(f"libgate: {tp} passed, {tf} failed, {ts} skipped", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
