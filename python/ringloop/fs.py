"""ringloop.fs: asynchronous files with aiofiles' API and Python's semantics.

    async with ringloop.fs.open(path, "rb") as f:
        data = await f.read()

On ringloop's io_uring backend every read, write, open, close, stat, fsync,
rename, unlink and mkdir is an io_uring request completed by the loop, no
thread involved.  On the epoll backend, stock asyncio and uvloop the same
calls run in the loop's default executor.  Buffering, newline translation
and decoding follow io.open(); text decoding runs in Python over the native
binary layer.
"""
import asyncio
import codecs
import errno
import fcntl
import io
import locale
import os
import stat as _stat_mod

from . import _fs


def _pack_cookie(pos, flags=0, nfeed=0, need_eof=False, skip=0):
    # the C TextIOWrapper's layout (a packed little-endian struct: 64-bit
    # offset, then 32-bit flags, bytes to feed, chars to skip, 8-bit eof)
    return pos | (flags << 64) | (nfeed << 96) | (skip << 128) | (bool(need_eof) << 160)


def _unpack_cookie(cookie):
    m = (1 << 32) - 1
    return (cookie & ((1 << 64) - 1), (cookie >> 64) & m, (cookie >> 96) & m,
            (cookie >> 160) & 0xff, (cookie >> 128) & m)

__all__ = [
    "open", "AsyncFile", "AsyncTextFile", "read_bytes", "read_text", "write_bytes",
    "write_text", "stat", "rename", "unlink", "mkdir", "rmdir", "fsync", "fdatasync",
    "copy_file", "sendfile",
]

_DEFAULT_BUFFER = io.DEFAULT_BUFFER_SIZE
_MAX_CHUNK = 1 << 30


def _loop():
    return asyncio.get_running_loop()


def _parse_mode(mode, buffering, encoding, errors, newline):
    if not isinstance(mode, str):
        raise TypeError(f"open() argument 'mode' must be str, not {type(mode).__name__}")
    if not isinstance(buffering, int):
        raise TypeError(f"'{type(buffering).__name__}' object cannot be interpreted as an integer")
    for name, v in (("encoding", encoding), ("errors", errors), ("newline", newline)):
        if v is not None and not isinstance(v, str):
            raise TypeError(f"open() argument '{name}' must be str or None, not {type(v).__name__}")
    modes = set(mode)
    if modes - set("axrwb+t") or len(mode) > len(modes):
        raise ValueError(f"invalid mode: {mode!r}")
    creating, reading, writing, appending = ("x" in modes, "r" in modes, "w" in modes, "a" in modes)
    updating, text, binary = "+" in modes, "t" in modes, "b" in modes
    if text and binary:
        raise ValueError("can't have text and binary mode at once")
    if creating + reading + writing + appending != 1:
        raise ValueError("must have exactly one of create/read/write/append mode")
    if binary and encoding is not None:
        raise ValueError("binary mode doesn't take an encoding argument")
    if binary and errors is not None:
        raise ValueError("binary mode doesn't take an errors argument")
    if binary and newline is not None:
        raise ValueError("binary mode doesn't take a newline argument")
    if binary and buffering == 1:
        import warnings
        warnings.warn("line buffering (buffering=1) isn't supported in binary mode, "
                      "the default buffer size will be used", RuntimeWarning, 3)
    if newline not in (None, "", "\n", "\r", "\r\n"):
        raise ValueError(f"illegal newline value: {newline}")
    if buffering == 0 and not binary:
        raise ValueError("can't have unbuffered text I/O")
    if creating:
        flags = os.O_EXCL | os.O_CREAT
    elif reading:
        flags = 0
    elif writing:
        flags = os.O_CREAT | os.O_TRUNC
    else:
        flags = os.O_APPEND | os.O_CREAT
    if updating:
        flags |= os.O_RDWR
    elif reading:
        flags |= os.O_RDONLY
    else:
        flags |= os.O_WRONLY
    readable = reading or updating
    writable = not reading or updating
    return flags, readable, writable, appending, binary


class _Opener:
    """What fs.open() returns: await it, or use it with `async with`."""

    __slots__ = ("_coro", "_file")

    def __init__(self, coro):
        self._coro = coro
        self._file = None

    def __await__(self):
        return self._coro.__await__()

    async def __aenter__(self):
        self._file = await self._coro
        return self._file

    async def __aexit__(self, *exc):
        await self._file.close()


def open(file, mode="r", buffering=-1, encoding=None, errors=None, newline=None,
         closefd=True, opener=None):
    """Open file as io.open() does; returns an awaitable async context manager."""
    return _Opener(_open(file, mode, buffering, encoding, errors, newline, closefd, opener))


async def _open(file, mode, buffering, encoding, errors, newline, closefd, opener):
    if not isinstance(file, int):
        file = os.fspath(file)
    if not isinstance(file, (str, bytes, int)):
        raise TypeError(f"expected str, bytes or os.PathLike object, not {type(file).__name__}")
    flags, readable, writable, appending, binary = _parse_mode(
        mode, buffering, encoding, errors, newline)
    if not binary:
        encoding = io.text_encoding(encoding)
        if encoding == "locale":
            encoding = locale.getpreferredencoding(False)
        codecs.lookup(encoding)
        if errors is not None:
            codecs.lookup_error(errors)
    loop = _loop()
    if isinstance(file, int):
        if file < 0:
            raise ValueError("negative file descriptor")
        fd = file
    else:
        if not closefd:
            raise ValueError("Cannot use closefd=False with file name")
        p = os.fsencode(file)
        if b"\0" in p:
            raise ValueError("embedded null byte")
        if opener is not None:
            fd = opener(file, flags | os.O_CLOEXEC)
            if not isinstance(fd, int) or fd < 0:
                raise ValueError(f"opener returned {fd}")
        else:
            fd = await _fs.open_fd(loop, file, flags)
    try:
        st = os.fstat(fd)  # the inode is in memory once open: no wait
        if _stat_mod.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, os.strerror(21), file)
        if _stat_mod.S_ISREG(st.st_mode) and not appending and not isinstance(file, int):
            pos, seekable = 0, True  # just opened by us: no lseek needed
        else:
            try:
                pos = os.lseek(fd, 0, os.SEEK_END if appending else os.SEEK_CUR)
                seekable = True
            except OSError:
                pos, seekable = 0, False
        if buffering < 0 or buffering == 1:
            buffering = st.st_blksize if st.st_blksize > 1 else _DEFAULT_BUFFER
        raw = AsyncFile(loop, fd, file, mode if binary else mode.replace("t", "") + "b",
                        readable, writable, appending, seekable, pos, buffering, closefd)
        if _stat_mod.S_ISREG(st.st_mode):
            raw._size_hint = st.st_size
    except BaseException:
        if closefd or not isinstance(file, int):
            os.close(fd)
        raise
    if binary:
        return raw
    return AsyncTextFile(raw, encoding, errors or "strict", newline, mode)


class AsyncFile:
    """A binary file (aiofiles' AsyncBufferedReader/AsyncFileIO API)."""

    def __init__(self, loop, fd, name, mode, readable, writable, appending, seekable,
                 pos, buffering, closefd):
        self._loop = loop
        self._fd = fd
        self.name = name
        self.mode = mode
        self._readable = readable
        self._writable = writable
        self._append = appending
        self._seekable = seekable
        self._pos = pos          # file offset after _rbuf / where _wbuf goes
        self._rbuf = b""
        self._wbuf = bytearray()
        self._bufsize = buffering
        self._closefd = closefd
        self._closed = False
        self._size_hint = None  # st_size from open(): the first read() needs no fstat

    # -- state ----------------------------------------------------------
    @property
    def closed(self):
        return self._closed

    def fileno(self):
        self._check_closed()
        return self._fd

    def _check_closed(self):
        if self._closed:
            raise ValueError("I/O operation on closed file.")

    def _check_readable(self):
        self._check_closed()
        if not self._readable:
            raise io.UnsupportedOperation("read")

    def _check_writable(self):
        self._check_closed()
        if not self._writable:
            raise io.UnsupportedOperation("write")

    async def readable(self):
        self._check_closed()
        return self._readable

    async def writable(self):
        self._check_closed()
        return self._writable

    async def seekable(self):
        self._check_closed()
        return self._seekable

    async def isatty(self):
        self._check_closed()
        return os.isatty(self._fd)

    def _off(self):
        return self._pos if self._seekable else -1

    # -- reading --------------------------------------------------------
    def _keep(self, data):
        # a read the kernel finished after its awaiter was cancelled
        if isinstance(data, bytes) and data:
            self._rbuf += data
            self._pos += len(data)

    async def _raw_read(self, n):
        data = await _fs.pread(self._loop, self._fd, n, self._off(), self._keep)
        self._pos += len(data)
        return data

    async def _prepare_read(self):
        self._check_readable()
        if self._wbuf:
            await self.flush()

    async def read(self, size=-1):
        await self._prepare_read()
        if size is None:
            size = -1
        if size < 0:
            chunks = [self._rbuf]
            self._rbuf = b""
            while True:
                want = self._bufsize
                regular = False
                if self._size_hint is not None:
                    size_now, regular = self._size_hint, True
                    self._size_hint = None
                    want = max(want, min(size_now - self._pos + 1, _MAX_CHUNK))
                elif self._seekable:
                    st = os.fstat(self._fd)
                    regular = _stat_mod.S_ISREG(st.st_mode)
                    want = max(want, min(st.st_size - self._pos + 1, _MAX_CHUNK))
                data = await self._raw_read(want)
                if not data:
                    break
                chunks.append(data)
                if regular and len(data) < want:
                    break  # a short read of a regular file: its end
            if len(chunks) == 2 and not chunks[0]:
                return chunks[1]
            return b"".join(chunks)
        if len(self._rbuf) >= size:
            data, self._rbuf = self._rbuf[:size], self._rbuf[size:]
            return data
        chunks = [self._rbuf]
        have = len(self._rbuf)
        self._rbuf = b""
        while have < size:
            need = size - have
            data = await self._raw_read(max(need, self._bufsize) if need < self._bufsize else need)
            if not data:
                break
            if len(data) > need:
                data, self._rbuf = data[:need], data[need:]
            chunks.append(data)
            have += len(data)
        return b"".join(chunks)

    async def read1(self, size=-1):
        await self._prepare_read()
        if size is None or size < 0:
            size = self._bufsize
        if size == 0:
            return b""
        if not self._rbuf:
            # as BufferedReader: nothing buffered, one raw read of size
            # bytes, returned as is (nothing kept back)
            return await self._raw_read(size)
        data, self._rbuf = self._rbuf[:size], self._rbuf[size:]
        return data

    async def readinto(self, b):
        await self._prepare_read()
        m = memoryview(b).cast("B")
        n = len(self._rbuf)
        if n:
            n = min(n, len(m))
            m[:n] = self._rbuf[:n]
            self._rbuf = self._rbuf[n:]
            if n == len(m):
                return n
        got = n
        while got < len(m):
            r = await _fs.preadinto(self._loop, self._fd, m[got:], self._off(),
                                    self._keep_into)
            if r == 0:
                break
            self._pos += r
            got += r
        return got

    def _keep_into(self, n):
        if isinstance(n, int) and n > 0:
            self._pos += n

    async def readline(self, size=-1):
        await self._prepare_read()
        if size is None:
            size = -1
        chunks = []
        total = 0
        while True:
            buf = self._rbuf
            i = buf.find(b"\n")
            end = i + 1 if i >= 0 else len(buf)
            if size >= 0 and total + end > size:
                end = size - total
            if end:
                chunks.append(buf[:end])
                self._rbuf = buf[end:]
                total += end
            if (i >= 0 and end == i + 1) or (size >= 0 and total >= size):
                break
            data = await self._raw_read(self._bufsize)
            if not data:
                break
            self._rbuf = data
        return b"".join(chunks)

    async def readlines(self, hint=-1):
        lines = []
        total = 0
        while True:
            line = await self.readline()
            if not line:
                break
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __aiter__(self):
        return self

    async def __anext__(self):
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line

    # -- writing --------------------------------------------------------
    def _drop_rbuf(self):
        if self._rbuf:
            self._pos -= len(self._rbuf)
            self._rbuf = b""

    async def write(self, b):
        self._check_writable()
        if isinstance(b, str):
            raise TypeError("a bytes-like object is required, not 'str'")
        m = memoryview(b).cast("B")
        n = len(m)
        self._drop_rbuf()
        if len(self._wbuf) + n < self._bufsize:
            self._wbuf += m
            return n
        if self._wbuf:
            await self.flush()
        if n < self._bufsize:
            self._wbuf += m
        else:
            await self._write_all(m)
        return n

    async def writelines(self, lines):
        for line in lines:
            await self.write(line)

    async def _write_all(self, m):
        done = 0
        total = len(m)

        def late(k):
            nonlocal done
            if isinstance(k, int) and k > 0:
                self._advance(k)
                done += k

        while done < total:
            k = await _fs.pwrite(self._loop, self._fd, m[done:], self._woff(), late)
            self._advance(k)
            done += k

    def _woff(self):
        return -1 if self._append or not self._seekable else self._pos

    def _advance(self, k):
        if self._append and self._seekable:
            self._pos = os.lseek(self._fd, 0, os.SEEK_END)
        else:
            self._pos += k

    async def flush(self):
        self._check_closed()
        if not self._wbuf:
            return
        data, self._wbuf = self._wbuf, bytearray()
        try:
            await self._write_all(memoryview(data))
        except asyncio.CancelledError:
            raise
        except BaseException:
            raise

    # -- position -------------------------------------------------------
    async def tell(self):
        self._check_closed()
        if not self._seekable:
            raise OSError(29, "Illegal seek")
        return self._pos - len(self._rbuf) + len(self._wbuf)

    async def seek(self, offset, whence=0):
        self._check_closed()
        if not isinstance(offset, int):
            raise TypeError(f"'{type(offset).__name__}' object cannot be interpreted as an integer")
        if self._wbuf:
            await self.flush()
        cur = self._pos - len(self._rbuf)
        if whence == 0:
            new = offset
        elif whence == 1:
            new = cur + offset
        elif whence == 2:
            new = os.lseek(self._fd, 0, os.SEEK_END) + offset
        else:
            raise ValueError(f"whence value {whence} unsupported")
        if new < 0:
            raise OSError(22, "Invalid argument")
        # keep the buffered bytes when the target lies inside them
        if whence != 2 and self._pos - len(self._rbuf) <= new <= self._pos:
            self._rbuf = self._rbuf[len(self._rbuf) - (self._pos - new):]
            return new
        self._rbuf = b""
        self._pos = os.lseek(self._fd, new, os.SEEK_SET)
        return self._pos

    async def truncate(self, size=None):
        self._check_writable()
        if self._wbuf:
            await self.flush()
        if size is None:
            size = self._pos - len(self._rbuf)
        self._drop_rbuf()
        os.ftruncate(self._fd, size)
        return size

    # -- end ------------------------------------------------------------
    async def close(self):
        if self._closed:
            return
        try:
            if self._wbuf:
                await self.flush()
        finally:
            self._closed = True
            if self._closefd:
                await _fs.close_fd(self._loop, self._fd)

    async def fsync(self):
        await self.flush()
        await _fs.fsync(self._loop, self._fd)

    async def fdatasync(self):
        await self.flush()
        await _fs.fsync(self._loop, self._fd, True)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    def __repr__(self):
        return f"<ringloop.fs.AsyncFile name={self.name!r} mode={self.mode!r}>"


class AsyncTextFile:
    """A text file over AsyncFile: io.TextIOWrapper's decoding and newlines."""

    def __init__(self, raw, encoding, errors, newline, mode):
        self.buffer = raw
        self.encoding = encoding
        self.errors = errors
        self.mode = mode
        self._newline = newline
        self._readuniversal = newline is None or newline == ""
        self._readtranslate = newline is None
        self._readnl = newline
        self._writetranslate = newline != ""
        self._writenl = newline or os.linesep
        self._decoder = None
        self._encoder = None
        self._tbuf = ""
        self._eof = False
        # decoder snapshot for tell(): (byte offset, decoder state, bytes fed since)
        self._snap = None

    name = property(lambda self: self.buffer.name)
    closed = property(lambda self: self.buffer.closed)

    def fileno(self):
        return self.buffer.fileno()

    def _get_decoder(self):
        if self._decoder is None:
            d = codecs.getincrementaldecoder(self.encoding)(self.errors)
            if self._readuniversal:
                d = io.IncrementalNewlineDecoder(d, self._readtranslate)
            self._decoder = d
        return self._decoder

    async def _fill(self):
        """Decode one more chunk; False at EOF."""
        if self._eof:
            return False
        raw = self.buffer
        d = self._get_decoder()
        if self._snap is None or not self._tbuf:
            self._snap = (raw._pos - len(raw._rbuf), d.getstate(), b"")
        data = await raw.read1(raw._bufsize)
        self._eof = not data
        self._tbuf += d.decode(data, final=self._eof)
        pos, state, fed = self._snap
        self._snap = (pos, state, fed + data)
        return not self._eof

    async def read(self, size=-1):
        self.buffer._check_readable()
        await self._before_read()
        if size is None or size < 0:
            data = await self.buffer.read()
            d = self._get_decoder()
            text = self._tbuf + d.decode(data, final=True)
            self._tbuf = ""
            self._snap = None
            self._eof = True
            return text
        while len(self._tbuf) < size and await self._fill():
            pass
        text, self._tbuf = self._tbuf[:size], self._tbuf[size:]
        return text

    async def _before_read(self):
        if self.buffer._wbuf:
            await self.buffer.flush()

    def _find_eol(self, s):
        """Index after the first line end in s, or -1 (a lone trailing '\\r'
        in universal untranslated mode waits for more data)."""
        if self._readtranslate:
            i = s.find("\n")
            return -1 if i < 0 else i + 1
        if self._readuniversal:
            i = s.find("\n")
            j = s.find("\r")
            if j < 0:
                return -1 if i < 0 else i + 1
            if i >= 0 and i < j:
                return i + 1
            if j + 1 < len(s):
                return j + 2 if s[j + 1] == "\n" else j + 1
            return -2 - j  # '\r' at the end: undecided
        i = s.find(self._readnl)
        return -1 if i < 0 else i + len(self._readnl)

    async def readline(self, size=-1):
        self.buffer._check_readable()
        await self._before_read()
        if size is None:
            size = -1
        # as TextIOWrapper: decode a chunk first when nothing is decoded
        # (also for size 0); at the end of the file the snapshot goes, so
        # tell() is the file position
        while not self._tbuf:
            if not await self._fill():
                if not self._tbuf:
                    self._snap = None
                    return ""
                break
        while True:
            end = self._find_eol(self._tbuf)
            if end >= 0 and (size < 0 or end <= size):
                break
            if size >= 0 and len(self._tbuf) >= size:
                end = size
                break
            if not await self._fill():
                end = self._find_eol(self._tbuf)
                if end < -1:
                    end = -2 - end + 1
                elif end == -1:
                    end = len(self._tbuf)
                if size >= 0:
                    end = min(end, size)
                break
        line, self._tbuf = self._tbuf[:end], self._tbuf[end:]
        return line

    async def readlines(self, hint=-1):
        lines = []
        total = 0
        while True:
            line = await self.readline()
            if not line:
                break
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __aiter__(self):
        return self

    async def __anext__(self):
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line

    def _get_encoder(self):
        if self._encoder is None:
            self._encoder = codecs.getincrementalencoder(self.encoding)(self.errors)
            raw = self.buffer
            if raw._seekable and (raw._pos - len(raw._rbuf) + len(raw._wbuf)) != 0:
                self._encoder.setstate(0)  # no BOM in the middle of a file
        return self._encoder

    async def write(self, s):
        self.buffer._check_writable()
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        n = len(s)
        if self._writetranslate and self._writenl != "\n":
            s = s.replace("\n", self._writenl)
        if self._tbuf or self._decoder is not None:
            await self._rewind_decoded()
        await self.buffer.write(self._get_encoder().encode(s))
        return n

    async def _rewind_decoded(self):
        # writing after reading: the file position is where the reader is
        pos = await self.tell()
        self._tbuf = ""
        self._snap = None
        self._decoder = None
        self._eof = False
        await self.buffer.seek(pos)

    async def writelines(self, lines):
        for line in lines:
            await self.write(line)

    async def flush(self):
        await self.buffer.flush()

    async def tell(self):
        """TextIOWrapper's cookie: the byte offset of a point where the
        decoder held no bytes, plus (above bit 64) the decoder's flags
        there, the bytes to feed it from there, whether to finish it, and
        the characters to skip -- the same number open() gives, so seek()
        restores a pending '\r' or a multi-byte state exactly."""
        raw = self.buffer
        raw._check_closed()
        if not raw._seekable:
            raise OSError(29, "Illegal seek")
        if raw._wbuf or self._snap is None:
            return await raw.tell()
        pos, (dbuf, flags), fed = self._snap
        start = pos - len(dbuf)
        data = dbuf + fed
        d = self._new_decoder((b"", flags))
        skip = len(d.decode(data, final=self._eof)) - len(self._tbuf)
        if skip == 0:
            return _pack_cookie(start, flags)
        # feed a byte at a time, moving the start to each point where the
        # decoder is empty and no more than `skip` characters came out
        d = self._new_decoder((b"", flags))
        fed_n = chars = 0
        need_eof = False
        for i in range(len(data)):
            fed_n += 1
            chars += len(d.decode(data[i:i + 1]))
            buf, f = d.getstate()
            if not buf and chars <= skip:
                start += fed_n
                skip -= chars
                flags, fed_n, chars = f, 0, 0
            if chars >= skip:
                break
        else:
            chars += len(d.decode(b"", final=True))
            need_eof = True
            if chars < skip:
                raise OSError("can't reconstruct logical file position")
        return _pack_cookie(start, flags, fed_n, need_eof, skip)

    def _new_decoder(self, state):
        d = codecs.getincrementaldecoder(self.encoding)(self.errors)
        if self._readuniversal:
            d = io.IncrementalNewlineDecoder(d, self._readtranslate)
        d.setstate(state)
        return d

    async def seek(self, cookie, whence=0):
        raw = self.buffer
        raw._check_closed()
        if whence == 1:
            if cookie != 0:
                raise io.UnsupportedOperation("can't do nonzero cur-relative seeks")
            cookie = await self.tell()
            whence = 0
        elif whence == 2:
            if cookie != 0:
                raise io.UnsupportedOperation("can't do nonzero end-relative seeks")
        self._tbuf = ""
        self._snap = None
        self._decoder = None
        self._eof = False
        if whence == 2:
            await raw.flush()
            pos = await raw.seek(0, 2)
            if pos != 0 and self._encoder is not None:
                self._encoder.setstate(0)
            return pos
        if cookie < 0:
            raise ValueError(f"negative seek position {cookie!r}")
        await raw.flush()
        start, flags, nfeed, need_eof, skip = _unpack_cookie(cookie)
        await raw.seek(start)
        if self._encoder is not None:
            if cookie == 0:
                self._encoder.reset()
            else:
                self._encoder.setstate(0)
        if raw._readable:
            # the decoder as it was at the safe start point; at the very
            # start a fresh one (utf-16's initial state is not (b"", 0))
            d = self._get_decoder()
            if start or flags:
                d.setstate((b"", flags))
            self._snap = (start, (b"", flags), b"")
        if skip:
            data = await raw.read(nfeed)
            text = self._decoder.decode(data, final=bool(need_eof))
            self._snap = (start, (b"", flags), data)
            if len(text) < skip:
                raise OSError("can't restore logical file position")
            self._tbuf = text[skip:]
            self._eof = bool(need_eof)
        return cookie

    async def truncate(self, size=None):
        await self.flush()
        if size is None:
            size = await self.tell()
        return await self.buffer.truncate(size)

    async def close(self):
        await self.buffer.close()

    async def readable(self):
        return await self.buffer.readable()

    async def writable(self):
        return await self.buffer.writable()

    async def seekable(self):
        return await self.buffer.seekable()

    async def fsync(self):
        await self.buffer.fsync()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    def __repr__(self):
        return f"<ringloop.fs.AsyncTextFile name={self.name!r} mode={self.mode!r} encoding={self.encoding!r}>"


# -- whole files and paths ------------------------------------------------

def _read_bytes_sync(path):
    with io.open(path, "rb") as f:
        return f.read()


async def read_bytes(path):
    """The file's contents: open, read, close (one executor job off
    io_uring)."""
    loop = _loop()
    if not _fs.native(loop):
        if not isinstance(path, int):
            os.fspath(path)
        return await loop.run_in_executor(None, _read_bytes_sync, path)
    if isinstance(path, int):
        async with open(path, "rb", buffering=0, closefd=False) as f:
            return await f.read()
    path = os.fspath(path)
    fd = await _fs.open_fd(loop, path, os.O_RDONLY)
    try:
        st = os.fstat(fd)  # the inode is in memory once open: no wait
        if _stat_mod.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, os.strerror(21), path)
        if not _stat_mod.S_ISREG(st.st_mode):
            async with open(fd, "rb", buffering=0, closefd=False) as f:
                return await f.read()
        want = st.st_size + 1
        data = await _fs.pread(loop, fd, want, 0)
        if len(data) < want:
            return data  # a short read of a regular file: its end
        chunks = [data]
        off = len(data)
        while True:
            part = await _fs.pread(loop, fd, max(want, 1 << 16), off)
            if not part:
                return b"".join(chunks)
            chunks.append(part)
            off += len(part)
    finally:
        await _fs.close_fd(loop, fd)


async def read_text(path, encoding=None, errors=None, newline=None):
    async with open(path, "r", encoding=encoding, errors=errors, newline=newline) as f:
        return await f.read()


def _write_bytes_sync(path, data):
    with io.open(path, "wb") as f:
        return f.write(data)


async def write_bytes(path, data):
    data = memoryview(data)
    loop = _loop()
    if not _fs.native(loop):
        if not isinstance(path, int):
            os.fspath(path)
        return await loop.run_in_executor(None, _write_bytes_sync, path, data)
    async with open(path, "wb", buffering=0) as f:
        await f.write(data)
        return len(data)


async def write_text(path, data, encoding=None, errors=None, newline=None):
    if not isinstance(data, str):
        raise TypeError(f"data must be str, not {type(data).__name__}")
    async with open(path, "w", encoding=encoding, errors=errors, newline=newline) as f:
        return await f.write(data)


async def stat(path, *, follow_symlinks=True):
    return await _fs.stat(_loop(), path, follow_symlinks=follow_symlinks)


async def rename(src, dst):
    await _fs.rename(_loop(), src, dst)


async def unlink(path):
    await _fs.unlink(_loop(), path)


async def rmdir(path):
    await _fs.rmdir(_loop(), path)


async def mkdir(path, mode=0o777):
    await _fs.mkdir(_loop(), path, mode)


async def fsync(fd):
    if hasattr(fd, "fileno"):
        fd = fd.fileno()
    await _fs.fsync(_loop(), fd)


async def fdatasync(fd):
    if hasattr(fd, "fileno"):
        fd = fd.fileno()
    await _fs.fsync(_loop(), fd, True)


async def copy_file(src, dst, chunk=1 << 20):
    """Copy src's bytes to dst (created or truncated); returns the size.
    io_uring: SPLICE requests through a pipe of our own (file -> pipe ->
    file, the bytes never enter this process); elsewhere copy_file_range
    in the executor."""
    loop = _loop()
    if not _fs.native(loop):
        # cancelled: waits for the thread's copy to end (its fds closed)
        return await _fs._thread(loop, _copy_sync, (src, dst), None)
    fin = await _fs.open_fd(loop, src, os.O_RDONLY)
    try:
        fout = await _fs.open_fd(loop, dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            return await _splice_copy(loop, fin, fout, chunk)
        finally:
            await _fs.close_fd(loop, fout)
    finally:
        await _fs.close_fd(loop, fin)


async def _splice_copy(loop, fin, fout, chunk):
    rp, wp, cap = _own_pipe(chunk)
    try:
        off = 0
        while True:
            n, sent, err = await _splice_round(loop, fin, off, rp, wp, fout, off, cap)
            if err is not None:
                raise err
            if n == 0:
                return off
            off += n
    finally:
        os.close(rp)
        os.close(wp)


def _own_pipe(size):
    """A pipe of our own, enlarged to size where the kernel lets us:
    (read end, write end, capacity)."""
    rp, wp = os.pipe2(os.O_CLOEXEC)
    try:
        cap = fcntl.fcntl(wp, fcntl.F_SETPIPE_SZ, size)
    except OSError:
        cap = 1 << 16  # over the user's pipe-page limit: as is
    return rp, wp, cap


async def _splice_round(loop, in_fd, in_off, rp, wp, out_fd, out_off, want):
    """in_fd -> our pipe -> out_fd, up to want bytes (out_off -1: out_fd's
    position).  (bytes read, bytes written, the error that stopped the
    drain or None); the pipe is empty afterwards unless there was an
    error."""
    n = await _fs.splice(loop, in_fd, in_off, wp, -1, want)
    sent = 0
    while sent < n:
        try:
            m = await _fs.splice(loop, rp, -1, out_fd,
                                 -1 if out_off < 0 else out_off + sent, n - sent)
        except OSError as e:
            return n, sent, e
        if m == 0:  # cannot happen with bytes in the pipe; never spin
            return n, sent, OSError(errno.EIO, os.strerror(errno.EIO))
        sent += m
    return n, sent, None


async def sendfile(out_fd, in_fd, offset, count):
    """os.sendfile(out_fd, in_fd, offset, count) -> bytes sent, as
    aiofiles.os.sendfile: at most count bytes of in_fd from offset (None:
    from its position, which then advances) to out_fd; 0 at the end of the
    file.  io_uring, from a regular file to a blocking fd: SPLICE requests
    (straight into out_fd when it is a pipe, else through a pipe of our
    own), no thread and no copy through this process.  Otherwise (a
    non-blocking out_fd, which would leave bytes in our pipe on EAGAIN; an
    odd argument; the epoll backend, stock asyncio, uvloop): os.sendfile in
    the loop's default executor, which raises what it raises.  For a
    transport or a non-blocking socket use loop.sendfile() or
    loop.sock_sendfile()."""
    loop = _loop()
    plan = _native_sendfile_plan(loop, out_fd, in_fd, offset, count)
    if plan is None:
        return await _fs._thread(loop, os.sendfile, (out_fd, in_fd, offset, count), None)
    out_is_pipe = plan
    start = os.lseek(in_fd, 0, os.SEEK_CUR) if offset is None else offset
    if count == 0:
        return 0
    if out_is_pipe:
        sent = await _fs.splice(loop, in_fd, start, out_fd, -1, count)
    else:
        sent = await _splice_through_pipe(loop, in_fd, start, out_fd, count)
    if offset is None:
        os.lseek(in_fd, start + sent, os.SEEK_SET)
    return sent


def _native_sendfile_plan(loop, out_fd, in_fd, offset, count):
    """None: use os.sendfile; else whether out_fd is a pipe."""
    if not _fs.native(loop):
        return None
    if not all(type(v) is int for v in (out_fd, in_fd, count)) or count < 0 or \
            not (offset is None or (type(offset) is int and offset >= 0)):
        return None
    try:
        st_in = os.fstat(in_fd)
        st_out = os.fstat(out_fd)
        blocking = not (fcntl.fcntl(out_fd, fcntl.F_GETFL) & os.O_NONBLOCK)
    except OSError:
        return None
    if not _stat_mod.S_ISREG(st_in.st_mode) or not blocking:
        return None
    return _stat_mod.S_ISFIFO(st_out.st_mode)


async def _splice_through_pipe(loop, in_fd, start, out_fd, count):
    rp, wp, cap = _own_pipe(min(count, 1 << 20))
    try:
        _, sent, err = await _splice_round(loop, in_fd, start, rp, wp, out_fd, -1,
                                           min(count, cap))
        if err is not None and not sent:
            raise err
        return sent  # a short count once bytes reached out_fd, as sendfile(2)
    finally:
        os.close(rp)
        os.close(wp)


def _copy_sync(src, dst):
    with io.open(src, "rb") as fi, io.open(dst, "wb") as fo:
        total = 0
        while True:
            try:
                n = os.copy_file_range(fi.fileno(), fo.fileno(), 1 << 30)
            except OSError:
                n = None
            if n is None:
                data = fi.read(1 << 20)
                if not data:
                    return total
                fo.write(data)
                n = len(data)
            elif n == 0:
                return total
            total += n
