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
    def __init__(self, name, module, build, expect=None, doc=""):
        self.name = name
        self.module = module      # imported first; ImportError -> Unavailable
        self.build = build        # build(module) -> a new event loop
        self.expect = expect or {}  # attribute -> value the new loop must have
        self.doc = doc

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
    )
}

# The loops the ratio columns divide by.
BASELINES = ("asyncio", "uvloop")
