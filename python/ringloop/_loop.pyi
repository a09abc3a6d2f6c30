import asyncio
from typing import Literal

from . import _core

class Loop(_core.Loop, asyncio.AbstractEventLoop):
    """An asyncio event loop with a native core (io_uring or epoll)."""

    def __init__(
        self, *, backend: Literal["auto", "io_uring", "epoll"] | None = "auto", native_tasks: bool = True
    ) -> None: ...
    @property
    def backend(self) -> Literal["io_uring", "epoll"]: ...
    # asyncio's own signatures for everything the loop implements (the
    # assignment makes them concrete: AbstractEventLoop declares them abstract)
    add_reader = asyncio.AbstractEventLoop.add_reader
    add_signal_handler = asyncio.AbstractEventLoop.add_signal_handler
    add_writer = asyncio.AbstractEventLoop.add_writer
    call_at = asyncio.AbstractEventLoop.call_at
    call_exception_handler = asyncio.AbstractEventLoop.call_exception_handler
    call_later = asyncio.AbstractEventLoop.call_later
    call_soon = asyncio.AbstractEventLoop.call_soon
    call_soon_threadsafe = asyncio.AbstractEventLoop.call_soon_threadsafe
    close = asyncio.AbstractEventLoop.close
    connect_accepted_socket = asyncio.AbstractEventLoop.connect_accepted_socket
    connect_read_pipe = asyncio.AbstractEventLoop.connect_read_pipe
    connect_write_pipe = asyncio.AbstractEventLoop.connect_write_pipe
    create_connection = asyncio.AbstractEventLoop.create_connection
    create_datagram_endpoint = asyncio.AbstractEventLoop.create_datagram_endpoint
    create_future = asyncio.AbstractEventLoop.create_future
    create_server = asyncio.AbstractEventLoop.create_server
    create_task = asyncio.AbstractEventLoop.create_task
    create_unix_connection = asyncio.AbstractEventLoop.create_unix_connection
    create_unix_server = asyncio.AbstractEventLoop.create_unix_server
    default_exception_handler = asyncio.AbstractEventLoop.default_exception_handler
    get_debug = asyncio.AbstractEventLoop.get_debug
    get_exception_handler = asyncio.AbstractEventLoop.get_exception_handler
    get_task_factory = asyncio.AbstractEventLoop.get_task_factory
    getaddrinfo = asyncio.AbstractEventLoop.getaddrinfo
    getnameinfo = asyncio.AbstractEventLoop.getnameinfo
    is_closed = asyncio.AbstractEventLoop.is_closed
    is_running = asyncio.AbstractEventLoop.is_running
    remove_reader = asyncio.AbstractEventLoop.remove_reader
    remove_signal_handler = asyncio.AbstractEventLoop.remove_signal_handler
    remove_writer = asyncio.AbstractEventLoop.remove_writer
    run_forever = asyncio.AbstractEventLoop.run_forever
    run_in_executor = asyncio.AbstractEventLoop.run_in_executor
    run_until_complete = asyncio.AbstractEventLoop.run_until_complete
    sendfile = asyncio.AbstractEventLoop.sendfile
    set_debug = asyncio.AbstractEventLoop.set_debug
    set_default_executor = asyncio.AbstractEventLoop.set_default_executor
    set_exception_handler = asyncio.AbstractEventLoop.set_exception_handler
    set_task_factory = asyncio.AbstractEventLoop.set_task_factory
    shutdown_asyncgens = asyncio.AbstractEventLoop.shutdown_asyncgens
    shutdown_default_executor = asyncio.AbstractEventLoop.shutdown_default_executor
    sock_accept = asyncio.AbstractEventLoop.sock_accept
    sock_connect = asyncio.AbstractEventLoop.sock_connect
    sock_recv = asyncio.AbstractEventLoop.sock_recv
    sock_recv_into = asyncio.AbstractEventLoop.sock_recv_into
    sock_recvfrom = asyncio.AbstractEventLoop.sock_recvfrom
    sock_recvfrom_into = asyncio.AbstractEventLoop.sock_recvfrom_into
    sock_sendall = asyncio.AbstractEventLoop.sock_sendall
    sock_sendfile = asyncio.AbstractEventLoop.sock_sendfile
    sock_sendto = asyncio.AbstractEventLoop.sock_sendto
    start_tls = asyncio.AbstractEventLoop.start_tls
    stop = asyncio.AbstractEventLoop.stop
    subprocess_exec = asyncio.AbstractEventLoop.subprocess_exec
    subprocess_shell = asyncio.AbstractEventLoop.subprocess_shell
    time = asyncio.AbstractEventLoop.time
