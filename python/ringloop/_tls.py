"""TLS (issue 10, first step): asyncio's own sslproto.SSLProtocol over
ringloop's native stream transport.  Mixed into ringloop.Loop through
_net.NetworkMixin.

asyncio runs its TLS record layer as a protocol, SSLProtocol (a
BufferedProtocol driving an ssl.SSLObject over two ssl.MemoryBIOs), on top of
a plain socket transport; the application protocol sees SSLProtocol's
_SSLProtocolTransport.  ringloop does the same on _core.StreamTransport: the
native transport reads TCP bytes straight into SSLProtocol.get_buffer()'s
buffer and writes what SSLProtocol hands it, so every Python version keeps
its own TLS semantics (handshake and shutdown timeouts, close_notify,
exceptions and callbacks) because they are its own code.

What the native transport gives SSLProtocol: BufferedProtocol feeding
(get_buffer/buffer_updated), set_protocol, pause/resume_reading,
is_reading, get_extra_info, write, close, and _force_close(exc) (asyncio's
private _SelectorTransport method SSLProtocol calls on timeouts and fatal
errors; connection_lost() then gets exc)."""
import functools
import os

from asyncio import constants, sslproto

try:
    import ssl
except ImportError:  # pragma: no cover
    ssl = None

from . import _core

class SSLProtocol(sslproto.SSLProtocol):
    """asyncio's SSLProtocol with its application-data methods in C
    (src/tls/tls.c): get_buffer, buffer_updated, _do_read, _write_appdata,
    _do_write and _process_outgoing do what the stock methods do, on the
    same attributes; handshake, shutdown, timeouts and errors are stock.
    RINGLOOP_TLS_PYTHON=1 runs the stock class instead (for comparison)."""

    __slots__ = ()

    def _get_app_transport(self):
        # stock, with the transport class below
        if self._app_transport is None:
            if self._app_transport_created:
                raise RuntimeError('Creating _SSLProtocolTransport twice')
            self._app_transport = _SSLProtocolTransport(self._loop, self)
            self._app_transport_created = True
        return self._app_transport


class _SSLProtocolTransport(sslproto._SSLProtocolTransport):
    """asyncio's TLS transport with write() in C."""

    __slots__ = ()


if ssl is not None:
    for _name, _meth in _core._tls_accel(sslproto, ssl, SSLProtocol).items():
        if _name == "_app_write":
            _SSLProtocolTransport.write = _meth
        else:
            setattr(SSLProtocol, _name, _meth)
    del _name, _meth

if os.environ.get("RINGLOOP_TLS_PYTHON", "") not in ("", "0"):
    SSLProtocol = sslproto.SSLProtocol  # noqa: F811


# base_events.start_tls() accepts a transport that says it can be wrapped;
# ours can (set here, where TLS is wired, rather than in stream.c).
_core.StreamTransport._start_tls_compatible = True


def _accept_waiter_done(loop, protocol, transport, waiter):
    """asyncio's _accept_connection2() after `await waiter` for a TLS
    connection: on failure close the TLS transport, and in debug mode report
    the error as asyncio does."""
    if waiter.cancelled():
        exc = None
        try:
            waiter.result()
        except BaseException as e:  # CancelledError
            exc = e
    else:
        exc = waiter.exception()
    if exc is None:
        return
    transport.close()
    if isinstance(exc, (SystemExit, KeyboardInterrupt)):  # pragma: no cover
        raise exc
    if loop.get_debug():
        context = {
            "message": "Error on transport creation for incoming connection",
            "exception": exc,
        }
        if protocol is not None:
            context["protocol"] = protocol
        if transport is not None:
            context["transport"] = transport
        loop.call_exception_handler(context)


class _TLSAcceptFactory:
    """The protocol factory a TLS server's listener calls for each accepted
    connection: the application's protocol wrapped in an SSLProtocol, whose
    handshake waiter is watched as asyncio's accept task awaits it."""

    __slots__ = ("loop", "protocol_factory", "sslcontext", "handshake_timeout",
                 "shutdown_timeout")

    def __init__(self, loop, protocol_factory, sslcontext, handshake_timeout,
                 shutdown_timeout):
        self.loop = loop
        self.protocol_factory = protocol_factory
        self.sslcontext = sslcontext
        self.handshake_timeout = handshake_timeout
        self.shutdown_timeout = shutdown_timeout

    def __call__(self):
        loop = self.loop
        protocol = self.protocol_factory()
        waiter = loop.create_future()
        ssl_protocol = SSLProtocol(
            loop, protocol, self.sslcontext, waiter, True, None,
            ssl_handshake_timeout=self.handshake_timeout,
            ssl_shutdown_timeout=self.shutdown_timeout,
        )
        waiter.add_done_callback(
            functools.partial(_accept_waiter_done, loop, protocol,
                              ssl_protocol._app_transport)
        )
        return ssl_protocol


class TLSMixin:
    __slots__ = ()

    def _make_ssl_transport(self, rawsock, protocol, sslcontext, waiter=None, *,
                            server_side=False, server_hostname=None, extra=None,
                            server=None,
                            ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
                            ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT):
        """The TLS transport over a connected socket: SSLProtocol (which
        checks the timeouts and makes the SSLObject) as the protocol of a
        native transport; returns the application's transport."""
        ssl_protocol = SSLProtocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        self._make_socket_transport(rawsock, ssl_protocol, extra=extra, server=server)
        return ssl_protocol._app_transport

    def _tls_accept_factory(self, protocol_factory, sslcontext, ssl_handshake_timeout,
                            ssl_shutdown_timeout):
        return _TLSAcceptFactory(self, protocol_factory, sslcontext, ssl_handshake_timeout,
                                 ssl_shutdown_timeout)

    async def start_tls(self, transport, protocol, sslcontext, *, server_side=False,
                        server_hostname=None, ssl_handshake_timeout=None,
                        ssl_shutdown_timeout=None):
        """Upgrade transport to TLS; return the new transport protocol must
        use from now on (asyncio's start_tls, step for step)."""
        if ssl is None:  # pragma: no cover
            raise RuntimeError("Python ssl module is not available")
        if not isinstance(sslcontext, ssl.SSLContext):
            raise TypeError(
                f"sslcontext is expected to be an instance of ssl.SSLContext, "
                f"got {sslcontext!r}"
            )
        if not getattr(transport, "_start_tls_compatible", False):
            raise TypeError(f"transport {transport!r} is not supported by start_tls()")

        waiter = self.create_future()
        ssl_protocol = SSLProtocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
            call_connection_made=False,
        )
        # Paused first, so that no data_received() reaches ssl_protocol
        # before its connection_made().
        transport.pause_reading()
        transport.set_protocol(ssl_protocol)
        conmade_cb = self.call_soon(ssl_protocol.connection_made, transport)
        resume_cb = self.call_soon(transport.resume_reading)
        try:
            await waiter
        except BaseException:
            transport.close()
            conmade_cb.cancel()
            resume_cb.cancel()
            raise
        return ssl_protocol._app_transport
