#!/usr/bin/env bash
# The benchmark: build ringloop and run it side by side against stock asyncio
# and uvloop (one run, interleaved), write the report, the raw numbers and the
# charts under benchmarks/results/.
#   scripts/bench.sh                 everything (see benchmarks/README.md for the time it takes)
#   scripts/bench.sh --quick         fewer reps, smaller sizes, the application group trimmed
#   scripts/bench.sh --only apps     one group: core, echo, tls, proc, sendfile, apps, fs (comma-separated)
#   scripts/bench.sh --setup         install what the benchmark needs, run nothing
# Any other option goes to benchmarks/run.py (e.g. --loops asyncio,ringloop-io_uring).
#   BENCH_PYTHON=/path/to/python scripts/bench.sh    (default: python3)
# It installs what it needs itself: Debian's liburing-dev, libssl-dev, gcc and
# wrk, and benchmarks/requirements.txt into a venv under $BENCH_WORKDIR
# (default /tmp/ringloop-bench), where ringloop is installed from this tree.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
py=${BENCH_PYTHON:-python3}
work=${BENCH_WORKDIR:-/tmp/ringloop-bench}

setup_only=0
full=1
quick=0
chosen=0
args=()
for a in "$@"; do
    case $a in
        --setup) setup_only=1 ;;
        --quick) quick=1; full=0; args+=("$a") ;;
        --only|--only=*|--cases|--cases=*) chosen=1; full=0; args+=("$a") ;;
        *) args+=("$a") ;;
    esac
done

# liburing for ringloop; OpenSSL's headers for the TLS load generator
# (benchmarks/c/tls_loadgen.c); wrk for the HTTP servers (benchmarks/apps.py).
if [ ! -f /usr/include/liburing.h ] || [ ! -f /usr/include/openssl/ssl.h ] \
        || ! command -v gcc >/dev/null || ! command -v wrk >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq liburing-dev libssl-dev gcc wrk
fi

tag=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
venv="$work/venv-$tag"
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
"$venv/bin/python" -m pip install -q -r benchmarks/requirements.txt
src="$work/src"
rm -rf "$src"
mkdir -p "$src"
git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} cp --parents {} "$src"/
(cd "$src" && "$venv/bin/python" -m pip install -q --no-cache-dir .)
rm -rf "$src"
[ $setup_only = 1 ] && { echo "set up: $venv"; exit 0; }

# Measure the copy installed in the venv (not an in-tree build).
status=0
# The whole run: every group (core, echo, tls, proc, sendfile, apps, fs), 3
# repetitions, sizes x0.6: 21.4 minutes with its setup on 2 CPUs shared with
# other jobs (load average 3-5), 2026-12-04; less on a quiet machine.  --quick: the loop core and the
# application group's quick subset, 2 repetitions (under 3 minutes).
# Options given later (--reps, --scale) override these.
if [ $chosen = 1 ]; then
    default=()
elif [ $quick = 1 ]; then
    default=(--only core,apps --reps 2)
else
    default=(--cases all --reps 3 --scale 0.6)
fi
stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p benchmarks/results
out="benchmarks/results/run-$stamp"
"$venv/bin/python" benchmarks/run.py --ringloop-path installed "${default[@]}" "${args[@]}" \
    --json "$out.json" --markdown "$out.md" || status=$?
if [ -f "$out.json" ]; then
    "$venv/bin/python" benchmarks/charts.py "$out.json" || status=$?
fi
# Memory: bytes per pending task and per idle connection, same loops (full runs only).
if [ $full = 1 ]; then
    echo
    "$venv/bin/python" benchmarks/memory.py | tee "$out-memory.md" || status=$?
fi
echo "report: $out.md  raw: $out.json  charts: $out-*.png" >&2
exit $status
