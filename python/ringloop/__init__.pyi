# Type stubs for ringloop's public API.
import asyncio
from collections.abc import Coroutine
from typing import Any, Literal, TypedDict, TypeVar

from ._core import Future as Future
from ._core import Handle as Handle
from ._core import Task as Task
from ._core import TimerHandle as TimerHandle
from ._core import io_uring_unavailable_reason as io_uring_unavailable_reason
from ._loop import Loop as Loop
from ._policy import EventLoopPolicy as EventLoopPolicy

_T = TypeVar("_T")

_Backend = Literal["auto", "io_uring", "epoll"]

__version__: str
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

class _Info(TypedDict):
    version: str
    python: str
    kernel: str
    liburing: str | None
    auto_backend: Literal["io_uring", "epoll"]
    io_uring_unavailable_reason: str | None
    env_backend: str | None

def new_event_loop(*, backend: _Backend | None = "auto", native_tasks: bool | None = None) -> Loop: ...
def install(*, backend: _Backend | None = None, native_tasks: bool | None = None) -> None: ...
def run(
    main: Coroutine[Any, Any, _T],
    *,
    debug: bool | None = None,
    backend: _Backend | None = None,
    native_tasks: bool | None = None,
) -> _T: ...
def info() -> _Info: ...
