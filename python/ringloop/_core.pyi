# Type stubs for ringloop._core, the C extension.  Only what a user meets:
# the classes ringloop re-exports, the probe, and the Loop base.  Private
# helpers are left out on purpose.
import asyncio
from typing import Any, Literal, TypeVar

_T = TypeVar("_T")

_Backend = Literal["auto", "io_uring", "epoll"]

def io_uring_unavailable_reason() -> str | None: ...

_liburing_version: str | None

class Future(asyncio.Future[_T]):
    """ringloop's native Future; isinstance() of asyncio.Future."""

class Task(asyncio.Task[_T]):
    """ringloop's native Task; isinstance() of asyncio.Task."""

class Handle(asyncio.Handle):
    """ringloop's native Handle; isinstance() of asyncio.Handle."""

class TimerHandle(asyncio.TimerHandle):
    """ringloop's native TimerHandle; isinstance() of asyncio.TimerHandle."""

class Loop:
    """The native core of ringloop.Loop (use ringloop.new_event_loop()); the
    asyncio methods it implements are typed on ringloop.Loop, as asyncio
    types them."""

    def __init__(self, backend: _Backend = "auto", native_tasks: bool = True) -> None: ...
    @property
    def backend(self) -> str | None: ...
    @property
    def native_tasks(self) -> bool: ...
    @property
    def _backend_fallback_reason(self) -> str | None: ...
    slow_callback_duration: float
