"""loop.sendfile() and loop.sock_sendfile() for ringloop.Loop (issue 11).

sendfile(transport, ...) on the native StreamTransport is zero-copy: the
transport queues a "sendfile" entry behind what was written before it and
runs sendfile(2) from the file into the socket on writability, inside C
(src/net/sendfile.c); write() is refused meanwhile.  This module does what
asyncio does around its own native step: the argument checks, pausing
reading, the error mapping of unix_events' sock_sendfile (a failure before
the first byte falls back to read+write), and the file position.
sock_sendfile is asyncio's Unix path as is (os.sendfile on writer
readiness, a native watch here)."""

import errno
import io
import os
from asyncio import base_events, constants, exceptions, unix_events

from . import _core

__all__ = ("SendfileMixin",)

_BaseLoop = base_events.BaseEventLoop
_UnixLoop = unix_events._UnixSelectorEventLoop


class SendfileMixin:
    """loop.sendfile and loop.sock_sendfile."""

    sock_sendfile = _BaseLoop.sock_sendfile
    _check_sendfile_params = _BaseLoop._check_sendfile_params
    _sock_sendfile_fallback = _BaseLoop._sock_sendfile_fallback
    _sock_sendfile_native = _UnixLoop._sock_sendfile_native
    _sock_sendfile_native_impl = _UnixLoop._sock_sendfile_native_impl
    _sock_sendfile_update_filepos = _UnixLoop._sock_sendfile_update_filepos
    _sock_add_cancellation_callback = _UnixLoop._sock_add_cancellation_callback
    _sendfile_fallback = _BaseLoop._sendfile_fallback

    async def sendfile(self, transport, file, offset=0, count=None, *, fallback=True):
        """Send a file to transport; return the number of bytes sent.
        asyncio's semantics (see BaseEventLoop.sendfile)."""
        if transport.is_closing():
            raise RuntimeError("Transport is closing")
        mode = getattr(transport, "_sendfile_compatible", None)
        if mode is None:
            if type(transport) is _core.StreamTransport:
                mode = constants._SendfileMode.TRY_NATIVE
            else:
                mode = constants._SendfileMode.UNSUPPORTED
        if mode is constants._SendfileMode.UNSUPPORTED:
            raise RuntimeError(f"sendfile is not supported for transport {transport!r}")
        if mode is constants._SendfileMode.TRY_NATIVE:
            try:
                return await self._sendfile_native(transport, file, offset, count)
            except exceptions.SendfileNotAvailableError:
                if not fallback:
                    raise
        if not fallback:
            raise RuntimeError(
                f"fallback is disabled and native sendfile is not "
                f"supported for transport {transport!r}"
            )
        return await self._sendfile_fallback(transport, file, offset, count)

    async def _sendfile_native(self, transp, file, offset, count):
        if type(transp) is not _core.StreamTransport:
            raise exceptions.SendfileNotAvailableError(
                f"transport {transp!r} has no native sendfile")
        # asyncio's checks, in its order (sock_sendfile's, then
        # _sock_sendfile_native's).
        self._check_sendfile_params(transp.get_extra_info("socket"), file, offset, count)
        try:
            fileno = file.fileno()
        except (AttributeError, io.UnsupportedOperation) as err:
            raise exceptions.SendfileNotAvailableError("not a regular file") from err
        try:
            fsize = os.fstat(fileno).st_size
        except OSError as err:
            raise exceptions.SendfileNotAvailableError("not a regular file") from err
        if not (count if count else fsize):
            return 0  # empty file

        resume_reading = transp.is_reading()
        transp.pause_reading()
        sent = 0
        try:
            fut = self.create_future()
            transp._sendfile_start(fileno, offset, count or 0, fut)
            try:
                err = await fut
            finally:
                sent = transp._sendfile_stop()
                if sent > 0:
                    os.lseek(fileno, offset + sent, os.SEEK_SET)
        finally:
            if resume_reading:
                transp.resume_reading()
        if err:
            raise self._rl_sendfile_error(transp, err, sent)
        return sent

    def _rl_sendfile_error(self, transp, err, sent):
        if err == errno.ECONNABORTED and transp.is_closing():
            # close()/abort()/a fatal error ended it (asyncio's waiter for
            # the write buffer gets the same when the transport goes).
            return ConnectionError("Connection is closed by peer")
        exc = OSError(err, os.strerror(err))
        if err == errno.ENOTCONN:
            new_exc = ConnectionError("socket is not connected", errno.ENOTCONN)
            new_exc.__cause__ = exc
            return new_exc
        if sent == 0:
            # Mostly a file sendfile(2) cannot read (not mmap-able): the
            # fallback sends it with read() and write(), as asyncio does.
            new_exc = exceptions.SendfileNotAvailableError("os.sendfile call failed")
            new_exc.__cause__ = exc
            return new_exc
        if isinstance(exc, ConnectionError):
            # The peer went away mid-way: the stream is broken, as a
            # failed write() would leave it.
            transp._force_close(exc)
        return exc
