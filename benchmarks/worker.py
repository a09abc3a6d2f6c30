"""One measurement in a fresh interpreter; run.py starts this script.

    worker.py run --case NAME --loop NAME --size N --warmup W
    worker.py probe --loops a,b,...

It prints exactly one line starting with RESULT_MARK followed by JSON on
stdout.  A measurement that fails (wrong result, exception in a callback,
crash) exits non-zero with the traceback on stderr; a loop that cannot be
built here prints {"status": "unavailable", ...} and exits 0."""
import argparse
import faulthandler
import gc
import json
import os
import platform
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cases import CASES, CaseFailure  # noqa: E402
from loops import LOOPS, Unavailable, applicable  # noqa: E402

RESULT_MARK = "@@BENCH_RESULT@@ "


def emit(obj):
    sys.stdout.write(RESULT_MARK + json.dumps(obj) + "\n")
    sys.stdout.flush()


def describe_context(ctx):
    """A loop exception-handler context, as text with its traceback."""
    lines = [str(ctx.get("message", "(no message)"))]
    for key, value in ctx.items():
        if key not in ("message", "exception"):
            lines.append(f"  {key}: {value!r}")
    exc = ctx.get("exception")
    if exc is not None:
        lines.extend(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return "\n".join(lines)


def handler_failure(errors):
    first = errors[0]
    exc = first.get("exception")
    what = f"{type(exc).__name__}: {exc}" if exc is not None else first.get("message")
    return CaseFailure(f"{len(errors)} error(s) reached the loop's exception handler, "
                       f"the first: {what}\n{describe_context(first)}")


def run_case(case, loop, n):
    errors = []

    def handler(lp, ctx):
        errors.append(ctx)
        lp.stop()

    loop.set_exception_handler(handler)
    extra = {}
    try:
        res = case.fn(loop, n)
        if len(res) == 3:
            ops, secs, extra = res
        else:
            ops, secs = res
    except Unavailable:
        raise
    except Exception as exc:
        if errors:
            # The callback's error is the cause; the case's own complaint
            # (a wrong count, say) is only its consequence.
            raise handler_failure(errors) from exc
        raise
    if errors:
        raise handler_failure(errors)
    if not secs > 0:
        raise CaseFailure(f"non-positive duration {secs!r}")
    return ops, secs, extra


def pin_to_one_cpu():
    """Pin this process (threads created later inherit it) to the highest
    CPU it may use; return that CPU."""
    cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def cmd_run(args):
    case = CASES[args.case]
    spec = LOOPS[args.loop]
    if args.watchdog > 0:
        # A hung loop: dump every thread's stack to stderr and exit(1).
        faulthandler.dump_traceback_later(args.watchdog, exit=True)
    cpu = pin_to_one_cpu() if case.single_cpu else None
    if not applicable(case, spec):
        emit({"status": "unavailable", "reason": f"{spec.name} runs only the cases "
                                                 f"made for it"})
        return 0
    try:
        loop = spec.make()
    except Unavailable as exc:
        emit({"status": "unavailable", "reason": str(exc)})
        return 0
    try:
        if args.warmup > 0:
            run_case(case, loop, args.warmup)
        gc.collect()
        ops, secs, extra = run_case(case, loop, args.size)
    except Unavailable as exc:
        # The loop lacks what the case needs (say, create_server): n/a.
        emit({"status": "unavailable", "reason": str(exc)})
        return 0
    finally:
        loop.close()
    faulthandler.cancel_dump_traceback_later()
    emit({"status": "ok", "ops": ops, "seconds": secs, "rate": ops / secs,
          "cpu": cpu, "extra": extra})
    return 0


def cmd_smoke(args):
    """Every case (or --cases) once at a tiny size on one loop, each with a
    new loop, all in this process, no warm-up: what tests/test_bench_smoke.py
    runs, so that the suite covers every case on every loop in seconds.  The
    application server cases serve their correctness pre-check only
    (RINGLOOP_BENCH_SMOKE=1).  Prints one result line:
    {"loop": ..., "available": bool, "reason": ..., "cases": {name:
    {"status": "ok"|"failed"|"unavailable", ...}}}"""
    os.environ["RINGLOOP_BENCH_SMOKE"] = "1"
    spec = LOOPS[args.loop]
    if args.watchdog > 0:
        faulthandler.dump_traceback_later(args.watchdog, exit=True)
    names = args.cases.split(",") if args.cases else list(CASES)
    out = {"loop": spec.name, "available": True, "reason": None, "cases": {}}
    try:
        spec.make().close()
    except Unavailable as exc:
        out.update(available=False, reason=str(exc))
        emit(out)
        return 0
    for name in names:
        case = CASES[name]
        if not applicable(case, spec):
            continue
        # Tiny: one round per connection and a few more for the echo
        # cases; a few hundred operations for the rest.
        conns = case.meta.get("conns")
        n = min(case.quick, case.warmup or 100, max(conns, 30) if conns else 500)
        t0 = time.perf_counter()
        try:
            loop = spec.make()
            try:
                ops, secs, extra = run_case(case, loop, n)
            finally:
                loop.close()
        except Unavailable as exc:
            res = {"status": "unavailable", "reason": str(exc)}
        except Exception as exc:  # noqa: BLE001 - the test reports it
            res = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                   "traceback": traceback.format_exc()}
        else:
            res = {"status": "ok", "n": n, "ops": ops, "seconds": secs, "extra": extra}
        res["wall"] = time.perf_counter() - t0
        out["cases"][name] = res
    faulthandler.cancel_dump_traceback_later()
    emit(out)
    return 0


def ringloop_facts():
    try:
        import ringloop
    except ImportError as exc:
        return {"import_error": str(exc)}
    core = ringloop._core
    facts = {
        "version": getattr(ringloop, "__version__", None),
        "path": os.path.dirname(ringloop.__file__),
        "core": os.path.basename(core.__file__),
        "io_uring_unavailable_reason": None,
    }
    try:
        facts["io_uring_unavailable_reason"] = ringloop.io_uring_unavailable_reason()
    except Exception as exc:  # noqa: BLE001
        facts["io_uring_unavailable_reason"] = f"(query failed: {exc!r})"
    try:
        import hashlib
        with open(core.__file__, "rb") as f:
            facts["core_sha256"] = hashlib.sha256(f.read()).hexdigest()[:12]
        facts["core_mtime"] = os.path.getmtime(core.__file__)
    except OSError:
        pass
    return facts


# Versions recorded in the report (what is installed; None = not installed).
PACKAGES = ("uvloop", "aiohttp", "uvicorn", "httptools", "h11", "starlette", "websockets",
            "httpx", "matplotlib")


def package_versions():
    from importlib import metadata
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cmd_probe(args):
    out = {
        "python": sys.version.split()[0],
        "python_full": sys.version.replace("\n", " "),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "dev_mode": sys.flags.dev_mode,
        "optimize": sys.flags.optimize,
        "loops": {},
        "ringloop": ringloop_facts(),
    }
    out["packages"] = package_versions()
    try:
        import uvloop
        out["uvloop"] = uvloop.__version__
    except ImportError:
        out["uvloop"] = None
    for name in args.loops.split(","):
        spec = LOOPS[name]
        try:
            loop = spec.make()
        except Unavailable as exc:
            out["loops"][name] = {"available": False, "reason": str(exc)}
            continue
        except Exception as exc:  # noqa: BLE001 - reported, not hidden
            out["loops"][name] = {"available": False, "error": True,
                                  "reason": "".join(traceback.format_exception_only(
                                      type(exc), exc)).strip()}
            continue
        out["loops"][name] = {"available": True, "repr": repr(loop),
                              "version": spec.version()}
        loop.close()
    emit(out)
    return 0


def main(argv=None):
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--case", required=True, choices=sorted(CASES))
    r.add_argument("--loop", required=True, choices=sorted(LOOPS))
    r.add_argument("--size", type=int, required=True)
    r.add_argument("--warmup", type=int, required=True)
    r.add_argument("--watchdog", type=float, default=0,
                   help="seconds after which a hung worker dumps its stacks and exits")
    sm = sub.add_parser("smoke")
    sm.add_argument("--loop", required=True, choices=sorted(LOOPS))
    sm.add_argument("--cases", help="comma-separated (default: every case)")
    sm.add_argument("--watchdog", type=float, default=0)
    pr = sub.add_parser("probe")
    pr.add_argument("--loops", required=True)
    args = p.parse_args(argv)
    faulthandler.enable()  # a crash still shows where it happened
    if args.cmd == "probe":
        return cmd_probe(args)
    if args.cmd == "smoke":
        return cmd_smoke(args)
    try:
        return cmd_run(args)
    except Exception as exc:  # noqa: BLE001 - reported to the runner
        traceback.print_exc()
        first = (str(exc).splitlines() or [""])[0]
        emit({"status": "failed", "error": f"{type(exc).__name__}: {first}"})
        return 1


if __name__ == "__main__":
    sys.exit(main())
