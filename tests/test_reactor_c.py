"""Build and run the pure-C reactor conformance test (tests/c/) against
each backend.  Exit 77 from the program means the backend is unavailable
here: reported as a skip with its reason."""
import os
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.ringloop_only

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.join(HERE, "c", "build.sh")
BIN = os.path.join(HERE, "c", "bin", "test_reactor")


@pytest.fixture(scope="module")
def binary():
    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("no C compiler")
    r = subprocess.run(["sh", BUILD], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return BIN


@pytest.mark.timeout_s(120)
@pytest.mark.parametrize("backend", ["epoll", "io_uring"])
def test_reactor_conformance(binary, backend):
    env = dict(os.environ)
    env.pop("RINGLOOP_TEST_URING_SETUP_ERRNO", None)
    r = subprocess.run([binary, backend], capture_output=True, text=True, timeout=100, env=env)
    if r.returncode == 77:
        pytest.skip(r.stdout.strip())
    assert r.returncode == 0, r.stdout + r.stderr
