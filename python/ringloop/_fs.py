"""ringloop.fs primitives: one awaitable per file syscall.

On a ringloop loop with the io_uring backend each call is one io_uring
request completed by the reactor (loop._fs, src/fs/fs.c); everywhere else
(the epoll backend, stock asyncio, uvloop) it runs in the loop's default
executor.  Both raise the OSError the os function raises (errno, filename,
filename2).

Cancellation: the request (or the executor job) is not abandoned.  The
awaiter asks the kernel to cancel it and waits, ignoring further
cancellations, for its final outcome; `on_late(outcome)` gets what was done
anyway (bytes read, bytes written, an fd opened), then CancelledError goes
on.  So a buffer is never reused while the kernel writes to it and no
outcome is lost.
"""
import asyncio
import os

# src/fs/fs.c kinds
(_OPEN, _READ, _READINTO, _WRITE, _STATX, _RENAME, _UNLINK, _MKDIR, _FSYNC, _CLOSE,
 _SPLICE) = range(1, 12)
_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000
_AT_SYMLINK_NOFOLLOW = 0x100
_AT_REMOVEDIR = 0x200
_STATX_BTIME = 0x800


def native(loop):
    """True when loop runs file requests on io_uring."""
    f = getattr(loop, "_fs_native", None)
    return f is not None and f()


async def _settle(w):
    """Wait for future w whatever cancellations come; its result."""
    while not w.done():
        try:
            await asyncio.shield(w)
        except asyncio.CancelledError:
            pass
    return w.result()


async def _native(loop, kind, fd, a, b, i1, i2, on_late):
    fut, req = loop._fs(kind, fd, a, b, i1, i2)
    try:
        return await fut
    except BaseException:
        if fut.cancelled():
            outcome = await _settle(loop._fs_cancel(req))
        elif fut.done() and fut.exception() is None:
            outcome = fut.result()
        else:
            outcome = None
        if on_late is not None and outcome is not None:
            on_late(outcome)
        raise


async def _thread(loop, fn, args, on_late):
    inner = loop.run_in_executor(None, fn, *args)
    try:
        return await asyncio.shield(inner)
    except asyncio.CancelledError:
        try:
            outcome = await _settle(inner)
        except OSError:
            raise asyncio.CancelledError() from None
        if on_late is not None:
            on_late(outcome)
        raise


def _err(res, filename=None, filename2=None):
    e = -res
    if filename2 is not None:
        return OSError(e, os.strerror(e), filename, None, filename2)
    if filename is not None:
        return OSError(e, os.strerror(e), filename)
    return OSError(e, os.strerror(e))


def _late_close(outcome):
    if isinstance(outcome, int) and outcome >= 0:
        os.close(outcome)


async def open_fd(loop, path, flags, mode=0o666, dir_fd=None):
    """os.open(path, flags, mode) -> fd.  path: what the error names."""
    p = os.fsencode(path)
    flags |= os.O_CLOEXEC
    if native(loop):
        res = await _native(loop, _OPEN, _AT_FDCWD if dir_fd is None else dir_fd,
                            p, None, flags, mode, _late_close)
        if res < 0:
            raise _err(res, path)
        return res
    return await _thread(loop, _os_open, (path, p, flags, mode, dir_fd), _late_close)


def _os_open(path, p, flags, mode, dir_fd):
    try:
        return os.open(p, flags, mode, dir_fd=dir_fd)
    except OSError as e:
        raise OSError(e.errno, e.strerror, path) from None


async def pread(loop, fd, size, offset, on_late=None):
    """size bytes or fewer at offset (-1: the file position)."""
    if native(loop):
        res = await _native(loop, _READ, fd, None, None, size, offset, on_late)
        if type(res) is int:
            raise _err(res)
        return res
    if offset < 0:
        return await _thread(loop, os.read, (fd, size), on_late)
    return await _thread(loop, os.pread, (fd, size, offset), on_late)


async def preadinto(loop, fd, buf, offset, on_late=None):
    if native(loop):
        res = await _native(loop, _READINTO, fd, buf, None, 0, offset, on_late)
        if res < 0:
            raise _err(res)
        return res
    return await _thread(loop, _readinto_sync, (fd, buf, offset), on_late)


def _readinto_sync(fd, buf, offset):
    if offset < 0:
        return os.readv(fd, [buf])
    return os.preadv(fd, [buf], offset)


async def pwrite(loop, fd, data, offset, on_late=None):
    """One write at offset (-1: the file position / O_APPEND's end)."""
    if native(loop):
        res = await _native(loop, _WRITE, fd, data, None, 0, offset, on_late)
        if res < 0:
            raise _err(res)
        return res
    if offset < 0:
        return await _thread(loop, os.write, (fd, data), on_late)
    return await _thread(loop, os.pwrite, (fd, data, offset), on_late)


async def splice(loop, fd_in, off_in, fd_out, off_out, size, on_late=None):
    """One splice(2) of at most size bytes (io_uring only): one of the fds
    is a pipe, whose offset is -1; -1 on a file means its position."""
    res = await _native(loop, _SPLICE, fd_in, fd_out, off_out, size, off_in, on_late)
    if res < 0:
        raise _err(res)
    return res


async def close_fd(loop, fd):
    if native(loop):
        res = await _native(loop, _CLOSE, fd, None, None, 0, 0, None)
        if res < 0:
            raise _err(res)
        return
    # close() never waits for the disk: no thread hop needed
    os.close(fd)


def _stat_result(t):
    (mask, mode, ino, dmaj, dmin, nlink, uid, gid, size,
     asec, ansec, msec, mnsec, csec, cnsec, blksize, blocks, rmaj, rmin) = t
    return os.stat_result(
        (mode, ino, os.makedev(dmaj, dmin), nlink, uid, gid, size, asec, msec, csec),
        {
            "st_atime": asec + ansec * 1e-9,
            "st_mtime": msec + mnsec * 1e-9,
            "st_ctime": csec + cnsec * 1e-9,
            "st_atime_ns": asec * 1000000000 + ansec,
            "st_mtime_ns": msec * 1000000000 + mnsec,
            "st_ctime_ns": csec * 1000000000 + cnsec,
            "st_blksize": blksize,
            "st_blocks": blocks,
            "st_rdev": os.makedev(rmaj, rmin),
        },
    )


async def stat(loop, path, *, follow_symlinks=True):
    if isinstance(path, int):
        return await fstat(loop, path)
    p = os.fsencode(path)
    if native(loop):
        if b"\0" in p:
            raise ValueError("stat: embedded null character in path")
        res = await _native(loop, _STATX, _AT_FDCWD, p, None,
                            0 if follow_symlinks else _AT_SYMLINK_NOFOLLOW, 0, None)
        if type(res) is int:
            raise _err(res, path)
        return _stat_result(res)
    return await _thread(loop, os.stat, (path,), None) if follow_symlinks else \
        await _thread(loop, os.lstat, (path,), None)


async def fstat(loop, fd):
    if native(loop):
        res = await _native(loop, _STATX, fd, b"", None, _AT_EMPTY_PATH, 0, None)
        if type(res) is int:
            raise _err(res)
        return _stat_result(res)
    return await _thread(loop, os.fstat, (fd,), None)


async def rename(loop, src, dst):
    if native(loop):
        res = await _native(loop, _RENAME, _AT_FDCWD, _nonul(src), _nonul(dst), _AT_FDCWD, 0, None)
        if res < 0:
            raise _err(res, src, dst)
        return
    await _thread(loop, os.rename, (src, dst), None)


def _nonul(path):
    p = os.fsencode(path)
    if b"\0" in p:
        raise ValueError("embedded null byte")
    return p


async def unlink(loop, path):
    if native(loop):
        res = await _native(loop, _UNLINK, _AT_FDCWD, _nonul(path), None, 0, 0, None)
        if res < 0:
            raise _err(res, path)
        return
    await _thread(loop, os.unlink, (path,), None)


async def rmdir(loop, path):
    if native(loop):
        res = await _native(loop, _UNLINK, _AT_FDCWD, _nonul(path), None, _AT_REMOVEDIR, 0, None)
        if res < 0:
            raise _err(res, path)
        return
    await _thread(loop, os.rmdir, (path,), None)


async def mkdir(loop, path, mode=0o777):
    if native(loop):
        res = await _native(loop, _MKDIR, _AT_FDCWD, _nonul(path), None, mode, 0, None)
        if res < 0:
            raise _err(res, path)
        return
    await _thread(loop, os.mkdir, (path, mode), None)


async def fsync(loop, fd, data_only=False):
    if native(loop):
        res = await _native(loop, _FSYNC, fd, None, None, 1 if data_only else 0, 0, None)
        if res < 0:
            raise _err(res)
        return
    await _thread(loop, os.fdatasync if data_only else os.fsync, (fd,), None)
