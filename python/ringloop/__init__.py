"""ringloop: a drop-in asyncio event loop with a native C core.

    import ringloop
    ringloop.run(main())                                   # like asyncio.run
    asyncio.Runner(loop_factory=ringloop.new_event_loop)   # or this
    ringloop.install()                                     # or set the policy

The reactor is io_uring when the kernel allows it, else epoll; choose with
new_event_loop(backend=...) or RINGLOOP_BACKEND=io_uring|epoll|auto."""
import asyncio as _asyncio
import os as _os

from . import _core, _hooks
from ._core import Handle, TimerHandle, io_uring_unavailable_reason
from ._loop import Loop
from ._policy import EventLoopPolicy

__all__ = (
    "EventLoopPolicy",
    "Handle",
    "Loop",
    "TimerHandle",
    "install",
    "io_uring_unavailable_reason",
    "new_event_loop",
    "run",
)
__version__ = "0.1.0.dev0"

_core._set_hooks(_hooks.handle_repr, _hooks.format_callback, _hooks.slow_callback)

_BACKENDS = ("auto", "io_uring", "epoll")


def new_event_loop(*, backend="auto"):
    """Return a new ringloop event loop.

    backend: "auto" (io_uring if usable, else epoll), "io_uring" (raise
    OSError naming the cause if it cannot be used) or "epoll".  When it is
    "auto", the RINGLOOP_BACKEND environment variable may choose instead."""
    if backend == "auto":
        env = _os.environ.get("RINGLOOP_BACKEND", "").strip()
        if env:
            if env not in _BACKENDS:
                raise ValueError(
                    f"RINGLOOP_BACKEND must be one of {', '.join(_BACKENDS)}, not {env!r}"
                )
            backend = env
    return Loop(backend=backend)


def install():
    """Make ringloop the default loop of asyncio (sets the event loop policy)."""
    _asyncio.set_event_loop_policy(EventLoopPolicy())


def run(main, *, debug=None):
    """Run coroutine `main` in a new ringloop loop and return its result,
    as asyncio.run() does."""
    with _asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)
