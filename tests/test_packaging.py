"""The built module, as imported (CI: the copy installed in the venv; in
development: the in-place build) — cheap checks of what setup.py promises."""
import importlib.metadata
import os
import re
import shutil
import subprocess

import pytest

import ringloop
import ringloop._core

pytestmark = pytest.mark.ringloop_only

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} (binutils) is needed for this test")
    return path


def test_module_exports_only_its_init_function():
    # liburing is linked in statically: its io_uring_* functions must stay
    # local, or another copy of liburing in the process would bind to ours
    out = subprocess.run(
        [_tool("nm"), "-D", "--defined-only", ringloop._core.__file__],
        capture_output=True, text=True, check=True,
    ).stdout
    exported = sorted(line.split()[-1] for line in out.splitlines() if line.strip())
    assert exported == ["PyInit__core"]


def test_module_has_no_rpath():
    out = subprocess.run(
        [_tool("readelf"), "-d", ringloop._core.__file__],
        capture_output=True, text=True, check=True,
    ).stdout
    assert not re.search(r"\((RPATH|RUNPATH)\)", out), out


def test_version_has_one_source():
    # pyproject.toml takes the version from ringloop.__version__
    with open(os.path.join(TOP, "pyproject.toml")) as f:
        pyproject = f.read()
    assert re.search(r'^dynamic = \[.*"version"', pyproject, re.M)
    assert 'version = {attr = "ringloop.__version__"}' in pyproject
    assert not re.search(r'^version\s*=\s*"', pyproject, re.M)
    try:
        installed = importlib.metadata.version("ringloop")
    except importlib.metadata.PackageNotFoundError:
        return  # the in-place build of a development tree: nothing installed
    if os.path.dirname(ringloop.__file__) == os.path.join(TOP, "python", "ringloop"):
        return  # an in-place build shadows whatever copy is installed
    assert installed == ringloop.__version__
    meta = importlib.metadata.metadata("ringloop")
    assert meta.get("License-Expression", meta.get("License")) == "MIT"
