"""Cold formatting helpers the C core calls: handle reprs, callback
descriptions for "Exception in callback ..." and slow-callback warnings.

They produce exactly what asyncio's own Handle produces, by using asyncio's
formatting helpers for the callback part."""
import sys
from asyncio import format_helpers as _fh
from asyncio import tasks as _tasks
from asyncio import base_events as _base_events

if sys.version_info >= (3, 13):

    def format_callback(callback, args, debug):
        return _fh._format_callback_source(callback, args, debug=debug)

else:

    def format_callback(callback, args, debug):
        return _fh._format_callback_source(callback, args)


def handle_repr(handle):
    info = [type(handle).__name__]
    if handle._cancelled:
        info.append("cancelled")
    if type(handle).__name__ == "TimerHandle":
        info.insert(2 if handle._cancelled else 1, f"when={handle._when}")
    callback = handle._callback
    if callback is not None:
        loop = handle._loop
        debug = loop.get_debug() if loop is not None else False
        info.append(format_callback(callback, handle._args, debug))
    tb = handle._source_traceback
    if tb:
        frame = tb[-1]
        info.append(f"created at {frame[0]}:{frame[1]}")
    return "<{}>".format(" ".join(info))


def _format_handle(handle):
    if not hasattr(handle, "_callback"):
        return repr(handle)  # a native Task's step or wake-up
    cb = handle._callback
    owner = getattr(cb, "__self__", None)
    if isinstance(owner, _tasks.Task):
        return repr(owner)
    return str(handle)


def slow_callback(loop, handle, seconds):
    _base_events.logger.warning("Executing %s took %.3f seconds", _format_handle(handle), seconds)
