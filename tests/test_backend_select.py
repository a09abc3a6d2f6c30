"""Choosing the reactor: backend=, RINGLOOP_BACKEND, probing and fallback."""
import os
import subprocess
import sys
import textwrap

import pytest

import ringloop

pytestmark = pytest.mark.ringloop_only

URING_OK = ringloop.io_uring_unavailable_reason() is None


def _child(code, **env):
    e = dict(os.environ)
    e.pop("RINGLOOP_BACKEND", None)
    e.update(env)
    e["PYTHONPATH"] = os.pathsep.join(sys.path)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=e,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_explicit_epoll():
    lp = ringloop.new_event_loop(backend="epoll")
    try:
        assert lp.backend == "epoll"
        assert lp._backend_fallback_reason is None
    finally:
        lp.close()


@pytest.mark.skipif(not URING_OK, reason="io_uring not usable on this machine")
def test_explicit_io_uring():
    lp = ringloop.new_event_loop(backend="io_uring")
    try:
        assert lp.backend == "io_uring"
    finally:
        lp.close()


def test_auto_picks_io_uring_when_usable():
    r = _child("import ringloop; l = ringloop.new_event_loop(); print(l.backend); l.close()")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ("io_uring" if URING_OK else "epoll")


def test_bad_backend_name():
    with pytest.raises(ValueError, match="backend must be"):
        ringloop.new_event_loop(backend="kqueue")
    with pytest.raises(ValueError, match="backend must be"):
        ringloop.Loop(backend="")


@pytest.mark.parametrize("env", ["epoll", "io_uring"])
def test_env_var_chooses(env):
    if env == "io_uring" and not URING_OK:
        pytest.skip("io_uring not usable here")
    r = _child("import ringloop; l = ringloop.new_event_loop(); print(l.backend); l.close()", RINGLOOP_BACKEND=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == env


def test_env_var_invalid():
    r = _child("import ringloop; ringloop.new_event_loop()", RINGLOOP_BACKEND="nope")
    assert r.returncode != 0
    assert "RINGLOOP_BACKEND must be one of" in r.stderr


def test_explicit_argument_beats_env():
    r = _child(
        "import ringloop; l = ringloop.new_event_loop(backend='epoll'); print(l.backend); l.close()",
        RINGLOOP_BACKEND="io_uring",
    )
    assert r.stdout.strip() == "epoll", r.stderr


@pytest.mark.parametrize("errno_name", ["EPERM", "ENOSYS"])
def test_auto_falls_back_silently_when_io_uring_forbidden(errno_name):
    code = """
    import warnings, asyncio
    warnings.simplefilter("error")
    import ringloop
    l = ringloop.new_event_loop()
    print(l.backend)
    print(l._backend_fallback_reason)
    print(l.run_until_complete(asyncio.sleep(0.01, "works")))
    l.close()
    """
    r = _child(code, RINGLOOP_TEST_URING_SETUP_ERRNO=errno_name)
    assert r.returncode == 0, r.stderr
    backend, reason, works = r.stdout.strip().splitlines()
    assert backend == "epoll"
    assert reason != "None" and reason
    assert works == "works"
    assert r.stderr == ""


@pytest.mark.parametrize("errno_name,exc", [("EPERM", "PermissionError"), ("ENOSYS", "OSError")])
def test_explicit_io_uring_forbidden_raises_clearly(errno_name, exc):
    code = """
    import ringloop
    try:
        ringloop.new_event_loop(backend="io_uring")
    except OSError as e:
        print(type(e).__name__, e.errno)
        print(e)
    """
    r = _child(code, RINGLOOP_TEST_URING_SETUP_ERRNO=errno_name)
    assert r.returncode == 0, r.stderr
    first, msg = r.stdout.strip().splitlines()
    assert first.split()[0] == exc
    assert "io_uring" in msg


def test_probe_reports_reason_when_forbidden():
    r = _child(
        "import ringloop; print(ringloop.io_uring_unavailable_reason())",
        RINGLOOP_TEST_URING_SETUP_ERRNO="EPERM",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() not in ("", "None")


@pytest.mark.skipif(os.environ.get("RINGLOOP_TEST_SYSCTL") != "1",
                    reason="switches io_uring off machine-wide for a moment: "
                    "only with RINGLOOP_TEST_SYSCTL=1 (.ci/run sets it)")
@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/proc/sys/kernel/io_uring_disabled"),
                    reason="needs root and the kernel.io_uring_disabled sysctl")
def test_real_sysctl_io_uring_disabled():
    """The real thing: io_uring switched off for the whole machine."""
    path = "/proc/sys/kernel/io_uring_disabled"
    with open(path) as f:
        old = f.read().strip()
    code = """
    import asyncio, ringloop
    l = ringloop.new_event_loop()
    print(l.backend, l.run_until_complete(asyncio.sleep(0, "ok")))
    l.close()
    try:
        ringloop.new_event_loop(backend="io_uring")
    except OSError as e:
        print("refused", type(e).__name__)
    """
    try:
        with open(path, "w") as f:
            f.write("2")
        r = _child(code)
    finally:
        with open(path, "w") as f:
            f.write(old)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "epoll ok"
    assert lines[1] == "refused PermissionError"
