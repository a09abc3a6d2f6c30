import asyncio
from typing import Literal

__all__ = ("EventLoopPolicy",)

class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    def __init__(
        self, *, backend: Literal["auto", "io_uring", "epoll"] | None = None, native_tasks: bool | None = None
    ) -> None: ...
