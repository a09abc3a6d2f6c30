#!/bin/sh
# Build ringloop._core in place (python/ringloop/_core.*.so) for development.
#   scripts/build-inplace.sh [python]      default: python3
# Builds of several sessions at once are serialised with a lock; each Python
# version builds into its own directory.
set -e
py=${1:-python3}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
tag=$("$py" -c 'import sys; print("%d%d" % sys.version_info[:2])')
exec flock /tmp/ringloop-build.lock "$py" setup.py -q build_ext -i \
    --build-temp "build/temp-$tag${RINGLOOP_SANITIZE:+-asan}${RINGLOOP_DEBUG:+-dbg}"
