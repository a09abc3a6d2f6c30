"""Subprocesses, pipes and sendfile for ringloop.Loop (issue 11, step 1).

What comes from asyncio itself, per running Python version, so that every
argument check, error and callback order is the one asyncio has on it:

  - subprocess_exec/subprocess_shell: base_events.BaseEventLoop's methods
    (argument checks, debug logging), which call our
    _make_subprocess_transport;
  - the subprocess transport: unix_events._UnixSubprocessTransport
    (base_subprocess.BaseSubprocessTransport + subprocess.Popen, which
    spawns with vfork/posix_spawn where the arguments allow it);
  - with RINGLOOP_PIPE_PYTHON=1 only, the pipe transports:
    unix_events._UnixReadPipeTransport and _UnixWritePipeTransport, which
    run over loop._add_reader/_add_writer, here the native readiness
    watches of the C core; subclassed (same names) only to read until the
    pipe is empty and write until it is full at each wake-up;
  - sendfile: base_events' checks and fallbacks and unix_events' os.sendfile
    loop over writer readiness for sock_sendfile.

What is ringloop's own: the pipe transports (the C stream transport in
pipe mode, ringloop._core._UnixReadPipeTransport/_UnixWritePipeTransport,
ARCHITECTURE.md "Native pipe transports"), the pipes a subprocess transport makes hold
256 KiB (F_SETPIPE_SZ, for the first 32 children watched), and the child
watcher.  Each child gets a pidfd
(os.pidfd_open) watched by the loop's reactor like any reader (a POLL op
on io_uring, an epoll registration on epoll); when it becomes readable the
child is reaped with waitid(P_PIDFD, WNOHANG).  No thread per child, no
SIGCHLD handler, and no pid-reuse race: the pidfd names exactly our child.
If someone else reaped it first (a user's own waitpid), the status Popen
recorded is used when there is one, else 255 with asyncio's warning.  Where
pidfd_open is missing (kernel < 5.3, seccomp) a thread per child blocks in
waitpid(), as asyncio's ThreadedChildWatcher does.  Policy child watchers
(asyncio.set_child_watcher, 3.11-3.13) are not consulted, as in uvloop."""
import errno
import fcntl
import os
import threading
from asyncio import base_events, constants, exceptions, unix_events

from . import _core
from ._sendfile import SendfileMixin

__all__ = ("ProcMixin",)

_HAVE_PIDFD = hasattr(os, "pidfd_open")
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # fcntl has it from 3.10
_HAVE_P_PIDFD = hasattr(os, "P_PIDFD")

_BaseLoop = base_events.BaseEventLoop
_UnixLoop = unix_events._UnixSelectorEventLoop


def _waitid_returncode(res):
    """returncode (asyncio's convention) from a waitid() result."""
    if res.si_code == os.CLD_EXITED:
        return res.si_status
    # CLD_KILLED / CLD_DUMPED: killed by signal si_status
    return -res.si_status


def _logger():
    # Looked up at each use, as asyncio's own code does: tests patch it.
    return base_events.logger


class _Child:
    __slots__ = ("pid", "pidfd", "transport")

    def __init__(self, pid, pidfd, transport):
        self.pid = pid
        self.pidfd = pidfd
        self.transport = transport


# Reads per readiness wake-up of a read pipe transport: a pipe holds 64 KiB
# by default, so one read per wake-up moved 64 KiB per loop iteration and a
# StreamReader wake-up per 64 KiB (0.46-0.61x uvloop, which reads until
# EAGAIN).  Bounded so that a writer as fast as us cannot hold the loop.
_PIPE_READS_PER_WAKEUP = 16
# RINGLOOP_PIPE_PYTHON=1: asyncio's own pipe transports (the classes
# below) instead of the native ones (for comparison, and as an escape hatch).
_PIPE_PYTHON = os.environ.get("RINGLOOP_PIPE_PYTHON", "") not in ("", "0")
# Writes per writability wake-up of a write pipe transport, likewise.
_PIPE_WRITES_PER_WAKEUP = 16


class _UnixReadPipeTransport(unix_events._UnixReadPipeTransport):
    """asyncio's read pipe transport (same name, so the same repr), reading
    until the pipe is empty (EAGAIN) at each wake-up, at most
    _PIPE_READS_PER_WAKEUP reads, and stopping as soon as the protocol
    paused or closed it from data_received()."""

    def _read_ready(self):
        fd = self._fileno
        for _ in range(_PIPE_READS_PER_WAKEUP):
            try:
                data = os.read(fd, self.max_size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._fatal_error(exc, "Fatal read error on pipe transport")
                return
            if not data:
                self._eof()
                return
            self._protocol.data_received(data)
            if self._paused or self._closing:
                return

    def is_reading(self):
        # Not on every 3.11 (Debian's 3.11.2 lacks it).
        return not self._paused and not self._closing

    def _eof(self):
        # What asyncio's _read_ready does on EOF, in its order.
        loop = self._loop
        if loop.get_debug():
            unix_events.logger.info("%r was closed by peer", self)
        self._closing = True
        loop._remove_reader(self._fileno)
        loop.call_soon(self._protocol.eof_received)
        loop.call_soon(self._call_connection_lost, None)


class _UnixWritePipeTransport(unix_events._UnixWritePipeTransport):
    """asyncio's write pipe transport (same name, same repr), writing until
    the buffer is empty or the pipe full (EAGAIN) at each wake-up, at most
    _PIPE_WRITES_PER_WAKEUP writes."""

    def _write_ready(self):
        for _ in range(_PIPE_WRITES_PER_WAKEUP - 1):
            buffer = self._buffer
            size = len(buffer)
            super()._write_ready()
            # Stop once the buffer emptied (asyncio removed the writer and
            # may have closed), the write failed (buffer cleared) or the
            # pipe is full (nothing written).
            if not self._buffer or len(self._buffer) == size or self._buffer is not buffer:
                return
        if self._buffer:
            super()._write_ready()


# Capacity given to the pipes a subprocess transport makes (F_SETPIPE_SZ),
# while the loop watches fewer than _BIG_PIPES_MAX_CHILDREN children.  A
# default pipe holds 64 KiB: pushing 1 MiB chunks through `cat` then costs a
# context switch per 64 KiB on each side (0.5x uvloop, whose libuv gives the
# child a socketpair with about 200 KiB of buffer); 256 KiB pipes measured
# 0.75-0.95x uvloop.  The kernel counts pipe pages per user and gives an
# unprivileged user who is over fs.pipe-user-pages-soft (16,384 pages by
# default) 2-page pipes from then on, so the extra pages are bounded:
# 32 children x 3 pipes x 48 pages = 4,608 pages at most.  Pipes the caller
# hands to connect_read_pipe/connect_write_pipe are left as they are.
_BIG_PIPE_SIZE = 256 * 1024
_BIG_PIPES_MAX_CHILDREN = 32


class _SubprocessTransport(unix_events._UnixSubprocessTransport):
    """asyncio's Unix subprocess transport; the reaping and the size of its
    pipes are ours."""

    def _start(self, *args, **kwargs):
        super()._start(*args, **kwargs)
        if len(self._loop._rl_children()) >= _BIG_PIPES_MAX_CHILDREN:
            return
        proc = self._proc
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                try:
                    fcntl.fcntl(pipe.fileno(), _F_SETPIPE_SZ, _BIG_PIPE_SIZE)
                except (OSError, ValueError):
                    pass  # EPERM (over the user's pipe-page limit), not a pipe: as is


class ProcMixin:
    """loop.subprocess_exec/shell, connect_read/write_pipe, sendfile,
    sock_sendfile and the native child watcher."""

    # -- readiness under asyncio's private names -----------------------------
    # asyncio's pipe transports (and its sock_sendfile loop) call these.

    _add_reader = _core.Loop.add_reader
    _remove_reader = _core.Loop.remove_reader
    _add_writer = _core.Loop.add_writer
    _remove_writer = _core.Loop.remove_writer

    # -- pipes ---------------------------------------------------------------

    connect_read_pipe = _BaseLoop.connect_read_pipe
    connect_write_pipe = _BaseLoop.connect_write_pipe

    def _make_read_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        if _PIPE_PYTHON:
            return _UnixReadPipeTransport(self, pipe, protocol, waiter, extra)
        return self._rl_make_pipe_transport(0, pipe, protocol, waiter, extra)

    def _make_write_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        if _PIPE_PYTHON:
            return _UnixWritePipeTransport(self, pipe, protocol, waiter, extra)
        return self._rl_make_pipe_transport(1, pipe, protocol, waiter, extra)

    # -- subprocesses --------------------------------------------------------

    subprocess_exec = _BaseLoop.subprocess_exec
    subprocess_shell = _BaseLoop.subprocess_shell
    _log_subprocess = _BaseLoop._log_subprocess

    async def _make_subprocess_transport(self, protocol, args, shell, stdin, stdout, stderr,
                                         bufsize, extra=None, **kwargs):
        self._check_closed()
        waiter = self.create_future()
        transp = _SubprocessTransport(self, protocol, args, shell, stdin, stdout, stderr,
                                      bufsize, waiter=waiter, extra=extra, **kwargs)
        self._rl_watch_child(transp)
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            transp.close()
            await transp._wait()
            raise
        return transp

    def _rl_children(self):
        children = self.__dict__.get("_rl_children_map")
        if children is None:
            children = self.__dict__["_rl_children_map"] = {}
        return children

    def _rl_watch_child(self, transp):
        pid = transp.get_pid()
        if not _HAVE_PIDFD:
            self._rl_watch_child_thread(pid, transp)
            return
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            # Already reaped by someone else before we could look.
            self._rl_child_gone(pid, transp)
            return
        except OSError as exc:
            if exc.errno in (errno.ENOSYS, errno.EPERM, errno.EINVAL):
                self._rl_watch_child_thread(pid, transp)
                return
            raise
        child = _Child(pid, pidfd, transp)
        try:
            self.add_reader(pidfd, self._rl_child_ready, child)
        except Exception:
            # The reactor refused the pidfd (ENOMEM, ...): the child is
            # running, so it must still be watched.
            os.close(pidfd)
            self._rl_watch_child_thread(pid, transp)
            return
        self._rl_children()[pidfd] = child

    def _rl_reap(self, child):
        """Reap `child` without blocking: its returncode, None if it is
        still running, or raise ChildProcessError if someone else reaped it."""
        if _HAVE_P_PIDFD:
            try:
                res = os.waitid(os.P_PIDFD, child.pidfd, os.WEXITED | os.WNOHANG)
            except OSError as exc:
                if exc.errno != errno.EINVAL:  # EINVAL: P_PIDFD unknown (< 5.4)
                    raise
            else:
                return None if res is None else _waitid_returncode(res)
        pid, status = os.waitpid(child.pid, os.WNOHANG)
        if pid == 0:
            return None
        return unix_events.waitstatus_to_exitcode(status)

    def _rl_child_ready(self, child):
        try:
            returncode = self._rl_reap(child)
        except ChildProcessError:
            returncode = self._rl_already_reaped(child.pid, child.transport)
        if returncode is None:
            return  # the pidfd woke us early; it stays watched
        self._rl_forget_child(child)
        child.transport._process_exited(returncode)

    def _rl_forget_child(self, child):
        self._rl_children().pop(child.pidfd, None)
        self.remove_reader(child.pidfd)
        os.close(child.pidfd)

    def _rl_already_reaped(self, pid, transp):
        proc = transp._proc
        if proc is not None and proc.returncode is not None:
            # Reaped through the Popen object itself (Popen.poll() in
            # transport.close(), Popen.send_signal() on 3.11/3.12): it kept
            # the status.
            return proc.returncode
        _logger().warning(
            "child process pid %d exit status already read:  will report returncode 255", pid)
        return 255

    def _rl_child_gone(self, pid, transp):
        self.call_soon(transp._process_exited, self._rl_already_reaped(pid, transp))

    # Fallback without pidfds: asyncio's ThreadedChildWatcher, one thread per child.

    def _rl_watch_child_thread(self, pid, transp):
        thread = threading.Thread(
            target=self._rl_waitpid_thread,
            name=f"ringloop-waitpid-{pid}",
            args=(pid, transp),
            daemon=True,
        )
        thread.start()

    def _rl_waitpid_thread(self, pid, transp):
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            returncode = None
        else:
            returncode = unix_events.waitstatus_to_exitcode(status)
        if self.is_closed():
            _logger().warning("Loop %r that handles pid %r is closed", self, pid)
            proc = transp._proc
            if returncode is not None and proc is not None and proc.returncode is None:
                proc.returncode = returncode
            return
        try:
            if returncode is None:
                self.call_soon_threadsafe(self._rl_child_gone, pid, transp)
            else:
                self.call_soon_threadsafe(transp._process_exited, returncode)
        except RuntimeError:  # the loop closed meanwhile
            _logger().warning("Loop %r that handles pid %r is closed", self, pid)

    def _rl_close_children(self):
        """The loop closes: stop watching; children still running are reaped
        by a thread when they exit (no zombies), as asyncio's threaded
        watcher does after its loop closed."""
        children = self.__dict__.get("_rl_children_map")
        if not children:
            return
        for child in list(children.values()):
            self._rl_forget_child_at_close(child)

    def _rl_forget_child_at_close(self, child):
        self._rl_children().pop(child.pidfd, None)
        try:
            self.remove_reader(child.pidfd)
        except Exception:
            pass
        try:
            returncode = self._rl_reap(child)
        except ChildProcessError:
            returncode = -1
        finally:
            os.close(child.pidfd)
        proc = child.transport._proc
        if returncode is None:
            threading.Thread(
                target=_reap_after_close,
                name=f"ringloop-reap-{child.pid}",
                args=(self, child.pid, proc),
                daemon=True,
            ).start()
        elif proc is not None and proc.returncode is None and returncode != -1:
            proc.returncode = returncode

    # -- sendfile: python/ringloop/_sendfile.py (zero-copy in the stream transport)

    sendfile = SendfileMixin.sendfile
    sock_sendfile = SendfileMixin.sock_sendfile
    _check_sendfile_params = SendfileMixin._check_sendfile_params
    _sock_sendfile_fallback = SendfileMixin._sock_sendfile_fallback
    _sock_sendfile_native = SendfileMixin._sock_sendfile_native
    _sock_sendfile_native_impl = SendfileMixin._sock_sendfile_native_impl
    _sock_sendfile_update_filepos = SendfileMixin._sock_sendfile_update_filepos
    _sock_add_cancellation_callback = SendfileMixin._sock_add_cancellation_callback
    _sendfile_fallback = SendfileMixin._sendfile_fallback
    _sendfile_native = SendfileMixin._sendfile_native
    _rl_sendfile_error = SendfileMixin._rl_sendfile_error


def _reap_after_close(loop, pid, proc):
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return
    if proc is not None and proc.returncode is None:
        proc.returncode = unix_events.waitstatus_to_exitcode(status)
    _logger().warning("Loop %r that handles pid %r is closed", loop, pid)

