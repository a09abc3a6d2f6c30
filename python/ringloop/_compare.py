"""python -m ringloop compare: time a user's own program on several loops.

Each run is a fresh process, `python -m ringloop --loop NAME SCRIPT args`
(the same launcher for every loop, so start-up costs the same), and the loops
take turns: round r runs them in an order rotated by r, so drift on a busy
machine spreads over all of them.  Wall time is measured around the child,
CPU time (user + system, the child and the processes it waited for) from
getrusage(RUSAGE_CHILDREN)."""
import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time

DEFAULT_LOOPS = ("asyncio", "uvloop", "ringloop", "ringloop-epoll")
KNOWN = ("asyncio", "uvloop", "ringloop", "ringloop-io_uring", "ringloop-epoll")


def _parser():
    p = argparse.ArgumentParser(
        prog="python -m ringloop compare",
        description="Run SCRIPT on each loop, interleaved, in fresh processes; "
        "print wall and CPU time per loop (median, spread) and ratios against asyncio.",
    )
    p.add_argument(
        "--loops",
        default=",".join(DEFAULT_LOOPS),
        help=f"comma-separated, from {', '.join(KNOWN)} (default: %(default)s; "
        "uvloop is left out when it is not installed)",
    )
    p.add_argument("--runs", type=int, default=5, help="runs per loop (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument(
        "--show-output", action="store_true", help="let the program's stdout through"
    )
    p.add_argument("script", metavar="SCRIPT")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="args")
    return p


def _loops(spec, out):
    loops = []
    for name in (s.strip() for s in spec.split(",")):
        if not name:
            continue
        if name not in KNOWN:
            raise SystemExit(f"compare: unknown loop {name!r} (known: {', '.join(KNOWN)})")
        if name == "uvloop" and importlib.util.find_spec("uvloop") is None:
            out.write("compare: uvloop is not installed here: left out\n")
            continue
        if name not in loops:
            loops.append(name)
    if not loops:
        raise SystemExit("compare: no loop to run")
    return loops


def _child_env():
    env = dict(os.environ)
    # the child must import this ringloop, however this one was found
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    env.pop("RINGLOOP_BACKEND", None)  # --loop says which
    return env


def _one_run(loop, script, args, env, show_output):
    cmd = [sys.executable, "-m", "ringloop", "--loop", loop, script, *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=None if show_output else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return proc.returncode, wall, cpu, proc.stderr


def _stats(values):
    med = statistics.median(values)
    return {
        "median": med,
        "min": min(values),
        "max": max(values),
        # (max - min) / median: how far apart the runs were
        "spread": (max(values) - min(values)) / med if med > 0 else 0.0,
    }


def measure(loops, script, args, runs, show_output=False, err=sys.stderr):
    env = _child_env()
    samples = {name: {"wall": [], "cpu": []} for name in loops}
    for r in range(runs):
        k = r % len(loops)
        for name in loops[k:] + loops[:k]:
            rc, wall, cpu, stderr = _one_run(name, script, args, env, show_output)
            if rc != 0:
                err.write(stderr.decode(errors="replace"))
                raise SystemExit(
                    f"compare: {script} exited with status {rc} on {name} (run {r + 1}); "
                    "no timings reported"
                )
            samples[name]["wall"].append(wall)
            samples[name]["cpu"].append(cpu)
    results = {}
    for name in loops:
        results[name] = {
            "wall": _stats(samples[name]["wall"]),
            "cpu": _stats(samples[name]["cpu"]),
            "runs": samples[name],
        }
    base = results.get("asyncio")
    for name, res in results.items():
        for kind in ("wall", "cpu"):
            b = base[kind]["median"] if base else 0
            res[kind]["vs_asyncio"] = res[kind]["median"] / b if b > 0 else None
    return results


def format_table(results, script, args, runs):
    head = (
        f"{' '.join([script, *args])}: {runs} run(s) per loop, interleaved, fresh processes "
        f"(Python {sys.version.split()[0]})\n"
        "median time, spread = (max - min) / median, ratio = median / asyncio's median "
        "(below 1: faster than asyncio)\n"
    )
    cols = f"{'loop':<18} {'wall s':>9} {'spread':>7} {'wall/asyncio':>12} {'cpu s':>9} {'spread':>7} {'cpu/asyncio':>11}\n"
    lines = [head, cols]
    for name, res in results.items():
        w, c = res["wall"], res["cpu"]

        def ratio(x):
            return f"{x:.2f}" if x is not None else "-"

        lines.append(
            f"{name:<18} {w['median']:>9.3f} {w['spread']:>6.0%} {ratio(w['vs_asyncio']):>12} "
            f"{c['median']:>9.3f} {c['spread']:>6.0%} {ratio(c['vs_asyncio']):>11}\n"
        )
    return "".join(lines)


def main(argv):
    opts = _parser().parse_args(argv)
    if opts.runs < 1:
        raise SystemExit("compare: --runs must be at least 1")
    if opts.args and opts.args[0] == "--":
        opts.args = opts.args[1:]
    out = sys.stdout
    loops = _loops(opts.loops, sys.stderr if opts.json else out)
    results = measure(loops, opts.script, opts.args, opts.runs, opts.show_output)
    if opts.json:
        json.dump({"script": opts.script, "args": opts.args, "runs": opts.runs, "results": results}, out, indent=1)
        out.write("\n")
    else:
        out.write(format_table(results, opts.script, opts.args, opts.runs))
    return 0
