"""Build the C tools of the echo benchmarks (benchmarks/c/) with cc."""
import os
import shlex
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CDIR = os.path.join(HERE, "c")
CFLAGS = ["-O2", "-g", "-Wall", "-Wextra", "-Werror", "-std=gnu11"]


def _liburing():
    cc = shlex.split(os.environ.get("CC", "cc"))
    out = subprocess.run(cc + ["-print-file-name=liburing.a"], capture_output=True,
                         text=True).stdout.strip()
    if os.path.isabs(out) and os.path.exists(out):
        return [out]
    return ["-luring"]


def build_c_tools(outdir=None):
    """Compile loadgen and uring_echo into outdir (a new temporary
    directory by default).  Returns (outdir, None) or (None, reason)."""
    cc = shlex.split(os.environ.get("CC", "cc"))
    outdir = outdir or tempfile.mkdtemp(prefix="ringloop-bench-c-")
    jobs = [
        ("loadgen", ["loadgen.c"], []),
        ("uring_echo", ["uring_echo.c"], _liburing()),
    ]
    for name, srcs, libs in jobs:
        cmd = cc + CFLAGS + ["-o", os.path.join(outdir, name)] + \
            [os.path.join(CDIR, s) for s in srcs] + libs
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as exc:
            return None, f"{' '.join(cmd)}: {exc}"
        if p.returncode != 0:
            return None, f"{' '.join(cmd)}: {p.stderr.strip()[-500:]}"
    return outdir, None
