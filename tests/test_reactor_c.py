"""Build and run the pure-C reactor tests (tests/c/): the conformance test
against each backend, and the io_uring-specific test, also with the
backend's test hooks that force its fallback paths.  Exit 77 from a program
means io_uring is unavailable here: reported as a skip with its reason."""
import os
import shutil
import subprocess

import pytest

pytestmark = [
    pytest.mark.ringloop_only,
    # These programs do not depend on RINGLOOP_BACKEND (they test both
    # backends themselves): run them once per Python, in the io_uring pass.
    pytest.mark.skipif(
        os.environ.get("RINGLOOP_BACKEND", "auto") == "epoll",
        reason="C reactor tests run in the RINGLOOP_BACKEND=io_uring/auto pass",
    ),
]

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.join(HERE, "c", "build.sh")
BIN = os.path.join(HERE, "c", "bin")


@pytest.fixture(scope="module")
def built():
    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("no C compiler")
    r = subprocess.run(["sh", BUILD], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return BIN


def _run(argv, **env):
    e = {k: v for k, v in os.environ.items() if not k.startswith("RINGLOOP_")}
    e.update(env)
    # the C programs are not instrumented: keep an ASan preload away
    e.pop("LD_PRELOAD", None)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=150, env=e)
    if r.returncode == 77:
        pytest.skip(r.stdout.strip())
    assert r.returncode == 0, r.stdout + r.stderr


HOOKS = [
    {},
    {"RINGLOOP_TEST_URING_NOWAIT": "1"},
    {"RINGLOOP_TEST_URING_NO_MULTISHOT": "1"},
    # a SINGLE_ISSUER|DEFER_TASKRUN ring, created disabled (falls back to
    # the default flags on kernels before 6.1)
    {"RINGLOOP_URING_DEFER_TASKRUN": "1"},
]
HOOK_IDS = ["plain", "nowait", "no-multishot", "defer-taskrun"]


@pytest.mark.timeout_s(200)
@pytest.mark.parametrize("backend", ["epoll", "io_uring"])
def test_reactor_conformance(built, backend):
    _run([os.path.join(built, "test_reactor"), backend])


@pytest.mark.timeout_s(200)
@pytest.mark.parametrize("hooks", HOOKS, ids=HOOK_IDS)
def test_reactor_conformance_uring_fallback_paths(built, hooks):
    _run([os.path.join(built, "test_reactor"), "io_uring"], **hooks)


@pytest.mark.timeout_s(200)
@pytest.mark.parametrize("hooks", HOOKS, ids=HOOK_IDS)
def test_uring_extra(built, hooks):
    _run([os.path.join(built, "test_uring_extra")], **hooks)
