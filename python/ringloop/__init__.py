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
from ._core import Future, Handle, Task, TimerHandle, io_uring_unavailable_reason
from ._loop import Loop
from ._policy import EventLoopPolicy

__all__ = (
    "EventLoopPolicy",
    "Future",
    "Handle",
    "Task",
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


def new_event_loop(*, backend="auto", native_tasks=None):
    """Return a new ringloop event loop.

    backend: "auto" (io_uring if usable, else epoll), "io_uring" (raise
    OSError naming the cause if it cannot be used) or "epoll".  When it is
    "auto", the RINGLOOP_BACKEND environment variable may choose instead.

    native_tasks: create_future()/create_task() return ringloop's native
    Future/Task (True, the default) or asyncio's own (False).  When None,
    RINGLOOP_NATIVE_TASKS=0 selects asyncio's."""
    if native_tasks is None:
        env = _os.environ.get("RINGLOOP_NATIVE_TASKS", "").strip().lower()
        if env in ("", "1", "yes", "true", "on"):
            native_tasks = True
        elif env in ("0", "no", "false", "off"):
            native_tasks = False
        else:
            raise ValueError(f"RINGLOOP_NATIVE_TASKS must be 0 or 1, not {env!r}")
    if backend == "auto":
        env = _os.environ.get("RINGLOOP_BACKEND", "").strip()
        if env:
            if env not in _BACKENDS:
                raise ValueError(
                    f"RINGLOOP_BACKEND must be one of {', '.join(_BACKENDS)}, not {env!r}"
                )
            backend = env
    return Loop(backend=backend, native_tasks=native_tasks)


def install():
    """Make ringloop the default loop of asyncio (sets the event loop policy)."""
    _asyncio.set_event_loop_policy(EventLoopPolicy())


def run(main, *, debug=None):
    """Run coroutine `main` in a new ringloop loop and return its result,
    as asyncio.run() does."""
    with _asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)
