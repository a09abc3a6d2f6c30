#!/usr/bin/env python3
"""PNG charts of one run.py --json results file: per group, each loop's
throughput ratio against asyncio and against uvloop (median of the paired
per-repetition ratios, with a bar from the smallest to the largest).

    python3 benchmarks/charts.py RESULTS.json      # writes RESULTS-<group>.png

matplotlib is a benchmark-only dependency (benchmarks/requirements.txt).
ratios() is also what benchmarks/readme.py puts in the README's table."""
import json
import os
import statistics
import sys

BASELINES = ("asyncio", "uvloop")
REFERENCE_LOOPS = ("c-io_uring-ref",)  # not event loops: no ratio bars
GROUP_TITLES = {
    "core": "Loop core and tasks",
    "echo": "TCP echo (server on the loop)",
    "tls": "TLS echo and handshakes",
    "proc": "Subprocesses and pipes",
    "apps": "Real applications (aiohttp, uvicorn, websockets, HTTP clients)",
}


def load(path):
    with open(path) as f:
        return json.load(f)


def case_groups(data):
    groups = data["meta"].get("groups") or {}
    out = {}
    for cname, info in data["cases"].items():
        g = info.get("group") or groups.get(cname) or (
            "echo" if cname.startswith("echo_") else "tls" if cname.startswith("tls_") else "core")
        out.setdefault(g, []).append(cname)
    return out


def ratios(data):
    """{case: {loop: {base: (median, min, max, n)}}} of the paired
    per-repetition ratios of the rates, from the raw runs."""
    rate = {}  # case -> rep -> loop -> rate
    for r in data["runs"]:
        if r.get("status") == "ok":
            rate.setdefault(r["case"], {}).setdefault(r["rep"], {})[r["loop"]] = r["rate"]
    out = {}
    for cname, reps in rate.items():
        loops = []
        for per_loop in reps.values():
            loops.extend(ln for ln in per_loop if ln not in loops)
        for lname in loops:
            if lname in REFERENCE_LOOPS:
                continue
            for base in BASELINES:
                if base == lname:
                    continue
                rs = [p[lname] / p[base] for p in reps.values()
                      if lname in p and base in p and p[base] > 0]
                if rs:
                    out.setdefault(cname, {}).setdefault(lname, {})[base] = (
                        statistics.median(rs), min(rs), max(rs), len(rs))
    return out


def loop_order(data):
    return [ln for ln in data["meta"]["loops"] if ln not in REFERENCE_LOOPS]


def plot_group(data, group, cases, rat, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loops = loop_order(data)
    cases = [c for c in cases if c in rat]
    if not cases:
        return False
    height = max(3.0, 0.2 * len(cases) * max(1, len(loops) - 1) + 1.5)
    fig, axes = plt.subplots(1, 2, figsize=(13, height), sharey=True)
    colors = {"asyncio": "#999999", "uvloop": "#4c72b0", "ringloop-io_uring": "#dd8452",
              "ringloop-epoll": "#55a868", "ringloop-io_uring-stocktasks": "#c44e52"}
    for ax, base in zip(axes, BASELINES):
        shown = [ln for ln in loops if ln != base]
        nb = len(shown)
        width = 0.8 / max(1, nb)
        for k, lname in enumerate(shown):
            ys, xs, lo, hi = [], [], [], []
            for i, cname in enumerate(cases):
                v = rat.get(cname, {}).get(lname, {}).get(base)
                if v is None:
                    continue
                med, mn, mx, _ = v
                ys.append(i + (k - (nb - 1) / 2) * width)
                xs.append(med)
                lo.append(med - mn)
                hi.append(mx - med)
            if ys:
                ax.barh(ys, xs, height=width, xerr=[lo, hi], label=lname,
                        color=colors.get(lname), error_kw={"elinewidth": 0.8, "capsize": 1.5})
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_title(f"throughput ÷ {base} (same repetition)")
        ax.set_yticks(range(len(cases)))
        ax.set_yticklabels(cases, fontsize=8)
        if base == BASELINES[0]:
            ax.invert_yaxis()  # the axes share y: invert once
        ax.grid(axis="x", which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        from matplotlib.ticker import FuncFormatter
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.xaxis.set_minor_formatter(FuncFormatter(
            lambda v, _: f"{v:g}x" if v in (0.5, 2, 3, 5) else ""))
    meta = data["meta"]
    fig.suptitle(f"{GROUP_TITLES.get(group, group)} — Python {meta['python']}, "
                 f"{meta['cpus']} CPUs, {meta['reps']} reps, {meta['date'][:10]} "
                 f"(bars: median; whiskers: min–max of the per-rep ratios)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def chart_paths(results_json):
    stem = os.path.splitext(results_json)[0]
    data = load(results_json)
    return {g: f"{stem}-{g}.png" for g in case_groups(data)}


def main(argv):
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    data = load(argv[0])
    rat = ratios(data)
    stem = os.path.splitext(argv[0])[0]
    for group, cases in case_groups(data).items():
        path = f"{stem}-{group}.png"
        if plot_group(data, group, cases, rat, path):
            print(f"chart: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
