"""The asyncio policy that makes ringloop the default loop (3.11-3.13)."""
import asyncio

__all__ = ("EventLoopPolicy",)


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """Policy whose new_event_loop() returns a ringloop.Loop.

    backend and native_tasks: as for ringloop.new_event_loop() (None: the
    default, so RINGLOOP_BACKEND / RINGLOOP_NATIVE_TASKS may choose).

    It is asyncio's Unix default policy otherwise (so the child-watcher API
    of 3.11-3.13 keeps working under it).

    Prefer ringloop.run(main()) or asyncio.Runner(loop_factory=
    ringloop.new_event_loop): asyncio deprecates policies from 3.14 on."""

    def __init__(self, *, backend=None, native_tasks=None):
        from . import _resolve_backend

        super().__init__()
        _resolve_backend(backend)  # a wrong name fails here, not at the first loop
        self._rl_backend = backend
        self._rl_native_tasks = native_tasks

    def _loop_factory(self):
        from . import new_event_loop

        return new_event_loop(backend=self._rl_backend, native_tasks=self._rl_native_tasks)

    def __repr__(self):
        return f"<{type(self).__name__}>"
