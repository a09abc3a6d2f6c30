/* stream.c -- the stream transport (TCP and Unix stream sockets), in C.
 *
 * What asyncio's _SelectorSocketTransport does, on completions instead of
 * readiness:
 *
 * Reading: one RECV at a time.  A Protocol reads into a fresh bytes object
 * of the adaptive size rsize, which is shrunk to what arrived and handed to
 * data_received() as is (no copy); a BufferedProtocol reads straight into
 * the buffer get_buffer(-1) returned, pinned with a Py_buffer until the
 * RECV's final completion.  The completion (inside rl_reactor_dispatch)
 * only records the result and queues a ready record; data_received() and
 * friends run from the ready queue, in the context captured when the
 * transport was made, as asyncio's reader Handle does.
 *
 * Writing: write() and writelines() take one path (write_pieces): send()
 * or sendmsg() at once when nothing is queued; what is left (or
 * everything, while a SEND is in flight) goes to the queue in order, all
 * or nothing; one SEND/SENDMSG covers the queue's head.  Its completion (in
 * dispatch) drops what was sent and re-submits the rest with no Python
 * involved; resume_writing() goes through the ready queue.
 *
 * Closing, in two phases (libuv's uv_close): close()/abort() mark the
 * transport closing and cancel what must stop; connection_lost() is queued
 * and the socket closed only once no op is in flight, so the kernel never
 * writes into freed memory nor acts on a reused fd number.
 *
 * Every op holds a reference to the transport while armed (rl_netop), so
 * a transport that reads is kept alive by the loop, as asyncio's reader
 * Handle keeps its transport alive. */
#include "net_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <structmember.h>

/* Reading has two modes, chosen per read from the previous one:
 *  - readiness (the default, and after a read that did not fill half of its
 *    buffer: the peer is probably waiting for us): a POLL op, which pins no
 *    memory, so an idle connection holds no buffer; when it fires, read_fn
 *    reads at once, as asyncio does on readiness -- into the loop's scratch
 *    buffer, copied to a bytes of the exact size (Protocol), or straight
 *    into get_buffer()'s buffer (BufferedProtocol);
 *  - completion (after a read that filled half of its buffer or more: a
 *    stream is flowing): a RECV op into a fresh bytes of RBUF_SIZE, handed
 *    to data_received() shrunk to what arrived (no copy), or into
 *    get_buffer()'s buffer, pinned until the RECV completes; the kernel
 *    fills it without a wake-up and a syscall per read.
 * Measured (ARCHITECTURE.md): the same CPU per 1 KiB round trip as a RECV
 * into a pinned buffer, and no buffer per idle connection. */
#define RBUF_SIZE (64 * 1024)

/* Pipes (t->pipe) are read on readiness only, as asyncio does, until the
 * pipe is empty but at most PIPE_READS_PER_WAKEUP reads per wake-up (one
 * read per wake-up moved 64 KiB per loop iteration through a default pipe;
 * bounded so that a writer as fast as us cannot hold the loop).  A read
 * takes at most PIPE_RBUF_SIZE, a little under glibc's initial mmap
 * threshold (128 KiB), rather than asyncio's max_size (256 KiB): each read
 * becomes a bytes of its size, and bytes above the threshold were mapped
 * and unmapped per read (twice the page faults of uvloop; see
 * ARCHITECTURE.md "Native pipe transports"). */
#define PIPE_RBUF_SIZE (128 * 1024 - 256)
#define PIPE_READS_PER_WAKEUP 16

/* A write of at most this many bytes that must be queued is copied into a
 * chunk of our own (coalescing small writes); larger bytes objects are
 * queued by reference. */
#define WCOPY_MAX 2048
#define WCHUNK_CAP 16384

/* iovecs per SENDMSG */
#define RL_IOV_BATCH 64

static int read_arm(RlStream *t);
static void force_close(RlStream *t, PyObject *exc, int reap);
static int fatal_error(RlStream *t, PyObject *exc, const char *msg);
static int stream_do_close(RlStream *t);
static int stream_do_close_socket(RlStream *t);
static void reap_if_ending(RlStream *t);

/* ---------------------------------------------------------------------- */
/* small helpers */

static inline int
wop_busy(RlStream *t)
{
    return t->wop.op.state != RL_OPS_IDLE;
}

static inline int
rop_busy(RlStream *t)
{
    return t->rop.op.state != RL_OPS_IDLE;
}

/* op->flags for the next op on t's fd.  The transport owns the fd: once
 * one of its ops completed with data (so the reactor watched this very
 * file), the fd still names that file (RL_OPF_SAME_FILE). */
static inline uint8_t
same_file_flag(RlStream *t)
{
    return t->fd_used ? RL_OPF_SAME_FILE : 0;
}

int
rl_stream_is_live(RlStream *t)
{
    return !t->closing;
}

/* -- sendfile.c's hooks (helper "sendfile") -- */
static int write_idle(RlStream *t);
static void maybe_finish(RlStream *t);

int
rl_stream_write_idle(RlStream *t)
{
    return write_idle(t);
}

void
rl_stream_op_ended(RlStream *t)
{
    maybe_finish(t);
}

/* asyncio refuses writes while a sendfile runs (3.11's writelines() goes
 * through write(), hence its message). */
static int
write_check_sendfile(RlStream *t, const char *what)
{
    if (rl_sendfile_active(t)) {
        PyErr_Format(PyExc_RuntimeError,
                     "unable to %s; sendfile is in progress", what);
        return -1;
    }
    return 0;
}
/* -- end of sendfile hooks -- */

static int
loop_is_closed(RlStream *t)
{
    return t->loop->closed || t->loop->reactor == NULL;
}

static PyObject *
py_size(size_t v)
{
    return PyLong_FromSize_t(v);
}

static void
set_paused_slot(RlStream *t, int paused)
{
    Py_XSETREF(t->aio_protocol_paused,
               Py_NewRef(paused ? Py_True : Py_False));
}

static int
protocol_paused(RlStream *t)
{
    return t->aio_protocol_paused == Py_True;
}

static int
report_and_fatal(RlStream *t, PyObject *exc, const char *msg)
{
    return fatal_error(t, exc, msg);
}

static const char *
write_error_msg(RlStream *t)
{
    return t->pipe ? "Fatal write error on pipe transport"
                   : "Fatal write error on socket transport";
}

static const char *
read_error_msg(RlStream *t)
{
    return t->pipe ? "Fatal read error on pipe transport"
                   : "Fatal read error on socket transport";
}

/* The current exception ends the transport (Python context): asyncio's
 * _fatal_error(exc, msg).  SystemExit/KeyboardInterrupt leave the loop
 * instead (-1).  Every error on the way from "took something" to
 * "submitted it" ends here or undoes what it took: never return 0 with an
 * exception set, never leave the transport waiting for an op that was not
 * submitted. */
static int
fatal_current(RlStream *t, const char *msg)
{
    if (rl_net_exc_is_fatal()) {
        return -1;
    }
    PyObject *e = rl_err_get_raised();
    int rc = report_and_fatal(t, e, msg);
    Py_XDECREF(e);
    return rc;
}

/* A send of the queue failed and the error was not reported yet: it is
 * kept in lost_exc (which is otherwise only set together with conn_lost)
 * until report_write_error() runs, from the ready queue.  Meanwhile the
 * transport behaves as asyncio's, whose buffer is still full until its
 * writer callback fails: writes are dropped, close() waits, write_eof()
 * does not shut down, and an EOF read does not hide the error. */
static inline int
write_error_pending(RlStream *t)
{
    return t->lost_exc != NULL && t->conn_lost == 0;
}

/* Nothing queued, nothing in flight, no error pending: a write may try
 * send() at once. */
static int
write_idle(RlStream *t)
{
    return t->wsize == 0 && !wop_busy(t) && !write_error_pending(t);
}

/* ---------------------------------------------------------------------- */
/* write queue */

static void
wchunk_free(rl_wchunk *c)
{
    Py_CLEAR(c->obj);
    if (c->mem != NULL) {
        PyMem_Free(c->mem);
        c->mem = NULL;
    }
    c->ptr = NULL;
    c->len = 0;
}

static rl_wchunk *
wq_at(RlStream *t, uint32_t i)
{
    return &t->wq[(t->wq_head + i) & (t->wq_cap - 1)];
}

static int
wq_grow(RlStream *t)
{
    uint32_t ncap = t->wq_cap ? t->wq_cap * 2 : 8;
    rl_wchunk *nq = PyMem_Malloc(ncap * sizeof(rl_wchunk));
    if (nq == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (uint32_t i = 0; i < t->wq_len; i++) {
        nq[i] = *wq_at(t, i);
    }
    PyMem_Free(t->wq);
    t->wq = nq;
    t->wq_cap = ncap;
    t->wq_head = 0;
    return 0;
}

/* Append data to the queue: small data is copied (into the last chunk of
 * our own if it has room; appending after bytes a SEND in flight covers
 * is fine, the kernel only reads what the iovec says), bytes objects are
 * referenced, anything else is copied into a new bytes. */
static int
wq_append(RlStream *t, PyObject *obj, const char *p, size_t n)
{
    if (n <= WCOPY_MAX) {
        if (t->wq_len > 0) {
            rl_wchunk *last = wq_at(t, t->wq_len - 1);
            if (last->mem != NULL) {
                size_t used = (size_t)(last->ptr - last->mem) + last->len;
                if (last->cap - used >= n) {
                    memcpy(last->mem + used, p, n);
                    last->len += n;
                    t->wsize += n;
                    return 0;
                }
            }
        }
        if (t->wq_len == t->wq_cap && wq_grow(t) < 0) {
            return -1;
        }
        char *mem = PyMem_Malloc(WCHUNK_CAP);
        if (mem == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(mem, p, n);
        rl_wchunk *c = wq_at(t, t->wq_len);
        c->obj = NULL;
        c->mem = mem;
        c->ptr = mem;
        c->len = n;
        c->cap = WCHUNK_CAP;
        t->wq_len++;
        t->wsize += n;
        return 0;
    }
    PyObject *ref;
    if (obj != NULL && PyBytes_CheckExact(obj)) {
        ref = Py_NewRef(obj);
    }
    else {
        /* bytearray, memoryview, bytes subclasses: copy, so later changes
         * to the caller's buffer cannot change what is sent, and freeing it
         * (from dispatch) runs no Python code. */
        ref = PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
        if (ref == NULL) {
            return -1;
        }
        p = PyBytes_AS_STRING(ref);
    }
    if (t->wq_len == t->wq_cap && wq_grow(t) < 0) {
        Py_DECREF(ref);
        return -1;
    }
    rl_wchunk *c = wq_at(t, t->wq_len);
    c->obj = ref;
    c->mem = NULL;
    c->ptr = p;
    c->len = n;
    c->cap = 0;
    t->wq_len++;
    t->wsize += n;
    return 0;
}

/* Drop n sent bytes from the head of the queue. */
static void
wq_consume(RlStream *t, size_t n)
{
    while (n > 0 && t->wq_len > 0) {
        rl_wchunk *c = wq_at(t, 0);
        if (c->len > n) {
            c->ptr += n;
            c->len -= n;
            t->wsize -= n;
            return;
        }
        n -= c->len;
        t->wsize -= c->len;
        wchunk_free(c);
        t->wq_head = (t->wq_head + 1) & (t->wq_cap - 1);
        t->wq_len--;
    }
}

static void
wq_clear(RlStream *t)
{
    while (t->wq_len > 0) {
        wchunk_free(wq_at(t, 0));
        t->wq_head = (t->wq_head + 1) & (t->wq_cap - 1);
        t->wq_len--;
    }
    t->wsize = 0;
    t->wq_head = 0;
}

/* The queue's state before an append, to undo it: a write is all or
 * nothing. */
typedef struct {
    uint32_t len;    /* chunks */
    size_t last_len; /* unsent bytes of the last chunk */
    size_t wsize;
} wq_mark;

static inline void
wq_mark_take(RlStream *t, wq_mark *m)
{
    m->len = t->wq_len;
    m->last_len = t->wq_len > 0 ? wq_at(t, t->wq_len - 1)->len : 0;
    m->wsize = t->wsize;
}

/* Drop what was appended since the mark (small data copied into the last
 * chunk included).  No Python code runs: appended objects are exact bytes
 * or our copies. */
static void
wq_rollback(RlStream *t, const wq_mark *m)
{
    while (t->wq_len > m->len) {
        wchunk_free(wq_at(t, t->wq_len - 1));
        t->wq_len--;
    }
    if (m->len > 0) {
        wq_at(t, m->len - 1)->len = m->last_len;
    }
    t->wsize = m->wsize;
}

static void
wq_release(RlStream *t)
{
    wq_clear(t);
    PyMem_Free(t->wq);
    t->wq = NULL;
    t->wq_cap = 0;
    PyMem_Free(t->wmsg);
    t->wmsg = NULL;
}

/* Submit one SEND/SENDMSG for the head of the queue.  0 or -errno. */
static int
wop_submit(RlStream *t)
{
    rl_op *op = &t->wop.op;
    if (t->wq_len == 1 || t->pipe) {
        /* (pipes: one WRITE of the head chunk; there is no vectored op) */
        rl_wchunk *c = wq_at(t, 0);
        op->kind = t->pipe ? RL_OP_WRITE : RL_OP_SEND;
        op->u.io.buf = (void *)c->ptr;
        op->u.io.len = c->len;
        op->u.io.msg_flags = 0;
        t->w_inflight = c->len;
    }
    else {
        if (t->wmsg == NULL) {
            t->wmsg = PyMem_Malloc(sizeof(struct msghdr) +
                                   RL_IOV_BATCH * sizeof(struct iovec));
            if (t->wmsg == NULL) {
                return -ENOMEM;
            }
        }
        struct iovec *iov = (struct iovec *)(t->wmsg + 1);
        uint32_t n = t->wq_len < RL_IOV_BATCH ? t->wq_len : RL_IOV_BATCH;
        size_t total = 0;
        for (uint32_t i = 0; i < n; i++) {
            rl_wchunk *c = wq_at(t, i);
            iov[i].iov_base = (void *)c->ptr;
            iov[i].iov_len = c->len;
            total += c->len;
        }
        memset(t->wmsg, 0, sizeof(struct msghdr));
        t->wmsg->msg_iov = iov;
        t->wmsg->msg_iovlen = n;
        op->kind = RL_OP_SENDMSG;
        op->u.msg.msg = t->wmsg;
        op->u.msg.msg_flags = 0;
        t->w_inflight = total;
    }
    op->flags = same_file_flag(t);
    return rl_netop_submit(t->loop, &t->wop);
}

/* ---------------------------------------------------------------------- */
/* ready-queue records (the ready phase: Python may run here) */

/* connection_lost(exc) and the end of the transport. */
static int
final_fn(RlLoop *loop, PyObject *a, PyObject *b)
{
    (void)b;
    RlStream *t = (RlStream *)a;
    rl_state *st = loop->st;
    int rc = 0;
    /* Everything the ops pinned is ours again. */
    if (t->rview != NULL) {
        PyBuffer_Release(t->rview);
        PyMem_Free(t->rview);
        t->rview = NULL;
    }
    Py_CLEAR(t->rview_proto);
    Py_CLEAR(t->rbuf);
    wq_release(t);
    t->lost_done = 1;
    PyObject *protocol = t->protocol;
    PyObject *exc = t->lost_exc;
    t->protocol = NULL;
    t->lost_exc = NULL;
    if (protocol != NULL && t->protocol_connected) {
        PyObject *r = rl_net_call_method(t->context, protocol,
                                         st->net->str_connection_lost,
                                         exc ? exc : Py_None);
        if (r == NULL) {
            if (rl_net_exc_is_fatal()) {
                rc = -1;
            }
            else {
                PyObject *e = rl_err_get_raised();
                rc = rl_net_report(loop,
                                   "Exception in callback "
                                   "protocol.connection_lost()",
                                   e, st->net->str_transport, a,
                                   st->net->str_protocol, protocol);
                Py_XDECREF(e);
            }
        }
        Py_XDECREF(r);
    }
    Py_XDECREF(protocol);
    Py_XDECREF(exc);
    /* Beware: connection_lost() may have done anything; keep the pending
     * SystemExit while closing. */
    PyObject *saved = rc < 0 ? rl_err_get_raised() : NULL;
    if (stream_do_close_socket(t) < 0) {
        PyErr_WriteUnraisable(a);
    }
    if (saved != NULL) {
        rl_err_set_raised(saved);
    }
    Py_DECREF(a);
    return rc;
}

/* Queue the end once nothing is in flight any more.  Safe in dispatch. */
static void
maybe_finish(RlStream *t)
{
    if (t->conn_lost == 0 || t->final_queued || t->lost_done ||
        rop_busy(t) || wop_busy(t) || rl_sendfile_busy(t)) {
        return;
    }
    if (t->loop->closed) {
        return;
    }
    t->final_queued = 1;
    Py_INCREF(t);
    if (rl_loop_call_soon_c(t->loop, final_fn, (PyObject *)t, NULL) < 0) {
        t->final_queued = 0;
        PyErr_WriteUnraisable((PyObject *)t);
    }
}

/* close() waited for the write queue, which has drained: now
 * connection_lost().  Safe in dispatch. */
static void
close_drained(RlStream *t)
{
    if (t->conn_lost == 0) {
        t->conn_lost++;
        Py_CLEAR(t->lost_exc);
    }
    if (rop_busy(t)) {
        (void)rl_netop_cancel(t->loop, &t->rop);
    }
    maybe_finish(t);
}

/* Cancel what is in flight and queue the end with exc. */
static void
schedule_lost(RlStream *t, PyObject *exc)
{
    t->conn_lost++;
    Py_XSETREF(t->lost_exc, Py_XNewRef(exc));
    rl_sendfile_abort(t); /* sendfile.c */
    if (rop_busy(t)) {
        (void)rl_netop_cancel(t->loop, &t->rop);
    }
    if (wop_busy(t) && t->wdropped) {
        (void)rl_netop_cancel(t->loop, &t->wop);
    }
    maybe_finish(t);
}

static int
resume_writing_fn(RlLoop *loop, PyObject *a, PyObject *b)
{
    (void)b;
    RlStream *t = (RlStream *)a;
    int rc = 0;
    if (protocol_paused(t) && t->wsize <= t->low && t->protocol != NULL &&
        !t->lost_done) {
        set_paused_slot(t, 0);
        PyObject *r = rl_net_call_method(t->context, t->protocol,
                                         loop->st->net->str_resume_writing,
                                         NULL);
        if (r == NULL) {
            if (rl_net_exc_is_fatal()) {
                rc = -1;
            }
            else {
                PyObject *e = rl_err_get_raised();
                rc = rl_net_report(loop, "protocol.resume_writing() failed",
                                   e, loop->st->net->str_transport, a,
                                   loop->st->net->str_protocol, t->protocol);
                Py_XDECREF(e);
            }
        }
        Py_XDECREF(r);
    }
    /* Closing: wop_cb() left the decision to us, after resume_writing()
     * (which may have written more: asyncio's _write_send() calls it
     * before it looks at the buffer). */
    if (t->closing && t->conn_lost == 0 && write_idle(t)) {
        close_drained(t);
        reap_if_ending(t);
    }
    Py_DECREF(a);
    return rc;
}

/* Report the pending write error (Python context): asyncio's
 * _write_ready failing, _fatal_error(exc). */
static int
report_write_error(RlStream *t)
{
    PyObject *exc = t->lost_exc; /* fatal_error() sets it again */
    t->lost_exc = NULL;
    t->pipe_conn_lost++;
    int rc = fatal_error(t, exc, write_error_msg(t));
    Py_DECREF(exc);
    return rc;
}

static int
write_error_fn(RlLoop *loop, PyObject *a, PyObject *b)
{
    (void)loop;
    (void)b;
    RlStream *t = (RlStream *)a;
    int rc = 0;
    /* A read result queued in the same batch goes first, as asyncio runs
     * a socket's reader before its writer: read_fn reports the error
     * (after the data that arrived before it, instead of an EOF that the
     * failed send left behind when it consumed the socket's error). */
    if (write_error_pending(t) && !t->rop.queued) {
        rc = report_write_error(t);
    }
    Py_DECREF(a);
    return rc;
}

/* Deliver bytes to a protocol that is not the one the RECV read for
 * (set_protocol() while a RECV was in flight): as data_received(), or
 * through the new protocol's own buffers. */
static int
deliver_copy(RlStream *t, const char *p, size_t n)
{
    rl_state *st = t->loop->st;
    if (!t->buffered) {
        PyObject *data = PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
        if (data == NULL) {
            return -1;
        }
        PyObject *r = rl_net_call_method(t->context, t->protocol,
                                         st->net->str_data_received, data);
        Py_DECREF(data);
        Py_XDECREF(r);
        return r == NULL ? -1 : 0;
    }
    while (n > 0) {
        PyObject *hint = PyLong_FromSize_t(n);
        if (hint == NULL) {
            return -1;
        }
        PyObject *buf = rl_net_call_method(t->context, t->protocol,
                                           st->net->str_get_buffer, hint);
        Py_DECREF(hint);
        if (buf == NULL) {
            return -1;
        }
        Py_buffer view;
        if (PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE) < 0) {
            Py_DECREF(buf);
            return -1;
        }
        size_t m = (size_t)view.len < n ? (size_t)view.len : n;
        if (m == 0) {
            PyBuffer_Release(&view);
            Py_DECREF(buf);
            PyErr_SetString(PyExc_RuntimeError,
                            "get_buffer() returned an empty buffer");
            return -1;
        }
        memcpy(view.buf, p, m);
        PyBuffer_Release(&view);
        Py_DECREF(buf);
        PyObject *nb = PyLong_FromSize_t(m);
        if (nb == NULL) {
            return -1;
        }
        PyObject *r = rl_net_call_method(t->context, t->protocol,
                                         st->net->str_buffer_updated, nb);
        Py_DECREF(nb);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
        p += m;
        n -= m;
    }
    return 0;
}

static void
release_rview(RlStream *t)
{
    if (t->rview != NULL) {
        PyBuffer_Release(t->rview);
        PyMem_Free(t->rview);
        t->rview = NULL;
    }
    Py_CLEAR(t->rview_proto);
}

/* get_buffer(-1), pinned.  NULL with an exception (RuntimeError for an
 * empty buffer). */
static Py_buffer *
get_protocol_buffer(RlStream *t)
{
    rl_state *st = t->loop->st;
    PyObject *hint = PyLong_FromLong(-1);
    if (hint == NULL) {
        return NULL;
    }
    PyObject *b = rl_net_call_method(t->context, t->protocol,
                                     st->net->str_get_buffer, hint);
    Py_DECREF(hint);
    if (b == NULL) {
        return NULL;
    }
    Py_buffer *view = PyMem_Malloc(sizeof(Py_buffer));
    if (view == NULL) {
        Py_DECREF(b);
        PyErr_NoMemory();
        return NULL;
    }
    int rc = PyObject_GetBuffer(b, view, PyBUF_WRITABLE);
    Py_DECREF(b);
    if (rc < 0) {
        PyMem_Free(view);
        return NULL;
    }
    if (view->len <= 0) {
        PyBuffer_Release(view);
        PyMem_Free(view);
        PyErr_SetString(PyExc_RuntimeError,
                        "get_buffer() returned an empty buffer");
        return NULL;
    }
    return view;
}

/* EOF from the peer: eof_received() decides whether to close. */
static int
on_eof(RlStream *t)
{
    rl_state *st = t->loop->st;
    t->eof_seen = 1;
    if (t->loop->debug) {
        if (rl_net_log(t->loop, st->net->str_debug, "%r received EOF",
                       (PyObject *)t, NULL) < 0) {
            PyErr_WriteUnraisable((PyObject *)t);
        }
    }
    PyObject *r = rl_net_call_method(t->context, t->protocol,
                                     st->net->str_eof_received, NULL);
    if (r == NULL) {
        if (rl_net_exc_is_fatal()) {
            return -1;
        }
        PyObject *e = rl_err_get_raised();
        int rc = report_and_fatal(
            t, e, "Fatal error: protocol.eof_received() call failed.");
        Py_XDECREF(e);
        return rc;
    }
    int keep_open = PyObject_IsTrue(r);
    Py_DECREF(r);
    if (keep_open < 0) {
        /* Its answer has no truth value: as if it had raised (asyncio
         * lets the error out of its reader callback, which then runs
         * again and again on the EOF). */
        return fatal_current(
            t, "Fatal error: protocol.eof_received() call failed.");
    }
    if (!keep_open) {
        return stream_do_close(t) < 0 ? -1 : 0;
    }
    /* Keep open for writing; reading is over (asyncio removes the reader). */
    return 0;
}

/* The write end of a pipe became readable (POLLERR): the reader went
 * away.  asyncio's write pipe: connection_lost(BrokenPipeError()) when data
 * was pending, else connection_lost(None). */
static int
wpipe_peer_gone(RlStream *t)
{
    RlLoop *loop = t->loop;
    if (loop->debug) {
        PyObject *lvl = PyUnicode_FromString("info");
        if (lvl == NULL ||
            rl_net_log(loop, lvl, "%r was closed by peer", (PyObject *)t,
                       NULL) < 0) {
            PyErr_WriteUnraisable((PyObject *)t);
        }
        Py_XDECREF(lvl);
    }
    if (write_error_pending(t)) {
        /* The queue's write failed first (EPIPE, as a rule): that error
         * ends the transport, as asyncio's writer callback would. */
        return report_write_error(t);
    }
    PyObject *exc = NULL;
    if (t->wsize > 0 || wop_busy(t)) {
        exc = PyObject_CallNoArgs(PyExc_BrokenPipeError);
        if (exc == NULL) {
            return fatal_current(t, write_error_msg(t));
        }
    }
    force_close(t, exc, 1);
    Py_XDECREF(exc);
    return 0;
}

/* EOF on a read pipe: asyncio's read pipe stops reading and schedules
 * eof_received() (through a Handle; its answer is ignored) and then
 * connection_lost(None). */
static int
pipe_eof(RlStream *t)
{
    RlLoop *loop = t->loop;
    rl_state *st = loop->st;
    t->eof_seen = 1;
    if (loop->debug) {
        PyObject *lvl = PyUnicode_FromString("info");
        if (lvl == NULL ||
            rl_net_log(loop, lvl, "%r was closed by peer", (PyObject *)t,
                       NULL) < 0) {
            PyErr_WriteUnraisable((PyObject *)t);
        }
        Py_XDECREF(lvl);
    }
    t->closing = 1;
    PyObject *cb = PyObject_GetAttr(t->protocol, st->net->str_eof_received);
    if (cb == NULL) {
        return fatal_current(t, read_error_msg(t));
    }
    RlHandle *h = rl_handle_new(loop, 0, cb, NULL, 0, t->context);
    Py_DECREF(cb);
    if (h == NULL || rl_loop_push_handle(loop, h) < 0) {
        return fatal_current(t, read_error_msg(t));
    }
    schedule_lost(t, NULL);
    return 0;
}

/* A readiness-mode read, now that POLLIN fired: into get_buffer()'s
 * buffer (BufferedProtocol) or the loop's scratch buffer (Protocol; then
 * *data gets a bytes of the exact size).  Returns bytes read, 0 at EOF,
 * -errno (-EAGAIN: nothing after all), or INT32_MIN with an exception
 * (get_buffer() failed).  *cap: the size of the buffer read into. */
static int32_t
read_now(RlStream *t, PyObject **data, size_t *cap)
{
    ssize_t n;
    *data = NULL;
    if (t->buffered) {
        Py_buffer *view = get_protocol_buffer(t);
        if (view == NULL) {
            return INT32_MIN;
        }
        size_t len = (size_t)view->len;
        if (len > INT32_MAX) {
            len = INT32_MAX;
        }
        do {
            n = recv(t->fd, view->buf, len, MSG_DONTWAIT);
        } while (n < 0 && errno == EINTR);
        if (n <= 0) {
            int e = n < 0 ? -errno : 0;
            PyBuffer_Release(view);
            PyMem_Free(view);
            return e;
        }
        t->rview = view;
        Py_XSETREF(t->rview_proto, Py_NewRef(t->protocol));
        *cap = len;
        return (int32_t)n;
    }
    if (t->pipe) {
        /* Up to PIPE_RBUF_SIZE per read, into the loop's pipe scratch
         * buffer, copied to a bytes of the exact size.  (A fresh bytes per
         * read, shrunk and handed over, cost more system time than the
         * copy: the heap grew and shrank with it, and every fresh page
         * faulted.) */
        rl_loop_net *pl = t->loop->net;
        if (pl->pipe_scratch == NULL) {
            pl->pipe_scratch = PyMem_Malloc(PIPE_RBUF_SIZE);
            if (pl->pipe_scratch == NULL) {
                PyErr_NoMemory();
                return INT32_MIN;
            }
        }
        do {
            n = read(t->fd, pl->pipe_scratch, PIPE_RBUF_SIZE);
        } while (n < 0 && errno == EINTR);
        if (n <= 0) {
            return n < 0 ? -errno : 0;
        }
        *data = PyBytes_FromStringAndSize(pl->pipe_scratch, n);
        if (*data == NULL) {
            return INT32_MIN;
        }
        *cap = PIPE_RBUF_SIZE;
        return (int32_t)n;
    }
    rl_loop_net *ln = t->loop->net;
    if (ln->scratch == NULL) {
        ln->scratch = PyMem_Malloc(RBUF_SIZE);
        if (ln->scratch == NULL) {
            return -ENOMEM;
        }
    }
    do {
        n = recv(t->fd, ln->scratch, RBUF_SIZE, MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
        return n < 0 ? -errno : 0;
    }
    *data = PyBytes_FromStringAndSize(ln->scratch, n);
    if (*data == NULL) {
        return INT32_MIN;
    }
    *cap = RBUF_SIZE;
    return (int32_t)n;
}

/* A read's result, in the ready phase: from a RECV (the data is in rbuf or
 * rview) or a POLL (read it now). */
static int
read_fn(RlLoop *loop, PyObject *a, PyObject *b)
{
    (void)b;
    RlStream *t = (RlStream *)a;
    rl_state *st = loop->st;
    int rc = 0;
    int32_t res = t->rres;
    int polled = t->rop.op.kind == RL_OP_POLL;
    PyObject *data = NULL, *r = NULL;
    size_t cap = 0;
    int rounds = 0;

    rl_netop_delivered(&t->rop);
    if (!polled && res > 0 && t->rbuf == NULL && t->rview == NULL) {
        /* Nothing holds the data (cannot happen: rl_netop_armable() keeps a result
         * from being delivered twice); just read on. */
        res = -ECANCELED;
    }
    if (t->closing || t->lost_done || t->protocol == NULL) {
        /* close()/abort() came first: what arrived is dropped, as asyncio
         * no longer reads once closing. */
        t->rstash = 0;
        goto out;
    }
    if (res == -ECANCELED) {
        /* Our own cancel (pause_reading): nothing arrived. */
        t->rstash = 0;
        if (!t->paused && !t->eof_seen) {
            rc = read_arm(t);
        }
        goto out;
    }
    if (t->paused) {
        /* A RECV's data that arrived after pause_reading() is kept for
         * resume_reading(); a readiness is simply forgotten. */
        t->rstash = !polled;
        goto out;
    }
    t->rstash = 0;
    if (t->pipe == RL_PIPE_WRITE) {
        rc = wpipe_peer_gone(t);
        goto out;
    }
again:
    if (polled) {
        if (res >= 0) {
            res = read_now(t, &data, &cap);
            if (res == INT32_MIN) {
                goto error_getbuf;
            }
            if (res == -EAGAIN || res == -EWOULDBLOCK) {
                rc = read_arm(t); /* a spurious wake-up */
                goto out;
            }
        }
    }
    else if (res > 0) {
        if (t->rview != NULL) {
            cap = (size_t)t->rview->len;
        }
        else {
            data = t->rbuf;
            t->rbuf = NULL;
            cap = (size_t)PyBytes_GET_SIZE(data);
            if ((size_t)res < cap && _PyBytes_Resize(&data, res) < 0) {
                goto error;
            }
        }
    }
    if (res <= 0) {
        /* EOF or an error: the buffers are not needed any more. */
        release_rview(t);
        Py_CLEAR(t->rbuf);
        if (res == 0) {
            /* After a send failed on a reset, the socket reads as EOF
             * (the send consumed its error): the error wins, reported at
             * out, as asyncio's reader would have got it. */
            if (t->pipe) {
                rc = pipe_eof(t);
            }
            else if (!write_error_pending(t)) {
                rc = on_eof(t);
            }
            goto out;
        }
        PyObject *exc = rl_net_oserror(res, NULL);
        if (exc == NULL) {
            goto error;
        }
        rc = fatal_error(t, exc, read_error_msg(t));
        Py_DECREF(exc);
        goto out;
    }
    /* Half the buffer or more: more is probably waiting, RECV next. */
    t->rrecv = !t->pipe && (size_t)res >= cap / 2;
    if (t->rview != NULL) {
        Py_buffer *view = t->rview;
        PyObject *from = t->rview_proto;
        t->rview = NULL;
        t->rview_proto = NULL;
        if (from == t->protocol && t->buffered) {
            PyBuffer_Release(view);
            PyMem_Free(view);
            PyObject *nb = PyLong_FromLong(res);
            if (nb != NULL) {
                r = rl_net_call_method(t->context, t->protocol,
                                       st->net->str_buffer_updated, nb);
                Py_DECREF(nb);
            }
        }
        else {
            /* set_protocol() while the RECV was in flight */
            int drc = deliver_copy(t, view->buf, (size_t)res);
            PyBuffer_Release(view);
            PyMem_Free(view);
            r = drc < 0 ? NULL : Py_NewRef(Py_None);
        }
        Py_XDECREF(from);
        if (r == NULL) {
            goto error_callback;
        }
    }
    else {
        if (!t->buffered) {
            r = rl_net_call_method(t->context, t->protocol,
                                   st->net->str_data_received, data);
        }
        else {
            /* set_protocol() while the RECV was in flight */
            r = deliver_copy(t, PyBytes_AS_STRING(data), (size_t)res) < 0
                    ? NULL
                    : Py_NewRef(Py_None);
        }
        if (r == NULL) {
            goto error_callback;
        }
    }
    Py_DECREF(r);
    if (t->pipe && polled && ++rounds < PIPE_READS_PER_WAKEUP &&
        !t->closing && !t->paused && !t->eof_seen && t->protocol != NULL) {
        /* A pipe is read until it is empty (bounded): see PIPE_RBUF_SIZE */
        Py_CLEAR(data);
        r = NULL;
        res = 0;
        goto again;
    }
    if (!t->closing && !t->paused && !t->eof_seen) {
        rc = read_arm(t);
    }
    goto out;

error_callback:
    if (rl_net_exc_is_fatal()) {
        /* SystemExit/KeyboardInterrupt leave the loop; asyncio's reader
         * stays registered: keep reading. */
        PyObject *e = rl_err_get_raised();
        if (!t->closing && !t->paused && read_arm(t) < 0) {
            PyErr_Clear();
        }
        rl_err_set_raised(e);
        rc = -1;
        goto out;
    }
    if (t->pipe) {
        /* asyncio's read pipe lets it out of its reader callback: the
         * Handle reports it, and the reader stays. */
        PyObject *e = rl_err_get_raised();
        rc = rl_net_report(loop,
                           "Exception in callback "
                           "_UnixReadPipeTransport._read_ready()",
                           e, st->net->str_transport, a,
                           st->net->str_protocol, t->protocol);
        Py_XDECREF(e);
        if (rc == 0 && !t->closing && !t->paused) {
            rc = read_arm(t);
        }
        goto out;
    }
    {
        PyObject *e = rl_err_get_raised();
        rc = report_and_fatal(
            t, e,
            t->buffered
                ? "Fatal error: protocol.buffer_updated() call failed."
                : "Fatal error: protocol.data_received() call failed.");
        Py_XDECREF(e);
    }
    goto out;
error_getbuf:
    if (rl_net_exc_is_fatal()) {
        rc = -1;
        goto out;
    }
    {
        PyObject *e = rl_err_get_raised();
        rc = report_and_fatal(
            t, e,
            t->pipe ? read_error_msg(t)
                    : "Fatal error: protocol.get_buffer() call failed.");
        Py_XDECREF(e);
    }
    goto out;
error:
    if (rl_net_exc_is_fatal()) {
        rc = -1;
    }
    else {
        PyObject *e = rl_err_get_raised();
        rc = report_and_fatal(t, e, read_error_msg(t));
        Py_XDECREF(e);
    }
out:
    Py_XDECREF(data);
    if (write_error_pending(t)) {
        /* write_error_fn left it to us (a read result was queued). */
        if (rc == 0) {
            rc = report_write_error(t);
        }
        else {
            PyObject *e = rl_err_get_raised();
            if (rl_loop_call_soon_c(loop, write_error_fn,
                                    Py_NewRef((PyObject *)t), NULL) < 0) {
                PyErr_Clear();
            }
            rl_err_set_raised(e);
        }
    }
    Py_DECREF(a);
    return rc;
}

/* Start reading after connection_made() (asyncio: call_soon(_add_reader)). */
static int
start_reading_fn(RlLoop *loop, PyObject *a, PyObject *b)
{
    (void)loop;
    (void)b;
    RlStream *t = (RlStream *)a;
    int rc = 0;
    if (!t->closing && !t->paused && !rop_busy(t) && !t->eof_seen) {
        rc = read_arm(t);
    }
    Py_DECREF(a);
    return rc;
}

/* waiter.set_result(None) unless it is done (cancelled). */
static int
waiter_fn(RlLoop *loop, PyObject *a, PyObject *b)
{
    (void)loop;
    (void)b;
    int rc = rl_future_set_result_unless_done(a, Py_None);
    if (rc < 0) {
        rc = rl_net_exc_is_fatal() ? -1 : 0;
        if (rc == 0) {
            PyErr_WriteUnraisable(a);
        }
    }
    Py_DECREF(a);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* op callbacks (inside rl_reactor_dispatch: no Python code) */

static void
rop_cb(rl_op *op, int32_t res, uint32_t flags)
{
    (void)flags;
    RlStream *t = rl_container_of(op, RlStream, rop.op);
    RlLoop *loop = t->loop;
    rl_netop_done(loop, &t->rop);
    if (res >= 0) {
        t->fd_used = 1;
    }
    if (t->conn_lost) {
        /* Closing for good: what arrived is dropped; finish if this was
         * the last op.  (A pinned protocol buffer is released by final_fn,
         * outside dispatch.) */
        Py_CLEAR(t->rbuf);
        maybe_finish(t);
        rl_net_release_owner(loop, (PyObject *)t);
        return;
    }
    t->rres = res;
    /* The record gets a reference of its own: a failed push drops it,
     * and that must not be the last one here, in dispatch. */
    Py_INCREF(t);
    if (rl_netop_queue(loop, &t->rop, read_fn, (PyObject *)t) < 0) {
        /* Out of memory for the ready queue: the result cannot be
         * delivered, and nothing would arm the next read; end the
         * transport with the error rather than stall it. */
        Py_CLEAR(t->rbuf);
        PyObject *e = rl_err_get_raised();
        force_close(t, e, 0);
        Py_XDECREF(e);
    }
    rl_net_release_owner(loop, (PyObject *)t); /* the op's */
}

/* The queue's send failed (in dispatch: no Python code).  As asyncio's
 * _write_ready: drop the buffer, then _fatal_error(exc), which runs from
 * the ready queue; until then the error is pending (see
 * write_error_pending). */
static void
wop_failed(RlStream *t, int32_t res)
{
    wq_clear(t);
    PyObject *exc = NULL;
    if (res != -ECANCELED) {
        exc = rl_net_oserror(res, NULL);
    }
    if (exc == NULL) {
        PyErr_Clear();
        force_close(t, NULL, 0); /* in dispatch: no reaping */
        return;
    }
    Py_XSETREF(t->lost_exc, exc);
    if (rl_loop_call_soon_c(t->loop, write_error_fn,
                            Py_NewRef((PyObject *)t), NULL) < 0) {
        /* Not reported then, but not stuck either: connection_lost(exc)
         * comes with the end. */
        PyErr_Clear();
        force_close(t, exc, 0);
    }
}

static void
wop_cb(rl_op *op, int32_t res, uint32_t flags)
{
    (void)flags;
    RlStream *t = rl_container_of(op, RlStream, wop.op);
    RlLoop *loop = t->loop;
    rl_netop_done(loop, &t->wop);
    if (res >= 0) {
        t->fd_used = 1;
    }
    if (t->wdropped) {
        /* abort()/fatal error: the queue was only kept for the kernel. */
        t->wdropped = 0;
        wq_clear(t);
        maybe_finish(t);
        rl_net_release_owner(loop, (PyObject *)t);
        return;
    }
    if (res < 0) {
        wop_failed(t, res);
        rl_net_release_owner(loop, (PyObject *)t);
        return;
    }
    wq_consume(t, (size_t)res);
    t->w_inflight = 0;
    if (t->wsize == 0 && t->sf != NULL) {
        rl_sendfile_drained(t); /* sendfile.c: its turn */
    }
    int resume = protocol_paused(t) && t->wsize <= t->low;
    if (t->wsize > 0) {
        int rc = wop_submit(t);
        if (rc < 0) {
            wop_failed(t, rc);
        }
    }
    else if (t->closing && !resume) {
        /* close() waited for the buffer: now connection_lost.  (With a
         * resume_writing() due, resume_writing_fn() decides: the protocol
         * may write more first, as in asyncio.) */
        close_drained(t);
    }
    else if (t->eof && !t->shut_wr) {
        t->shut_wr = 1;
        (void)shutdown(t->fd, SHUT_WR);
    }
    if (resume) {
        Py_INCREF(t);
        if (rl_loop_call_soon_c(loop, resume_writing_fn, (PyObject *)t,
                                NULL) < 0) {
            PyErr_WriteUnraisable((PyObject *)loop);
        }
    }
    rl_net_release_owner(loop, (PyObject *)t);
}

/* The loop closed with the op armed: the kernel is gone, nothing to
 * pin any more.  (Called with the GIL, outside dispatch.) */
static void
rop_forget(rl_netop *n)
{
    RlStream *t = rl_container_of(n, RlStream, rop);
    Py_CLEAR(t->rbuf);
    if (t->rview != NULL) {
        PyBuffer_Release(t->rview);
        PyMem_Free(t->rview);
        t->rview = NULL;
    }
    Py_CLEAR(t->rview_proto);
}

static void
wop_forget(rl_netop *n)
{
    RlStream *t = rl_container_of(n, RlStream, wop);
    t->wdropped = 0;
    t->w_inflight = 0;
}

/* ---------------------------------------------------------------------- */
/* reading */

/* Submit the next read op (Python context: may call get_buffer()).  0, or
 * -1 for an exception that must leave the loop. */
static int
read_arm(RlStream *t)
{
    if (!rl_netop_armable(&t->rop) || t->closing || t->lost_done ||
        loop_is_closed(t)) {
        /* In flight, or a result waits on the ready queue (read_fn arms
         * the next op once it is delivered). */
        return 0;
    }
    if (t->rstash) {
        /* A result that arrived while paused: deliver it first. */
        Py_INCREF(t);
        if (rl_netop_queue(t->loop, &t->rop, read_fn, (PyObject *)t) < 0) {
            return fatal_current(t, read_error_msg(t));
        }
        t->rstash = 0;
        return 0;
    }
    rl_op *op = &t->rop.op;
    if (!t->rrecv) {
        op->kind = RL_OP_POLL;
        op->flags = 0;
        op->u.poll.events = POLLIN;
    }
    else if (t->buffered) {
        Py_buffer *view = get_protocol_buffer(t);
        if (view == NULL) {
            if (rl_net_exc_is_fatal()) {
                return -1;
            }
            PyObject *e = rl_err_get_raised();
            int r = report_and_fatal(
                t, e, "Fatal error: protocol.get_buffer() call failed.");
            Py_XDECREF(e);
            return r;
        }
        /* get_buffer() may have closed or paused us. */
        if (t->closing || t->paused || rop_busy(t)) {
            PyBuffer_Release(view);
            PyMem_Free(view);
            return 0;
        }
        t->rview = view;
        Py_XSETREF(t->rview_proto, Py_NewRef(t->protocol));
        op->kind = RL_OP_RECV;
        op->u.io.buf = view->buf;
        op->u.io.len = (size_t)view->len;
        op->u.io.msg_flags = 0;
    }
    else {
        if (t->rbuf == NULL) {
            t->rbuf = PyBytes_FromStringAndSize(NULL, RBUF_SIZE);
            if (t->rbuf == NULL) {
                if (rl_net_exc_is_fatal()) {
                    return -1;
                }
                PyObject *e = rl_err_get_raised();
                int r = report_and_fatal(
                    t, e, read_error_msg(t));
                Py_XDECREF(e);
                return r;
            }
        }
        op->kind = t->pipe ? RL_OP_READ : RL_OP_RECV;
        op->u.io.buf = PyBytes_AS_STRING(t->rbuf);
        op->u.io.len = RBUF_SIZE;
        op->u.io.msg_flags = 0;
    }
    op->flags = same_file_flag(t);
    int rc = rl_netop_submit(t->loop, &t->rop);
    if (rc < 0) {
        rop_forget(&t->rop);
        PyObject *exc = rl_net_oserror(rc, NULL);
        if (exc == NULL) {
            return fatal_current(t, read_error_msg(t));
        }
        int r = fatal_error(t, exc, read_error_msg(t));
        Py_DECREF(exc);
        return r;
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* closing */

/* Close the socket (once): through the socket object when there is one,
 * so it knows; our fd otherwise.  Detach from the server. */
static int
stream_do_close_socket(RlStream *t)
{
    rl_state *st = t->loop->st;
    int rc = 0;
    if (t->fd >= 0) {
        int fd = t->fd;
        t->fd = -1;
        rl_net_fdmap_clear(t->loop, fd, t);
        if (t->loop->net->ntransports > 0) {
            t->loop->net->ntransports--;
        }
        if (t->sock != NULL) {
            PyObject *r = PyObject_CallMethodNoArgs(t->sock, st->net->str_close);
            if (r == NULL) {
                rc = -1;
            }
            Py_XDECREF(r);
        }
        else {
            close(fd);
        }
    }
    PyObject *server = t->server;
    t->server = NULL;
    if (server != NULL) {
        PyObject *r = PyObject_CallMethodOneArg(server, st->net->str_detach,
                                                (PyObject *)t);
        if (r == NULL) {
            rc = -1;
        }
        Py_XDECREF(r);
        Py_DECREF(server);
    }
    return rc;
}

/* The ops just cancelled usually end at once: reap them now, so the end
 * is queued where asyncio's close() queues _call_connection_lost (tests
 * and applications count loop iterations after close()). */
static void
reap_if_ending(RlStream *t)
{
    if (t->conn_lost && !t->final_queued &&
        (rop_busy(t) || wop_busy(t) || rl_sendfile_busy(t))) {
        rl_net_reap_cancelled(t->loop);
    }
}

/* asyncio's close(). */
static int
stream_do_close(RlStream *t)
{
    if (t->closing) {
        return 0;
    }
    t->closing = 1;
    if (rop_busy(t)) {
        (void)rl_netop_cancel(t->loop, &t->rop);
    }
    if (write_idle(t)) {
        if (protocol_paused(t)) {
            /* The queue drained but resume_writing() has not run yet
             * (its record is queued): as in asyncio, where it runs as
             * the buffer drains, the protocol may still write; the
             * record decides (and one more makes sure it runs). */
            Py_INCREF(t);
            if (rl_loop_call_soon_c(t->loop, resume_writing_fn,
                                    (PyObject *)t, NULL) < 0) {
                return -1; /* the reference went with it */
            }
            return 0;
        }
        schedule_lost(t, NULL);
        reap_if_ending(t);
    }
    return 0;
}

/* asyncio's _force_close(exc): abort() and fatal errors.  reap: called
 * from Python code (not from dispatch), reap the cancelled ops at once. */
static void
force_close(RlStream *t, PyObject *exc, int reap)
{
    if (t->conn_lost) {
        return;
    }
    if (t->wsize > 0 || wop_busy(t)) {
        if (wop_busy(t)) {
            /* The kernel may still read the queue: freed at the
             * completion. */
            t->wdropped = 1;
            t->wsize = 0;
        }
        else {
            wq_clear(t);
        }
    }
    t->closing = 1;
    schedule_lost(t, exc);
    if (reap) {
        reap_if_ending(t);
    }
}

/* asyncio's _fatal_error(exc, message): OSErrors are expected (logged in
 * debug mode only), anything else goes to the exception handler. */
static int
fatal_error(RlStream *t, PyObject *exc, const char *msg)
{
    rl_state *st = t->loop->st;
    int rc = 0;
    int quiet =
        exc != NULL && PyObject_TypeCheck(exc, (PyTypeObject *)PyExc_OSError);
    if (quiet && t->pipe == RL_PIPE_READ) {
        /* asyncio's read pipe: only EIO (a pty whose other side closed) */
        quiet = ((PyOSErrorObject *)exc)->myerrno != NULL &&
                PyLong_Check(((PyOSErrorObject *)exc)->myerrno) &&
                PyLong_AsLong(((PyOSErrorObject *)exc)->myerrno) == EIO;
    }
    if (quiet) {
        if (t->loop->debug) {
            PyObject *m = PyUnicode_FromString(msg);
            if (m != NULL) {
                /* logger.debug("%r: %s", self, message, exc_info=True) */
                PyObject *mod = PyImport_ImportModule("ringloop._net");
                PyObject *r = mod == NULL ? NULL
                                          : PyObject_CallMethod(
                                                mod, "_log_fatal_oserror",
                                                "OOO", (PyObject *)t, m, exc);
                Py_XDECREF(mod);
                if (r == NULL) {
                    PyErr_WriteUnraisable((PyObject *)t);
                }
                Py_XDECREF(r);
                Py_DECREF(m);
            }
            else {
                PyErr_Clear();
            }
        }
    }
    else {
        rc = rl_net_report(t->loop, msg, exc, st->net->str_transport,
                           (PyObject *)t, st->net->str_protocol,
                           t->protocol);
    }
    force_close(t, exc, 1);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* creation */

static int
stream_set_protocol(RlStream *t, PyObject *protocol)
{
    int b = PyObject_IsInstance(protocol,
                                t->loop->st->net->aio_BufferedProtocol);
    if (b < 0) {
        return -1;
    }
    Py_XSETREF(t->protocol, Py_NewRef(protocol));
    /* asyncio's pipe transports only know data_received() */
    t->buffered = t->pipe ? 0 : (uint8_t)b;
    t->protocol_connected = 1;
    return 0;
}

/* A write buffer limit as a size_t for our comparisons with the (integer)
 * buffer size: asyncio stores whatever passed `high >= low >= 0` and
 * compares it with the size, so an int is clamped to SIZE_MAX and a float
 * (or what converts to one: Fraction, Decimal) is floored, +inf giving
 * SIZE_MAX -- `size > x` and `size <= x` then decide as with x itself.
 * 0, or -1 raised (an object that is neither). */
static int
limit_as_size(PyObject *o, size_t *out)
{
    PyObject *i = PyNumber_Index(o);
    if (i != NULL) {
        size_t v = PyLong_AsSize_t(i);
        Py_DECREF(i);
        if (v == (size_t)-1 && PyErr_Occurred()) {
            PyErr_Clear(); /* (negative is refused before) */
            v = SIZE_MAX;
        }
        *out = v;
        return 0;
    }
    if (!PyErr_ExceptionMatches(PyExc_TypeError)) {
        return -1;
    }
    PyErr_Clear();
    double d = PyFloat_AsDouble(o);
    if (d == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    d = floor(d);
    if (!(d >= 0)) {
        *out = 0; /* (not reached: `low >= 0` was checked) */
    }
    else if (d >= (double)SIZE_MAX) {
        *out = SIZE_MAX;
    }
    else {
        *out = (size_t)d;
    }
    return 0;
}

/* asyncio's _FlowControlMixin._set_write_buffer_limits(): the limits as
 * asyncio keeps them (*high, *low: new references) and as size_t for our
 * comparisons (*h, *l).  Streams and datagram transports.  0, or -1
 * raised. */
int
rl_net_write_limits(PyObject *high_o, PyObject *low_o, PyObject **high_out,
                    PyObject **low_out, size_t *h, size_t *l)
{
    PyObject *high = NULL, *low = NULL, *four = NULL;
    int rc = -1;
    if (high_o == NULL || high_o == Py_None) {
        if (low_o == NULL || low_o == Py_None) {
            high = PyLong_FromLong(64 * 1024);
        }
        else {
            four = PyLong_FromLong(4);
            high = four ? PyNumber_Multiply(four, low_o) : NULL;
        }
    }
    else {
        high = Py_NewRef(high_o);
    }
    if (high == NULL) {
        goto done;
    }
    if (low_o == NULL || low_o == Py_None) {
        if (four == NULL) {
            four = PyLong_FromLong(4);
            if (four == NULL) {
                goto done;
            }
        }
        low = PyNumber_FloorDivide(high, four);
    }
    else {
        low = Py_NewRef(low_o);
    }
    if (low == NULL) {
        goto done;
    }
    PyObject *zero = PyLong_FromLong(0);
    if (zero == NULL) {
        goto done;
    }
    int ok1 = PyObject_RichCompareBool(high, low, Py_GE);
    int ok2 = ok1 > 0 ? PyObject_RichCompareBool(low, zero, Py_GE) : ok1;
    Py_DECREF(zero);
    if (ok1 < 0 || ok2 < 0) {
        goto done;
    }
    if (!ok1 || !ok2) {
        PyErr_Format(PyExc_ValueError,
                     "high (%R) must be >= low (%R) must be >= 0", high,
                     low);
        goto done;
    }
    if (limit_as_size(high, h) < 0 || limit_as_size(low, l) < 0) {
        goto done;
    }
    *high_out = high;
    *low_out = low;
    high = low = NULL;
    rc = 0;
done:
    Py_XDECREF(high);
    Py_XDECREF(low);
    Py_XDECREF(four);
    return rc;
}

static int
set_limits(RlStream *t, PyObject *high_o, PyObject *low_o)
{
    PyObject *high, *low;
    size_t h, l;
    if (rl_net_write_limits(high_o, low_o, &high, &low, &h, &l) < 0) {
        return -1;
    }
    t->high = h;
    t->low = l;
    Py_XSETREF(t->aio_high_water, high);
    Py_XSETREF(t->aio_low_water, low);
    return 0;
}

/* asyncio's _maybe_pause_protocol(). */
static int
maybe_pause_protocol(RlStream *t)
{
    if (t->wsize <= t->high || protocol_paused(t)) {
        return 0;
    }
    set_paused_slot(t, 1);
    if (t->protocol == NULL) {
        return 0;
    }
    rl_state *st = t->loop->st;
    PyObject *r = PyObject_CallMethodNoArgs(t->protocol,
                                            st->net->str_pause_writing);
    if (r == NULL) {
        if (rl_net_exc_is_fatal()) {
            return -1;
        }
        PyObject *e = rl_err_get_raised();
        int rc = rl_net_report(t->loop, "protocol.pause_writing() failed", e,
                               st->net->str_transport, (PyObject *)t,
                               st->net->str_protocol, t->protocol);
        Py_XDECREF(e);
        return rc;
    }
    Py_DECREF(r);
    return 0;
}

static RlStream *
transport_new(RlLoop *loop, int fd, PyObject *sock, PyObject *protocol,
              PyObject *waiter, PyObject *server, PyObject *extra,
              PyObject *ctx, int now, uint8_t pipe)
{
    rl_state *st = loop->st;
    PyTypeObject *tp = pipe == RL_PIPE_READ    ? st->net->ReadPipeType
                       : pipe == RL_PIPE_WRITE ? st->net->WritePipeType
                                               : st->net->StreamType;
    RlStream *t = (RlStream *)tp->tp_alloc(tp, 0);
    if (t == NULL) {
        Py_XDECREF(ctx);
        return NULL;
    }
    t->pipe = pipe;
    t->loop = loop;
    t->aio_loop = Py_NewRef((PyObject *)loop);
    t->aio_protocol_paused = Py_NewRef(Py_False);
    t->context = ctx;
    t->fd = -1;
    rl_netop_init(&t->rop, (PyObject *)t, rop_cb, fd, RL_OP_RECV, rop_forget);
    rl_netop_init(&t->wop, (PyObject *)t, wop_cb, fd, RL_OP_SEND, wop_forget);
    if (t->context == NULL) {
        t->context = PyContext_CopyCurrent();
        if (t->context == NULL) {
            goto error;
        }
    }
    if (extra != NULL && extra != Py_None) {
        t->aio_extra = PyDict_Copy(extra);
        if (t->aio_extra == NULL) {
            goto error;
        }
    }
    if (set_limits(t, NULL, NULL) < 0) {
        goto error;
    }
    if (stream_set_protocol(t, protocol) < 0) {
        goto error;
    }
    t->sock = Py_XNewRef(sock);
    t->fd = fd;
    t->owns_sock = 1;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (!pipe && getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        t->family = ss.ss_family;
    }
    /* asyncio's loop._transports has no pipes */
    if (!pipe && rl_net_fdmap_set(loop, fd, t) < 0) {
        t->fd = -1;
        Py_CLEAR(t->sock);
        goto error;
    }
    loop->net->ntransports++;
    if (t->family == AF_INET || t->family == AF_INET6) {
        /* asyncio's _set_nodelay: small writes go out at once. */
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (server != NULL && server != Py_None) {
        PyObject *r = PyObject_CallMethodOneArg(server, st->net->str_attach,
                                                (PyObject *)t);
        if (r == NULL) {
            goto error_open;
        }
        Py_DECREF(r);
        t->server = Py_NewRef(server);
    }

    /* connection_made(transport) through a Handle: its errors are reported
     * as asyncio reports a failing callback. */
    PyObject *cm = PyObject_GetAttr(protocol, st->net->str_connection_made);
    if (cm == NULL) {
        goto error_open;
    }
    PyObject *targ = (PyObject *)t;
    RlHandle *h = rl_handle_new(loop, 0, cm, &targ, 1, t->context);
    Py_DECREF(cm);
    if (h == NULL) {
        goto error_open;
    }
    if (now) {
        if (rl_handle_ready_fn(loop, (PyObject *)h, NULL) < 0) {
            /* SystemExit/KeyboardInterrupt: the transport lives on. */
            PyObject *e = rl_err_get_raised();
            if (!t->closing && !t->paused && read_arm(t) < 0) {
                PyErr_Clear();
            }
            rl_err_set_raised(e);
            Py_DECREF(t);
            return NULL;
        }
        if (!t->closing && !t->paused && !rop_busy(t) && read_arm(t) < 0) {
            Py_DECREF(t);
            return NULL;
        }
    }
    else {
        if (rl_loop_push_handle(loop, h) < 0) {
            goto error_open;
        }
        if (rl_loop_call_soon_c(loop, start_reading_fn,
                                Py_NewRef((PyObject *)t), NULL) < 0) {
            goto error_open;
        }
        if (waiter != NULL && waiter != Py_None &&
            rl_loop_call_soon_c(loop, waiter_fn, Py_NewRef(waiter), NULL) <
                0) {
            goto error_open;
        }
    }
    return t;

error_open:
    /* The socket stays the caller's (asyncio closes it on failure). */
    t->closing = 1;
    t->lost_done = 1;
    rl_net_fdmap_clear(loop, fd, t);
    loop->net->ntransports--;
    t->fd = -1;
    Py_CLEAR(t->sock);
    Py_CLEAR(t->server);
error:
    t->lost_done = 1;
    Py_DECREF(t);
    return NULL;
}

RlStream *
rl_stream_new(RlLoop *loop, int fd, PyObject *sock, PyObject *protocol,
              PyObject *waiter, PyObject *server, PyObject *extra,
              PyObject *ctx, int now)
{
    return transport_new(loop, fd, sock, protocol, waiter, server, extra, ctx,
                         now, 0);
}

static int
sock_fileno(rl_state *st, PyObject *sock, int *fd)
{
    PyObject *f = PyObject_CallMethodNoArgs(sock, st->str_fileno);
    if (f == NULL) {
        return -1;
    }
    long v = PyLong_AsLong(f);
    Py_DECREF(f);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (v < 0 || v > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "the socket is closed");
        return -1;
    }
    *fd = (int)v;
    return 0;
}

PyObject *
rl_stream_make_transport(RlLoop *loop, PyObject *const *args,
                         Py_ssize_t nargs, PyObject *kwnames)
{
    rl_state *st = loop->st;
    PyObject *sock = NULL, *protocol = NULL, *waiter = Py_None;
    PyObject *extra = Py_None, *server = Py_None;
    if (nargs < 2 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError,
                        "_make_socket_transport(sock, protocol, waiter=None, "
                        "*, extra=None, server=None)");
        return NULL;
    }
    sock = args[0];
    protocol = args[1];
    if (nargs > 2) {
        waiter = args[2];
    }
    if (kwnames != NULL) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            PyObject *k = PyTuple_GET_ITEM(kwnames, i);
            PyObject *v = args[nargs + i];
            if (PyUnicode_CompareWithASCIIString(k, "extra") == 0) {
                extra = v;
            }
            else if (PyUnicode_CompareWithASCIIString(k, "server") == 0) {
                server = v;
            }
            else if (PyUnicode_CompareWithASCIIString(k, "waiter") == 0) {
                waiter = v;
            }
            else {
                PyErr_Format(PyExc_TypeError,
                             "_make_socket_transport() got an unexpected "
                             "keyword argument '%S'",
                             k);
                return NULL;
            }
        }
    }
    if (rl_loop_check_closed(loop) < 0) {
        return NULL;
    }
    int fd;
    if (sock_fileno(st, sock, &fd) < 0) {
        return NULL;
    }
    if (rl_net_check_fd_free(loop, fd) < 0) {
        return NULL;
    }
    return (PyObject *)rl_stream_new(loop, fd, sock, protocol, waiter,
                                     server, extra, NULL, 0);
}

/* ---------------------------------------------------------------------- */
/* pipes: the stream transport in pipe mode (t->pipe), behind types of
 * their own with asyncio's pipe API.  See ARCHITECTURE.md, "Pipes". */

PyObject *
rl_pipe_make_transport(RlLoop *loop, PyObject *const *args, Py_ssize_t nargs)
{
    rl_state *st = loop->st;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "_rl_make_pipe_transport(kind, pipe, protocol, "
                        "waiter, extra)");
        return NULL;
    }
    long kind = PyLong_AsLong(args[0]);
    if (kind == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (kind != 0 && kind != 1) {
        PyErr_SetString(PyExc_ValueError, "unknown pipe transport kind");
        return NULL;
    }
    PyObject *pipe = args[1], *protocol = args[2], *waiter = args[3];
    PyObject *extra = args[4];
    int fd;
    if (sock_fileno(st, pipe, &fd) < 0) {
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (!S_ISFIFO(sb.st_mode) && !S_ISSOCK(sb.st_mode) &&
        !S_ISCHR(sb.st_mode)) {
        PyErr_SetString(PyExc_ValueError,
                        kind == 0 ? "Pipe transport is for pipes/sockets only."
                                  : "Pipe transport is only for pipes, "
                                    "sockets and character devices");
        return NULL;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (!(fl & O_NONBLOCK) &&
                   fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (rl_loop_check_closed(loop) < 0) {
        return NULL;
    }
    PyObject *ex = extra == Py_None ? PyDict_New() : PyDict_Copy(extra);
    if (ex == NULL) {
        return NULL;
    }
    if (PyDict_SetItemString(ex, "pipe", pipe) < 0) {
        Py_DECREF(ex);
        return NULL;
    }
    RlStream *t = transport_new(loop, fd, pipe, protocol, waiter, NULL, ex,
                                NULL, 0, kind == 0 ? RL_PIPE_READ
                                                   : RL_PIPE_WRITE);
    Py_DECREF(ex);
    if (t != NULL && kind == 1 && S_ISCHR(sb.st_mode)) {
        /* A write pipe watches its fd for readability to learn that the
         * reader went away (the "read side" of the transport), as asyncio
         * does, on FIFOs and sockets only: never armed on a character
         * device (start_reading_fn has not run yet). */
        t->eof_seen = 1;
    }
    return (PyObject *)t;
}

/* ---------------------------------------------------------------------- */
/* Python methods */

/* ---------------------------------------------------------------------- */
/* writing: write() and writelines() share this one path */

/* A piece of data given to write()/writelines(). */
typedef struct {
    PyObject *obj; /* an exact bytes object (may be queued by reference),
                    * or NULL: the data is copied if it must be queued */
    const char *p;
    size_t n;
} wpiece;

/* send()/sendmsg() of the pieces now, without blocking.  Bytes sent, or
 * -errno (not -EAGAIN: that is 0 bytes). */
static ssize_t
send_pieces_now(RlStream *t, const wpiece *pc, Py_ssize_t npc)
{
    ssize_t sent;
    if (npc == 1 && t->pipe) {
        do {
            sent = write(t->fd, pc[0].p, pc[0].n);
        } while (sent < 0 && errno == EINTR);
    }
    else if (npc == 1) {
        do {
            sent = send(t->fd, pc[0].p, pc[0].n, MSG_NOSIGNAL | MSG_DONTWAIT);
        } while (sent < 0 && errno == EINTR);
    }
    else {
        struct iovec iov[RL_IOV_BATCH];
        struct msghdr msg;
        size_t niov = 0;
        for (Py_ssize_t i = 0; i < npc && niov < RL_IOV_BATCH; i++) {
            if (pc[i].n > 0) {
                iov[niov].iov_base = (void *)pc[i].p;
                iov[niov].iov_len = pc[i].n;
                niov++;
            }
        }
        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = iov;
        msg.msg_iovlen = niov;
        do {
            sent = t->pipe ? writev(t->fd, iov, (int)niov)
                           : sendmsg(t->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        } while (sent < 0 && errno == EINTR);
    }
    if (sent < 0) {
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -errno;
    }
    return sent;
}

/* A send error in the caller's context: asyncio's _fatal_error(exc). */
static int
write_fatal(RlStream *t, int neg_errno)
{
    PyObject *exc = rl_net_oserror(neg_errno, NULL);
    if (exc == NULL) {
        return -1;
    }
    t->pipe_conn_lost++;
    int rc = fatal_error(t, exc, write_error_msg(t));
    Py_DECREF(exc);
    return rc;
}

/* The one write path (asyncio's write(), with writelines() giving several
 * pieces): when nothing is queued, send at once; queue what is left, in
 * order, behind anything queued or in flight; keep one SEND/SENDMSG on the
 * queue's head.  All or nothing: -1 with an exception means nothing of
 * the pieces was queued (MemoryError: nothing was sent either; a closed
 * loop), or that pause_writing() raised SystemExit/KeyboardInterrupt.  Errors once data
 * has left are the transport's (fatal_error, as asyncio), not the
 * caller's. */
static int
write_pieces(RlStream *t, wpiece *pc, Py_ssize_t npc, size_t total)
{
    if (total == 0) {
        return 0;
    }
    if (t->conn_lost) {
        if (t->conn_lost >= RL_LOG_THRESHOLD_FOR_CONNLOST_WRITES &&
            rl_net_log(t->loop, t->loop->st->net->str_warning,
                       "socket.send() raised exception.", NULL, NULL) < 0) {
            return -1;
        }
        t->conn_lost++;
        return 0;
    }
    if (write_error_pending(t)) {
        /* asyncio's buffer is still full here, until its writer fails and
         * clears it: what is written meanwhile is lost with it. */
        return 0;
    }
    ssize_t sent = 0;
    if (write_idle(t)) {
        sent = send_pieces_now(t, pc, npc);
        if (sent < 0) {
            return write_fatal(t, (int)sent);
        }
        if ((size_t)sent == total) {
            return 0;
        }
    }
    int submit = !wop_busy(t);
    if (submit && loop_is_closed(t)) {
        /* (asyncio: _add_writer's check) */
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return -1;
    }
    wq_mark mark;
    wq_mark_take(t, &mark);
    size_t skip = (size_t)sent;
    for (Py_ssize_t i = 0; i < npc; i++) {
        if (pc[i].n <= skip) {
            skip -= pc[i].n;
            continue;
        }
        if (wq_append(t, pc[i].obj, pc[i].p + skip, pc[i].n - skip) < 0) {
            wq_rollback(t, &mark);
            if (sent == 0) {
                return -1; /* nothing taken */
            }
            /* Part of the data left and the rest cannot follow: the
             * stream is broken. */
            PyObject *e = rl_err_get_raised();
            int rc = fatal_error(t, e, write_error_msg(t));
            Py_XDECREF(e);
            return rc;
        }
        skip = 0;
    }
    if (submit) {
        int rc = wop_submit(t);
        if (rc < 0) {
            wq_clear(t);
            return write_fatal(t, rc);
        }
    }
    return maybe_pause_protocol(t);
}

static int
write_check_eof(RlStream *t, const char *what)
{
    if (t->eof) {
        PyErr_Format(PyExc_RuntimeError,
                     "Cannot call %s() after write_eof()", what);
        return -1;
    }
    return 0;
}

static PyObject *
Stream_write(RlStream *t, PyObject *data)
{
    wpiece pc;
    Py_buffer view;
    int have_view = 0;

    if (PyBytes_CheckExact(data)) {
        pc.obj = data;
        pc.p = PyBytes_AS_STRING(data);
        pc.n = (size_t)PyBytes_GET_SIZE(data);
    }
    else if (PyBytes_Check(data) || PyByteArray_Check(data) ||
             PyMemoryView_Check(data)) {
        if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
            return NULL;
        }
        have_view = 1;
        pc.obj = NULL;
        pc.p = view.buf;
        pc.n = (size_t)view.len;
    }
    else {
        PyErr_Format(PyExc_TypeError,
                     "data argument must be a bytes-like object, not '%.200s'",
                     Py_TYPE(data)->tp_name);
        return NULL;
    }
    int rc = write_check_eof(t, "write");
    if (rc == 0) {
        rc = write_check_sendfile(t, "write");
    }
    if (rc == 0) {
        rc = write_pieces(t, &pc, 1, pc.n);
    }
    if (have_view) {
        PyBuffer_Release(&view);
    }
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* The buffer of writelines() item i, or -1 with asyncio's exception:
 * 3.11 joins the items first (b''.join: TypeError for any item that is not
 * a readable buffer), 3.12+ takes memoryview(item) of each first (its own
 * error: TypeError, ValueError for a released memoryview, or whatever a
 * __buffer__ raises).  Either way nothing is written then. */
static int
writelines_item_buffer(PyObject *item, Py_ssize_t i, Py_buffer *view)
{
    if (PyObject_GetBuffer(item, view, PyBUF_SIMPLE) == 0) {
        return 0;
    }
#if RL_PY312
    (void)i;
    if (!PyObject_CheckBuffer(item) &&
        PyErr_ExceptionMatches(PyExc_TypeError)) {
        PyErr_Format(PyExc_TypeError,
                     "memoryview: a bytes-like object is required, "
                     "not '%.200s'",
                     Py_TYPE(item)->tp_name);
    }
#else
    if (!PyErr_ExceptionMatches(PyExc_MemoryError)) {
        PyErr_Format(PyExc_TypeError,
                     "sequence item %zd: expected a bytes-like object, "
                     "%.80s found",
                     i, Py_TYPE(item)->tp_name);
    }
#endif
    return -1;
}

#define WL_STACK 8

/* writelines(list_of_data): every item is checked (and its buffer taken)
 * first, then the items go through write()'s path as one vectored write. */
static PyObject *
Stream_writelines(RlStream *t, PyObject *list)
{
    Py_buffer views_stack[WL_STACK];
    wpiece pcs_stack[WL_STACK];
    Py_buffer *views = views_stack;
    wpiece *pcs = pcs_stack;
    Py_ssize_t nviews = 0;
    PyObject *res = NULL;

#if RL_PY312
    if (write_check_eof(t, "writelines") < 0 ||
        write_check_sendfile(t, "writelines") < 0) {
        return NULL;
    }
#endif
    /* A tuple, not the caller's list: a __buffer__ (3.12+) runs Python
     * code that could change a list under us. */
    PyObject *seq = PySequence_Tuple(list);
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t nitems = PyTuple_GET_SIZE(seq);
    PyObject **items = ((PyTupleObject *)seq)->ob_item;
    if (nitems > WL_STACK) {
        views = PyMem_Malloc((size_t)nitems * sizeof(Py_buffer));
        pcs = PyMem_Malloc((size_t)nitems * sizeof(wpiece));
        if (views == NULL || pcs == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    size_t total = 0;
    for (; nviews < nitems; nviews++) {
        PyObject *item = items[nviews];
        Py_buffer *v = &views[nviews];
        if (writelines_item_buffer(item, nviews, v) < 0) {
            goto done;
        }
        pcs[nviews].obj = PyBytes_CheckExact(item) ? item : NULL;
        pcs[nviews].p = v->buf;
        pcs[nviews].n = (size_t)v->len;
        total += (size_t)v->len;
    }
#if !RL_PY312
    if (write_check_eof(t, "write") < 0 ||
        write_check_sendfile(t, "write") < 0) {
        goto done;
    }
#endif
    /* seq references the items until the end: an exact bytes item stays
     * valid for the queue to take a reference to. */
    if (write_pieces(t, pcs, nitems, total) < 0) {
        goto done;
    }
    res = Py_NewRef(Py_None);
done:
    for (Py_ssize_t i = 0; i < nviews; i++) {
        PyBuffer_Release(&views[i]);
    }
    if (views != views_stack) {
        PyMem_Free(views);
    }
    if (pcs != pcs_stack) {
        PyMem_Free(pcs);
    }
    Py_DECREF(seq);
    return res;
}

#undef WL_STACK

static PyObject *
Stream_write_eof(RlStream *t, PyObject *Py_UNUSED(ignored))
{
    if (t->closing || t->eof) {
        Py_RETURN_NONE;
    }
    t->eof = 1;
    if (write_idle(t) && !t->shut_wr && t->fd >= 0) {
        t->shut_wr = 1;
        if (shutdown(t->fd, SHUT_WR) < 0) {
            return PyErr_SetFromErrno(PyExc_OSError);
        }
    }
    Py_RETURN_NONE;
}

static PyObject *
Stream_can_write_eof(RlStream *t, PyObject *Py_UNUSED(ignored))
{
    (void)t;
    Py_RETURN_TRUE;
}

static PyObject *
Stream_close(RlStream *t, PyObject *Py_UNUSED(ignored))
{
    if (t->closing) {
        Py_RETURN_NONE;
    }
    if (loop_is_closed(t)) {
        t->closing = 1;
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return NULL;
    }
    if (stream_do_close(t) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Stream_abort(RlStream *t, PyObject *Py_UNUSED(ignored))
{
    if (t->conn_lost) {
        Py_RETURN_NONE;
    }
    if (loop_is_closed(t)) {
        t->closing = 1;
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return NULL;
    }
    force_close(t, NULL, 1);
    Py_RETURN_NONE;
}

/* asyncio's _SelectorTransport._force_close(exc): abort() whose
 * connection_lost() gets exc.  asyncio's sslproto.SSLProtocol calls it on
 * the transport under it (handshake/shutdown timeouts, fatal errors). */
static PyObject *
Stream__force_close(RlStream *t, PyObject *exc)
{
    if (t->conn_lost) {
        Py_RETURN_NONE;
    }
    if (loop_is_closed(t)) {
        t->closing = 1;
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return NULL;
    }
    force_close(t, exc == Py_None ? NULL : exc, 1);
    Py_RETURN_NONE;
}

static PyObject *
Stream_is_closing(RlStream *t, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(t->closing);
}

static PyObject *
Stream_is_reading(RlStream *t, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(!t->closing && !t->paused);
}

static PyObject *
Stream_pause_reading(RlStream *t, PyObject *Py_UNUSED(ignored))
{
    if (t->closing || t->paused) {
        Py_RETURN_NONE;
    }
    t->paused = 1;
    if (rop_busy(t)) {
        (void)rl_netop_cancel(t->loop, &t->rop);
    }
    if (t->loop->debug &&
        rl_net_log(t->loop, t->loop->st->net->str_debug, "%r pauses reading",
                   (PyObject *)t, NULL) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Stream_resume_reading(RlStream *t, PyObject *Py_UNUSED(ignored))
{
    if (t->closing || !t->paused) {
        Py_RETURN_NONE;
    }
    t->paused = 0;
    if (!t->eof_seen && read_arm(t) < 0) {
        return NULL;
    }
    if (t->loop->debug &&
        rl_net_log(t->loop, t->loop->st->net->str_debug,
                   "%r resumes reading", (PyObject *)t, NULL) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Stream_set_protocol(RlStream *t, PyObject *protocol)
{
    if (stream_set_protocol(t, protocol) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Stream_get_protocol(RlStream *t, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(t->protocol ? t->protocol : Py_None);
}

static PyObject *
Stream_get_write_buffer_size(RlStream *t, PyObject *Py_UNUSED(ignored))
{
    return py_size(t->wsize);
}

static PyObject *
Stream_get_write_buffer_limits(RlStream *t, PyObject *Py_UNUSED(ignored))
{
    return PyTuple_Pack(2, t->aio_low_water, t->aio_high_water);
}

static PyObject *
Stream_set_write_buffer_limits(RlStream *t, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"high", "low", NULL};
    PyObject *high = Py_None, *low = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds,
                                     "|OO:set_write_buffer_limits", kwlist,
                                     &high, &low)) {
        return NULL;
    }
    if (set_limits(t, high, low) < 0) {
        return NULL;
    }
    if (maybe_pause_protocol(t) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* The socket object; made from the fd when we only have that (accepted
 * connections), with the family, type and protocol of the socket. */
static PyObject *
stream_sock(RlStream *t)
{
    if (t->sock != NULL) {
        return t->sock;
    }
    if (t->fd < 0) {
        return NULL;
    }
    int type = SOCK_STREAM, proto = 0;
    socklen_t l = sizeof(proto);
    (void)getsockopt(t->fd, SOL_SOCKET, SO_PROTOCOL, &proto, &l);
    t->sock = PyObject_CallFunction(t->loop->st->net->socket_socket, "iiii",
                                    t->family, type | SOCK_NONBLOCK, proto,
                                    t->fd);
    return t->sock;
}

static PyObject *
Stream_get_extra_info(RlStream *t, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"name", "default", NULL};
    rl_state *st = t->loop->st;
    PyObject *name, *dflt = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:get_extra_info", kwlist,
                                     &name, &dflt)) {
        return NULL;
    }
    if (t->aio_extra != NULL) {
        PyObject *v = PyDict_GetItemWithError(t->aio_extra, name);
        if (v != NULL) {
            return Py_NewRef(v);
        }
        if (PyErr_Occurred()) {
            return NULL;
        }
    }
    if (!PyUnicode_Check(name)) {
        /* asyncio looks the name up in a dict: unhashable -> TypeError
         * (found by tests/test_props.py) */
        if (PyObject_Hash(name) == -1) {
            return NULL;
        }
        return Py_NewRef(dflt);
    }
    PyObject *v = NULL;
    int which = PyUnicode_Compare(name, st->net->str_socket) == 0     ? 1
                : PyUnicode_Compare(name, st->net->str_sockname) == 0 ? 2
                : PyUnicode_Compare(name, st->net->str_peername) == 0 ? 3
                                                                     : 0;
    if (which == 0 || (t->fd < 0 && (which != 1 || t->sock == NULL))) {
        /* Unknown, or asked for only after the socket was closed. */
        return Py_NewRef(dflt);
    }
    if (which == 1) {
        PyObject *sock = stream_sock(t);
        if (sock == NULL) {
            return NULL;
        }
        v = PyObject_CallOneArg(st->net->aio_TransportSocket, sock);
    }
    else {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int rc = which == 2 ? getsockname(t->fd, (struct sockaddr *)&ss, &sl)
                            : getpeername(t->fd, (struct sockaddr *)&ss, &sl);
        if (rc < 0) {
            v = Py_NewRef(Py_None); /* asyncio stores None then */
        }
        else {
            v = rl_sockaddr_to_py((struct sockaddr *)&ss, sl);
        }
    }
    if (v == NULL) {
        return NULL;
    }
    if (t->aio_extra == NULL) {
        t->aio_extra = PyDict_New();
        if (t->aio_extra == NULL) {
            Py_DECREF(v);
            return NULL;
        }
    }
    if (PyDict_SetItem(t->aio_extra, name, v) < 0) {
        Py_DECREF(v);
        return NULL;
    }
    return v;
}

static PyObject *
Stream_repr(RlStream *t)
{
    const char *state = t->lost_done ? " closed" : t->closing ? " closing" : "";
    const char *rd = (!t->closing && !t->paused && !t->eof_seen && !t->lost_done)
                         ? "polling"
                         : "idle";
    const char *wr = wop_busy(t) ? "polling" : "idle";
    if (t->lost_done || loop_is_closed(t)) {
        return PyUnicode_FromFormat("<%s%s fd=%d>", "StreamTransport",
                                    state, t->fd);
    }
    return PyUnicode_FromFormat("<%s%s fd=%d read=%s write=<%s, bufsize=%zu>>",
                                "StreamTransport", state, t->fd, rd, wr,
                                t->wsize);
}

static PyObject *
Stream_get_sock(RlStream *t, void *Py_UNUSED(c))
{
    PyObject *s = stream_sock(t);
    if (s == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    return Py_NewRef(s);
}

static PyObject *
Stream_get_protocol_attr(RlStream *t, void *Py_UNUSED(c))
{
    return Py_NewRef(t->protocol ? t->protocol : Py_None);
}

static PyObject *
Stream_get_closing(RlStream *t, void *Py_UNUSED(c))
{
    return PyBool_FromLong(t->closing);
}

static PyObject *
Stream_get_conn_lost(RlStream *t, void *Py_UNUSED(c))
{
    return PyLong_FromUnsignedLong(t->conn_lost);
}

static PyObject *
Stream_get_fd(RlStream *t, void *Py_UNUSED(c))
{
    return PyLong_FromLong(t->fd);
}

static PyObject *
Stream__state(RlStream *t, PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("{sisisisnsnsisi}", "reading_op", rop_busy(t),
                         "writing_op", wop_busy(t), "queued_chunks",
                         (int)t->wq_len, "rrecv", (Py_ssize_t)t->rrecv,
                         "wsize", (Py_ssize_t)t->wsize, "lost_done",
                         t->lost_done, "final_queued", t->final_queued);
}

/* ---------------------------------------------------------------------- */
/* type slots */

static void
Stream_finalize(RlStream *t)
{
    if (t->fd < 0 || t->lost_done) {
        return;
    }
    PyObject *saved = rl_err_get_raised();
    /* asyncio's __del__: warn, then close the socket and detach. */
    if (PyErr_ResourceWarning((PyObject *)t, 1, "unclosed transport %R",
                              (PyObject *)t) < 0) {
        PyErr_WriteUnraisable((PyObject *)t);
    }
    t->closing = 1;
    t->lost_done = 1;
    if (stream_do_close_socket(t) < 0) {
        PyErr_WriteUnraisable((PyObject *)t);
    }
    rl_err_set_raised(saved);
}

static int
Stream_traverse(RlStream *t, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(t));
    Py_VISIT(t->aio_extra);
    Py_VISIT(t->aio_high_water);
    Py_VISIT(t->aio_loop);
    Py_VISIT(t->aio_low_water);
    Py_VISIT(t->aio_protocol_paused);
    Py_VISIT(t->protocol);
    Py_VISIT(t->context);
    Py_VISIT(t->sock);
    Py_VISIT(t->server);
    Py_VISIT(t->lost_exc);
    Py_VISIT(t->dict);
    Py_VISIT(t->rview_proto);
    if (t->rview != NULL) {
        Py_VISIT(t->rview->obj);
    }
    return 0;
}

static int
Stream_clear(RlStream *t)
{
    Py_CLEAR(t->aio_extra);
    Py_CLEAR(t->protocol);
    Py_CLEAR(t->lost_exc);
    Py_CLEAR(t->dict);
    Py_CLEAR(t->server);
    return 0;
}

static void
Stream_dealloc(RlStream *t)
{
    PyTypeObject *tp = Py_TYPE(t);
    if (PyObject_CallFinalizerFromDealloc((PyObject *)t) < 0) {
        return; /* resurrected */
    }
    PyObject_GC_UnTrack(t);
    if (t->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)t);
    }
    /* No op can be armed: each holds a reference. */
    if (t->fd >= 0) {
        rl_net_fdmap_clear(t->loop, t->fd, t);
    }
    Stream_clear(t);
    if (t->rview != NULL) {
        PyBuffer_Release(t->rview);
        PyMem_Free(t->rview);
        t->rview = NULL;
    }
    Py_CLEAR(t->rview_proto);
    Py_CLEAR(t->rbuf);
    wq_release(t);
    rl_sendfile_free(t); /* sendfile.c */
    Py_CLEAR(t->sock);
    Py_CLEAR(t->context);
    Py_CLEAR(t->aio_high_water);
    Py_CLEAR(t->aio_low_water);
    Py_CLEAR(t->aio_protocol_paused);
    Py_CLEAR(t->aio_loop);
    tp->tp_free((PyObject *)t);
    Py_DECREF(tp);
}

#define NOARGS(name, fn, doc) {name, (PyCFunction)(fn), METH_NOARGS, doc}

static PyMethodDef Stream_methods[] = {
    {"write", (PyCFunction)Stream_write, METH_O,
     "write($self, data, /)\n--\n\nWrite bytes; never blocks."},
    {"writelines", (PyCFunction)Stream_writelines, METH_O,
     "writelines($self, list_of_data, /)\n--\n\n"
     "Write every item, in one vectored send."},
    NOARGS("write_eof", Stream_write_eof, NULL),
    NOARGS("can_write_eof", Stream_can_write_eof, NULL),
    NOARGS("close", Stream_close, NULL),
    NOARGS("abort", Stream_abort, NULL),
    {"_force_close", (PyCFunction)Stream__force_close, METH_O, NULL},
    NOARGS("is_closing", Stream_is_closing, NULL),
    NOARGS("is_reading", Stream_is_reading, NULL),
    NOARGS("pause_reading", Stream_pause_reading, NULL),
    NOARGS("resume_reading", Stream_resume_reading, NULL),
    {"set_protocol", (PyCFunction)Stream_set_protocol, METH_O, NULL},
    NOARGS("get_protocol", Stream_get_protocol, NULL),
    NOARGS("get_write_buffer_size", Stream_get_write_buffer_size, NULL),
    NOARGS("get_write_buffer_limits", Stream_get_write_buffer_limits, NULL),
    {"set_write_buffer_limits", (PyCFunction)(void (*)(void))
                                    Stream_set_write_buffer_limits,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"get_extra_info",
     (PyCFunction)(void (*)(void))Stream_get_extra_info,
     METH_VARARGS | METH_KEYWORDS, NULL},
    NOARGS("_state", Stream__state, NULL),
    /* sendfile.c */
    {"_sendfile_start", (PyCFunction)(void (*)(void))rl_sendfile_start,
     METH_FASTCALL, NULL},
    NOARGS("_sendfile_stop", rl_sendfile_stop, NULL),
    {NULL, NULL, 0, NULL},
};

#undef NOARGS

static PyGetSetDef Stream_getset[] = {
    {"_sock", (getter)Stream_get_sock, NULL, NULL, NULL},
    {"_protocol", (getter)Stream_get_protocol_attr, NULL, NULL, NULL},
    {"_closing", (getter)Stream_get_closing, NULL, NULL, NULL},
    {"_conn_lost", (getter)Stream_get_conn_lost, NULL, NULL, NULL},
    {"_sock_fd", (getter)Stream_get_fd, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef Stream_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(RlStream, weakreflist),
     READONLY, NULL},
    {"__dictoffset__", T_PYSSIZET, offsetof(RlStream, dict), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot Stream_slots[] = {
    {Py_tp_dealloc, Stream_dealloc},
    {Py_tp_finalize, Stream_finalize},
    {Py_tp_traverse, Stream_traverse},
    {Py_tp_clear, Stream_clear},
    {Py_tp_repr, Stream_repr},
    {Py_tp_methods, Stream_methods},
    {Py_tp_getset, Stream_getset},
    {Py_tp_members, Stream_members},
    {Py_tp_doc, "A TCP or Unix stream transport with a native core."},
    {0, NULL},
};

static PyType_Spec Stream_spec = {
    .name = "ringloop._core.StreamTransport",
    .basicsize = sizeof(RlStream),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = Stream_slots,
};

/* -- the read pipe type: asyncio's _UnixReadPipeTransport API -- */

static PyObject *
Pipe_repr(RlStream *t)
{
    /* asyncio: closed once connection_lost() ran (its _pipe is None);
     * "open" rather than polling/idle, as on a loop without a selector */
    const char *name = _PyType_Name(Py_TYPE(t));
    int fd = t->rop.op.fd;
    if (t->lost_done || t->sock == NULL) {
        return PyUnicode_FromFormat("<%s closed fd=%d closed>", name, fd);
    }
    return PyUnicode_FromFormat("<%s%s fd=%d open>", name,
                                t->closing ? " closing" : "", fd);
}

static PyObject *
Pipe_get_extra_info(RlStream *t, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"name", "default", NULL};
    PyObject *name, *dflt = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:get_extra_info", kwlist,
                                     &name, &dflt)) {
        return NULL;
    }
    if (t->aio_extra == NULL) {
        if (PyObject_Hash(name) == -1) {
            return NULL;
        }
        return Py_NewRef(dflt);
    }
    PyObject *v = PyDict_GetItemWithError(t->aio_extra, name);
    if (v == NULL) {
        return PyErr_Occurred() ? NULL : Py_NewRef(dflt);
    }
    return Py_NewRef(v);
}

/* _fatal_error(exc, message='Fatal error on pipe transport') */
static PyObject *
Pipe__fatal_error(RlStream *t, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"exc", "message", NULL};
    PyObject *exc;
    const char *msg = "Fatal error on pipe transport";
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|s:_fatal_error", kwlist,
                                     &exc, &msg)) {
        return NULL;
    }
    if (t->conn_lost) {
        Py_RETURN_NONE;
    }
    if (loop_is_closed(t)) {
        t->closing = 1;
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return NULL;
    }
    if (fatal_error(t, exc == Py_None ? NULL : exc, msg) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Pipe_get_pipe(RlStream *t, void *Py_UNUSED(c))
{
    return Py_NewRef(t->sock != NULL && !t->lost_done ? t->sock : Py_None);
}

/* asyncio code (CPython's tests) sets _pipe = None to forget a pipe it
 * closed itself: then there is nothing left to close or warn about. */
static int
Pipe_set_pipe(RlStream *t, PyObject *v, void *Py_UNUSED(c))
{
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete _pipe");
        return -1;
    }
    if (v != Py_None) {
        Py_XSETREF(t->sock, Py_NewRef(v));
        return 0;
    }
    Py_CLEAR(t->sock);
    if (t->fd >= 0) {
        t->fd = -1;
        if (t->loop->net->ntransports > 0) {
            t->loop->net->ntransports--;
        }
    }
    return 0;
}

static PyObject *
Pipe_get_fileno(RlStream *t, void *Py_UNUSED(c))
{
    return PyLong_FromLong(t->rop.op.fd);
}

static PyObject *
Pipe_get_loop(RlStream *t, void *Py_UNUSED(c))
{
    /* asyncio drops it once connection_lost() ran */
    return Py_NewRef(t->lost_done || t->aio_loop == NULL ? Py_None
                                                         : t->aio_loop);
}

static PyObject *
Pipe_get_paused(RlStream *t, void *Py_UNUSED(c))
{
    return PyBool_FromLong(t->paused);
}

#define NOARGS(name, fn, doc) {name, (PyCFunction)(fn), METH_NOARGS, doc}

static PyMethodDef ReadPipe_methods[] = {
    NOARGS("close", Stream_close, NULL),
    NOARGS("is_closing", Stream_is_closing, NULL),
    NOARGS("is_reading", Stream_is_reading, NULL),
    NOARGS("pause_reading", Stream_pause_reading, NULL),
    NOARGS("resume_reading", Stream_resume_reading, NULL),
    {"set_protocol", (PyCFunction)Stream_set_protocol, METH_O, NULL},
    NOARGS("get_protocol", Stream_get_protocol, NULL),
    {"get_extra_info", (PyCFunction)(void (*)(void))Pipe_get_extra_info,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"_fatal_error", (PyCFunction)(void (*)(void))Pipe__fatal_error,
     METH_VARARGS | METH_KEYWORDS, NULL},
    NOARGS("_state", Stream__state, NULL),
    {NULL, NULL, 0, NULL},
};

#undef NOARGS

static PyGetSetDef ReadPipe_getset[] = {
    {"_pipe", (getter)Pipe_get_pipe, (setter)Pipe_set_pipe, NULL, NULL},
    {"_fileno", (getter)Pipe_get_fileno, NULL, NULL, NULL},
    {"_protocol", (getter)Stream_get_protocol_attr, NULL, NULL, NULL},
    {"_closing", (getter)Stream_get_closing, NULL, NULL, NULL},
    {"_paused", (getter)Pipe_get_paused, NULL, NULL, NULL},
    {"_loop", (getter)Pipe_get_loop, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot ReadPipe_slots[] = {
    {Py_tp_dealloc, Stream_dealloc},
    {Py_tp_finalize, Stream_finalize},
    {Py_tp_traverse, Stream_traverse},
    {Py_tp_clear, Stream_clear},
    {Py_tp_repr, Pipe_repr},
    {Py_tp_methods, ReadPipe_methods},
    {Py_tp_getset, ReadPipe_getset},
    {Py_tp_members, Stream_members},
    {Py_tp_doc, "asyncio's read pipe transport with a native core."},
    {0, NULL},
};

static PyType_Spec ReadPipe_spec = {
    .name = "ringloop._core._UnixReadPipeTransport",
    .basicsize = sizeof(RlStream),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = ReadPipe_slots,
};

/* -- the write pipe type: asyncio's _UnixWritePipeTransport API -- */

/* write(data): bytes, bytearray or memoryview (asyncio asserts it; a
 * TypeError here); after close()/write_eof() or the end, dropped (with
 * asyncio's warning from the 5th on). */
static PyObject *
WritePipe_write(RlStream *t, PyObject *data)
{
    if (!PyBytes_Check(data) && !PyByteArray_Check(data) &&
        !PyMemoryView_Check(data)) {
        PyErr_Format(PyExc_TypeError,
                     "data argument must be a bytes-like object, not '%.200s'",
                     Py_TYPE(data)->tp_name);
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    int rc = 0;
    if (view.len == 0) {
        goto done;
    }
    if (t->conn_lost || t->closing) {
        if (t->pipe_conn_lost >= RL_LOG_THRESHOLD_FOR_CONNLOST_WRITES) {
            rc = rl_net_log(t->loop, t->loop->st->net->str_warning,
                            "pipe closed by peer or os.write(pipe, data) "
                            "raised exception.",
                            NULL, NULL);
        }
        t->pipe_conn_lost++;
        goto done;
    }
    wpiece pc;
    pc.obj = PyBytes_CheckExact(data) ? data : NULL;
    pc.p = view.buf;
    pc.n = (size_t)view.len;
    rc = write_pieces(t, &pc, 1, pc.n);
done:
    PyBuffer_Release(&view);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* WriteTransport.writelines(): b''.join(list_of_data), then write(). */
static PyObject *
WritePipe_writelines(RlStream *t, PyObject *list)
{
    PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
    if (empty == NULL) {
        return NULL;
    }
    PyObject *data = PyObject_CallMethod(empty, "join", "O", list);
    Py_DECREF(empty);
    if (data == NULL) {
        return NULL;
    }
    PyObject *r = WritePipe_write(t, data);
    Py_DECREF(data);
    return r;
}

static PyObject *
WritePipe_get_conn_lost(RlStream *t, void *Py_UNUSED(c))
{
    return PyLong_FromUnsignedLong(t->pipe_conn_lost);
}

#define NOARGS(name, fn, doc) {name, (PyCFunction)(fn), METH_NOARGS, doc}

static PyMethodDef WritePipe_methods[] = {
    {"write", (PyCFunction)WritePipe_write, METH_O, NULL},
    {"writelines", (PyCFunction)WritePipe_writelines, METH_O, NULL},
    /* write_eof() is close() for a pipe: connection_lost once the buffer
     * drained */
    NOARGS("write_eof", Stream_close, NULL),
    NOARGS("can_write_eof", Stream_can_write_eof, NULL),
    NOARGS("close", Stream_close, NULL),
    NOARGS("abort", Stream_abort, NULL),
    NOARGS("is_closing", Stream_is_closing, NULL),
    {"set_protocol", (PyCFunction)Stream_set_protocol, METH_O, NULL},
    NOARGS("get_protocol", Stream_get_protocol, NULL),
    NOARGS("get_write_buffer_size", Stream_get_write_buffer_size, NULL),
    NOARGS("get_write_buffer_limits", Stream_get_write_buffer_limits, NULL),
    {"set_write_buffer_limits", (PyCFunction)(void (*)(void))
                                    Stream_set_write_buffer_limits,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"get_extra_info", (PyCFunction)(void (*)(void))Pipe_get_extra_info,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"_fatal_error", (PyCFunction)(void (*)(void))Pipe__fatal_error,
     METH_VARARGS | METH_KEYWORDS, NULL},
    NOARGS("_state", Stream__state, NULL),
    {NULL, NULL, 0, NULL},
};

#undef NOARGS

static PyGetSetDef WritePipe_getset[] = {
    {"_pipe", (getter)Pipe_get_pipe, (setter)Pipe_set_pipe, NULL, NULL},
    {"_fileno", (getter)Pipe_get_fileno, NULL, NULL, NULL},
    {"_protocol", (getter)Stream_get_protocol_attr, NULL, NULL, NULL},
    {"_closing", (getter)Stream_get_closing, NULL, NULL, NULL},
    {"_conn_lost", (getter)WritePipe_get_conn_lost, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot WritePipe_slots[] = {
    {Py_tp_dealloc, Stream_dealloc},
    {Py_tp_finalize, Stream_finalize},
    {Py_tp_traverse, Stream_traverse},
    {Py_tp_clear, Stream_clear},
    {Py_tp_repr, Pipe_repr},
    {Py_tp_methods, WritePipe_methods},
    {Py_tp_getset, WritePipe_getset},
    {Py_tp_members, Stream_members},
    {Py_tp_doc, "asyncio's write pipe transport with a native core."},
    {0, NULL},
};

static PyType_Spec WritePipe_spec = {
    .name = "ringloop._core._UnixWritePipeTransport",
    .basicsize = sizeof(RlStream),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = WritePipe_slots,
};

/* Whether asyncio.transports.ReadTransport has the layout our struct
 * starts with (BaseTransport's one slot, _extra, first): then it can be
 * the read pipe's base, as it is asyncio's. */
static int
readtransport_layout_ok(PyTypeObject *base)
{
    if (base->tp_basicsize != (Py_ssize_t)offsetof(RlStream, aio_high_water) ||
        base->tp_itemsize != 0 || base->tp_dictoffset != 0 ||
        base->tp_weaklistoffset != 0) {
        return 0;
    }
    PyObject *d = PyObject_GetAttrString((PyObject *)base, "_extra");
    if (d == NULL) {
        PyErr_Clear();
        return 0;
    }
    int ok = Py_IS_TYPE(d, &PyMemberDescr_Type) &&
             ((PyMemberDescrObject *)d)->d_member->offset ==
                 (Py_ssize_t)offsetof(RlStream, aio_extra) &&
             ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
    Py_DECREF(d);
    return ok;
}

static int
pipe_init_types(PyObject *module, rl_state *st)
{
    PyObject *mod = PyImport_ImportModule("asyncio.transports");
    if (mod == NULL) {
        return -1;
    }
    PyObject *base = PyObject_GetAttrString(mod, "ReadTransport");
    Py_DECREF(mod);
    if (base == NULL) {
        PyErr_Clear();
    }
    else if (!PyType_Check(base) ||
             !readtransport_layout_ok((PyTypeObject *)base)) {
        Py_CLEAR(base);
    }
    st->net->ReadPipeType = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &ReadPipe_spec, base);
    Py_XDECREF(base);
    if (st->net->ReadPipeType == NULL ||
        PyModule_AddType(module, st->net->ReadPipeType) < 0) {
        return -1;
    }
    /* _FlowControlMixin, as asyncio's (NULL: its layout differs) */
    st->net->WritePipeType = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &WritePipe_spec, st->net->aio_FlowControlMixin);
    if (st->net->WritePipeType == NULL) {
        return -1;
    }
    return PyModule_AddType(module, st->net->WritePipeType);
}

/* Whether asyncio.transports._FlowControlMixin has exactly the layout our
 * struct mirrors (its bases' __slots__ at these offsets, no dict, no
 * weakrefs): then it can be our base. */
static int
flowcontrol_layout_ok(PyTypeObject *base)
{
    static const struct {
        const char *name;
        Py_ssize_t off;
    } want[] = {
        {"_extra", offsetof(RlStream, aio_extra)},
        {"_high_water", offsetof(RlStream, aio_high_water)},
        {"_loop", offsetof(RlStream, aio_loop)},
        {"_low_water", offsetof(RlStream, aio_low_water)},
        {"_protocol_paused", offsetof(RlStream, aio_protocol_paused)},
    };
    if (base->tp_basicsize != (Py_ssize_t)offsetof(RlStream, loop) ||
        base->tp_itemsize != 0 || base->tp_dictoffset != 0 ||
        base->tp_weaklistoffset != 0) {
        return 0;
    }
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        PyObject *d = PyObject_GetAttrString((PyObject *)base, want[i].name);
        if (d == NULL) {
            PyErr_Clear();
            return 0;
        }
        int ok = Py_IS_TYPE(d, &PyMemberDescr_Type) &&
                 ((PyMemberDescrObject *)d)->d_member->offset == want[i].off &&
                 ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
        Py_DECREF(d);
        if (!ok) {
            return 0;
        }
    }
    return 1;
}

int
rl_stream_init_type(PyObject *module, rl_state *st)
{
    PyObject *mod = PyImport_ImportModule("asyncio.transports");
    if (mod == NULL) {
        return -1;
    }
    PyObject *base = PyObject_GetAttrString(mod, "_FlowControlMixin");
    Py_DECREF(mod);
    if (base == NULL) {
        PyErr_Clear();
    }
    else if (!PyType_Check(base) || !flowcontrol_layout_ok((PyTypeObject *)base)) {
        Py_CLEAR(base);
    }
    st->net->aio_FlowControlMixin = base; /* NULL: plain object base */
    st->net->StreamType = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &Stream_spec, base);
    if (st->net->StreamType == NULL) {
        return -1;
    }
    if (PyModule_AddType(module, st->net->StreamType) < 0) {
        return -1;
    }
    return pipe_init_types(module, st);
}
