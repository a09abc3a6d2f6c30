"""The asyncio policy that makes ringloop the default loop (3.11-3.13)."""
import asyncio

__all__ = ("EventLoopPolicy",)


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """Policy whose new_event_loop() returns a ringloop.Loop.

    It is asyncio's Unix default policy otherwise (so the child-watcher API
    of 3.11-3.13 keeps working under it).

    Prefer ringloop.run(main()) or asyncio.Runner(loop_factory=
    ringloop.new_event_loop): asyncio deprecates policies from 3.14 on."""

    def _loop_factory(self):
        from . import new_event_loop

        return new_event_loop()

    def __repr__(self):
        return f"<{type(self).__name__}>"
