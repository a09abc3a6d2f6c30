"""python -m ringloop: run an unchanged program with ringloop as its loop.

The program runs in this process, in a fresh __main__ module, with sys.argv,
sys.path[0], __file__, exit status, tracebacks and KeyboardInterrupt as
`python SCRIPT`, `python -m MODULE` or `python -c CODE` give them.  ringloop
becomes the loop through asyncio's event loop policy, so every loop asyncio
makes (asyncio.run, asyncio.Runner, new_event_loop, get_event_loop in the
main thread, the same in other threads) is a ringloop loop."""
import asyncio
import builtins
import os
import runpy
import sys
import types

USAGE = """\
usage: python -m ringloop [--backend auto|io_uring|epoll] SCRIPT [args...]
       python -m ringloop [--backend ...] -m MODULE [args...]
       python -m ringloop [--backend ...] -c CODE [args...]
       python -m ringloop compare [--loops asyncio,uvloop,ringloop,ringloop-epoll]
                                  [--runs N] SCRIPT [args...]
       python -m ringloop --version

Runs the program as python would, with ringloop as asyncio's event loop.
--backend also sets RINGLOOP_BACKEND for the program and its children.
SCRIPT may be '-' (read from stdin), a directory or a zip file with __main__.py.
"""

BACKENDS = ("auto", "io_uring", "epoll")
# --loop: the hidden switch `compare` starts its children with (every loop
# pays the same start-up: this launcher, importing ringloop included)
LOOPS = ("asyncio", "uvloop", "ringloop", "ringloop-io_uring", "ringloop-epoll")

_OUR_FILES = frozenset(
    os.path.normcase(os.path.abspath(p))
    for p in (__file__, os.path.join(os.path.dirname(__file__), "__main__.py"))
)


def _prog():
    argv = getattr(sys, "orig_argv", None) or [sys.executable]
    return argv[0]


def _usage_error(msg):
    sys.stderr.write(f"{USAGE}\npython -m ringloop: error: {msg}\n")
    return 2


def format_info(info):
    lines = [f"ringloop {info['version']} (Python {info['python']})"]
    lines.append(f"kernel: {info['kernel']}")
    lines.append(f"liburing (built with): {info['liburing'] or 'unknown'}")
    lines.append(f"backend 'auto' picks here: {info['auto_backend']}")
    if info["io_uring_unavailable_reason"] is not None:
        lines.append(f"io_uring unavailable: {info['io_uring_unavailable_reason']}")
    if info["env_backend"] is not None:
        lines.append(f"RINGLOOP_BACKEND={info['env_backend']} (overrides 'auto')")
    return "\n".join(lines) + "\n"


def _set_loop(loop_name, backend):
    """Make `loop_name` asyncio's loop for the program about to run."""
    if backend is not None:
        os.environ["RINGLOOP_BACKEND"] = backend
    if loop_name == "asyncio":
        return
    if loop_name == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return
    import ringloop

    if loop_name != "ringloop":
        os.environ["RINGLOOP_BACKEND"] = loop_name.split("-", 1)[1]
    asyncio.set_event_loop_policy(ringloop.EventLoopPolicy())


def _fresh_main():
    """A new, empty __main__ module, as the interpreter makes one."""
    mod = types.ModuleType("__main__")
    mod.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = mod
    return mod


def _set_path0(value):
    # python -P / PYTHONSAFEPATH: no script directory on sys.path at all
    if sys.flags.safe_path:
        return
    if sys.path:
        sys.path[0] = value
    else:
        sys.path.insert(0, value)


def _run_code(source, filename, main, register=False):
    code = compile(source, filename, "exec", dont_inherit=True)
    if register:
        # 3.13+: python -c keeps its source for tracebacks (by code object)
        import linecache

        if hasattr(linecache, "_register_code"):
            # 3.13.0 looks the lines up by file name, later ones by code object
            linecache._register_code(filename, source, filename)
            linecache._register_code(code, source, filename)
    exec(code, main.__dict__)


def _run_script(path, args):
    sys.argv[:] = [path, *args]
    if path == "-":
        _set_path0("")
        main = _fresh_main()
        _run_code(sys.stdin.buffer.read(), "<stdin>", main)
        return
    if os.path.isdir(path) or _is_zip(path):
        # python DIR / python FILE.zip: DIR on sys.path, its __main__ run as -m
        _set_path0(path)
        _fresh_main()
        runpy._run_module_as_main("__main__", alter_argv=False)
        return
    abspath = os.path.abspath(path)
    try:
        with open(path, "rb") as f:
            source = f.read()
    except OSError as exc:
        sys.stderr.write(
            f"{_prog()}: can't open file {abspath!r}: [Errno {exc.errno}] {exc.strerror}\n"
        )
        raise SystemExit(2) from None
    _set_path0(os.path.dirname(os.path.realpath(path)))
    main = _fresh_main()
    main.__file__ = abspath
    main.__cached__ = None
    from importlib.machinery import SourceFileLoader

    main.__loader__ = SourceFileLoader("__main__", abspath)
    _run_code(source, abspath, main)


def _is_zip(path):
    import zipfile

    try:
        return os.path.isfile(path) and zipfile.is_zipfile(path)
    except OSError:
        return False


def _run_module(name, args):
    sys.argv[:] = ["-m", *args]
    _set_path0(os.getcwd())
    _fresh_main()
    # what `python -m` itself calls (its frames show in tracebacks there too)
    runpy._run_module_as_main(name, alter_argv=True)


def _run_command(code, args):
    sys.argv[:] = ["-c", *args]
    _set_path0("")
    main = _fresh_main()
    from importlib.machinery import BuiltinImporter

    main.__loader__ = BuiltinImporter
    _run_code(code, "<string>", main, register=True)


def _run_program(fn, *args):
    """Run the program; an exception it lets out leaves the interpreter as it
    would under plain python (exit status 1, or death by SIGINT for
    KeyboardInterrupt, after normal finalization), its traceback shown
    without this launcher's frames."""
    try:
        fn(*args)
    except SystemExit:
        raise
    except BaseException as exc:
        tb = exc.__traceback__
        while tb is not None and os.path.normcase(tb.tb_frame.f_code.co_filename) in _OUR_FILES:
            tb = tb.tb_next
        _show_trimmed(exc, tb)
        raise


def _show_trimmed(exc, tb):
    """Have sys.excepthook (the program's own, if it set one) show `exc` with
    traceback `tb` when the interpreter reports it as uncaught."""
    program_hook = sys.excepthook

    def hook(etype, value, etb):
        sys.excepthook = program_hook
        if value is exc:
            value.__traceback__ = etb = tb
        program_hook(etype, value, etb)

    sys.excepthook = hook


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    backend = None
    loop_name = "ringloop"
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            sys.stdout.write(USAGE)
            return 0
        if arg == "--version":
            import ringloop

            sys.stdout.write(format_info(ringloop.info()))
            return 0
        if arg == "compare" and i == 0:
            from . import _compare

            return _compare.main(argv[1:])
        if arg in ("--backend", "--loop") or arg.startswith(("--backend=", "--loop=")):
            name, eq, value = arg.partition("=")
            if not eq:
                if i + 1 >= len(argv):
                    return _usage_error(f"{name} needs a value")
                i += 1
                value = argv[i]
            choices = BACKENDS if name == "--backend" else LOOPS
            if value not in choices:
                return _usage_error(f"{name} must be one of {', '.join(choices)}, not {value!r}")
            if name == "--backend":
                backend = value
            else:
                loop_name = value
            i += 1
            continue
        if arg.startswith("-m") or arg.startswith("-c"):
            value = arg[2:]
            rest = argv[i + 1 :]
            if not value:
                if not rest:
                    return _usage_error(f"argument expected for the {arg} option")
                value, rest = rest[0], rest[1:]
            _set_loop(loop_name, backend)
            _run_program(_run_module if arg[1] == "m" else _run_command, value, rest)
            return 0
        if arg == "--":
            i += 1
            if i >= len(argv):
                break
            arg = argv[i]
        elif arg.startswith("-") and arg != "-":
            return _usage_error(f"unknown option {arg!r}")
        _set_loop(loop_name, backend)
        _run_program(_run_script, arg, argv[i + 1 :])
        return 0
    return _usage_error("nothing to run: give SCRIPT, -m MODULE or -c CODE")
