"""Stream transports and servers: create_connection, create_server, Unix
sockets, connect_accepted_socket (issue 5).  Mixed into ringloop.Loop.

The transport and the accept loop are C (ringloop._core.StreamTransport,
loop._make_socket_transport, loop._listener, loop.sock_connect/sock_accept);
what lives here is what asyncio does once per connection or per server, in
Python, with each Python version's own semantics: argument checks, address
resolution, happy eyeballs, binding, the Server object."""
import collections.abc
import errno
import functools
import itertools
import os as _os
import socket as _socket
import stat
import sys
import weakref
from asyncio import base_events, staggered, tasks, unix_events
from asyncio.log import logger

from ._tls import TLSMixin

class _ModuleOf:
    """A module as one of asyncio's own modules sees it at call time:
    asyncio's create_connection()/create_server() reach `socket` through
    asyncio.base_events, the Unix ones `socket`/`os` through
    asyncio.unix_events, and code (CPython's tests among it) patches those
    names; ringloop's versions follow the same names, so such patches act on
    them alike."""

    __slots__ = ("_owner", "_name")

    def __init__(self, owner, name):
        self._owner = owner
        self._name = name

    def __getattr__(self, attr):
        return getattr(getattr(self._owner, self._name), attr)


socket = _ModuleOf(base_events, "socket")
_usocket = _ModuleOf(unix_events, "socket")
_uos = _ModuleOf(unix_events, "os")

_PY312 = sys.version_info >= (3, 12)
_PY313 = sys.version_info >= (3, 13)
_HAS_IPv6 = hasattr(_socket, "AF_INET6")

_unset = object()


def _log_fatal_oserror(transport, message, exc):
    """asyncio's _fatal_error() for an OSError in debug mode (called from C)."""
    logger.debug("%r: %s", transport, message, exc_info=exc)


def _check_ssl_socket(sock):
    try:
        import ssl
    except ImportError:  # pragma: no cover
        return
    if isinstance(sock, ssl.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")


def _bind_error_message(addr, err):
    # 3.11/3.12 use the strerror; 3.13 str(err)
    text = str(err) if _PY313 else err.strerror
    return f"error while attempting to bind on address {addr!r}: {text.lower()}"


def _set_reuseport(sock):
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("reuse_port not supported by socket module")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError:
        raise ValueError(
            "reuse_port not supported by socket module, "
            "SO_REUSEPORT defined but not implemented."
        )


def _interleave_addrinfos(addrinfos, first_address_family_count=1):
    """Reorder addrinfos so the families alternate (RFC 8305), keeping the
    first `first_address_family_count` of the first family in front."""
    by_family = {}
    for info in addrinfos:
        by_family.setdefault(info[0], []).append(info)
    lists = list(by_family.values())
    out = []
    if first_address_family_count > 1:
        out.extend(lists[0][: first_address_family_count - 1])
        del lists[0][: first_address_family_count - 1]
    for group in itertools.zip_longest(*lists):
        out.extend(info for info in group if info is not None)
    return out


class Server(base_events.Server):
    """asyncio's Server, driven by ringloop's native accept loop.

    Each Python version keeps its own asyncio semantics (wait_closed() and
    friends, and close_clients()/abort_clients() from 3.13 only, come from
    the running version's base class)."""

    if not _PY313:
        # 3.11/3.12's _attach()/_detach() take no transport (and code,
        # CPython's tests among it, calls them so): count as they do; ours
        # pass the transport, as 3.13's.
        def _attach(self, transport=None):
            super()._attach()

        def _detach(self, transport=None):
            super()._detach()


class NetworkMixin(TLSMixin):
    __slots__ = ()

    # -- resolution ---------------------------------------------------------

    # _ensure_resolved is DnsMixin's (asyncio's rules: numeric addresses
    # without a lookup, extra tuple items passed on and checked).

    async def _create_server_getaddrinfo(self, host, port, family, flags):
        infos = await self._ensure_resolved(
            (host, port), family=family, type=socket.SOCK_STREAM, flags=flags
        )
        if not infos:
            raise OSError(f"getaddrinfo({host!r}) returned empty list")
        return infos

    # -- sock_connect, the parts C hands back -------------------------------

    async def _sock_connect_slow(self, sock, address):
        """sock_connect() when the address needs a resolver or the family is
        not one the C path parses."""
        if sock.family == socket.AF_INET or (_HAS_IPv6 and sock.family == socket.AF_INET6):
            resolved = await self._ensure_resolved(
                address, family=sock.family, type=sock.type, proto=sock.proto
            )
            if not resolved:
                raise OSError("getaddrinfo() returned empty list")
            address = resolved[0][4]
            if len(address) == 4 and "%" in address[0]:
                # getaddrinfo keeps the zone in the host; the scope id says it
                address = (address[0].split("%", 1)[0],) + tuple(address[1:])
            return await self._sock_connect_resolved(sock, address)
        return await self._sock_connect_readiness(sock, address)

    async def _sock_connect_readiness(self, sock, address):
        """asyncio's connect for families without a CONNECT op here."""
        fut = self.create_future()
        fd = sock.fileno()
        try:
            sock.connect(address)
        except (BlockingIOError, InterruptedError):
            self.add_writer(fd, self._sock_connect_ready, fut, sock, address)
            fut.add_done_callback(lambda _f: self.remove_writer(fd))
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(None)
        try:
            return await fut
        finally:
            fut = None

    def _sock_connect_ready(self, fut, sock, address):
        if fut.done():
            return
        try:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err != 0:
                raise OSError(err, f"Connect call failed {address}")
        except (BlockingIOError, InterruptedError):
            pass
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(None)

    # -- client -------------------------------------------------------------

    async def _connect_sock(self, exceptions, addr_info, local_addr_infos=None):
        """Create, bind and connect one socket (asyncio's helper)."""
        my_exceptions = []
        exceptions.append(my_exceptions)
        family, type_, proto, _, address = addr_info
        sock = None
        try:
            sock = socket.socket(family=family, type=type_, proto=proto)
            sock.setblocking(False)
            if local_addr_infos is not None:
                for lfamily, _, _, _, laddr in local_addr_infos:
                    if lfamily != family:
                        continue
                    try:
                        sock.bind(laddr)
                        break
                    except OSError as exc:
                        my_exceptions.append(OSError(exc.errno, _bind_error_message(laddr, exc)))
                else:
                    if my_exceptions:
                        raise my_exceptions.pop()
                    raise OSError(f"no matching local address with {family=} found")
            await self.sock_connect(sock, address)
            return sock
        except OSError as exc:
            my_exceptions.append(exc)
            if sock is not None:
                sock.close()
            raise
        except:
            if sock is not None:
                sock.close()
            raise
        finally:
            exceptions = my_exceptions = None

    async def _create_connection_transport(self, sock, protocol_factory, ssl, server_hostname,
                                           server_side=False, ssl_handshake_timeout=None,
                                           ssl_shutdown_timeout=None):
        sock.setblocking(False)
        protocol = protocol_factory()
        waiter = self.create_future()
        if ssl:
            sslcontext = None if isinstance(ssl, bool) else ssl
            try:
                transport = self._make_ssl_transport(
                    sock, protocol, sslcontext, waiter, server_side=server_side,
                    server_hostname=server_hostname, ssl_handshake_timeout=ssl_handshake_timeout,
                    ssl_shutdown_timeout=ssl_shutdown_timeout)
            except BaseException:
                # a bad timeout (SSLProtocol checks it): asyncio leaves the
                # connected socket to the garbage collector; close it
                sock.close()
                raise
        else:
            transport = self._make_socket_transport(sock, protocol, waiter)
        try:
            await waiter
        except:
            transport.close()
            raise
        return transport, protocol

    async def create_connection(self, protocol_factory, host=None, port=None, *, ssl=None,
                                family=0, proto=0, flags=0, sock=None, local_addr=None,
                                server_hostname=None, ssl_handshake_timeout=None,
                                ssl_shutdown_timeout=None, happy_eyeballs_delay=None,
                                interleave=None, all_errors=_unset):
        """Connect to a TCP server; return (transport, protocol)."""
        if all_errors is _unset:
            all_errors = False
        elif not _PY312:
            raise TypeError("create_connection() got an unexpected keyword argument 'all_errors'")
        if server_hostname is not None and not ssl:
            raise ValueError("server_hostname is only meaningful with ssl")
        if server_hostname is None and ssl:
            if not host:
                raise ValueError("You must set server_hostname when using ssl without a host")
            server_hostname = host
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if sock is not None:
            _check_ssl_socket(sock)
        if happy_eyeballs_delay is not None and interleave is None:
            interleave = 1

        if host is not None or port is not None:
            if sock is not None:
                raise ValueError("host/port and sock can not be specified at the same time")
            infos = await self._ensure_resolved(
                (host, port), family=family, type=socket.SOCK_STREAM, proto=proto, flags=flags
            )
            if not infos:
                raise OSError("getaddrinfo() returned empty list")
            if local_addr is not None:
                laddr_infos = await self._ensure_resolved(
                    local_addr, family=family, type=socket.SOCK_STREAM, proto=proto, flags=flags
                )
                if not laddr_infos:
                    raise OSError("getaddrinfo() returned empty list")
            else:
                laddr_infos = None
            if interleave:
                infos = _interleave_addrinfos(infos, interleave)

            exceptions = []
            if happy_eyeballs_delay is None:
                for addrinfo in infos:
                    try:
                        sock = await self._connect_sock(exceptions, addrinfo, laddr_infos)
                        break
                    except OSError:
                        continue
            else:
                sock, _, _ = await staggered.staggered_race(
                    (
                        functools.partial(self._connect_sock, exceptions, addrinfo, laddr_infos)
                        for addrinfo in infos
                    ),
                    happy_eyeballs_delay,
                    loop=self,
                )

            if sock is None:
                exceptions = [exc for sub in exceptions for exc in sub]
                try:
                    if all_errors:
                        raise ExceptionGroup("create_connection failed", exceptions)
                    if len(exceptions) == 1:
                        raise exceptions[0]
                    model = str(exceptions[0])
                    if all(str(exc) == model for exc in exceptions):
                        raise exceptions[0]
                    raise OSError(
                        "Multiple exceptions: {}".format(", ".join(str(exc) for exc in exceptions))
                    )
                finally:
                    exceptions = None
        else:
            if sock is None:
                raise ValueError("host and port was not specified and no sock specified")
            if sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A Stream Socket was expected, got {sock!r}")

        transport, protocol = await self._create_connection_transport(
            sock, protocol_factory, ssl, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)
        if self._debug:
            sock = transport.get_extra_info("socket")
            logger.debug("%r connected to %s:%r: (%r, %r)", sock, host, port, transport, protocol)
        return transport, protocol

    async def create_unix_connection(self, protocol_factory, path=None, *, ssl=None, sock=None,
                                     server_hostname=None, ssl_handshake_timeout=None,
                                     ssl_shutdown_timeout=None):
        """Connect to a Unix stream socket; return (transport, protocol)."""
        assert server_hostname is None or isinstance(server_hostname, str)
        if ssl:
            if server_hostname is None:
                raise ValueError("you have to pass server_hostname when using ssl")
        else:
            if server_hostname is not None:
                raise ValueError("server_hostname is only meaningful with ssl")
            if ssl_handshake_timeout is not None:
                raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
            if ssl_shutdown_timeout is not None:
                raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = _uos.fspath(path)
            sock = _usocket.socket(_usocket.AF_UNIX, _usocket.SOCK_STREAM, 0)
            try:
                sock.setblocking(False)
                await self.sock_connect(sock, path)
            except:
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError("no path and sock were specified")
            if sock.family != _usocket.AF_UNIX or sock.type != _usocket.SOCK_STREAM:
                raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
            sock.setblocking(False)
        return await self._create_connection_transport(
            sock, protocol_factory, ssl, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)

    async def connect_accepted_socket(self, protocol_factory, sock, *, ssl=None,
                                      ssl_handshake_timeout=None, ssl_shutdown_timeout=None):
        """Wrap an already accepted socket into a transport/protocol pair."""
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A Stream Socket was expected, got {sock!r}")
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if sock is not None:
            _check_ssl_socket(sock)
        transport, protocol = await self._create_connection_transport(
            sock, protocol_factory, ssl, "", server_side=True,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)
        if self._debug:
            sock = transport.get_extra_info("socket")
            logger.debug("%r handled: (%r, %r)", sock, transport, protocol)
        return transport, protocol

    # -- servers ------------------------------------------------------------

    def _rl_listeners(self):
        # Weak: a listener lives while its accept op is armed (or paused,
        # through its retry timer), as asyncio's reader Handle; when the
        # loop closes, nothing here keeps the listening socket alive.
        d = self.__dict__.get("_rl_listener_map")
        if d is None:
            d = self.__dict__["_rl_listener_map"] = weakref.WeakValueDictionary()
        return d

    def _start_serving(self, protocol_factory, sock, sslcontext=None, server=None, backlog=100,
                       ssl_handshake_timeout=None, ssl_shutdown_timeout=None):
        """Start accepting on the listening socket sock (Server calls it)."""
        listeners = self._rl_listeners()
        listener = listeners.get(sock)
        if listener is None:
            if sslcontext:
                # each connection's protocol is an SSLProtocol wrapping the
                # application's (asyncio's _accept_connection2)
                protocol_factory = self._tls_accept_factory(
                    protocol_factory, sslcontext, ssl_handshake_timeout, ssl_shutdown_timeout)
            listener = listeners[sock] = self._listener(sock, protocol_factory, server)
        listener.start()

    def _stop_serving(self, sock):
        """Stop accepting on sock and close it (Server.close calls it)."""
        listener = self._rl_listeners().pop(sock, None)
        if listener is not None:
            listener.stop()
        path = None
        unix_sockets = self.__dict__.get("_rl_unix_server_sockets")
        if unix_sockets and sock in unix_sockets:
            path = sock.getsockname()
        sock.close()
        if path is not None:
            prev_ino = unix_sockets.pop(sock)
            try:
                if _uos.stat(path).st_ino == prev_ino:
                    _uos.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as err:
                logger.error("Unable to clean up listening UNIX socket %r: %r", path, err)

    async def create_server(self, protocol_factory, host=None, port=None, *,
                            family=_socket.AF_UNSPEC, flags=_socket.AI_PASSIVE, sock=None,
                            backlog=100, ssl=None, reuse_address=None, reuse_port=None,
                            keep_alive=_unset, ssl_handshake_timeout=None,
                            ssl_shutdown_timeout=None, start_serving=True):
        """Create a TCP server bound to host (a name, or a sequence of
        names) and port, or serving on sock; return a Server."""
        if keep_alive is _unset:
            keep_alive = None
        elif not _PY313:
            raise TypeError("create_server() got an unexpected keyword argument 'keep_alive'")
        if isinstance(ssl, bool):
            raise TypeError("ssl argument must be an SSLContext or None")
        if ssl_handshake_timeout is not None and ssl is None:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and ssl is None:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if sock is not None:
            _check_ssl_socket(sock)

        if host is not None or port is not None:
            if sock is not None:
                raise ValueError("host/port and sock can not be specified at the same time")
            if reuse_address is None:
                reuse_address = _os.name == "posix" and sys.platform != "cygwin"
            sockets = []
            if host == "":
                hosts = [None]
            elif isinstance(host, str) or not isinstance(host, collections.abc.Iterable):
                hosts = [host]
            else:
                hosts = host
            fs = [self._create_server_getaddrinfo(h, port, family=family, flags=flags) for h in hosts]
            infos = await tasks.gather(*fs)
            infos = set(itertools.chain.from_iterable(infos))

            completed = False
            try:
                for res in infos:
                    af, socktype, proto, canonname, sa = res
                    try:
                        sock = socket.socket(af, socktype, proto)
                    except socket.error:
                        if self._debug:
                            logger.warning(
                                "create_server() failed to create socket.socket(%r, %r, %r)",
                                af, socktype, proto, exc_info=True,
                            )
                        continue
                    sockets.append(sock)
                    if reuse_address:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, True)
                    if reuse_port:
                        _set_reuseport(sock)
                    if keep_alive:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, True)
                    # One family per socket (Linux makes IPv6 sockets dual
                    # stack by default).
                    if _HAS_IPv6 and af == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, True)
                    try:
                        sock.bind(sa)
                    except OSError as err:
                        msg = _bind_error_message(sa, err)
                        if _PY313 and err.errno == errno.EADDRNOTAVAIL:
                            # the family is not enabled here (bpo-30945)
                            sockets.pop()
                            sock.close()
                            if self._debug:
                                logger.warning(msg)
                            continue
                        raise OSError(err.errno, msg) from None
                if _PY313 and not sockets:
                    raise OSError(
                        "could not bind on any address out of %r" % ([info[4] for info in infos],)
                    )
                completed = True
            finally:
                if not completed:
                    for s in sockets:
                        s.close()
        else:
            if sock is None:
                raise ValueError("Neither host/port nor sock were specified")
            if sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A Stream Socket was expected, got {sock!r}")
            sockets = [sock]

        for s in sockets:
            s.setblocking(False)
        server = Server(self, sockets, protocol_factory, ssl, backlog, ssl_handshake_timeout,
                        ssl_shutdown_timeout)
        if start_serving:
            server._start_serving()
            await tasks.sleep(0)
        if self._debug:
            logger.info("%r is serving", server)
        return server

    async def create_unix_server(self, protocol_factory, path=None, *, sock=None, backlog=100,
                                 ssl=None, ssl_handshake_timeout=None, ssl_shutdown_timeout=None,
                                 start_serving=True, cleanup_socket=_unset):
        """Create a Unix stream server on path (or serving on sock)."""
        if cleanup_socket is _unset:
            # 3.13 removes the socket file when the server closes
            cleanup_socket = _PY313
        elif not _PY313:
            raise TypeError(
                "create_unix_server() got an unexpected keyword argument 'cleanup_socket'"
            )
        if isinstance(ssl, bool):
            raise TypeError("ssl argument must be an SSLContext or None")
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")

        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = _uos.fspath(path)
            sock = _usocket.socket(_usocket.AF_UNIX, _usocket.SOCK_STREAM)
            # A stale socket file (not an abstract name) is removed first.
            if path[0] not in (0, "\x00"):
                try:
                    if stat.S_ISSOCK(_uos.stat(path).st_mode):
                        _uos.remove(path)
                except FileNotFoundError:
                    pass
                except OSError as err:
                    logger.error("Unable to check or remove stale UNIX socket %r: %r", path, err)
            try:
                sock.bind(path)
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EADDRINUSE:
                    raise OSError(errno.EADDRINUSE, f"Address {path!r} is already in use") from None
                raise
            except:
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError("path was not specified, and no sock specified")
            if sock.family != _usocket.AF_UNIX or sock.type != _usocket.SOCK_STREAM:
                raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")

        if cleanup_socket:
            name = sock.getsockname()
            if name and name[0] not in (0, "\x00"):
                try:
                    inode = _uos.stat(name).st_ino
                except FileNotFoundError:
                    pass
                else:
                    self.__dict__.setdefault("_rl_unix_server_sockets", {})[sock] = inode

        sock.setblocking(False)
        server = Server(self, [sock], protocol_factory, ssl, backlog, ssl_handshake_timeout,
                        ssl_shutdown_timeout)
        if start_serving:
            server._start_serving()
            await tasks.sleep(0)
        return server
