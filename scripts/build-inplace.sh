#!/bin/sh
# Build ringloop._core in place (python/ringloop/_core.*.so) for development.
#   scripts/build-inplace.sh [python]      default: python3
# Builds of several sessions at once are serialised with a lock; each Python
# version, and each set of build switches, builds into its own directory.
# A Python without setuptools (a bare venv) gets a private copy from PyPI in
# build/setuptools-<version>, installed once with its own pip.
# Development builds turn warnings into errors (RINGLOOP_WERROR=1; set it to
# 0 to override); setup.py's default for a user's install is off.
set -e
py=${1:-python3}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
tag=$("$py" -c 'import sys; print("%d%d" % sys.version_info[:2])')
if ! "$py" -c 'import setuptools' 2>/dev/null; then
    tools="$top/build/setuptools-$tag"
    if ! PYTHONPATH="$tools" "$py" -c 'import setuptools' 2>/dev/null; then
        echo "build-inplace: $py has no setuptools; installing it into $tools" >&2
        "$py" -m pip install -q --disable-pip-version-check --root-user-action=ignore --target "$tools" setuptools
    fi
    PYTHONPATH="$tools${PYTHONPATH:+:$PYTHONPATH}"
    export PYTHONPATH
fi
RINGLOOP_WERROR=${RINGLOOP_WERROR:-1}
export RINGLOOP_WERROR
# setup.py keeps the objects of each set of switches apart (build_temp/<tag>)
# and rebuilds the module when the switches differ from its last build.
exec flock /tmp/ringloop-build.lock "$py" setup.py -q build_ext -i \
    --build-temp "build/temp-$tag"
