"""The pytest plugin: `pytest --ringloop` (or `ringloop = true` in the ini file)
runs an unedited suite's pytest-asyncio tests, anyio (asyncio backend) tests,
unittest.IsolatedAsyncioTestCase tests and asyncio.run() calls on ringloop.

A small suite is written to a temporary directory and run by pytest in a
child process; each of its tests checks type(asyncio.get_running_loop())
against what the run expects (EXPECT_LOOP)."""
import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points

import pytest

import ringloop

pytestmark = pytest.mark.ringloop_only

_RINGLOOP_DIR = os.path.dirname(os.path.dirname(os.path.abspath(ringloop.__file__)))

SUITE = '''\
import asyncio
import os
import unittest

import pytest
import pytest_asyncio

import ringloop

EXPECT = os.environ["EXPECT_LOOP"]   # asyncio | ringloop | io_uring | epoll


def check():
    loop = asyncio.get_running_loop()
    if EXPECT == "asyncio":
        assert not isinstance(loop, ringloop.Loop), type(loop)
    else:
        assert type(loop) is ringloop.Loop, type(loop)
        if EXPECT != "ringloop":
            assert loop.backend == EXPECT


@pytest.mark.asyncio
async def test_pytest_asyncio():
    check()
    await asyncio.sleep(0.001)


@pytest_asyncio.fixture
async def fixture_loop():
    yield asyncio.get_running_loop()


@pytest.mark.asyncio
async def test_pytest_asyncio_fixture(fixture_loop):
    check()
    assert fixture_loop is asyncio.get_running_loop()


@pytest.mark.asyncio(loop_scope="module")
async def test_pytest_asyncio_module_loop():
    check()


class TestIsolated(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        check()

    async def test_unittest(self):
        check()
        await asyncio.sleep(0)


def test_asyncio_run():
    async def main():
        check()
    asyncio.run(main())
'''

ANYIO_SUITE = '''\
import asyncio
import os

import anyio
import pytest

import ringloop

EXPECT = os.environ["EXPECT_LOOP"]


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_anyio():
    loop = asyncio.get_running_loop()
    assert (type(loop) is ringloop.Loop) == (EXPECT != "asyncio"), type(loop)
    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.sleep, 0.001)
    assert anyio.get_current_task().name
'''


def _plugin_args():
    """Installed (CI), pytest finds the plugin through its pytest11 entry
    point; from the source tree it is named with -p."""
    for ep in entry_points(group="pytest11"):
        if ep.value == "ringloop._pytest_plugin":
            return []
    return ["-p", "ringloop._pytest_plugin"]


def run_suite(tmp_path, expect, args=(), ini="", suite=SUITE):
    (tmp_path / "test_suite.py").write_text(suite)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = strict\n" + textwrap.dedent(ini)
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_RINGLOOP_DIR, env.get("PYTHONPATH")) if p)
    env["EXPECT_LOOP"] = expect
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *_plugin_args(), "-v",
         "-W", "error::pytest.PytestUnraisableExceptionWarning", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )


def passed(proc, n):
    tail = proc.stdout.strip().splitlines()[-1]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert tail.startswith("=") and f" {n} passed" in tail and "skipped" not in tail, tail


def _suite():
    """SUITE, plus the anyio test where anyio is installed (CI installs it:
    tests/requirements-extra.txt); returns (source, number of tests)."""
    try:
        import anyio  # noqa: F401
    except ImportError:
        return SUITE, 5
    return SUITE + "\n\n" + ANYIO_SUITE.replace("import asyncio\nimport os\n", ""), 6


def test_option_runs_the_suite_on_ringloop(tmp_path):
    suite, n = _suite()
    proc = run_suite(tmp_path, "ringloop", ["--ringloop"], suite=suite)
    passed(proc, n)
    assert "ringloop " + ringloop.__version__ + ": asyncio's event loops are ringloop's" in proc.stdout


def test_inactive_unless_asked(tmp_path):
    suite, n = _suite()
    # the same suite fails its checks when told to expect ringloop...
    proc = run_suite(tmp_path, "ringloop", suite=suite)
    assert proc.returncode == 1
    assert f"{n} failed" in proc.stdout.strip().splitlines()[-1]
    # ...and passes on stock asyncio's loops
    passed(run_suite(tmp_path, "asyncio", suite=suite), n)


def test_ini_options(tmp_path):
    passed(run_suite(tmp_path, "epoll", ini="ringloop = true\nringloop_backend = epoll\n"), 5)


def test_backend_option(tmp_path):
    backend = "io_uring" if ringloop.io_uring_unavailable_reason() is None else "epoll"
    passed(run_suite(tmp_path, backend, ["--ringloop", f"--ringloop-backend={backend}"]), 5)


def test_bad_ini_backend(tmp_path):
    proc = run_suite(tmp_path, "ringloop", ini="ringloop = true\nringloop_backend = kqueue\n")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "ringloop_backend must be one of auto, io_uring, epoll, not 'kqueue'" in proc.stderr


def test_ringloop_imported_before_pytest_gives_no_rewrite_warning(tmp_path):
    # The pytest11 entry point makes pytest mark the whole ringloop package
    # for assertion rewriting; a program that imported ringloop before
    # pytest started (sitecustomize, a runner script) then got
    # "PytestAssertRewriteWarning: Module already imported so cannot be
    # rewritten: ringloop", fatal under -W error (the library gate's suites
    # all failed at start-up this way).
    import subprocess
    import sys

    import ringloop

    (tmp_path / "test_x.py").write_text("def test_x():\n    assert 1 + 1 == 2\n")
    root = os.path.dirname(os.path.dirname(ringloop.__file__))
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "import ringloop, ringloop._pytest_plugin, pytest\n"
        "sys.exit(pytest.main(['-q', '-W', 'error', '-p', 'no:cacheprovider',\n"
        "                      '-p', 'ringloop._pytest_plugin', %r]))\n"
    ) % (root, str(tmp_path / "test_x.py"))
    # With ringloop installed, its pytest11 entry point would register the
    # plugin a second time next to the -p below; autoload off keeps the one.
    env = dict(os.environ, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path, env=env)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "PytestAssertRewriteWarning" not in out, out
