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
    """Compile loadgen and uring_echo (and tls_loadgen, whose build error,
    if any, goes to tls_loadgen.error) into outdir (a new temporary
    directory by default).  Returns (outdir, None) or (None, reason)."""
    cc = shlex.split(os.environ.get("CC", "cc"))
    outdir = outdir or tempfile.mkdtemp(prefix="ringloop-bench-c-")
    jobs = [
        ("loadgen", ["loadgen.c"], []),
        ("uring_echo", ["uring_echo.c"], _liburing()),
    ]
    # optional: without OpenSSL's headers only the TLS cases are n/a
    optional = [("tls_loadgen", ["tls_loadgen.c"], ["-lssl", "-lcrypto"])]
    for name, srcs, libs in jobs + optional:
        cmd = cc + CFLAGS + ["-o", os.path.join(outdir, name)] + \
            [os.path.join(CDIR, s) for s in srcs] + libs
        err = None
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as exc:
            err = f"{' '.join(cmd)}: {exc}"
        else:
            if p.returncode != 0:
                err = f"{' '.join(cmd)}: {p.stderr.strip()[-500:]}"
        if err is not None:
            if (name, srcs, libs) in optional:
                with open(os.path.join(outdir, name + ".error"), "w") as f:
                    f.write(err)
                continue
            return None, err
    return outdir, None
