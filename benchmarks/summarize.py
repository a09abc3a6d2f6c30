"""A compact table of ringloop's ratios from one or more run.py --json files.

    python benchmarks/summarize.py core.json [echo.json ...]

For every case: the median rate of asyncio and uvloop, and for each ringloop
variant its paired ratio against asyncio and against uvloop (the same
numbers as run.py's full table, fewer columns).  Echo cases also give the
server CPU per round trip of each loop and ringloop's CPU gain over uvloop
(uvloop's CPU per round trip / ringloop's; > 1 = cheaper), which is less
sensitive than throughput to the load generator sharing the machine."""
import json
import sys

RINGLOOPS = ("ringloop-io_uring", "ringloop-epoll", "ringloop-io_uring-stocktasks")
SHORT = {"ringloop-io_uring": "io_uring", "ringloop-epoll": "epoll",
         "ringloop-io_uring-stocktasks": "io_uring, stock tasks"}


def fmt_rate(v):
    if v is None:
        return "n/a"
    for div, suf in ((1e6, " M"), (1e3, " k")):
        if v >= div:
            return f"{v / div:.3g}{suf}"
    return f"{v:.3g}"


def ratio(v):
    return "n/a" if v is None else f"{v:.2f}x"


def core_table(data, out):
    summary = data["summary"]
    cases = [c for c in summary if not c.startswith("echo_")]
    if not cases:
        return
    loops = [l for l in RINGLOOPS if any(l in summary[c] for c in cases)]
    head = "| case | asyncio | uvloop | " + " | ".join(
        f"{SHORT[l]} vs asyncio / uvloop" for l in loops) + " |"
    out.append(head)
    out.append("|---|--:|--:|" + "--:|" * len(loops))
    for c in cases:
        row = summary[c]
        unit = data["cases"].get(c, {}).get("unit", "")
        cells = [f"`{c}` ({unit}/s)", fmt_rate(row.get("asyncio", {}).get("median")),
                 fmt_rate(row.get("uvloop", {}).get("median"))]
        for l in loops:
            vs = row.get(l, {}).get("vs", {})
            cells.append(f"{ratio(vs.get('asyncio'))} / {ratio(vs.get('uvloop'))}")
        out.append("| " + " | ".join(cells) + " |")


def echo_table(data, out):
    echo = data.get("meta", {}).get("echo") or data.get("echo")
    if not echo:
        return
    loops = [l for l in RINGLOOPS if any(l in echo[c] for c in echo)]
    out.append("| case | uvloop round trips/s | C ref round trips/s | "
               + " | ".join(f"{SHORT[l]}: rate vs uvloop, CPU gain vs uvloop, x C ref"
                            for l in loops) + " |")
    out.append("|---|--:|--:|" + "--:|" * len(loops))
    for c, row in echo.items():
        uv = row.get("uvloop", {})
        ref = None
        style_ref = c.replace("_streams_", "_proto_").replace("_sock_", "_proto_")
        if style_ref in echo:
            ref = echo[style_ref].get("c-io_uring-ref", {}).get("rate")
        cells = [f"`{c}`", fmt_rate(uv.get("rate")), fmt_rate(ref)]
        for l in loops:
            r = row.get(l)
            if not r or not uv.get("rate"):
                cells.append("n/a")
                continue
            cells.append(f"{r['rate'] / uv['rate']:.2f}x, "
                         f"{ratio(r.get('cpu_gain_vs_uvloop'))}, {ratio(r.get('vs_ref'))}")
        out.append("| " + " | ".join(cells) + " |")


def main():
    out = []
    for path in sys.argv[1:]:
        with open(path) as f:
            data = json.load(f)
        meta = data["meta"]
        out.append(f"Python {meta['python']}, kernel {meta['kernel']}, {meta['cpu']} x "
                   f"{meta['cpus']}, uvloop {meta['uvloop']}, ringloop git "
                   f"{meta.get('ringloop_git')}, {meta['reps']} interleaved reps"
                   f"{' (quick sizes)' if meta.get('quick') else ''}, {meta['date'][:10]}.")
        out.append("")
        core_table(data, out)
        out.append("")
        echo_table(data, out)
        out.append("")
    print("\n".join(out).rstrip())


if __name__ == "__main__":
    main()
