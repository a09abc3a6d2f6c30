"""The event loops the benchmarks compare.

Each entry of LOOPS names a loop and says how to build it.  To add a
variant (say ringloop with native_tasks=False), add one LoopSpec line.

A loop that cannot be built here (module not installed, backend refused
by the kernel, option not supported yet) raises Unavailable, which the
runner reports as n/a; any other error is a failure."""
import importlib


class Unavailable(Exception):
    """This loop cannot be built on this machine or interpreter."""


class LoopSpec:
    def __init__(self, name, module, build, expect=None, doc="", kind="loop"):
        self.name = name
        self.module = module      # imported first; ImportError -> Unavailable
        self.build = build        # build(module) -> a new event loop
        self.expect = expect or {}  # attribute -> value the new loop must have
        self.doc = doc
        # "loop", or "reference": not an event loop but a C program that the
        # cases with reference_ok run instead (the echo reference server).
        self.kind = kind

    def make(self):
        try:
            mod = importlib.import_module(self.module)
        except ImportError as exc:
            raise Unavailable(f"cannot import {self.module}: {exc}") from None
        try:
            loop = self.build(mod)
        except (OSError, NotImplementedError) as exc:
            raise Unavailable(f"{type(exc).__name__}: {exc}") from None
        # A loop that silently fell back to something else must not be
        # reported under this name.
        for attr, want in self.expect.items():
            got = getattr(loop, attr, None)
            if got != want:
                loop.close()
                raise RuntimeError(
                    f"{self.name}: loop.{attr} is {got!r}, expected {want!r}")
        return loop

    def version(self):
        try:
            mod = importlib.import_module(self.module)
        except ImportError:
            return None
        return getattr(mod, "__version__", None)


def _asyncio(mod):
    # What asyncio.new_event_loop() gives on Linux with the default policy
    # (epoll selector), built explicitly so that an installed policy or
    # RINGLOOP/uvloop install() cannot change it.
    return mod.SelectorEventLoop()


def _uvloop(mod):
    return mod.Loop()


def _c_reference(mod):
    mod.c_binaries()  # Unavailable when cc or liburing is missing
    return mod.CReference()


def _ringloop(**kwargs):
    def build(mod):
        return mod.new_event_loop(**kwargs)
    return build


LOOPS = {
    spec.name: spec
    for spec in (
        LoopSpec("asyncio", "asyncio", _asyncio,
                 doc="stdlib _UnixSelectorEventLoop (epoll selector)"),
        LoopSpec("uvloop", "uvloop", _uvloop,
                 doc="uvloop.Loop (libuv)"),
        LoopSpec("ringloop-io_uring", "ringloop", _ringloop(backend="io_uring"),
                 expect={"backend": "io_uring"},
                 doc="ringloop.new_event_loop(backend='io_uring')"),
        LoopSpec("ringloop-epoll", "ringloop", _ringloop(backend="epoll"),
                 expect={"backend": "epoll"},
                 doc="ringloop.new_event_loop(backend='epoll')"),
        LoopSpec("ringloop-io_uring-stocktasks", "ringloop",
                 _ringloop(backend="io_uring", native_tasks=False),
                 expect={"backend": "io_uring", "native_tasks": False},
                 doc="ringloop io_uring with asyncio's own Future/Task "
                     "(native_tasks=False)"),
        LoopSpec("c-io_uring-ref", "echo", _c_reference, kind="reference",
                 doc="benchmarks/c/uring_echo: a minimal C io_uring echo server "
                     "(echo cases only; the reference for 'best possible')"),
    )
}


def applicable(case, spec):
    """Whether case runs on spec at all (the C reference runs only the
    cases made for it; it gets no row elsewhere)."""
    return spec.kind != "reference" or case.reference_ok

# The loops the ratio columns divide by.
BASELINES = ("asyncio", "uvloop")
