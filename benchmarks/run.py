#!/usr/bin/env python3
"""Side-by-side benchmarks: asyncio vs uvloop vs ringloop (each backend).

    python3 benchmarks/run.py                      # everything, 5 reps
    python3 benchmarks/run.py --quick              # 3 reps, smaller sizes
    python3 benchmarks/run.py --cases call_soon_chain --loops asyncio,ringloop-epoll
    python3 benchmarks/run.py --json out.json      # also save raw numbers
    python3 benchmarks/run.py --list

Every measurement runs in a fresh worker process (benchmarks/worker.py) of
the same interpreter unless --python says otherwise, and the measurements
are interleaved: for each repetition, for each case, every loop once, the
order of the loops rotated each repetition.  So slow drifts of the machine
(frequency, other load) hit every loop alike, and ratios come from one run.

The Markdown report goes to stdout; progress goes to stderr.  See
benchmarks/README.md for what the cases measure and how to read the table."""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from cases import CASES  # noqa: E402
from cbuild import build_c_tools  # noqa: E402
from loops import BASELINES, LOOPS, applicable  # noqa: E402
from worker import RESULT_MARK  # noqa: E402

REFERENCE = "c-io_uring-ref"  # the echo cases' "best possible"
ECHO_GROUPS = ("echo", "tls")  # cases measured by a C client: the echo tables
APPS_GROUPS = ("apps",)  # real applications: their own table (apps_table)

WORKER = os.path.join(HERE, "worker.py")
REPO_PYTHON_DIR = os.path.normpath(os.path.join(HERE, "..", "python"))
# Environment variables that would slow one loop down or change its kind.
SCRUBBED_ENV = ("PYTHONASYNCIODEBUG", "PYTHONDEVMODE", "RINGLOOP_BACKEND",
                "PYTHONMALLOC", "PYTHONTRACEMALLOC")


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


# ---------------------------------------------------------------------------
# running workers


class WorkerError(Exception):
    def __init__(self, summary, detail):
        super().__init__(summary)
        self.summary = summary
        self.detail = detail


def run_worker(python, args, env, timeout):
    cmd = [python, WORKER] + args
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        detail = (exc.stderr or b"")
        if isinstance(detail, bytes):
            detail = detail.decode(errors="replace")
        raise WorkerError(f"timed out after {timeout} s", detail) from None
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            result = json.loads(line[len(RESULT_MARK):])
    if proc.returncode != 0 or result is None:
        if proc.returncode < 0:
            summary = f"killed by signal {-proc.returncode}"
        elif proc.returncode != 0:
            summary = f"exit status {proc.returncode}"
        else:
            summary = "no result printed"
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        if result is not None and result.get("error"):
            summary += ": " + result["error"]
        elif any(ln.startswith("Timeout (") for ln in lines):
            summary += ": hung, the watchdog fired (stacks below)"
        elif any(ln.startswith("Fatal Python error") for ln in lines):
            summary += ": " + next(ln for ln in lines if ln.startswith("Fatal Python error"))
        elif lines:
            summary += ": " + lines[-1].strip()
        stdout = "".join(ln + "\n" for ln in proc.stdout.splitlines()
                         if not ln.startswith(RESULT_MARK))
        raise WorkerError(summary, proc.stderr + stdout)
    return result, proc.stderr


# ---------------------------------------------------------------------------
# facts about the machine


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_rev():
    try:
        out = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        rev = out.stdout.strip()
        if out.returncode != 0 or not rev:
            return "no commit"
        dirty = subprocess.run(["git", "-C", HERE, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def snapshot_ringloop(src_dir):
    """Copy the in-tree ringloop package to a private directory, so that a
    rebuild during the run cannot mix two builds in one table."""
    tmp = tempfile.mkdtemp(prefix="ringloop-bench-")
    shutil.copytree(os.path.join(src_dir, "ringloop"), os.path.join(tmp, "ringloop"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    return tmp


# ---------------------------------------------------------------------------
# statistics and formatting


def summarize(rates):
    rates = sorted(rates)
    med = statistics.median(rates)
    if len(rates) >= 2:
        q1, _, q3 = statistics.quantiles(rates, n=4, method="inclusive")
    else:
        q1 = q3 = rates[0]
    return {
        "median": med,
        "min": rates[0],
        "max": rates[-1],
        "q1": q1,
        "q3": q3,
        # (max - min) / median and (Q3 - Q1) / median, in percent
        "spread_pct": 100.0 * (rates[-1] - rates[0]) / med,
        "iqr_pct": 100.0 * (q3 - q1) / med,
        "n": len(rates),
    }


def paired_ratios(by_rep, loop, base):
    """rate(loop)/rate(base) in each repetition where both were measured
    (adjacent in time)."""
    return [r[loop] / r[base] for r in by_rep.values()
            if loop in r and base in r and r[base] > 0]


def paired_ratio(by_rep, loop, base):
    """Median over repetitions of rate(loop)/rate(base) measured in the same
    repetition (adjacent in time), or None."""
    ratios = paired_ratios(by_rep, loop, base)
    if not ratios:
        return None
    return statistics.median(ratios)


def fmt_ratio_spread(med, lo, hi):
    """'1.23x (1.10-1.31)': the median paired ratio and the range of the
    per-repetition ratios."""
    if med is None:
        return "n/a"
    if lo is None or hi is None or lo == hi:
        return f"{med:.2f}x"
    return f"{med:.2f}x ({lo:.2f}–{hi:.2f})"


# ---------------------------------------------------------------------------
# is the machine quiet?


def calibrate(rounds=7, n=200_000):
    """A fixed pure-Python loop timed `rounds` times: its median rate
    (M iterations/s) and the spread (max - min) / median in percent.  On an
    idle machine the spread is a few percent; other processes competing for
    the CPUs make it (and the rate) move."""
    rates = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        x = 0
        for i in range(n):
            x += i & 7
        rates.append(n / (time.perf_counter() - t0) / 1e6)
    med = statistics.median(rates)
    return {"rate_M": med, "spread_pct": 100.0 * (max(rates) - min(rates)) / med}


def quiet_check():
    """Load average and a short calibration loop; 'quiet' is False (with
    the reasons) when the 1-minute load average is above 0.3 per CPU or the
    calibration loop's spread is above 10%."""
    load = os.getloadavg()
    cal = calibrate()
    cpus = os.cpu_count() or 1
    reasons = []
    if load[0] > 0.3 * cpus:
        reasons.append(f"1-minute load average {load[0]:.2f} on {cpus} CPUs")
    if cal["spread_pct"] > 10:
        reasons.append(f"calibration loop spread {cal['spread_pct']:.0f}% (> 10%)")
    return {"loadavg": load, "calibration": cal, "quiet": not reasons, "reasons": reasons}


def fmt_rate(x):
    if x is None:
        return "n/a"
    for scale, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if x >= scale:
            v = x / scale
            return (f"{v:.3g}" if v < 100 else f"{v:.0f}") + suffix
    return f"{x:.3g}"


def fmt_ratio(x):
    return "n/a" if x is None else f"{x:.2f}x"


def markdown_table(case_names, loop_names, summary, status):
    out = ["| case | loop | median ops/s | spread IQR / range | vs asyncio | vs uvloop |",
           "|---|---|--:|--:|--:|--:|"]
    for cname in case_names:
        c = CASES[cname]
        first = True
        for lname in loop_names:
            label = f"`{cname}` ({c.unit}/s)" if first else ""
            first = False
            st = status.get((cname, lname))
            s = summary.get(cname, {}).get(lname)
            if s is None:
                cell = "FAILED" if st == "failed" else "n/a"
                out.append(f"| {label} | {lname} | {cell} | | | |")
                continue
            ratios = []
            for base in BASELINES:
                if base == lname:
                    ratios.append("—")
                else:
                    rng = (s.get("vs_range") or {}).get(base) or (None, None)
                    ratios.append(fmt_ratio_spread(s["vs"].get(base), *rng))
            spread = (f"{s['iqr_pct']:.1f}% / {s['spread_pct']:.0f}%" if s["n"] >= 2
                      else "1 rep")
            incomplete = "" if st != "failed" else " (FAILED in a later rep)"
            out.append(f"| {label} | {lname} | {fmt_rate(s['median'])}{incomplete} | "
                       f"{spread} | {ratios[0]} | {ratios[1]} |")
    return "\n".join(out)


# ---------------------------------------------------------------------------
# the echo table


def echo_summary(args, by_rep, by_rep_extra):
    """Per echo case and loop: medians of round trips/s, MB/s and server CPU
    per round trip, and paired ratios (same repetition) to the C reference
    of the same size and connection count and to uvloop."""
    # rep -> ref_key -> reference measurement
    ref = {}
    for cname in args.case_names:
        c = CASES[cname]
        if c.group not in ECHO_GROUPS:
            continue
        for rep, per_loop in by_rep_extra.get(cname, {}).items():
            if REFERENCE in per_loop:
                ref.setdefault(rep, {})[c.meta["ref_key"]] = per_loop[REFERENCE]
    out = {}
    for cname in args.case_names:
        c = CASES[cname]
        if c.group not in ECHO_GROUPS:
            continue
        rows = {}
        for lname in args.loop_names:
            rates, mbs, cpu_us, vs_ref, cpu_vs_ref, vs_uv = [], [], [], [], [], []
            rate_vs = {"asyncio": [], "uvloop": []}
            for rep, per_loop in by_rep_extra.get(cname, {}).items():
                m = per_loop.get(lname)
                if m is None:
                    continue
                rate = m["ops"] / m["seconds"]
                rates.append(rate)
                mbs.append(m["bytes"] / m["seconds"] / 1e6)
                cpu = m["cpu_s"] / m["ops"] * 1e6
                cpu_us.append(cpu)
                r = ref.get(rep, {}).get(c.meta["ref_key"])
                if r is not None:
                    vs_ref.append(rate / (r["ops"] / r["seconds"]))
                    cpu_vs_ref.append(cpu / (r["cpu_s"] / r["ops"] * 1e6))
                uv = per_loop.get("uvloop")
                if uv is not None and lname != "uvloop":
                    vs_uv.append((uv["cpu_s"] / uv["ops"] * 1e6) / cpu)
                for base, acc in rate_vs.items():
                    b = per_loop.get(base)
                    if b is not None and lname != base:
                        acc.append(rate / (b["ops"] / b["seconds"]))
            if not rates:
                continue
            med = statistics.median
            rows[lname] = {
                "rate": med(rates), "mbs": med(mbs), "cpu_us": med(cpu_us),
                "spread_pct": 100.0 * (max(rates) - min(rates)) / med(rates),
                "vs_ref": med(vs_ref) if vs_ref else None,
                "cpu_vs_ref": med(cpu_vs_ref) if cpu_vs_ref else None,
                "cpu_gain_vs_uvloop": med(vs_uv) if vs_uv else None,
                "vs_asyncio": med(rate_vs["asyncio"]) if rate_vs["asyncio"] else None,
                "vs_uvloop": med(rate_vs["uvloop"]) if rate_vs["uvloop"] else None,
                "n": len(rates),
            }
        out[cname] = rows
    return out


def tls_table(args, echo, status):
    out = ["### TLS echo and handshakes (client: benchmarks/c/tls_loadgen, OpenSSL)",
           "",
           "| case | loop | rate/s | MB/s each way | vs asyncio | vs uvloop | spread | "
           "server CPU us/op | CPU gain vs uvloop |",
           "|---|---|--:|--:|--:|--:|--:|--:|--:|"]
    for cname, rows in echo.items():
        c = CASES[cname]
        if c.group != "tls":
            continue
        first = True
        for lname in args.loop_names:
            if not applicable(c, LOOPS[lname]):
                continue
            label = f"`{cname}`" if first else ""
            first = False
            r = rows.get(lname)
            if r is None:
                st = status.get((cname, lname))
                cell = "FAILED" if st == "failed" else "n/a"
                out.append(f"| {label} | {lname} | {cell} | | | | | | |")
                continue

            def ratio(x, base):
                if lname == base:
                    return "—"
                return "n/a" if x is None else f"{x:.2f}x"
            out.append(
                f"| {label} | {lname} | {fmt_rate(r['rate'])} | {r['mbs']:.0f} | "
                f"{ratio(r['vs_asyncio'], 'asyncio')} | {ratio(r['vs_uvloop'], 'uvloop')} | "
                f"{r['spread_pct']:.0f}% | {r['cpu_us']:.1f} | "
                f"{ratio(r['cpu_gain_vs_uvloop'], 'uvloop')} |")
    out.append("")
    out.append("rate: round trips/s (handshakes/s for tls_handshake).  vs asyncio / vs uvloop: "
               "paired throughput ratios (same repetition), medians.  CPU gain vs uvloop: "
               "uvloop's server CPU per op / this loop's (> 1 = cheaper).  spread = "
               "(max - min) / median of the throughput.")
    return "\n".join(out)


def echo_table(args, echo, status):
    out = ["### TCP echo (client: benchmarks/c/loadgen; reference: C io_uring server)",
           "",
           "| case | loop | round trips/s | MB/s each way | x C ref | spread | "
           "server CPU us/round trip | CPU x C ref | CPU gain vs uvloop |",
           "|---|---|--:|--:|--:|--:|--:|--:|--:|"]
    for cname, rows in echo.items():
        c = CASES[cname]
        if c.group != "echo":
            continue
        first = True
        for lname in args.loop_names:
            if not applicable(c, LOOPS[lname]):
                continue
            label = f"`{cname}`" if first else ""
            first = False
            r = rows.get(lname)
            if r is None:
                st = status.get((cname, lname))
                cell = "FAILED" if st == "failed" else "n/a"
                out.append(f"| {label} | {lname} | {cell} | | | | | | |")
                continue
            def ratio(x):
                return "n/a" if x is None else f"{x:.2f}"
            gain = r["cpu_gain_vs_uvloop"]
            out.append(
                f"| {label} | {lname} | {fmt_rate(r['rate'])} | {r['mbs']:.0f} | "
                f"{ratio(r['vs_ref'])} | {r['spread_pct']:.0f}% | {r['cpu_us']:.1f} | "
                f"{ratio(r['cpu_vs_ref'])} | "
                f"{'—' if lname == 'uvloop' else ratio(gain) + ('x' if gain else '')} |")
    out.append("")
    out.append("x C ref: throughput / the C io_uring server's (same size, connections and "
               "repetition; its numbers are in the proto rows).  CPU x C ref: server CPU per "
               "round trip / the C server's (1.00 = as cheap).  CPU gain vs uvloop: uvloop's "
               "CPU per round trip / this loop's (> 1 = cheaper than uvloop).  Medians over "
               "repetitions; spread = (max - min) / median of the throughput.")
    return "\n".join(out)


# ---------------------------------------------------------------------------
# the application table


def apps_summary(args, by_rep_extra):
    """Per application case and loop: medians over repetitions of the rate,
    p50/p99 latency and CPU per operation, and the paired ratios (same
    repetition) to asyncio and uvloop with the range of the per-repetition
    ratios."""
    med = statistics.median
    out = {}
    for cname in args.case_names:
        if CASES[cname].group not in APPS_GROUPS:
            continue
        rows = {}
        for lname in args.loop_names:
            rates, p50, p99, cpu, cpu_gain = [], [], [], [], []
            vs = {b: [] for b in BASELINES}
            for rep, per_loop in by_rep_extra.get(cname, {}).items():
                m = per_loop.get(lname)
                if m is None:
                    continue
                rate = m["ops"] / m["seconds"]
                rates.append(rate)
                p50.append(m["p50_us"])
                p99.append(m["p99_us"])
                cpu.append(m["cpu_s"] / m["ops"] * 1e6)
                for b in BASELINES:
                    bm = per_loop.get(b)
                    if bm is not None and b != lname:
                        vs[b].append(rate / (bm["ops"] / bm["seconds"]))
                uv = per_loop.get("uvloop")
                if uv is not None and lname != "uvloop" and m["cpu_s"] > 0:
                    # uvloop's CPU per op / this loop's, same repetition
                    cpu_gain.append((uv["cpu_s"] / uv["ops"]) / (m["cpu_s"] / m["ops"]))
            if not rates:
                continue
            row = {"rate": med(rates), "rates": rates, "p50_us": med(p50), "p99_us": med(p99),
                   "cpu_us": med(cpu), "n": len(rates),
                   "cpu_gain_vs_uvloop": med(cpu_gain) if cpu_gain else None,
                   "spread_pct": 100.0 * (max(rates) - min(rates)) / med(rates)}
            for b in BASELINES:
                row[f"vs_{b}"] = med(vs[b]) if vs[b] else None
                row[f"vs_{b}_range"] = [min(vs[b]), max(vs[b])] if vs[b] else None
            rows[lname] = row
        out[cname] = rows
    return out


def fmt_us(us):
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} us"


def apps_table(args, apps, status):
    out = ["### Real applications (servers loaded by wrk, 50 connections; websocket and HTTP "
           "clients against a peer process)",
           "",
           "| case | loop | rate/s | p50 | p99 | CPU us/op | CPU gain vs uvloop | "
           "vs asyncio (range) | vs uvloop (range) | spread |",
           "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for cname, rows in apps.items():
        first = True
        for lname in args.loop_names:
            if LOOPS[lname].kind != "loop":
                continue
            label = f"`{cname}` ({CASES[cname].unit})" if first else ""
            first = False
            r = rows.get(lname)
            if r is None:
                st = status.get((cname, lname))
                cell = "FAILED" if st == "failed" else "n/a"
                out.append(f"| {label} | {lname} | {cell} | | | | | | | |")
                continue
            gain = r["cpu_gain_vs_uvloop"]
            gain = "—" if lname == "uvloop" else "n/a" if gain is None else f"{gain:.2f}x"
            ratios = []
            for b in BASELINES:
                if b == lname:
                    ratios.append("—")
                else:
                    rng = r[f"vs_{b}_range"] or (None, None)
                    ratios.append(fmt_ratio_spread(r[f"vs_{b}"], *rng))
            out.append(f"| {label} | {lname} | {fmt_rate(r['rate'])} | {fmt_us(r['p50_us'])} | "
                       f"{fmt_us(r['p99_us'])} | {r['cpu_us']:.0f} | {gain} | {ratios[0]} | {ratios[1]} | "
                       f"{r['spread_pct']:.0f}% |")
    out.append("")
    out.append("rate: requests/s (messages/s for the websocket).  p50/p99: latency seen by the "
               "client (wrk's, or the peer's / client's own timing).  CPU us/op: CPU time of the "
               "process on the loop under test (the server; for http_client_* the client) per "
               "request.  CPU gain vs uvloop: uvloop's CPU per request / this loop's, same repetition, median (> 1 = cheaper; on a busy 2-CPU machine steadier than the rate).  vs asyncio / vs uvloop: median of the per-repetition paired ratios of "
               "the rate, (min–max of them).  spread = (max - min) / median of the rate.")
    return "\n".join(out)


# ---------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Interleaved side-by-side benchmarks of asyncio event loops.",
        epilog="See benchmarks/README.md.")
    p.add_argument("--cases", help="comma-separated case names or groups (default: core)")
    p.add_argument("--only", metavar="GROUP",
                   help="comma-separated groups: core, echo, tls, proc, apps, all")
    p.add_argument("--loops", help="comma-separated loop names (default: all)")
    p.add_argument("--reps", type=int, help="repetitions (default 5, --quick 3)")
    p.add_argument("--quick", action="store_true", help="3 reps and smaller sizes")
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply every case size by this factor")
    p.add_argument("--python", default=sys.executable,
                   help="interpreter for the workers (default: this one)")
    p.add_argument("--ringloop-path", default=REPO_PYTHON_DIR,
                   help="directory holding the ringloop package, put first on the "
                        "workers' PYTHONPATH (default: the in-tree build %(default)s); "
                        "'installed' to use whatever the interpreter imports")
    p.add_argument("--no-snapshot", action="store_true",
                   help="use --ringloop-path in place instead of a private copy")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds before a worker is killed and counted as failed")
    p.add_argument("--json", metavar="FILE", help="write raw numbers and summary here")
    p.add_argument("--markdown", metavar="FILE", help="also write the report here")
    p.add_argument("--no-quiet-check", action="store_true",
                   help="skip the load average / calibration check before and after")
    p.add_argument("--list", action="store_true", help="list cases and loops, then exit")
    args = p.parse_args(argv)

    def pick(text, known, what, groups=None, default=None):
        if not text:
            return list(default if default is not None else known)
        names = []
        for x in (x.strip() for x in text.split(",")):
            if not x:
                continue
            if groups and x in groups:
                names.extend(n for n in groups[x] if n not in names
                             and not (args.quick and CASES[n].quick_skip))
            elif x in known:
                names.append(x)
            else:
                p.error(f"unknown {what}: {x} (known: {', '.join(known)}"
                        + (f"; groups: {', '.join(groups)}" if groups else "") + ")")
        return names

    groups = {}
    for c in CASES.values():
        groups.setdefault(c.group, []).append(c.name)
    groups["all"] = list(CASES)
    if args.only:
        for g in args.only.split(","):
            if g.strip() and g.strip() not in groups:
                p.error(f"unknown group: {g} (known: {', '.join(groups)})")
        args.cases = ",".join(filter(None, [args.cases, args.only]))
    args.case_names = pick(args.cases, list(CASES), "case", groups, groups["core"])
    args.loop_names = pick(args.loops, list(LOOPS), "loop")
    if args.reps is None:
        args.reps = 3 if args.quick else 5
    if args.reps < 1:
        p.error("--reps must be at least 1")
    return args


def list_all():
    print("Cases:")
    for c in CASES.values():
        print(f"  {c.name}  [{c.group}; {c.unit}/s; n={c.size}, quick n={c.quick}, "
              f"warm-up n={c.warmup}]")
        print(f"      {c.doc}")
    print("Groups (--only):", ", ".join(sorted({c.group for c in CASES.values()})))
    print("Loops:")
    for spec in LOOPS.values():
        print(f"  {spec.name}  -- {spec.doc}")


def main(argv=None):
    args = parse_args(argv)
    if args.list:
        list_all()
        return 0

    started = time.time()
    env = dict(os.environ)
    for var in SCRUBBED_ENV:
        env.pop(var, None)
    snapshot = None
    if args.ringloop_path != "installed":
        rl_dir = os.path.abspath(args.ringloop_path)
        if not args.no_snapshot and os.path.isdir(os.path.join(rl_dir, "ringloop")):
            snapshot = snapshot_ringloop(rl_dir)
            rl_dir = snapshot
        env["PYTHONPATH"] = rl_dir + (os.pathsep + env["PYTHONPATH"]
                                      if env.get("PYTHONPATH") else "")

    cdir = None
    if any(CASES[c].group in ECHO_GROUPS for c in args.case_names):
        log("building the C tools (benchmarks/c) ...")
        cdir, err = build_c_tools()
        if err:
            log(f"C tools not built, echo cases will be n/a: {err}")
            env["RINGLOOP_BENCH_CBIN_ERROR"] = err
        else:
            env["RINGLOOP_BENCH_CBIN"] = cdir
    try:
        return bench(args, env, started)
    finally:
        if snapshot:
            shutil.rmtree(snapshot, ignore_errors=True)
        if cdir:
            shutil.rmtree(cdir, ignore_errors=True)


def bench(args, env, started):
    # Probe: interpreter facts and which loops can be built at all.
    try:
        probe, probe_stderr = run_worker(
            args.python, ["probe", "--loops", ",".join(args.loop_names)], env, args.timeout)
    except WorkerError as exc:
        log(f"probe failed: {exc.summary}\n{exc.detail}")
        return 2

    avail = [n for n in args.loop_names if probe["loops"][n]["available"]]
    quiet = None if args.no_quiet_check else quiet_check()
    if quiet and not quiet["quiet"]:
        log("WARNING: the machine is not quiet: " + "; ".join(quiet["reasons"])
            + " (absolute numbers will be noisy; paired ratios less so)")
    rl = probe.get("ringloop", {})
    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": probe["python"],
        "python_full": probe["python_full"],
        "python_executable": probe["executable"],
        "kernel": platform.release(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "uvloop": probe.get("uvloop"),
        "ringloop": rl,
        "ringloop_git": git_rev(),
        "loops": probe["loops"],
        "reps": args.reps,
        "quick": args.quick,
        "scale": args.scale,
        "sizes": {c: dict(zip(("n", "warmup"), CASES[c].sizes(args.quick, args.scale)))
                  for c in args.case_names},
        "probe_stderr": probe_stderr,
        "packages": probe.get("packages", {}),
        "quiet_start": quiet,
        "groups": {c: CASES[c].group for c in args.case_names},
    }
    if probe_stderr.strip():
        log("note: the probe wrote to stderr (shown in the report):\n" + probe_stderr.rstrip())

    # The interleaved measurements.
    runs = []
    rates = {}          # (case, loop) -> [rate, ...]
    by_rep = {}         # case -> rep -> loop -> rate
    status = {}         # (case, loop) -> "ok" | "failed" | "unavailable"
    failures = {}       # (case, loop) -> (summary, detail)
    unavailable = {}    # (case, loop) -> reason (decided inside a worker)
    stderr_notes = {}   # (case, loop) -> stderr of a worker that succeeded
    extras = {}         # (case, loop) -> [extra dict, ...]
    by_rep_extra = {}   # case -> rep -> loop -> extra dict
    total = args.reps * sum(1 for c in args.case_names for ln in avail
                            if applicable(CASES[c], LOOPS[ln]))
    done = 0
    measured_wall = {}  # case -> wall seconds of its measurements so far (for the ETA)
    interrupted = False
    per_rep = [(c, ln) for c in args.case_names for ln in avail
               if applicable(CASES[c], LOOPS[ln])]

    def left(rep, cname):
        """Time left: each measurement still to come costs what that case
        cost so far (else the mean of all so far)."""
        walls = [w for ws in measured_wall.values() for w in ws]
        if not walls:
            return ""
        overall = statistics.mean(walls)
        pos = args.case_names.index(cname)
        todo = [c for c, _ in per_rep if args.case_names.index(c) > pos]
        todo += [c for c, _ in per_rep] * (args.reps - rep - 1)
        secs = sum(statistics.mean(measured_wall[c]) if c in measured_wall else overall
                   for c in todo)
        return f", ~{int(secs // 60)}m{int(secs % 60):02d}s left"
    try:
        for rep in range(args.reps):
            k = rep % len(avail) if avail else 0
            order = avail[k:] + avail[:k]
            for cname in args.case_names:
                n, warm = CASES[cname].sizes(args.quick, args.scale)
                for pos, lname in enumerate(order):
                    if not applicable(CASES[cname], LOOPS[lname]):
                        continue
                    done += 1
                    key = (cname, lname)
                    if status.get(key) in ("failed", "unavailable"):
                        continue
                    t0 = time.perf_counter()
                    rec = {"rep": rep + 1, "case": cname, "loop": lname, "position": pos,
                           "n": n, "warmup": warm}
                    try:
                        res, werr = run_worker(args.python,
                                            ["run", "--case", cname, "--loop", lname,
                                             "--size", str(n), "--warmup", str(warm),
                                             "--watchdog", str(max(1.0, args.timeout - 15))],
                                            env, args.timeout)
                    except WorkerError as exc:
                        status[key] = "failed"
                        failures[key] = (f"rep {rep + 1}: {exc.summary}", exc.detail)
                        rec.update(status="failed", error=exc.summary, detail=exc.detail)
                        log(f"[{done}/{total}] rep {rep + 1} {cname} {lname}: FAILED: {exc.summary}")
                        runs.append(rec)
                        continue
                    wall = time.perf_counter() - t0
                    measured_wall.setdefault(cname, []).append(wall)
                    if werr.strip():
                        rec["stderr"] = werr
                        stderr_notes.setdefault(key, werr)
                    if res["status"] == "unavailable":
                        status[key] = "unavailable"
                        unavailable[key] = res["reason"]
                        rec.update(status="unavailable", reason=res["reason"])
                        log(f"[{done}/{total}] rep {rep + 1} {cname} {lname}: n/a ({res['reason']})")
                    else:
                        status.setdefault(key, "ok")
                        rates.setdefault(key, []).append(res["rate"])
                        by_rep.setdefault(cname, {}).setdefault(rep, {})[lname] = res["rate"]
                        extra = res.get("extra") or {}
                        if extra:
                            extras.setdefault(key, []).append(extra)
                            by_rep_extra.setdefault(cname, {}).setdefault(rep, {})[lname] = \
                                dict(extra, ops=res["ops"], seconds=res["seconds"])
                        rec.update(status="ok", ops=res["ops"], seconds=res["seconds"],
                                   rate=res["rate"], wall=wall, extra=extra)
                        log(f"[{done}/{total}] rep {rep + 1} {cname:<30} {lname:<18} "
                            f"{fmt_rate(res['rate']):>8} {CASES[cname].unit}/s "
                            f"({res['seconds']:.3f} s timed, {wall:.2f} s wall{left(rep, cname)})")
                    runs.append(rec)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: reporting what was measured so far")

    # Summary.
    summary = {}
    for (cname, lname), rs in rates.items():
        s = summarize(rs)
        s["rates"] = rs
        s["vs"] = {base: paired_ratio(by_rep.get(cname, {}), lname, base)
                   for base in BASELINES if base != lname}
        # The range of the per-repetition paired ratios.
        s["vs_range"] = {}
        for base in BASELINES:
            rs_ = paired_ratios(by_rep.get(cname, {}), lname, base) if base != lname else []
            s["vs_range"][base] = [min(rs_), max(rs_)] if rs_ else None
        summary.setdefault(cname, {})[lname] = s
    elapsed = time.time() - started
    meta["wall_seconds"] = elapsed
    meta["loadavg_end"] = os.getloadavg()
    meta["interrupted"] = interrupted
    meta["quiet_end"] = None if args.no_quiet_check else quiet_check()

    meta["apps"] = apps_summary(args, by_rep_extra)

    echo = echo_summary(args, by_rep, by_rep_extra)
    meta["echo"] = echo
    report = render(args, meta, summary, status, failures, unavailable, stderr_notes)
    print(report)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(report + "\n")
        log(f"report written to {args.markdown}")
    if args.json:
        data = {
            "meta": meta,
            "cases": {c: {"unit": CASES[c].unit, "doc": CASES[c].doc, "group": CASES[c].group}
                      for c in args.case_names},
            "runs": runs,
            "summary": {c: {ln: s for ln, s in d.items()} for c, d in summary.items()},
            "failures": [{"case": c, "loop": ln, "summary": s, "detail": d}
                         for (c, ln), (s, d) in failures.items()],
        }
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1)
        log(f"raw numbers written to {args.json}")
    if interrupted:
        return 130
    return 1 if failures else 0


def render(args, meta, summary, status, failures, unavailable, stderr_notes):
    rl = meta["ringloop"]
    lines = ["## ringloop benchmarks", ""]
    lines.append(f"- Date: {meta['date']}")
    lines.append(f"- Python: {meta['python']} ({meta['python_executable']})")
    lines.append(f"- Kernel: {meta['kernel']}; CPU: {meta['cpu']} x {meta['cpus']}; "
                 f"load average at start {meta['loadavg_start'][0]:.2f}, "
                 f"at end {meta['loadavg_end'][0]:.2f}")
    busiest = max(meta["loadavg_start"][0], meta["loadavg_end"][0])
    if busiest > 0.5:
        lines.append(f"- Note: the machine was not idle (1-minute load average up to "
                     f"{busiest:.2f} on {meta['cpus']} CPUs); expect more noise than usual")
    for which in ("quiet_start", "quiet_end"):
        q = meta.get(which)
        if q:
            lines.append(
                f"- Quiet check ({'start' if which == 'quiet_start' else 'end'}): load average "
                f"{q['loadavg'][0]:.2f}, calibration loop {q['calibration']['rate_M']:.1f} M/s "
                f"(spread {q['calibration']['spread_pct']:.0f}%)"
                + ("" if q["quiet"] else " — **WARNING: not quiet** (" + "; ".join(q["reasons"])
                   + "): absolute numbers are noisy, read the paired ratios and their spreads"))
    lines.append(f"- uvloop: {meta['uvloop'] or 'not installed'}")
    if meta.get("packages"):
        lines.append("- Packages: " + ", ".join(f"{k} {v}" for k, v in meta["packages"].items()
                                               if v))
    if "import_error" in rl:
        lines.append(f"- ringloop: cannot import ({rl['import_error']})")
    else:
        build = rl.get("core", "?")
        if rl.get("core_sha256"):
            build += f" sha256 {rl['core_sha256']}"
        lines.append(f"- ringloop: {rl.get('version')} (git {meta['ringloop_git']}; "
                     f"{build})")
    backends = []
    for name, info in meta["loops"].items():
        if not name.startswith("ringloop"):
            continue
        backends.append(f"{name} " + ("available" if info["available"]
                                      else f"n/a ({info['reason']})"))
    if backends:
        lines.append("- ringloop backends: " + "; ".join(backends))
    for name, info in meta["loops"].items():
        if not name.startswith("ringloop") and not info["available"]:
            lines.append(f"- {name}: n/a ({info['reason']})")
    lines.append(f"- Method: {meta['reps']} interleaved repetitions"
                 f"{' (quick sizes)' if meta['quick'] else ''}"
                 + (f", sizes x{meta['scale']:g}" if meta["scale"] != 1 else "") +
                 "; each measurement a fresh process, warm-up run first, inner work "
                 "timed with perf_counter; median of the reps; spread = (Q3 - Q1) / median and "
                 "(max - min) / median; "
                 "ratios = median over reps of the paired ratio within a rep")
    lines.append("- Sizes: " + ", ".join(f"{c} n={s['n']}" for c, s in meta["sizes"].items()))
    lines.append(f"- Total wall time: {meta['wall_seconds']:.0f} s"
                 + (" (INTERRUPTED, partial)" if meta["interrupted"] else ""))
    lines.append("")
    core = [c for c in args.case_names
            if CASES[c].group not in ECHO_GROUPS + APPS_GROUPS]
    if core:
        lines.append(markdown_table(core, [ln for ln in args.loop_names
                                           if LOOPS[ln].kind == "loop"], summary, status))
    if any(CASES[c].group == "echo" for c in meta.get("echo", {})):
        lines.append("")
        lines.append(echo_table(args, meta["echo"], status))
    if any(CASES[c].group == "tls" for c in meta.get("echo", {})):
        lines.append("")
        lines.append(tls_table(args, meta["echo"], status))
    if meta.get("apps"):
        lines.append("")
        lines.append(apps_table(args, meta["apps"], status))
    if unavailable:
        lines.append("")
        for (c, ln), reason in unavailable.items():
            lines.append(f"- n/a: {c} on {ln}: {reason}")
    if failures:
        lines.append("")
        lines.append("### Failures")
        for (c, ln), (s, detail) in failures.items():
            lines.append("")
            lines.append(f"**{c} on {ln}**: {s}")
            lines.append("")
            lines.append("```")
            lines.append(detail.rstrip() or "(no output)")
            lines.append("```")
    if stderr_notes:
        lines.append("")
        lines.append("### Workers that succeeded but wrote to stderr (first occurrence)")
        for (c, ln), text in stderr_notes.items():
            lines.append("")
            lines.append(f"**{c} on {ln}**:")
            lines.append("")
            lines.append("```")
            lines.append(text.rstrip())
            lines.append("```")
    if meta["probe_stderr"].strip():
        lines.append("")
        lines.append("### Probe stderr (building each loop once)")
        lines.append("")
        lines.append("```")
        lines.append(meta["probe_stderr"].rstrip())
        lines.append("```")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
