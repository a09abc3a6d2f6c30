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


# Refuses io_uring_setup(2) in the calling process the way a container's
# seccomp profile does (Docker >= 25, containerd 2): the kernel's real refusal,
# confined to the one child process that installs it.
_SECCOMP_CHILD = """
import ctypes, errno, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
ERR = getattr(errno, sys.argv[1])
AUDIT_ARCH_X86_64 = 0xC000003E
NR_IO_URING_SETUP = 425
def ins(code, jt, jf, k):
    return struct.pack("HBBI", code, jt, jf, k)
prog = b"".join([
    ins(0x20, 0, 0, 4),                      # A = seccomp_data.arch
    ins(0x15, 0, 3, AUDIT_ARCH_X86_64),      # other arch: allow
    ins(0x20, 0, 0, 0),                      # A = seccomp_data.nr
    ins(0x15, 0, 1, NR_IO_URING_SETUP),
    ins(0x06, 0, 0, 0x00050000 | ERR),       # SECCOMP_RET_ERRNO | err
    ins(0x06, 0, 0, 0x7FFF0000),             # SECCOMP_RET_ALLOW
])
buf = ctypes.create_string_buffer(prog)
class FProg(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fp = FProg(len(prog) // 8, ctypes.addressof(buf))
if libc.prctl(38, 1, 0, 0, 0) != 0:          # PR_SET_NO_NEW_PRIVS
    raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
if libc.prctl(22, 2, ctypes.byref(fp), 0, 0) != 0:   # PR_SET_SECCOMP, FILTER
    raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")
import asyncio, ringloop
print(ringloop.io_uring_unavailable_reason() is not None)
l = ringloop.new_event_loop()
print(l.backend, l.run_until_complete(asyncio.sleep(0, "ok")))
l.close()
try:
    ringloop.new_event_loop(backend="io_uring")
except OSError as e:
    print("refused", type(e).__name__, e.errno == ERR)
"""


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the seccomp filter names x86_64 syscall numbers")
@pytest.mark.parametrize("errno_name,exc", [("EPERM", "PermissionError"), ("ENOSYS", "OSError")])
def test_seccomp_refuses_io_uring(errno_name, exc):
    """The kernel itself refuses io_uring_setup (as in a container): auto
    falls back to epoll and works, an explicit io_uring raises."""
    e = dict(os.environ)
    e.pop("RINGLOOP_BACKEND", None)
    e["PYTHONPATH"] = os.pathsep.join(sys.path)
    r = subprocess.run([sys.executable, "-c", _SECCOMP_CHILD, errno_name], env=e,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines() == ["True", "epoll ok", f"refused {exc} True"]


@pytest.mark.skipif(os.environ.get("RINGLOOP_TEST_SYSCTL") != "1",
                    reason="switches io_uring off for every process on the machine: "
                    "only by hand, with RINGLOOP_TEST_SYSCTL=1, on a machine of its own "
                    "(test_seccomp_refuses_io_uring covers the kernel's refusal per process)")
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
