"""Stream transports and servers: create_connection, create_server, Unix
sockets, connect_accepted_socket (issue 5).  Mixed into ringloop.Loop."""


class NetworkMixin:
    __slots__ = ()
