#!/usr/bin/env bash
# The main job: build ringloop and run the side-by-side benchmark against
# stock asyncio and uvloop (one run, interleaved), printing the table.
#   scripts/bench.sh [benchmarks/run.py options, e.g. --quick]
# Without --cases it runs every case (the loop core, tasks, the TCP and TLS
# echo groups, subprocesses and pipes), then benchmarks/memory.py.  Before the
# TLS and subprocess groups were added that took about 13 minutes (--quick:
# about 3); they add to it (not re-timed yet).
#   BENCH_PYTHON=/path/to/python scripts/bench.sh    (default: python3)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
py=${BENCH_PYTHON:-python3}
work=${BENCH_WORKDIR:-/tmp/ringloop-bench}

# liburing for ringloop; OpenSSL's headers for the TLS load generator
# (benchmarks/c/tls_loadgen.c).
if [ ! -f /usr/include/liburing.h ] || [ ! -f /usr/include/openssl/ssl.h ] || ! command -v gcc >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq liburing-dev libssl-dev gcc
fi

tag=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
venv="$work/venv-$tag"
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
"$venv/bin/python" -m pip install -q uvloop aiofiles  # aiofiles: the fs group's rival
src="$work/src"
rm -rf "$src"
mkdir -p "$src"
git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} cp --parents {} "$src"/
(cd "$src" && "$venv/bin/python" -m pip install -q --no-cache-dir .)
rm -rf "$src"
# Measure the copy installed in the venv (not an in-tree build).
status=0
cases=(--cases all)
for a in "$@"; do
    case $a in --cases|--cases=*) cases=() ;; esac
done
"$venv/bin/python" benchmarks/run.py --ringloop-path installed "${cases[@]}" "$@" || status=$?
# Memory: bytes per pending task and per idle connection, same loops.
echo
"$venv/bin/python" benchmarks/memory.py || status=$?
exit $status
