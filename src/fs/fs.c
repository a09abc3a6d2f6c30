/* fs.c -- ringloop.fs on io_uring: one-shot file requests (issue 15).
 *
 * loop._fs(kind, fd, a, b, i1, i2) submits one file op (reactor.h,
 * RL_OP_FILE_READ .. RL_OP_CLOSE) and returns (future, req).  The op is an
 * rl_netop (see net.h, "one op-ownership model") whose owner is req, a
 * capsule around an fsreq: from submission to the final completion the
 * loop's held list keeps req, and req keeps the buffer, the paths and the
 * statx block, so nothing the kernel may write to is freed early.  The
 * completion callback records the result and queues a ready record; the
 * record builds the Python result and sets the future.
 *
 * The future's result is the raw outcome: an int (>= 0, or -errno: the
 * Python layer raises the OSError with the file names), bytes for a READ
 * of `size` bytes, a tuple of statx fields for STATX.  Cancellation: the
 * Python layer calls loop._fs_cancel(req) once its future was cancelled;
 * that cancels the op and returns a future completed with the final
 * outcome (what the kernel did before the cancel took: bytes written, an
 * fd opened), so no buffer is freed and no outcome lost.  Nothing here
 * runs Python from a completion callback.  Only the io_uring backend takes
 * these ops; on epoll submit() answers -EOPNOTSUPP and the Python layer
 * uses the executor (python/ringloop/_fs.py). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "net_internal.h"
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RL_FS_CAPSULE "ringloop._core.fsreq"
#define RL_FS_MAX_LEN 0x7ffff000u

typedef struct {
    rl_netop n;          /* first */
    RlLoop *loop;        /* strong */
    PyObject *fut;       /* strong */
    PyObject *waiter;    /* loop._fs_cancel()'s future, or NULL */
    PyObject *outcome;   /* the result, kept when fut was already done */
    PyObject *data;      /* READ: the bytes being filled */
    PyObject *path;      /* bytes */
    PyObject *path2;     /* bytes (RENAMEAT) */
    Py_buffer view;      /* READINTO/WRITE: the caller's buffer */
    struct statx stx;
    int32_t res;
    uint8_t has_view;
    uint8_t completed;   /* final completion seen */
    uint8_t delivered;   /* the ready record ran */
    uint8_t readinto;
} fsreq;

/* Python-visible kinds (ringloop/_fs.py mirrors them). */
enum {
    FS_OPEN = 1,
    FS_READ,     /* a: None, i1: size, i2: offset -> bytes */
    FS_READINTO, /* a: writable buffer, i2: offset -> int */
    FS_WRITE,    /* a: buffer, i2: offset -> int */
    FS_STATX,    /* a: path bytes, i1: flags -> tuple */
    FS_RENAME,   /* a, b: paths, i1: new dirfd, i2: flags */
    FS_UNLINK,   /* a: path, i1: flags */
    FS_MKDIR,    /* a: path, i1: mode */
    FS_FSYNC,    /* i1: 1 = fdatasync */
    FS_CLOSE,
    FS_SPLICE,   /* fd: in, a: out fd, b: out offset, i1: len, i2: in
                  * offset (-1: none, a pipe) -> int */
};

static void
fsreq_destroy(PyObject *cap)
{
    fsreq *r = PyCapsule_GetPointer(cap, RL_FS_CAPSULE);
    if (r == NULL) {
        PyErr_Clear();
        return;
    }
    if (r->has_view) {
        PyBuffer_Release(&r->view);
    }
    if (r->n.op.kind == RL_OP_OPENAT && r->outcome != NULL && r->res >= 0) {
        close(r->res); /* opened for an awaiter that is gone, never claimed */
    }
    Py_XDECREF(r->fut);
    Py_XDECREF(r->waiter);
    Py_XDECREF(r->outcome);
    Py_XDECREF(r->data);
    Py_XDECREF(r->path);
    Py_XDECREF(r->path2);
    Py_XDECREF((PyObject *)r->loop);
    PyMem_Free(r);
}

static PyObject *
build_outcome(fsreq *r)
{
    if (r->res < 0) {
        return PyLong_FromLong(r->res);
    }
    switch (r->n.op.kind) {
    case RL_OP_FILE_READ:
        if (r->data != NULL) {
            PyObject *d = r->data;
            r->data = NULL;
            if ((Py_ssize_t)r->res != PyBytes_GET_SIZE(d) &&
                _PyBytes_Resize(&d, (Py_ssize_t)r->res) < 0) {
                return NULL;
            }
            return d;
        }
        return PyLong_FromLong(r->res);
    case RL_OP_STATX: {
        const struct statx *s = &r->stx;
        return Py_BuildValue(
            "(kkKkkkkkKLkLkLkkKkk)", (unsigned long)s->stx_mask,
            (unsigned long)s->stx_mode, (unsigned long long)s->stx_ino,
            (unsigned long)s->stx_dev_major, (unsigned long)s->stx_dev_minor,
            (unsigned long)s->stx_nlink, (unsigned long)s->stx_uid,
            (unsigned long)s->stx_gid, (unsigned long long)s->stx_size,
            (long long)s->stx_atime.tv_sec,
            (unsigned long)s->stx_atime.tv_nsec,
            (long long)s->stx_mtime.tv_sec,
            (unsigned long)s->stx_mtime.tv_nsec,
            (long long)s->stx_ctime.tv_sec,
            (unsigned long)s->stx_ctime.tv_nsec,
            (unsigned long)s->stx_blksize,
            (unsigned long long)s->stx_blocks,
            (unsigned long)s->stx_rdev_major,
            (unsigned long)s->stx_rdev_minor);
    }
    default:
        return PyLong_FromLong(r->res);
    }
}

/* Ready record: hand the outcome to the future (or the waiter, or keep
 * it).  Steals the owner reference the op held. */
static int
fs_ready(RlLoop *loop, PyObject *cap, PyObject *unused)
{
    (void)loop;
    (void)unused;
    fsreq *r = PyCapsule_GetPointer(cap, RL_FS_CAPSULE);
    if (r == NULL) {
        PyErr_WriteUnraisable(cap);
        Py_DECREF(cap);
        return 0;
    }
    rl_netop_delivered(&r->n);
    r->delivered = 1;
    if (r->has_view) {
        PyBuffer_Release(&r->view);
        r->has_view = 0;
    }
    PyObject *res = build_outcome(r);
    PyObject *target = r->waiter != NULL ? r->waiter : r->fut;
    if (res == NULL) {
        PyObject *exc = rl_err_get_raised();
        if (rl_future_set_exception_unless_done(target, exc) < 0) {
            PyErr_WriteUnraisable(cap);
        }
        Py_DECREF(exc);
        Py_DECREF(cap);
        return 0;
    }
    int done = rl_future_is_done(target);
    if (done < 0) {
        PyErr_WriteUnraisable(cap);
        done = 1;
    }
    if (done) {
        Py_XSETREF(r->outcome, res); /* _fs_cancel() hands it over */
    }
    else {
        if (rl_future_set_result_unless_done(target, res) < 0) {
            PyErr_WriteUnraisable(cap);
        }
        Py_DECREF(res);
    }
    Py_DECREF(cap);
    return 0;
}

/* Completion callback: no Python. */
static void
fs_cb(rl_op *op, int32_t res, uint32_t flags)
{
    (void)flags;
    fsreq *r = (fsreq *)op;
    RlLoop *loop = r->loop;
    rl_netop_done(loop, &r->n);
    r->res = res;
    r->completed = 1;
    if (rl_netop_queue(loop, &r->n, fs_ready, r->n.owner) < 0) {
        PyErr_WriteUnraisable((PyObject *)loop);
    }
}

/* The loop closed; the reactor made the op IDLE: no completion will come
 * and the kernel is done with the buffers.  Let go of the caller's buffer
 * now (its future stays pending, as a sock_* call's), and of the futures:
 * fs_ready() will never run, and the capsule, which the GC does not see
 * into, would keep a pending task -> its frame -> this request -> the
 * future -> the task cycle (and the loop) alive for good.  The awaiting
 * task still holds the futures, so no dealloc runs here. */
static void
fs_forget(rl_netop *n)
{
    fsreq *r = (fsreq *)n;
    if (r->has_view) {
        PyBuffer_Release(&r->view);
        r->has_view = 0;
    }
    Py_CLEAR(r->fut);
    Py_CLEAR(r->waiter);
}

static int
path_arg(PyObject *o, PyObject **slot, const char **p)
{
    if (!PyBytes_Check(o)) {
        PyErr_SetString(PyExc_TypeError, "path must be bytes");
        return -1;
    }
    if ((Py_ssize_t)strlen(PyBytes_AS_STRING(o)) != PyBytes_GET_SIZE(o)) {
        PyErr_SetString(PyExc_ValueError, "embedded null byte");
        return -1;
    }
    *slot = Py_NewRef(o);
    *p = PyBytes_AS_STRING(o);
    return 0;
}

/* loop._fs(kind, fd, a, b, i1, i2) -> (future, req) */
static PyObject *
Loop__fs(RlLoop *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "_fs() takes 6 arguments");
        return NULL;
    }
    int kind = (int)PyLong_AsLong(args[0]);
    int fd = (int)PyLong_AsLong(args[1]);
    long long i1 = PyLong_AsLongLong(args[4]);
    long long i2 = PyLong_AsLongLong(args[5]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (rl_loop_check_closed(self) < 0) {
        return NULL;
    }
    PyObject *a = args[2], *b = args[3];
    PyObject *cap = NULL, *fut = NULL, *ret = NULL;
    const char *p1 = NULL, *p2 = NULL;
    fsreq *r = PyMem_Calloc(1, sizeof(*r));
    if (r == NULL) {
        return PyErr_NoMemory();
    }
    cap = PyCapsule_New(r, RL_FS_CAPSULE, fsreq_destroy);
    if (cap == NULL) {
        PyMem_Free(r);
        return NULL;
    }
    r->loop = (RlLoop *)Py_NewRef((PyObject *)self);
    rl_op_kind ok;
    switch (kind) {
    case FS_OPEN:
        ok = RL_OP_OPENAT;
        break;
    case FS_READ:
    case FS_READINTO:
        ok = RL_OP_FILE_READ;
        break;
    case FS_WRITE:
        ok = RL_OP_FILE_WRITE;
        break;
    case FS_STATX:
        ok = RL_OP_STATX;
        break;
    case FS_RENAME:
        ok = RL_OP_RENAMEAT;
        break;
    case FS_UNLINK:
        ok = RL_OP_UNLINKAT;
        break;
    case FS_MKDIR:
        ok = RL_OP_MKDIRAT;
        break;
    case FS_FSYNC:
        ok = RL_OP_FSYNC;
        break;
    case FS_CLOSE:
        ok = RL_OP_CLOSE;
        break;
    case FS_SPLICE:
        ok = RL_OP_SPLICE;
        break;
    default:
        PyErr_SetString(PyExc_ValueError, "bad fs op kind");
        goto done;
    }
    rl_netop_init(&r->n, cap, fs_cb, fd, ok, fs_forget);
    switch (kind) {
    case FS_OPEN: /* a: path, i1: flags, i2: mode */
        if (path_arg(a, &r->path, &p1) < 0) {
            goto done;
        }
        r->n.op.u.file.buf = (void *)p1;
        r->n.op.u.file.flags = (int)i1;
        r->n.op.u.file.len = (uint32_t)i2;
        break;
    case FS_READ:
        if (i1 < 0) {
            PyErr_SetString(PyExc_ValueError, "negative size");
            goto done;
        }
        if (i1 > (long long)RL_FS_MAX_LEN) {
            i1 = RL_FS_MAX_LEN;
        }
        r->data = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)i1);
        if (r->data == NULL) {
            goto done;
        }
        r->n.op.u.file.buf = PyBytes_AS_STRING(r->data);
        r->n.op.u.file.len = (uint32_t)i1;
        r->n.op.u.file.off = (uint64_t)i2;
        break;
    case FS_READINTO:
    case FS_WRITE:
        if (PyObject_GetBuffer(a, &r->view,
                               kind == FS_READINTO ? PyBUF_WRITABLE
                                                   : PyBUF_SIMPLE) < 0) {
            goto done;
        }
        r->has_view = 1;
        r->readinto = kind == FS_READINTO;
        r->n.op.u.file.buf = r->view.buf;
        r->n.op.u.file.len = r->view.len > (Py_ssize_t)RL_FS_MAX_LEN
                                 ? RL_FS_MAX_LEN
                                 : (uint32_t)r->view.len;
        r->n.op.u.file.off = (uint64_t)i2;
        break;
    case FS_STATX:
        if (path_arg(a, &r->path, &p1) < 0) {
            goto done;
        }
        r->n.op.u.file.buf = (void *)p1;
        r->n.op.u.file.buf2 = &r->stx;
        r->n.op.u.file.flags = (int)i1;
        r->n.op.u.file.len = STATX_BASIC_STATS;
        break;
    case FS_RENAME:
        if (path_arg(a, &r->path, &p1) < 0 ||
            path_arg(b, &r->path2, &p2) < 0) {
            goto done;
        }
        r->n.op.u.file.buf = (void *)p1;
        r->n.op.u.file.buf2 = (void *)p2;
        r->n.op.u.file.fd2 = (int)i1;
        r->n.op.u.file.flags = (int)i2;
        break;
    case FS_UNLINK:
        if (path_arg(a, &r->path, &p1) < 0) {
            goto done;
        }
        r->n.op.u.file.buf = (void *)p1;
        r->n.op.u.file.flags = (int)i1;
        break;
    case FS_MKDIR:
        if (path_arg(a, &r->path, &p1) < 0) {
            goto done;
        }
        r->n.op.u.file.buf = (void *)p1;
        r->n.op.u.file.len = (uint32_t)i1;
        break;
    case FS_FSYNC:
        r->n.op.u.file.flags = i1 ? 1 : 0;
        break;
    case FS_SPLICE: {
        long fd_out = PyLong_AsLong(a);
        long long off_out = PyLong_AsLongLong(b);
        if (PyErr_Occurred()) {
            goto done;
        }
        if (fd_out < 0 || fd_out > INT_MAX) {
            PyErr_SetString(PyExc_ValueError, "bad file descriptor");
            goto done;
        }
        if (i1 < 0) {
            PyErr_SetString(PyExc_ValueError, "negative size");
            goto done;
        }
        r->n.op.u.file.fd2 = (int)fd_out;
        r->n.op.u.file.off = i2 < 0 ? (uint64_t)-1 : (uint64_t)i2;
        r->n.op.u.file.off2 = off_out < 0 ? (uint64_t)-1 : (uint64_t)off_out;
        r->n.op.u.file.len = i1 > (long long)RL_FS_MAX_LEN ? RL_FS_MAX_LEN
                                                           : (uint32_t)i1;
        r->n.op.u.file.flags = 0;
        break;
    }
    default:
        break;
    }
    fut = rl_future_new(self);
    if (fut == NULL) {
        goto done;
    }
    r->fut = Py_NewRef(fut);
    int rc = rl_netop_submit(self, &r->n);
    if (rc < 0) {
        rl_raise_errno(rc);
        goto done;
    }
    ret = PyTuple_Pack(2, fut, cap);
    if (ret == NULL) {
        /* the op is in flight and holds cap: the result is dropped */
        (void)rl_netop_cancel(self, &r->n);
    }
done:
    Py_XDECREF(fut);
    Py_DECREF(cap);
    return ret;
}

/* loop._fs_cancel(req) -> future of the final outcome (see the top). */
static PyObject *
Loop__fs_cancel(RlLoop *self, PyObject *cap)
{
    fsreq *r = PyCapsule_GetPointer(cap, RL_FS_CAPSULE);
    if (r == NULL) {
        return NULL;
    }
    if (r->waiter != NULL) {
        return Py_NewRef(r->waiter);
    }
    PyObject *w = rl_future_new(self);
    if (w == NULL) {
        return NULL;
    }
    if (r->delivered) {
        PyObject *res = r->outcome;
        if (res == NULL) {
            /* delivered to fut itself: the caller reads fut */
            res = Py_None;
        }
        if (rl_future_set_result_unless_done(w, res) < 0) {
            Py_DECREF(w);
            return NULL;
        }
        Py_CLEAR(r->outcome);
        return w;
    }
    r->waiter = Py_NewRef(w);
    if (!r->completed) {
        (void)rl_netop_cancel(self, &r->n);
        rl_net_flush(self);
    }
    return w;
}

/* loop._fs_native() -> True when the backend takes the file ops. */
static PyObject *
Loop__fs_native(RlLoop *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->reactor != NULL &&
                           self->reactor->kind == RL_BACKEND_IO_URING);
}

static PyMethodDef fs_loop_methods[] = {
    {"_fs", (PyCFunction)(void (*)(void))Loop__fs, METH_FASTCALL, NULL},
    {"_fs_cancel", (PyCFunction)Loop__fs_cancel, METH_O, NULL},
    {"_fs_native", (PyCFunction)Loop__fs_native, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

/* The files part of the loop (rl_loop_part, internal.h): methods only; its
 * requests are rl_netops, whose life the net part's hooks already cover. */
const rl_loop_part rl_fs_part = {
    .name = "fs",
    .methods = fs_loop_methods,
};
