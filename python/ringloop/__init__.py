"""ringloop: a drop-in asyncio event loop with a native C core.

    import ringloop
    ringloop.run(main())                                   # like asyncio.run
    asyncio.Runner(loop_factory=ringloop.new_event_loop)   # or this
    ringloop.install()                                     # or set the policy

    python -m ringloop app.py [args]                       # an unchanged program

The reactor is io_uring when the kernel allows it, else epoll; choose with
new_event_loop(backend=...), run(..., backend=...), EventLoopPolicy(backend=...),
python -m ringloop --backend ..., or RINGLOOP_BACKEND=io_uring|epoll|auto.

PYTEST_DONT_REWRITE: the package ships a pytest11 plugin, so pytest marks it
for assertion rewriting, and warns (an error under -W error) when it was
imported before pytest started, e.g. from sitecustomize; it has no test
assertions to rewrite."""
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
    "info",
    "install",
    "io_uring_unavailable_reason",
    "new_event_loop",
    "run",
)
__version__ = "0.1.0.dev0"

_core._set_hooks(_hooks.handle_repr, _hooks.format_callback, _hooks.slow_callback)

_BACKENDS = ("auto", "io_uring", "epoll")


def _resolve_backend(backend):
    """The backend a loop is made with: `backend` itself unless it is "auto"
    or None, then RINGLOOP_BACKEND if set, else "auto"."""
    if backend is None or backend == "auto":
        env = _os.environ.get("RINGLOOP_BACKEND", "").strip()
        if not env:
            return "auto"
        if env not in _BACKENDS:
            raise ValueError(
                f"RINGLOOP_BACKEND must be one of {', '.join(_BACKENDS)}, not {env!r}"
            )
        return env
    if backend not in _BACKENDS:
        raise ValueError(
            f"backend must be one of {', '.join(map(repr, _BACKENDS))} or None, not {backend!r}"
        )
    return backend


def _resolve_native_tasks(native_tasks):
    if native_tasks is not None:
        return bool(native_tasks)
    env = _os.environ.get("RINGLOOP_NATIVE_TASKS", "").strip().lower()
    if env in ("", "1", "yes", "true", "on"):
        return True
    if env in ("0", "no", "false", "off"):
        return False
    raise ValueError(f"RINGLOOP_NATIVE_TASKS must be 0 or 1, not {env!r}")


def new_event_loop(*, backend="auto", native_tasks=None):
    """Return a new ringloop event loop.

    backend: "auto" or None (io_uring if usable, else epoll), "io_uring"
    (raise OSError naming the cause if it cannot be used) or "epoll".  When
    it is "auto" or None, the RINGLOOP_BACKEND environment variable may
    choose instead.

    native_tasks: create_future()/create_task() return ringloop's native
    Future/Task (True, the default) or asyncio's own (False).  When None,
    RINGLOOP_NATIVE_TASKS=0 selects asyncio's."""
    return Loop(backend=_resolve_backend(backend), native_tasks=_resolve_native_tasks(native_tasks))


def install(*, backend=None, native_tasks=None):
    """Make ringloop the default loop of asyncio (sets the event loop policy);
    backend and native_tasks as for new_event_loop()."""
    _asyncio.set_event_loop_policy(EventLoopPolicy(backend=backend, native_tasks=native_tasks))


def run(main, *, debug=None, backend=None, native_tasks=None):
    """Run coroutine `main` in a new ringloop loop and return its result,
    as asyncio.run() does; backend and native_tasks as for new_event_loop()."""
    if _asyncio._get_running_loop() is not None:
        # asyncio.run()'s check and message, made before a loop exists (so
        # no half-built Runner tries to shut a loop down inside this one)
        raise RuntimeError("ringloop.run() cannot be called from a running event loop")
    # checked now, in the caller's frame, like every other argument error
    backend = _resolve_backend(backend)
    native_tasks = _resolve_native_tasks(native_tasks)

    def factory():
        return Loop(backend=backend, native_tasks=native_tasks)

    with _asyncio.Runner(debug=debug, loop_factory=factory) as runner:
        return runner.run(main)


def info():
    """What this ringloop is and what it does here, as a dict:

    version, python, kernel, liburing (the version the module was built
    with, None if unknown), auto_backend (what backend="auto" picks here,
    ignoring RINGLOOP_BACKEND), io_uring_unavailable_reason (None if io_uring
    works here), env_backend (RINGLOOP_BACKEND, None if unset)."""
    import platform
    import sys

    reason = io_uring_unavailable_reason()
    return {
        "version": __version__,
        "python": sys.version.split()[0],
        "kernel": f"{platform.system()} {platform.release()} {platform.machine()}",
        "liburing": getattr(_core, "_liburing_version", None),
        "auto_backend": "epoll" if reason is not None else "io_uring",
        "io_uring_unavailable_reason": reason,
        "env_backend": _os.environ.get("RINGLOOP_BACKEND") or None,
    }
