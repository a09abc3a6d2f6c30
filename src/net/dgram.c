/* dgram.c -- the native datagram transport (create_datagram_endpoint).
 *
 * Behaves as asyncio's _SelectorDatagramTransport of the running Python
 * version (3.11/3.12 drop empty datagrams in sendto(); 3.13 sends them and
 * counts 8 header bytes per buffered datagram), and is an instance of
 * asyncio.Transport and asyncio.DatagramTransport: the C type is built on
 * those Python classes (their only instance field, BaseTransport's `_extra`
 * slot, is the first field of RlDgram, checked at import).
 *
 * I/O: one RECVMSG op (rop) into a per-transport buffer of max_size bytes
 * (256 KiB, as asyncio's recvfrom(max_size)), re-armed after each datagram
 * was delivered, so one datagram is read per loop iteration and
 * pause_reading() from datagram_received() takes effect at once, as with
 * asyncio's level-triggered reader.  sendto() sends at once (a syscall);
 * only what would block is queued, and one POLLOUT op (sop) says when the
 * socket is writable again; the queue is then sent inline, as asyncio's
 * _sendto_ready does (see arm_write for why not a SENDMSG op).
 *
 * No protocol callback is ever called from the reactor's dispatch: the ops'
 * callbacks store the result and push a C record on the ready ring
 * (rl_loop_call_soon_c); the record calls the protocol in the ready phase.
 * connection_made comes first (a Handle scheduled at creation, like
 * asyncio's call_soon), reading starts after it.  datagram_received and
 * error_received run in a copy of the context current when the transport
 * was made (asyncio's reader Handle).
 *
 * Close is two-phase: close()/abort() cancel the ops; the socket is closed
 * and connection_lost() scheduled only when both ops had their final
 * completion, which close()/abort() reap at once (rl_net_reap_cancelled),
 * so that connection_lost() lands where asyncio's call_soon() puts it.
 * Until then the loop holds a reference (loop->sock->dgrams).
 *
 * Both ops are rl_netops (net.h): each holds a reference to the transport
 * while the kernel owns it, and a completion whose delivery is queued
 * blocks re-arming until the record took the result out of the buffer. */
#include "net_internal.h"

#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>

#include <structmember.h>

/* asyncio: _SelectorTransport.max_size, constants
 * LOG_THRESHOLD_FOR_CONNLOST_WRITES */
#define RL_DGRAM_MAX_SIZE (256 * 1024)
#define RL_LOG_THRESHOLD_FOR_CONNLOST_WRITES 5
#if RL_PY313
#define RL_DGRAM_HEADER 8 /* 3.13 counts 8 bytes per buffered datagram */
#else
#define RL_DGRAM_HEADER 0
#endif

typedef struct rl_pkt {
    struct rl_pkt *next;
    PyObject *data; /* bytes */
    PyObject *addr; /* the address as given, or NULL (connected) */
    struct sockaddr_storage ss;
    socklen_t sslen;
    uint8_t native; /* ss is valid (or connected): sent by a syscall */
} rl_pkt;

struct RlDgram {
    PyObject_HEAD
    PyObject *extra; /* asyncio.BaseTransport's `_extra` slot: keep first */
    rl_netop rop;    /* RECVMSG */
    rl_netop sop;    /* POLLOUT, then the queue is sent inline */
    RlLoop *loop;    /* strong */
    PyObject *sock;  /* strong; NULL after connection_lost */
    PyObject *protocol;
    PyObject *address; /* asyncio's _address (connected peer) or NULL */
    PyObject *ctx;     /* context of protocol callbacks from I/O */
    PyObject *lost_exc;
    PyObject *lost_ctx;
    PyObject *weakreflist;
    char *rbuf;
    struct msghdr rmsg;
    struct iovec riov;
    struct sockaddr_storage rss;
    rl_pkt *qhead, *qtail;
    Py_ssize_t buffer_size;
    Py_ssize_t high_water, low_water;
    PyObject *aio_high_water, *aio_low_water; /* as given; NULL: defaults */
    RlDgram *lnext, *lprev; /* loop->sock->dgrams */
    int fd;
    int family;
    int32_t rres; /* result of the last rop completion */
    int32_t sres;
    int conn_lost;
    uint8_t closing;
    uint8_t paused;          /* pause_reading() */
    uint8_t rheld;           /* a datagram waits in rbuf for resume */
    uint8_t protocol_paused; /* pause_writing() was called */
    uint8_t connected;       /* extra['peername'] was true: send() */
    uint8_t lost_wanted;     /* connection_lost once the ops are idle */
    uint8_t lost_pushed;
    uint8_t lost_done;
    uint8_t listed;          /* in loop->sock->dgrams */
    uint8_t rdead;           /* the receive op could not be submitted */
};

#define ST(tr) ((tr)->loop->st->net)

static void maybe_lost(RlDgram *tr);

/* ---------------------------------------------------------------------- */
/* helpers */

static void
list_del(RlDgram *tr)
{
    rl_loop_sock *ls = tr->loop->sock;
    if (!tr->listed) {
        return;
    }
    tr->listed = 0;
    if (tr->lprev != NULL) {
        tr->lprev->lnext = tr->lnext;
    }
    else {
        ls->dgrams = tr->lnext;
    }
    if (tr->lnext != NULL) {
        tr->lnext->lprev = tr->lprev;
    }
    tr->lnext = tr->lprev = NULL;
    if (tr->fd >= 0 && (size_t)tr->fd < ls->nfds &&
        ls->fds[tr->fd].dgram == tr) {
        ls->fds[tr->fd].dgram = NULL;
    }
    Py_DECREF(tr);
}

static void
pkt_free(rl_pkt *p)
{
    Py_XDECREF(p->data);
    Py_XDECREF(p->addr);
    PyMem_Free(p);
}

static Py_ssize_t
pkt_size(rl_pkt *p)
{
    return PyBytes_GET_SIZE(p->data) + RL_DGRAM_HEADER;
}

static void
queue_clear(RlDgram *tr)
{
    while (tr->qhead != NULL) {
        rl_pkt *p = tr->qhead;
        tr->qhead = p->next;
        pkt_free(p);
    }
    tr->qtail = NULL;
    tr->buffer_size = 0;
}

/* Call protocol.<name>(*args) in ctx (or the current context if NULL). */
static PyObject *
call_protocol(RlDgram *tr, PyObject *ctx, PyObject *name,
              PyObject *const *args, size_t nargs)
{
    PyObject *proto = tr->protocol;
    if (proto == NULL) {
        Py_RETURN_NONE;
    }
    PyObject *stack[3];
    stack[0] = proto;
    for (size_t i = 0; i < nargs && i < 2; i++) {
        stack[i + 1] = args[i];
    }
    Py_INCREF(proto); /* Beware: the callback may set_protocol() */
    if (ctx != NULL && PyContext_Enter(ctx) < 0) {
        Py_DECREF(proto);
        return NULL;
    }
    PyObject *r = PyObject_VectorcallMethod(
        name, stack, (1 + nargs) | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (ctx != NULL) {
        PyObject *exc = r == NULL ? rl_err_get_raised() : NULL;
        if (PyContext_Exit(ctx) < 0) {
            Py_XDECREF(exc);
            Py_XDECREF(r);
            r = NULL;
        }
        else if (exc != NULL) {
            rl_err_set_raised(exc);
        }
    }
    Py_DECREF(proto);
    return r;
}

/* loop.call_exception_handler({message, exception, transport, protocol})
 * for the current exception.  -1 if it must leave the loop. */
static int
report_error(RlDgram *tr, const char *message)
{
    if (PyErr_ExceptionMatches(PyExc_SystemExit) ||
        PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        return -1;
    }
    PyObject *exc = rl_err_get_raised();
    PyObject *ctx = Py_BuildValue("{sssOsOsO}", "message", message,
                                  "exception", exc, "transport",
                                  (PyObject *)tr, "protocol",
                                  tr->protocol ? tr->protocol : Py_None);
    Py_DECREF(exc);
    if (ctx == NULL) {
        return -1;
    }
    PyObject *r = PyObject_CallMethodOneArg(
        (PyObject *)tr->loop, tr->loop->st->str_call_exception_handler, ctx);
    Py_DECREF(ctx);
    if (r == NULL) {
        return PyErr_ExceptionMatches(PyExc_Exception) ? (PyErr_Clear(), 0)
                                                       : -1;
    }
    Py_DECREF(r);
    return 0;
}

/* asyncio's _FlowControlMixin._maybe_pause_protocol (-1: leave loop). */
static int
maybe_pause_protocol(RlDgram *tr)
{
    if (tr->buffer_size <= tr->high_water || tr->protocol_paused) {
        return 0;
    }
    tr->protocol_paused = 1;
    PyObject *r = call_protocol(tr, NULL, ST(tr)->str_pause_writing, NULL, 0);
    if (r == NULL) {
        return report_error(tr, "protocol.pause_writing() failed");
    }
    Py_DECREF(r);
    return 0;
}

static int
maybe_resume_protocol(RlDgram *tr)
{
    if (!tr->protocol_paused || tr->buffer_size > tr->low_water) {
        return 0;
    }
    tr->protocol_paused = 0;
    PyObject *r =
        call_protocol(tr, NULL, ST(tr)->str_resume_writing, NULL, 0);
    if (r == NULL) {
        return report_error(tr, "protocol.resume_writing() failed");
    }
    Py_DECREF(r);
    return 0;
}

/* ---------------------------------------------------------------------- */
/* reading */

static int read_ready_fn(RlLoop *loop, PyObject *a, PyObject *b);

static void
arm_read(RlDgram *tr)
{
    RlLoop *loop = tr->loop;
    if (tr->closing || tr->paused || loop->reactor == NULL) {
        return;
    }
    if (tr->rheld) {
        /* A datagram received before pause_reading() took effect. */
        tr->rheld = 0;
        if (rl_netop_queue(loop, &tr->rop, read_ready_fn,
                           Py_NewRef(tr)) < 0) {
            PyErr_WriteUnraisable((PyObject *)tr);
        }
        return;
    }
    if (!rl_netop_armable(&tr->rop)) {
        return; /* in flight, or its datagram not delivered yet */
    }
    memset(&tr->rss, 0, sizeof(tr->rss));
    tr->riov.iov_base = tr->rbuf;
    tr->riov.iov_len = RL_DGRAM_MAX_SIZE;
    memset(&tr->rmsg, 0, sizeof(tr->rmsg));
    tr->rmsg.msg_name = &tr->rss;
    tr->rmsg.msg_namelen = sizeof(tr->rss);
    tr->rmsg.msg_iov = &tr->riov;
    tr->rmsg.msg_iovlen = 1;
    rl_op *op = &tr->rop.op;
    op->fd = tr->fd;
    op->kind = RL_OP_RECVMSG;
    op->flags = 0;
    op->u.msg.msg = &tr->rmsg;
    op->u.msg.msg_flags = 0;
    int rc = rl_netop_submit(loop, &tr->rop);
    if (rc < 0) {
        /* Deliver it as a read error (asyncio would see it from recv),
         * once: no retry loop on a dead fd. */
        tr->rres = rc;
        tr->rdead = 1;
        if (rl_netop_queue(loop, &tr->rop, read_ready_fn,
                           Py_NewRef(tr)) < 0) {
            PyErr_WriteUnraisable((PyObject *)tr);
        }
    }
}

static void
rop_cb(rl_op *op, int32_t res, uint32_t flags)
{
    (void)flags;
    RlDgram *tr = rl_container_of(op, RlDgram, rop.op);
    RlLoop *loop = tr->loop;
    rl_netop_done(loop, &tr->rop); /* its owner reference is ours now */
    tr->rres = res;
    if (tr->closing) {
        maybe_lost(tr);
    }
    else if (res == -ECANCELED) {
        /* pause_reading(); if resume_reading() came before this final
         * completion, it could not re-arm: do it now. */
        arm_read(tr);
    }
    else if (tr->paused) {
        /* Delivered on resume_reading(); rbuf holds it till then. */
        tr->rheld = 1;
        tr->rop.queued = 1;
    }
    else {
        if (rl_netop_queue(loop, &tr->rop, read_ready_fn, (PyObject *)tr) <
            0) {
            PyErr_WriteUnraisable((PyObject *)loop);
        }
        return;
    }
    rl_net_release_owner(loop, (PyObject *)tr);
}

/* Ready phase: deliver one datagram (or the error), then read again. */
static int
read_ready_fn(RlLoop *loop, PyObject *a, PyObject *b)
{
    (void)loop;
    (void)b;
    RlDgram *tr = (RlDgram *)a;
    int rc = 0;
    if (tr->conn_lost || tr->closing) {
        rl_netop_delivered(&tr->rop);
        goto done;
    }
    if (tr->paused) {
        tr->rheld = 1; /* still queued: rbuf keeps it for resume */
        goto done;
    }
    int32_t res = tr->rres;
    PyObject *r = NULL;
    if (res >= 0) {
        PyObject *args[2] = {NULL, NULL};
        args[0] = PyBytes_FromStringAndSize(tr->rbuf, res);
        if (args[0] != NULL) {
            args[1] = rl_sockaddr_build((struct sockaddr *)&tr->rss,
                                        tr->rmsg.msg_namelen);
        }
        /* The datagram left rbuf: the protocol may re-arm the receive
         * (pause_reading() + resume_reading()). */
        rl_netop_delivered(&tr->rop);
        if (args[1] != NULL) {
            r = call_protocol(tr, tr->ctx, ST(tr)->str_datagram_received,
                              args, 2);
        }
        Py_XDECREF(args[0]);
        Py_XDECREF(args[1]);
    }
    else {
        rl_netop_delivered(&tr->rop);
        PyObject *exc = rl_sock_errno_exc(res);
        if (exc != NULL) {
            r = call_protocol(tr, tr->ctx, ST(tr)->str_error_received, &exc,
                              1);
            Py_DECREF(exc);
        }
    }
    if (r == NULL) {
        rc = report_error(
            tr, "Exception in callback DatagramTransport._read_ready()");
    }
    Py_XDECREF(r);
    if (!tr->rdead) {
        arm_read(tr);
    }
done:
    Py_DECREF(tr);
    return rc;
}

static int
start_fn(RlLoop *loop, PyObject *a, PyObject *b)
{
    (void)loop;
    (void)b;
    RlDgram *tr = (RlDgram *)a;
    if (!tr->conn_lost) {
        arm_read(tr);
    }
    Py_DECREF(tr);
    return 0;
}

static int
waiter_fn(RlLoop *loop, PyObject *a, PyObject *b)
{
    (void)loop;
    (void)b;
    int rc = 0;
    if (rl_future_set_result_unless_done(a, Py_None) < 0) {
        rc = PyErr_ExceptionMatches(PyExc_Exception) ? 0 : -1;
        if (rc == 0) {
            PyErr_WriteUnraisable(a);
        }
    }
    Py_DECREF(a);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* connection_lost */

static int
lost_fn(RlLoop *loop, PyObject *a, PyObject *b)
{
    (void)loop;
    (void)b;
    RlDgram *tr = (RlDgram *)a;
    int rc = 0;
    PyObject *exc = tr->lost_exc ? tr->lost_exc : Py_None;
    PyObject *r = call_protocol(tr, tr->lost_ctx,
                                ST(tr)->str_connection_lost, &exc, 1);
    if (r == NULL) {
        rc = report_error(
            tr, "Exception in callback "
                "DatagramTransport._call_connection_lost()");
    }
    Py_XDECREF(r);
    /* finally: the socket goes, as asyncio's _call_connection_lost. */
    tr->lost_done = 1;
    PyObject *sock = tr->sock;
    tr->sock = NULL;
    if (sock != NULL) {
        PyObject *cr = PyObject_CallMethodNoArgs(sock, ST(tr)->str_close);
        if (cr == NULL) {
            if (rc == 0) {
                rc = report_error(tr, "Exception closing the socket of a "
                                      "datagram transport");
            }
            else {
                PyErr_WriteUnraisable((PyObject *)tr);
            }
        }
        Py_XDECREF(cr);
        Py_DECREF(sock);
    }
    Py_CLEAR(tr->protocol);
    Py_CLEAR(tr->lost_exc);
    Py_CLEAR(tr->lost_ctx);
    list_del(tr);
    Py_DECREF(tr);
    return rc;
}

/* connection_lost is due: schedule it once both ops are idle. */
static void
maybe_lost(RlDgram *tr)
{
    if (!tr->lost_wanted || tr->lost_pushed ||
        tr->rop.op.state != RL_OPS_IDLE || tr->sop.op.state != RL_OPS_IDLE) {
        return;
    }
    tr->lost_pushed = 1;
    if (rl_loop_call_soon_c(tr->loop, lost_fn, Py_NewRef(tr), NULL) < 0) {
        PyErr_WriteUnraisable((PyObject *)tr);
    }
}

static void
cancel_op(RlDgram *tr, rl_netop *n)
{
    if (n->op.state == RL_OPS_ARMED) {
        (void)rl_netop_cancel(tr->loop, n);
    }
}

/* asyncio's `call_soon(self._call_connection_lost, exc)`, deferred until
 * the kernel is done with our buffers. */
static int
schedule_lost(RlDgram *tr, PyObject *exc)
{
    tr->conn_lost++;
    tr->lost_wanted = 1;
    Py_XSETREF(tr->lost_exc, Py_XNewRef(exc == Py_None ? NULL : exc));
    Py_XSETREF(tr->lost_ctx, PyContext_CopyCurrent());
    if (tr->lost_ctx == NULL) {
        return -1;
    }
    cancel_op(tr, &tr->rop);
    cancel_op(tr, &tr->sop);
    /* The final completions of the cancelled ops now, so that
     * connection_lost() (and the socket's close) is queued here, where
     * asyncio's close() calls call_soon(), not one iteration later
     * (issue 14 point 4).  Never called from dispatch. */
    rl_net_reap_cancelled(tr->loop);
    maybe_lost(tr);
    return 0;
}

/* asyncio's _force_close */
static int
force_close(RlDgram *tr, PyObject *exc)
{
    if (tr->conn_lost) {
        return 0;
    }
    queue_clear(tr);
    if (!tr->closing) {
        tr->closing = 1;
    }
    return schedule_lost(tr, exc);
}

/* asyncio's _fatal_error: the current exception.  -1: leave the loop. */
static int
fatal_error(RlDgram *tr, const char *message)
{
    if (PyErr_ExceptionMatches(PyExc_SystemExit) ||
        PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        return -1;
    }
    PyObject *exc = rl_err_get_raised();
    if (!PyErr_GivenExceptionMatches(exc, PyExc_OSError)) {
        PyObject *ctx = Py_BuildValue(
            "{sssOsOsO}", "message", message, "exception", exc, "transport",
            (PyObject *)tr, "protocol", tr->protocol ? tr->protocol : Py_None);
        if (ctx == NULL) {
            Py_DECREF(exc);
            return -1;
        }
        PyObject *r = PyObject_CallMethodOneArg(
            (PyObject *)tr->loop, tr->loop->st->str_call_exception_handler,
            ctx);
        Py_DECREF(ctx);
        if (r == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_Exception)) {
                Py_DECREF(exc);
                return -1;
            }
            PyErr_Clear();
        }
        Py_XDECREF(r);
    }
    int rc = force_close(tr, exc);
    Py_DECREF(exc);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* sending */

/* One attempt at sending p: 1 sent, 0 would block, -1 with an exception
 * (an OSError for error_received, or anything else: fatal). */
static int
send_now(RlDgram *tr, PyObject *data, const void *buf, Py_ssize_t len,
         rl_pkt *p, PyObject *addr)
{
    rl_net_state *ss = ST(tr);
    if (tr->connected || (p != NULL && p->native)) {
        for (;;) {
            ssize_t n;
            if (tr->connected) {
                n = send(tr->fd, buf, (size_t)len,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
            }
            else {
                n = sendto(tr->fd, buf, (size_t)len,
                           MSG_DONTWAIT | MSG_NOSIGNAL,
                           (struct sockaddr *)&p->ss, p->sslen);
            }
            if (n >= 0) {
                return 1;
            }
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return 0;
            }
            rl_raise_errno(-errno);
            return -1;
        }
    }
    /* An address only socket.sendto() understands (a host name...). */
    PyObject *r = PyObject_CallMethodObjArgs(tr->sock, ss->str_sendto, data,
                                             addr ? addr : Py_None, NULL);
    if (r != NULL) {
        Py_DECREF(r);
        return 1;
    }
    if (PyErr_ExceptionMatches(PyExc_BlockingIOError) ||
        PyErr_ExceptionMatches(PyExc_InterruptedError)) {
        PyErr_Clear();
        return 0;
    }
    return -1;
}

static int write_ready_fn(RlLoop *loop, PyObject *a, PyObject *b);

static void
sop_cb(rl_op *op, int32_t res, uint32_t flags)
{
    (void)flags;
    RlDgram *tr = rl_container_of(op, RlDgram, sop.op);
    RlLoop *loop = tr->loop;
    rl_netop_done(loop, &tr->sop); /* its owner reference is ours now */
    tr->sres = res;
    if (tr->conn_lost && tr->qhead == NULL) {
        maybe_lost(tr); /* aborted */
        rl_net_release_owner(loop, (PyObject *)tr);
        return;
    }
    if (rl_netop_queue(loop, &tr->sop, write_ready_fn, (PyObject *)tr) < 0) {
        PyErr_WriteUnraisable((PyObject *)loop);
    }
}

/* Arm the send op for the queue head. */
static void
arm_write(RlDgram *tr)
{
    rl_pkt *p = tr->qhead;
    rl_op *op = &tr->sop.op;
    /* Not while the completion of the head's send waits on the ready
     * queue: the head is popped there (it would go out twice). */
    if (p == NULL || tr->loop->reactor == NULL ||
        !rl_netop_armable(&tr->sop)) {
        return;
    }
    op->fd = tr->fd;
    op->flags = 0;
    /* Wait for writability, then send the queue inline (write_ready_fn).
     * Not a SENDMSG op: on io_uring (seen on Linux 6.18) a SENDMSG of an
     * AF_UNIX datagram that first found the peer's queue full completed
     * with 0 bytes sent, and the peer got an empty datagram
     * (test_ownership.py).  A queued datagram is the rare case; the poll
     * costs one syscall more there and nothing on the common path. */
    op->kind = RL_OP_POLL;
    op->u.poll.events = POLLOUT;
    int rc = rl_netop_submit(tr->loop, &tr->sop);
    if (rc < 0) {
        tr->sres = rc;
        if (rl_netop_queue(tr->loop, &tr->sop, write_ready_fn,
                           Py_NewRef(tr)) < 0) {
            PyErr_WriteUnraisable((PyObject *)tr);
        }
    }
}

static rl_pkt *
queue_pop(RlDgram *tr)
{
    rl_pkt *p = tr->qhead;
    tr->qhead = p->next;
    if (tr->qhead == NULL) {
        tr->qtail = NULL;
    }
    tr->buffer_size -= pkt_size(p);
    return p;
}

/* Ready phase: asyncio's _sendto_ready, after the send op completed. */
static int
write_ready_fn(RlLoop *loop, PyObject *a, PyObject *b)
{
    (void)loop;
    (void)b;
    RlDgram *tr = (RlDgram *)a;
    int rc = 0;
    int32_t res = tr->sres;
    rl_netop_delivered(&tr->sop);
    if (tr->conn_lost && tr->qhead == NULL) {
        maybe_lost(tr);
        goto done;
    }
    if (tr->qhead != NULL && res != -ECANCELED) {
        if (res < 0) {
            /* The poll failed: asyncio drops the head then. */
            rl_pkt *p = queue_pop(tr);
            pkt_free(p);
            {
                PyObject *exc = rl_sock_errno_exc(res);
                PyObject *r = exc ? call_protocol(
                                        tr, tr->ctx,
                                        ST(tr)->str_error_received, &exc, 1)
                                  : NULL;
                Py_XDECREF(exc);
                if (r == NULL) {
                    rc = report_error(tr, "Exception in callback "
                                          "DatagramTransport._sendto_ready()");
                }
                Py_XDECREF(r);
                /* asyncio returns here; its writer fires again: go on
                 * with the rest when writable. */
                arm_write(tr);
                if (tr->qhead == NULL) {
                    goto drained;
                }
                goto done;
            }
        }
    }
    /* Send what can go now; wait for writability for the rest. */
    while (tr->qhead != NULL) {
        rl_pkt *p = tr->qhead;
        int s = send_now(tr, p->data, PyBytes_AS_STRING(p->data),
                         PyBytes_GET_SIZE(p->data), p, p->addr);
        if (s == 0) {
            break;
        }
        p = queue_pop(tr);
        pkt_free(p);
        if (s < 0) {
            if (PyErr_ExceptionMatches(PyExc_OSError)) {
                PyObject *exc = rl_err_get_raised();
                PyObject *r = call_protocol(
                    tr, tr->ctx, ST(tr)->str_error_received, &exc, 1);
                Py_DECREF(exc);
                if (r == NULL) {
                    rc = report_error(tr, "Exception in callback "
                                          "DatagramTransport._sendto_ready()");
                }
                Py_XDECREF(r);
            }
            else {
                rc = fatal_error(tr,
                                 "Fatal write error on datagram transport");
                goto done;
            }
            break;
        }
    }
    if (tr->qhead != NULL) {
        arm_write(tr);
        if (maybe_resume_protocol(tr) < 0) {
            rc = -1;
        }
        goto done;
    }
drained:
    if (maybe_resume_protocol(tr) < 0) {
        rc = -1;
    }
    if (tr->qhead == NULL && tr->closing && !tr->conn_lost) {
        /* asyncio: _call_connection_lost(None) once the buffer drained */
        if (schedule_lost(tr, NULL) < 0) {
            rc = -1;
        }
    }
done:
    Py_DECREF(tr);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Python methods */

static PyObject *
Dgram_sendto(RlDgram *tr, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames)
{
    PyObject *data = NULL, *addr = Py_None;
    static const char *const names[] = {"data", "addr"};
    PyObject *v[2] = {NULL, NULL};
    if (nargs > 2) {
        PyErr_Format(PyExc_TypeError,
                     "sendto() takes from 2 to 3 positional arguments but "
                     "%zd were given",
                     nargs + 1);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        v[i] = args[i];
    }
    if (kwnames != NULL) {
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(kwnames); k++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, k);
            int idx = PyUnicode_CompareWithASCIIString(key, names[0]) == 0
                          ? 0
                      : PyUnicode_CompareWithASCIIString(key, names[1]) == 0
                          ? 1
                          : -1;
            if (idx < 0 || v[idx] != NULL) {
                PyErr_Format(PyExc_TypeError,
                             "sendto() got an unexpected or repeated "
                             "keyword argument '%S'",
                             key);
                return NULL;
            }
            v[idx] = args[nargs + k];
        }
    }
    if (v[0] == NULL) {
        PyErr_SetString(PyExc_TypeError,
                        "sendto() missing 1 required positional argument: "
                        "'data'");
        return NULL;
    }
    data = v[0];
    if (v[1] != NULL) {
        addr = v[1];
    }
    if (!PyBytes_Check(data) && !PyByteArray_Check(data) &&
        !PyMemoryView_Check(data)) {
        PyErr_Format(PyExc_TypeError,
                     "data argument must be a bytes-like object, not '%s'",
                     Py_TYPE(data)->tp_name);
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
#if !RL_PY313
    if (view.len == 0) {
        PyBuffer_Release(&view); /* 3.11/3.12: `if not data: return` */
        Py_RETURN_NONE;
    }
#endif
    if (tr->address != NULL) {
        int ok = addr == Py_None;
        if (!ok) {
            ok = PyObject_RichCompareBool(addr, tr->address, Py_EQ);
            if (ok < 0) {
                PyBuffer_Release(&view);
                return NULL;
            }
        }
        if (!ok) {
            PyBuffer_Release(&view);
            PyErr_Format(PyExc_ValueError,
                         "Invalid address: must be None or %S", tr->address);
            return NULL;
        }
        addr = tr->address;
    }
    if (tr->conn_lost && tr->address != NULL) {
        if (tr->conn_lost >= RL_LOG_THRESHOLD_FOR_CONNLOST_WRITES) {
            PyObject *log = PyImport_ImportModule("asyncio.log");
            PyObject *logger = log ? PyObject_GetAttrString(log, "logger")
                                   : NULL;
            PyObject *r = logger ? PyObject_CallMethod(
                                       logger, "warning", "s",
                                       "socket.send() raised exception.")
                                 : NULL;
            Py_XDECREF(r);
            Py_XDECREF(logger);
            Py_XDECREF(log);
            if (r == NULL) {
                PyBuffer_Release(&view);
                return NULL;
            }
        }
        tr->conn_lost++;
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    if (tr->sock == NULL) {
        /* Lost and not connected: nothing to send with (asyncio would fail
         * on its cleared socket and report a fatal error). */
        tr->conn_lost++;
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    rl_pkt *p = PyMem_Calloc(1, sizeof(rl_pkt));
    if (p == NULL) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    if (!tr->connected && addr != Py_None) {
        p->native = (uint8_t)rl_sockaddr_parse(tr->family, addr, &p->ss,
                                               &p->sslen);
    }
    if (tr->qhead == NULL) {
        /* Attempt to send it right away first. */
        int s = send_now(tr, data, view.buf, view.len, p, addr);
        if (s == 1) {
            PyBuffer_Release(&view);
            PyMem_Free(p);
            Py_RETURN_NONE;
        }
        if (s < 0) {
            PyBuffer_Release(&view);
            PyMem_Free(p);
            if (PyErr_ExceptionMatches(PyExc_OSError)) {
                PyObject *exc = rl_err_get_raised();
                PyObject *r = call_protocol(
                    tr, NULL, ST(tr)->str_error_received, &exc, 1);
                Py_DECREF(exc);
                if (r == NULL) {
                    return NULL;
                }
                Py_DECREF(r);
                Py_RETURN_NONE;
            }
            if (fatal_error(tr, "Fatal write error on datagram transport") <
                0) {
                return NULL;
            }
            Py_RETURN_NONE;
        }
    }
    /* Buffer it (immutable) and send it when writable. */
    p->data = PyBytes_FromStringAndSize(view.buf, view.len);
    PyBuffer_Release(&view);
    if (p->data == NULL) {
        PyMem_Free(p);
        return NULL;
    }
    p->addr = addr == Py_None ? NULL : Py_NewRef(addr);
    if (tr->qtail != NULL) {
        tr->qtail->next = p;
    }
    else {
        tr->qhead = p;
    }
    tr->qtail = p;
    tr->buffer_size += pkt_size(p);
    arm_write(tr);
    if (maybe_pause_protocol(tr) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Dgram_close(RlDgram *tr, PyObject *Py_UNUSED(ignored))
{
    if (tr->closing) {
        Py_RETURN_NONE;
    }
    tr->closing = 1;
    cancel_op(tr, &tr->rop);
    if (tr->qhead == NULL) {
        if (schedule_lost(tr, NULL) < 0) {
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

static PyObject *
Dgram_abort(RlDgram *tr, PyObject *Py_UNUSED(ignored))
{
    if (force_close(tr, NULL) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Dgram_is_closing(RlDgram *tr, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(tr->closing);
}

static PyObject *
Dgram_is_reading(RlDgram *tr, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(!tr->closing && !tr->paused);
}

static PyObject *
Dgram_pause_reading(RlDgram *tr, PyObject *Py_UNUSED(ignored))
{
    if (tr->closing || tr->paused) {
        Py_RETURN_NONE;
    }
    tr->paused = 1;
    cancel_op(tr, &tr->rop);
    Py_RETURN_NONE;
}

static PyObject *
Dgram_resume_reading(RlDgram *tr, PyObject *Py_UNUSED(ignored))
{
    if (tr->closing || !tr->paused) {
        Py_RETURN_NONE;
    }
    tr->paused = 0;
    arm_read(tr);
    Py_RETURN_NONE;
}

static PyObject *
Dgram_get_write_buffer_size(RlDgram *tr, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSsize_t(tr->buffer_size);
}

static PyObject *
Dgram_get_write_buffer_limits(RlDgram *tr, PyObject *Py_UNUSED(ignored))
{
    if (tr->aio_high_water != NULL && tr->aio_low_water != NULL) {
        /* what set_write_buffer_limits() was given, as asyncio keeps it */
        return PyTuple_Pack(2, tr->aio_low_water, tr->aio_high_water);
    }
    return Py_BuildValue("(nn)", tr->low_water, tr->high_water);
}

static int
set_limits(RlDgram *tr, PyObject *high_o, PyObject *low_o)
{
    PyObject *high, *low;
    size_t h, l;
    if (rl_net_write_limits(high_o, low_o, &high, &low, &h, &l) < 0) {
        return -1;
    }
    tr->high_water = h > (size_t)PY_SSIZE_T_MAX ? PY_SSIZE_T_MAX
                                                : (Py_ssize_t)h;
    tr->low_water = l > (size_t)PY_SSIZE_T_MAX ? PY_SSIZE_T_MAX
                                               : (Py_ssize_t)l;
    Py_XSETREF(tr->aio_high_water, high);
    Py_XSETREF(tr->aio_low_water, low);
    return 0;
}

static PyObject *
Dgram_set_write_buffer_limits(RlDgram *tr, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"high", "low", NULL};
    PyObject *high = Py_None, *low = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds,
                                     "|OO:set_write_buffer_limits", kwlist,
                                     &high, &low)) {
        return NULL;
    }
    if (set_limits(tr, high, low) < 0) {
        return NULL;
    }
    if (maybe_pause_protocol(tr) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Dgram_set_protocol(RlDgram *tr, PyObject *protocol)
{
    Py_XSETREF(tr->protocol, Py_NewRef(protocol));
    Py_RETURN_NONE;
}

static PyObject *
Dgram_get_protocol(RlDgram *tr, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(tr->protocol ? tr->protocol : Py_None);
}

static PyObject *
Dgram_repr(RlDgram *tr)
{
    const char *state = tr->sock == NULL ? " closed"
                        : tr->closing    ? " closing"
                                         : "";
    if (tr->loop == NULL || tr->loop->closed || tr->lost_done) {
        return PyUnicode_FromFormat("<%s%s fd=%d>", Py_TYPE(tr)->tp_name,
                                    state, tr->fd);
    }
    return PyUnicode_FromFormat(
        "<%s%s fd=%d read=%s write=<%s, bufsize=%zd>>", Py_TYPE(tr)->tp_name,
        state, tr->fd, tr->rop.op.state == RL_OPS_ARMED ? "polling" : "idle",
        tr->sop.op.state == RL_OPS_ARMED ? "polling" : "idle",
        tr->buffer_size);
}

static int
Dgram_traverse(RlDgram *tr, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(tr));
    Py_VISIT(tr->extra);
    Py_VISIT(tr->loop);
    Py_VISIT(tr->sock);
    Py_VISIT(tr->protocol);
    Py_VISIT(tr->address);
    Py_VISIT(tr->ctx);
    Py_VISIT(tr->lost_exc);
    Py_VISIT(tr->lost_ctx);
    Py_VISIT(tr->aio_high_water);
    Py_VISIT(tr->aio_low_water);
    for (rl_pkt *p = tr->qhead; p != NULL; p = p->next) {
        Py_VISIT(p->data);
        Py_VISIT(p->addr);
    }
    return 0;
}

static int
Dgram_clear(RlDgram *tr)
{
    /* Listed transports are the loop's: it lets go of them after the
     * reactor let go of their buffers. */
    if (tr->listed) {
        return 0;
    }
    Py_CLEAR(tr->extra);
    Py_CLEAR(tr->protocol);
    Py_CLEAR(tr->address);
    Py_CLEAR(tr->ctx);
    Py_CLEAR(tr->lost_exc);
    Py_CLEAR(tr->lost_ctx);
    Py_CLEAR(tr->aio_high_water);
    Py_CLEAR(tr->aio_low_water);
    queue_clear(tr);
    return 0;
}

static void
Dgram_finalize(RlDgram *tr)
{
    if (tr->sock == NULL) {
        return;
    }
    PyObject *exc = rl_err_get_raised();
    /* asyncio's __del__: warn and close the socket. */
    if (PyErr_ResourceWarning((PyObject *)tr, 1, "unclosed transport %R",
                              (PyObject *)tr) < 0) {
        PyErr_WriteUnraisable((PyObject *)tr);
    }
    PyObject *sock = tr->sock;
    tr->sock = NULL;
    PyObject *r = PyObject_CallMethod(sock, "close", NULL);
    if (r == NULL) {
        PyErr_WriteUnraisable((PyObject *)tr);
    }
    Py_XDECREF(r);
    Py_DECREF(sock);
    rl_err_set_raised(exc);
}

static void
Dgram_dealloc(RlDgram *tr)
{
    PyTypeObject *tp = Py_TYPE(tr);
    if (PyObject_CallFinalizerFromDealloc((PyObject *)tr) < 0) {
        return; /* resurrected */
    }
    PyObject_GC_UnTrack(tr);
    if (tr->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)tr);
    }
    tr->listed = 0; /* never listed here: the list holds a reference */
    (void)Dgram_clear(tr);
    Py_CLEAR(tr->sock);
    Py_CLEAR(tr->loop);
    PyMem_Free(tr->rbuf);
    tp->tp_free((PyObject *)tr);
    Py_DECREF(tp);
}

static PyMethodDef Dgram_methods[] = {
    {"sendto", RL_CFUNC(Dgram_sendto), METH_FASTCALL | METH_KEYWORDS,
     "sendto($self, /, data, addr=None)\n--\n\n"
     "Send data to addr (or the connected peer)."},
    {"close", (PyCFunction)Dgram_close, METH_NOARGS, NULL},
    {"abort", (PyCFunction)Dgram_abort, METH_NOARGS, NULL},
    {"is_closing", (PyCFunction)Dgram_is_closing, METH_NOARGS, NULL},
    {"is_reading", (PyCFunction)Dgram_is_reading, METH_NOARGS, NULL},
    {"pause_reading", (PyCFunction)Dgram_pause_reading, METH_NOARGS, NULL},
    {"resume_reading", (PyCFunction)Dgram_resume_reading, METH_NOARGS,
     NULL},
    {"get_write_buffer_size", (PyCFunction)Dgram_get_write_buffer_size,
     METH_NOARGS, NULL},
    {"get_write_buffer_limits", (PyCFunction)Dgram_get_write_buffer_limits,
     METH_NOARGS, NULL},
    {"set_write_buffer_limits", RL_CFUNC(Dgram_set_write_buffer_limits),
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"set_protocol", (PyCFunction)Dgram_set_protocol, METH_O, NULL},
    {"get_protocol", (PyCFunction)Dgram_get_protocol, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

/* asyncio's private attributes that code in the wild reads
 * (transport._sock, ._loop, ._protocol, ._address). */
static PyObject *
Dgram_get_sock(RlDgram *tr, void *Py_UNUSED(c))
{
    return Py_NewRef(tr->sock ? tr->sock : Py_None);
}

static PyObject *
Dgram_get_loop(RlDgram *tr, void *Py_UNUSED(c))
{
    return Py_NewRef(tr->lost_done || tr->loop == NULL ? Py_None
                                                       : (PyObject *)tr->loop);
}

static PyObject *
Dgram_get_address(RlDgram *tr, void *Py_UNUSED(c))
{
    return Py_NewRef(tr->address ? tr->address : Py_None);
}

static PyObject *
Dgram_get_protocol_attr(RlDgram *tr, void *Py_UNUSED(c))
{
    return Py_NewRef(tr->protocol ? tr->protocol : Py_None);
}

static PyGetSetDef Dgram_getset[] = {
    {"_sock", (getter)Dgram_get_sock, NULL, NULL, NULL},
    {"_loop", (getter)Dgram_get_loop, NULL, NULL, NULL},
    {"_protocol", (getter)Dgram_get_protocol_attr, NULL, NULL, NULL},
    {"_address", (getter)Dgram_get_address, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef Dgram_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(RlDgram, weakreflist),
     READONLY, NULL},
    {"_sock_fd", T_INT, offsetof(RlDgram, fd), READONLY, NULL},
    {"_conn_lost", T_INT, offsetof(RlDgram, conn_lost), READONLY, NULL},
    {"_protocol_paused", T_BOOL, offsetof(RlDgram, protocol_paused),
     READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot Dgram_slots[] = {
    {Py_tp_methods, Dgram_methods},
    {Py_tp_members, Dgram_members},
    {Py_tp_getset, Dgram_getset},
    {Py_tp_repr, Dgram_repr},
    {Py_tp_traverse, Dgram_traverse},
    {Py_tp_clear, Dgram_clear},
    {Py_tp_finalize, Dgram_finalize},
    {Py_tp_dealloc, Dgram_dealloc},
    {Py_tp_doc, "ringloop's datagram transport (create_datagram_endpoint)."},
    {0, NULL},
};

static PyType_Spec Dgram_spec = {
    .name = "ringloop._core.DatagramTransport",
    .basicsize = sizeof(RlDgram),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = Dgram_slots,
};

/* ---------------------------------------------------------------------- */
/* creation: loop._make_datagram_transport(sock, protocol, address=None,
 * waiter=None, extra=None) -- the Python side (ringloop/_dgram.py) has
 * filled `extra` with socket/sockname/peername as asyncio does. */

PyObject *
rl_dgram_new(RlLoop *loop, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "_dgram_new(sock, protocol, address, waiter, extra, "
                        "connected)");
        return NULL;
    }
    PyObject *sock = args[0], *protocol = args[1], *address = args[2];
    PyObject *waiter = args[3], *extra = args[4];
    int connected = PyObject_IsTrue(args[5]);
    if (connected < 0 || rl_loop_check_closed(loop) < 0) {
        return NULL;
    }
    rl_state *st = loop->st;
    int fd = -1;
    PyObject *r = PyObject_CallMethodNoArgs(sock, st->str_fileno);
    if (r == NULL) {
        return NULL;
    }
    fd = (int)PyLong_AsLong(r);
    Py_DECREF(r);
    if (fd == -1 && PyErr_Occurred()) {
        return NULL;
    }
    r = PyObject_GetAttr(sock, st->net->str_family);
    if (r == NULL) {
        return NULL;
    }
    int family = (int)PyLong_AsLong(r);
    Py_DECREF(r);
    if (family == -1 && PyErr_Occurred()) {
        return NULL;
    }
    /* asyncio's _ensure_fd_no_transport(sock) */
    if (rl_net_check_fd_free(loop, fd) < 0 ||
        rl_sock_check_fd_free(loop, fd) < 0) {
        return NULL;
    }
    rl_sockfd *f = rl_sock_fd(loop, fd);
    if (f == NULL) {
        return NULL;
    }
    PyTypeObject *tp = st->sock->DgramType;
    RlDgram *tr = (RlDgram *)tp->tp_alloc(tp, 0);
    if (tr == NULL) {
        return NULL;
    }
    tr->rbuf = PyMem_Malloc(RL_DGRAM_MAX_SIZE);
    tr->ctx = PyContext_CopyCurrent();
    if (tr->rbuf == NULL || tr->ctx == NULL) {
        if (tr->rbuf == NULL) {
            PyErr_NoMemory();
        }
        Py_DECREF(tr);
        return NULL;
    }
    tr->extra = Py_NewRef(extra);
    tr->loop = (RlLoop *)Py_NewRef(loop);
    tr->sock = Py_NewRef(sock);
    tr->protocol = Py_NewRef(protocol);
    tr->address = address == Py_None ? NULL : Py_NewRef(address);
    tr->fd = fd;
    tr->family = family;
    tr->connected = (uint8_t)connected;
    rl_netop_init(&tr->rop, (PyObject *)tr, rop_cb, fd, RL_OP_RECVMSG, NULL);
    rl_netop_init(&tr->sop, (PyObject *)tr, sop_cb, fd, RL_OP_POLL, NULL);
    tr->high_water = 64 * 1024;
    tr->low_water = 16 * 1024;

    /* asyncio: call_soon(protocol.connection_made, self), then start
     * reading, then wake the waiter: three records in this order. */
    PyObject *cm = PyObject_GetAttr(protocol, st->net->str_connection_made);
    if (cm == NULL) {
        Py_DECREF(tr);
        return NULL;
    }
    PyObject *targs[1] = {(PyObject *)tr};
    RlHandle *h = rl_handle_new(loop, 0, cm, targs, 1, NULL);
    Py_DECREF(cm);
    if (h == NULL || rl_loop_push_handle(loop, h) < 0) {
        Py_DECREF(tr);
        return NULL;
    }
    if (rl_loop_call_soon_c(loop, start_fn, Py_NewRef(tr), NULL) < 0) {
        Py_DECREF(tr);
        return NULL;
    }
    if (waiter != Py_None &&
        rl_loop_call_soon_c(loop, waiter_fn, Py_NewRef(waiter), NULL) < 0) {
        Py_DECREF(tr);
        return NULL;
    }
    /* loop._transports[fd] = self, and the loop's reference. */
    f->dgram = tr;
    rl_loop_sock *ls = loop->sock;
    Py_INCREF(tr);
    tr->listed = 1;
    tr->lnext = ls->dgrams;
    if (ls->dgrams != NULL) {
        ls->dgrams->lprev = tr;
    }
    ls->dgrams = tr;
    return (PyObject *)tr;
}

/* ---------------------------------------------------------------------- */
/* module and loop hooks */

int
rl_dgram_module_init(PyObject *module, rl_state *st)
{
    PyObject *asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL) {
        return -1;
    }
    PyObject *transport = PyObject_GetAttrString(asyncio, "Transport");
    PyObject *dtransport =
        PyObject_GetAttrString(asyncio, "DatagramTransport");
    PyObject *base = PyObject_GetAttrString(asyncio, "BaseTransport");
    Py_DECREF(asyncio);
    PyObject *bases = NULL;
    int rc = -1;
    if (transport == NULL || dtransport == NULL || base == NULL) {
        goto done;
    }
    /* Our layout must continue BaseTransport's: its one slot, _extra,
     * must be where RlDgram.extra is. */
    st->net->aio_BaseTransport_extra =
        PyObject_GetAttrString(base, "_extra");
    if (st->net->aio_BaseTransport_extra == NULL) {
        goto done;
    }
    PyObject *d = st->net->aio_BaseTransport_extra;
    if (!Py_IS_TYPE(d, &PyMemberDescr_Type) ||
        ((PyMemberDescrObject *)d)->d_member->offset !=
            (Py_ssize_t)offsetof(RlDgram, extra) ||
        ((PyTypeObject *)base)->tp_basicsize !=
            (Py_ssize_t)(offsetof(RlDgram, extra) + sizeof(PyObject *))) {
        PyErr_SetString(PyExc_ImportError,
                        "asyncio.BaseTransport has an unexpected layout");
        goto done;
    }
    bases = PyTuple_Pack(2, transport, dtransport);
    if (bases == NULL) {
        goto done;
    }
    st->sock->DgramType = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &Dgram_spec, bases);
    if (st->sock->DgramType == NULL) {
        goto done;
    }
    if (PyModule_AddObjectRef(module, "DatagramTransport",
                              (PyObject *)st->sock->DgramType) < 0) {
        goto done;
    }
    rc = 0;
done:
    Py_XDECREF(bases);
    Py_XDECREF(transport);
    Py_XDECREF(dtransport);
    Py_XDECREF(base);
    return rc;
}

void
rl_dgram_loop_after_reactor_destroy(RlLoop *loop)
{
    /* The transports stay as they are for their owners (asyncio does not
     * close transports when the loop closes); the loop only drops its
     * references.  A transport whose op the reactor left ARMED/CANCELLING
     * (a ring that could not be drained) stays alive through the
     * reference that op leaked (net_loop_after_reactor_destroy), so its
     * receive buffer, which the kernel may still write, is never freed:
     * Dgram_dealloc, the only place that frees it, cannot run. */
    while (loop->sock->dgrams != NULL) {
        list_del(loop->sock->dgrams);
    }
}

int
rl_dgram_loop_traverse(RlLoop *loop, visitproc visit, void *arg)
{
    for (RlDgram *tr = loop->sock->dgrams; tr != NULL; tr = tr->lnext) {
        Py_VISIT((PyObject *)tr);
    }
    return 0;
}
