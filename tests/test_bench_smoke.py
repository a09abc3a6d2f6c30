"""Smoke test of the benchmark (benchmarks/): every case at a tiny size on
every available loop, the runner's JSON and Markdown, and that a wrong
response fails the case (not the run).  No timing thresholds.

Which loops: the ones of the backend under test (RINGLOOP_BACKEND, as CI
runs the suite once per backend): io_uring (or unset) runs asyncio,
uvloop, ringloop-io_uring and ringloop-io_uring-stocktasks; epoll runs
ringloop-epoll.  RINGLOOP_TEST_HEAVY=1 runs every loop whatever the backend.
A loop that cannot be built here (uvloop not installed, io_uring refused)
is skipped with its reason; so is a case whose package or tool is missing
(shown as a warning; tests/requirements-extra.txt lists the packages)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import pytest

import ringloop

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(TOP, "benchmarks")
WORKER = os.path.join(BENCH, "worker.py")
RUN = os.path.join(BENCH, "run.py")
MARK = "@@BENCH_RESULT@@ "
# The ringloop pytest imported (CI's installed copy, or the in-place build).
RINGLOOP_DIR = os.path.dirname(os.path.dirname(os.path.abspath(ringloop.__file__)))

sys.path.insert(0, BENCH)
from cases import CASES  # noqa: E402
from loops import LOOPS, applicable  # noqa: E402

sys.path.remove(BENCH)

APP_CASES = [c for c, case in CASES.items() if case.group == "apps"]
# Reasons for "unavailable" that are about this machine, not about the loop.
MISSING = ("cannot import", "not installed", "not built", "no CPython test package",
           "no certificate")


def loops_under_test():
    if os.environ.get("RINGLOOP_TEST_HEAVY") == "1":
        return [n for n, s in LOOPS.items() if s.kind == "loop"]
    if os.environ.get("RINGLOOP_BACKEND") == "epoll":
        return ["ringloop-epoll"]
    return ["asyncio", "uvloop", "ringloop-io_uring", "ringloop-io_uring-stocktasks"]


def bench_env(**extra):
    env = dict(os.environ)
    for var in ("RINGLOOP_BACKEND", "PYTHONASYNCIODEBUG", "PYTHONDEVMODE",
                "RINGLOOP_BENCH_BREAK", "RINGLOOP_BENCH_SMOKE"):
        env.pop(var, None)
    env["PYTHONPATH"] = RINGLOOP_DIR + (os.pathsep + env["PYTHONPATH"]
                                        if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def start_smoke(loop, cases=None, **env):
    """worker.py smoke in a new process, output to temporary files."""
    cmd = [sys.executable, WORKER, "smoke", "--loop", loop, "--watchdog", "240"]
    if cases:
        cmd += ["--cases", ",".join(cases)]
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    return subprocess.Popen(cmd, env=bench_env(**env), stdout=out, stderr=err,
                            text=True), out, err


def finish_smoke(started):
    proc, out, err = started
    try:
        proc.wait(timeout=270)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    with out, err:
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    results = [json.loads(ln[len(MARK):]) for ln in stdout.splitlines()
               if ln.startswith(MARK)]
    assert proc.returncode == 0 and len(results) == 1, (
        f"worker smoke exit {proc.returncode}\n{stdout[-3000:]}\n{stderr[-5000:]}")
    return results[0]


def smoke(loop, cases=None, **env):
    return finish_smoke(start_smoke(loop, cases, **env))


@pytest.fixture(scope="module")
def smoke_runs():
    """The smoke workers of every loop under test, started together (their
    cases mostly wait for peers and handshakes, so they overlap well); each
    test collects its own.  Nothing is left running: the ones not collected
    are killed at the end of the module."""
    started = {ln: start_smoke(ln) for ln in loops_under_test()}
    yield started
    for proc, out, err in started.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()
        err.close()


@pytest.mark.timeout_s(300)
@pytest.mark.parametrize("loop_name", loops_under_test())
def test_every_case_tiny(loop_name, smoke_runs):
    res = finish_smoke(smoke_runs[loop_name])
    if not res["available"]:
        pytest.skip(f"{loop_name} unavailable here: {res['reason']}")
    spec = LOOPS[loop_name]
    expected = {c for c, case in CASES.items() if applicable(case, spec)}
    assert set(res["cases"]) == expected
    failed = {c: r["error"] + "\n" + r.get("traceback", "")
              for c, r in res["cases"].items() if r["status"] == "failed"}
    assert not failed, "\n\n".join(f"{c}: {e}" for c, e in failed.items())
    missing = {}
    for c, r in res["cases"].items():
        if r["status"] == "unavailable":
            # A loop lacking a feature would be a regression of the loop or
            # of the case; only this machine's missing packages/tools may
            # make a case n/a.
            assert any(m in r["reason"] for m in MISSING), f"{c}: n/a: {r['reason']}"
            missing[c] = r["reason"]
            continue
        assert r["status"] == "ok", (c, r)
        assert r["ops"] > 0 and r["seconds"] > 0, (c, r)
        if CASES[c].meta.get("lat"):
            for key in ("p50_us", "p99_us", "cpu_s"):
                assert r["extra"][key] >= 0, (c, key, r)
    if missing:
        warnings.warn(f"{loop_name}: cases n/a on this machine: "
                      + "; ".join(f"{c}: {why}" for c, why in missing.items()))


def _need_app_packages():
    import importlib.util
    lacking = [m for m in ("aiohttp", "uvicorn", "httptools", "h11", "starlette", "websockets",
                           "httpx") if importlib.util.find_spec(m) is None]
    if lacking:
        pytest.skip(f"not installed: {', '.join(lacking)} (tests/requirements-extra.txt)")


@pytest.mark.timeout_s(200)
def test_wrong_response_fails_each_app_case():
    """RINGLOOP_BENCH_BREAK=1: every server (and the client cases' peer)
    sends one wrong byte; each application case must fail, saying so."""
    _need_app_packages()
    res = smoke("asyncio", APP_CASES, RINGLOOP_BENCH_BREAK="1")
    for c in APP_CASES:
        r = res["cases"][c]
        assert r["status"] == "failed", (c, r)
        assert ("wrong body" in r["error"] or "wrong echo" in r["error"]
                or "differing from" in r["error"]), (c, r["error"])
    # Without the switch the same cases pass on asyncio: test_every_case_tiny.


def _run(tmp, name, args, **env):
    js, md = os.path.join(tmp, name + ".json"), os.path.join(tmp, name + ".md")
    proc = subprocess.run(
        [sys.executable, RUN, "--ringloop-path", RINGLOOP_DIR, "--reps", "2",
         "--scale", "0.01", "--timeout", "120", "--json", js, "--markdown", md] + args,
        env=bench_env(RINGLOOP_BENCH_SMOKE="1", **env), capture_output=True, text=True,
        timeout=280)
    with open(js) as f:
        data = json.load(f)
    with open(md) as f:
        report = f.read()
    return proc, data, report


@pytest.mark.timeout_s(300)
def test_runner_json_markdown_and_a_failing_case():
    """The runner end to end (workers, JSON, Markdown, README block) on two
    loops and two cases; then a wrong response fails that case only: the
    other case is still measured and the exit status is 1."""
    _need_app_packages()
    rl = "ringloop-epoll" if os.environ.get("RINGLOOP_BACKEND") == "epoll" else "ringloop-io_uring"
    loops = f"asyncio,{rl}"
    tmp = tempfile.mkdtemp(prefix="bench-smoke-")
    try:
        proc, data, report = _run(tmp, "ok", ["--cases", "call_soon_chain,aiohttp_hello",
                                              "--loops", loops])
        assert proc.returncode == 0, proc.stderr[-5000:]
        meta = data["meta"]
        if not meta["loops"][rl]["available"]:
            pytest.skip(f"{rl} unavailable: {meta['loops'][rl]['reason']}")
        for key in ("quiet_start", "quiet_end", "packages", "groups", "apps", "kernel",
                    "python", "ringloop"):
            assert key in meta, key
        assert meta["quiet_start"]["calibration"]["rate_M"] > 0
        assert meta["groups"] == {"call_soon_chain": "core", "aiohttp_hello": "apps"}
        runs = [r for r in data["runs"] if r["status"] == "ok"]
        assert {(r["case"], r["loop"], r["rep"]) for r in runs} == {
            (c, ln, rep) for c in ("call_soon_chain", "aiohttp_hello")
            for ln in ("asyncio", rl) for rep in (1, 2)}
        s = data["summary"]["call_soon_chain"][rl]
        assert s["n"] == 2 and s["vs"]["asyncio"] > 0
        lo, hi = s["vs_range"]["asyncio"]
        assert lo <= s["vs"]["asyncio"] <= hi
        row = meta["apps"]["aiohttp_hello"][rl]
        assert row["n"] == 2 and row["vs_asyncio"] > 0 and row["cpu_us"] >= 0
        assert "### Real applications" in report and "`aiohttp_hello` (requests)" in report
        assert "Quiet check (start)" in report
        # The README block, generated from this file.
        sys.path.insert(0, BENCH)
        try:
            import readme
        finally:
            sys.path.remove(BENCH)
        block = readme.render(os.path.join(tmp, "ok.json"), tmp, draw=False)
        assert block.startswith(readme.START) and block.endswith(readme.END)
        assert "| `aiohttp_hello` (requests/s) |" in block
        assert "| `call_soon_chain` (callbacks/s) |" in block

        proc, data, report = _run(tmp, "broken", ["--cases", "call_soon_chain,aiohttp_hello",
                                                  "--loops", "asyncio", "--reps", "1"],
                                  RINGLOOP_BENCH_BREAK="1")
        assert proc.returncode == 1, proc.stderr[-3000:]
        assert [(f["case"], f["loop"]) for f in data["failures"]] == [("aiohttp_hello", "asyncio")]
        assert "wrong body" in data["failures"][0]["summary"]
        assert [r["status"] for r in data["runs"] if r["case"] == "call_soon_chain"] == ["ok"]
        assert "FAILED" in report and "### Failures" in report
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.timeout_s(120)
def test_wrk_load_is_parsed():
    """One real wrk load (1 s) so that the wrk invocation and its Lua report
    stay in working order."""
    _need_app_packages()
    if shutil.which("wrk") is None:
        pytest.skip("wrk not installed (Debian package wrk; scripts/bench.sh installs it)")
    proc = subprocess.run([sys.executable, WORKER, "run", "--case", "aiohttp_hello", "--loop",
                           "asyncio", "--size", "1", "--warmup", "0", "--watchdog", "90"],
                          env=bench_env(), capture_output=True, text=True, timeout=110)
    res = [json.loads(ln[len(MARK):]) for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    assert proc.returncode == 0 and res and res[0]["status"] == "ok", proc.stderr[-3000:]
    r = res[0]
    assert r["ops"] > 0 and 0.5 < r["seconds"] < 30
    assert r["extra"]["p99_us"] >= r["extra"]["p50_us"] > 0
