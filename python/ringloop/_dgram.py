"""Datagram endpoints: create_datagram_endpoint (issue 5).  Mixed into
ringloop.Loop."""


class DatagramMixin:
    __slots__ = ()
