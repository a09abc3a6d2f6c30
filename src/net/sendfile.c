/* sendfile.c -- loop.sendfile() on the stream transport, zero-copy.
 *
 * A sendfile is the entry behind the transport's write queue: it starts
 * once what was written before it has gone (rl_sendfile_drained(), from
 * the write completion), and write()/writelines() are refused until it
 * ends (asyncio: "unable to write; sendfile is in progress"), so nothing
 * can be queued behind it.  It runs as sendfile(2) from the file straight
 * into the socket: at once when the socket takes it, then after a POLL
 * (POLLOUT) op on the socket, on both backends (io_uring and epoll);
 * each wake-up sends until the socket is full (EAGAIN) or the count is
 * reached.  Nothing is buffered in user space, so the socket's own buffer
 * is the flow control.  The completion callback only calls sendfile(2)
 * and records; the end is handed to Python through a ready record that
 * sets the future _sendfile_start() got to the errno (0: done), and
 * _sendfile_stop() returns the bytes sent (python/ringloop/_sendfile.py
 * maps errors as asyncio's sock_sendfile does and sets the file position).
 *
 * The state holds a dup of the file's fd, so a file closed meanwhile
 * cannot make sendfile(2) read another file that got its number.  The
 * POLL op holds a reference to the transport (rl_netop) and the transport
 * keeps its socket open until the op ended (maybe_finish in stream.c asks
 * rl_sendfile_busy()), so the fd number is never reused under it. */
#include "net_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <sys/sendfile.h>
#include <unistd.h>

/* Bytes one sendfile(2) call may send (Linux caps it at 0x7ffff000). */
#define SF_CALL_MAX ((size_t)0x7ffff000)
/* Bytes one wake-up sends before it re-arms (a POLL on a writable socket
 * fires at once): other transports get their turn. */
#define SF_RUN_MAX ((size_t)16 << 20)

struct rl_sendfile {
    rl_netop op;    /* POLL(POLLOUT) on the socket; owner: the transport */
    RlStream *t;    /* borrowed: the op holds a reference while armed */
    PyObject *fut;  /* resolved with the errno at the end; NULL: detached */
    int file_fd;    /* our dup of the file's fd, -1 when none */
    off_t offset;   /* next byte of the file to send */
    size_t left;    /* bytes still to send; SIZE_MAX: up to EOF */
    size_t sent;
    uint8_t active;  /* between start and stop: write() is refused */
    uint8_t waiting; /* behind queued data: starts when the queue drains */
    uint8_t ended;   /* the result is recorded (future set or queued) */
};

/* ---------------------------------------------------------------------- */

static void sf_cb(rl_op *op, int32_t res, uint32_t flags);

/* The loop closed with the POLL armed: nothing is pinned but our fd. */
static void
sf_forget(rl_netop *n)
{
    struct rl_sendfile *sf = rl_container_of(n, struct rl_sendfile, op);
    if (sf->file_fd >= 0) {
        close(sf->file_fd);
        sf->file_fd = -1;
    }
}

int
rl_sendfile_active(RlStream *t)
{
    return t->sf != NULL && t->sf->active;
}

int
rl_sendfile_busy(RlStream *t)
{
    return t->sf != NULL && t->sf->op.op.state != RL_OPS_IDLE;
}

/* Ready record: fut.set_result(errno) unless the awaiter gave up. */
static int
sf_result_fn(RlLoop *loop, PyObject *a, PyObject *b)
{
    (void)loop;
    int rc = 0;
    PyObject *fut = PyTuple_GET_ITEM(b, 0);
    PyObject *err = PyTuple_GET_ITEM(b, 1);
    if (rl_future_set_result_unless_done(fut, err) < 0) {
        if (rl_net_exc_is_fatal()) {
            rc = -1;
        }
        else {
            PyErr_WriteUnraisable(a);
        }
    }
    Py_DECREF(a);
    Py_DECREF(b);
    return rc;
}

/* Record the end (0 or -errno) and hand it to the future.  Dispatch-safe:
 * no Python code runs (the record holds references to the future and the
 * transport, so nothing is freed here). */
static void
sf_end(struct rl_sendfile *sf, int neg_errno)
{
    if (sf->ended) {
        return;
    }
    sf->ended = 1;
    sf->waiting = 0;
    if (sf->file_fd >= 0) {
        close(sf->file_fd);
        sf->file_fd = -1;
    }
    PyObject *fut = sf->fut;
    sf->fut = NULL;
    if (fut == NULL) {
        return;
    }
    PyObject *b = Py_BuildValue("(Ni)", fut, -neg_errno); /* steals fut */
    if (b == NULL) {
        /* The future stays pending: its awaiter is cancelled with the
         * loop.  Never drop a reference here that may be the last. */
        PyErr_WriteUnraisable((PyObject *)sf->t);
        return;
    }
    Py_INCREF(sf->t);
    if (rl_loop_call_soon_c(sf->t->loop, sf_result_fn, (PyObject *)sf->t,
                            b) < 0) {
        PyErr_WriteUnraisable((PyObject *)sf->t);
    }
}

/* Send what the socket takes now; then re-arm the POLL, or end. */
static void
sf_run(struct rl_sendfile *sf)
{
    RlStream *t = sf->t;
    size_t ran = 0;
    for (;;) {
        if (sf->left == 0) {
            sf_end(sf, 0);
            return;
        }
        if (ran >= SF_RUN_MAX) {
            break;
        }
        size_t n = sf->left < SF_CALL_MAX ? sf->left : SF_CALL_MAX;
        ssize_t r = sendfile(t->fd, sf->file_fd, &sf->offset, n);
        if (r > 0) {
            sf->sent += (size_t)r;
            ran += (size_t)r;
            if (sf->left != SIZE_MAX) {
                sf->left -= (size_t)r;
            }
            continue;
        }
        if (r == 0) { /* end of the file */
            sf_end(sf, 0);
            return;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        }
        sf_end(sf, -errno);
        return;
    }
    rl_op *op = &sf->op.op;
    op->kind = RL_OP_POLL;
    op->fd = t->fd;
    op->flags = t->fd_used ? RL_OPF_SAME_FILE : 0;
    op->u.poll.events = POLLOUT;
    int rc = rl_netop_submit(t->loop, &sf->op);
    if (rc < 0) {
        sf_end(sf, rc);
    }
}

static void
sf_cb(rl_op *op, int32_t res, uint32_t flags)
{
    (void)flags;
    struct rl_sendfile *sf = rl_container_of(op, struct rl_sendfile, op.op);
    RlStream *t = sf->t;
    RlLoop *loop = t->loop;
    rl_netop_done(loop, &sf->op);
    if (sf->active && !sf->ended) {
        if (res < 0) {
            sf_end(sf, res == -ECANCELED ? -ECONNABORTED : res);
        }
        else if (t->closing || t->fd < 0) {
            sf_end(sf, -ECONNABORTED);
        }
        else {
            /* POLLERR/POLLHUP too: sendfile(2) says what went wrong. */
            sf_run(sf);
        }
    }
    rl_stream_op_ended(t);
    rl_net_release_owner(loop, (PyObject *)t);
}

/* ---------------------------------------------------------------------- */

void
rl_sendfile_drained(RlStream *t)
{
    struct rl_sendfile *sf = t->sf;
    if (sf == NULL || !sf->active || !sf->waiting || sf->ended) {
        return;
    }
    sf->waiting = 0;
    if (t->closing || t->fd < 0) {
        sf_end(sf, -ECONNABORTED);
        return;
    }
    sf_run(sf);
}

void
rl_sendfile_abort(RlStream *t)
{
    struct rl_sendfile *sf = t->sf;
    if (sf == NULL || !sf->active || sf->ended) {
        return;
    }
    sf_end(sf, -ECONNABORTED);
    if (sf->op.op.state != RL_OPS_IDLE) {
        (void)rl_netop_cancel(t->loop, &sf->op);
    }
}

void
rl_sendfile_free(RlStream *t)
{
    struct rl_sendfile *sf = t->sf;
    if (sf == NULL) {
        return;
    }
    t->sf = NULL;
    if (sf->file_fd >= 0) {
        close(sf->file_fd);
    }
    Py_XDECREF(sf->fut);
    PyMem_Free(sf);
}

/* _sendfile_start(fd, offset, count, fut): send count bytes (0: up to the
 * end of the file) of fd from offset, behind what is queued; fut gets the
 * errno (0: done) at the end. */
PyObject *
rl_sendfile_start(RlStream *t, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "_sendfile_start(fd, offset, count, fut)");
        return NULL;
    }
    int fd = PyObject_AsFileDescriptor(args[0]);
    if (fd < 0) {
        return NULL;
    }
    long long offset = PyLong_AsLongLong(args[1]);
    if (offset == -1 && PyErr_Occurred()) {
        return NULL;
    }
    unsigned long long count = PyLong_AsUnsignedLongLong(args[2]);
    if (count == (unsigned long long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    if (offset < 0) {
        PyErr_SetString(PyExc_ValueError, "offset must be >= 0");
        return NULL;
    }
    if (t->closing || t->fd < 0 || t->loop->reactor == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Transport is closing");
        return NULL;
    }
    struct rl_sendfile *sf = t->sf;
    if (sf != NULL && (sf->active || sf->op.op.state != RL_OPS_IDLE)) {
        PyErr_SetString(PyExc_RuntimeError, "sendfile is in progress");
        return NULL;
    }
    if (sf == NULL) {
        sf = PyMem_Calloc(1, sizeof(*sf));
        if (sf == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        sf->file_fd = -1;
        t->sf = sf;
    }
    int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dfd < 0) {
        return rl_raise_errno(-errno);
    }
    rl_netop_init(&sf->op, (PyObject *)t, sf_cb, t->fd, RL_OP_POLL,
                  sf_forget);
    sf->t = t;
    Py_XSETREF(sf->fut, Py_NewRef(args[3]));
    sf->file_fd = dfd;
    sf->offset = (off_t)offset;
    sf->left = count == 0 ? SIZE_MAX : (size_t)count;
    sf->sent = 0;
    sf->active = 1;
    sf->ended = 0;
    sf->waiting = 1;
    if (rl_stream_write_idle(t)) {
        rl_sendfile_drained(t);
    }
    Py_RETURN_NONE;
}

/* _sendfile_stop() -> bytes sent.  Ends the sendfile if it still runs
 * (cancelled by its awaiter: the op is cancelled; its future is left
 * alone) and lets write() in again. */
PyObject *
rl_sendfile_stop(RlStream *t, PyObject *Py_UNUSED(unused))
{
    struct rl_sendfile *sf = t->sf;
    if (sf == NULL) {
        return PyLong_FromLong(0);
    }
    size_t sent = sf->sent;
    if (sf->active) {
        PyObject *fut = sf->fut; /* detached: nobody waits any more */
        sf->fut = NULL;
        sf_end(sf, -ECANCELED);
        sf->active = 0;
        if (sf->op.op.state != RL_OPS_IDLE) {
            (void)rl_netop_cancel(t->loop, &sf->op);
            rl_net_reap_cancelled(t->loop);
        }
        Py_XDECREF(fut);
    }
    return PyLong_FromSize_t(sent);
}
