/* server.c -- the accept side of a server: one _Listener per listening
 * socket.
 *
 * Readiness, then accept4() in the ready phase: a one-shot POLL op waits
 * for the socket to become readable; its completion queues one ready
 * record, which calls accept4() until EAGAIN (at most ACCEPT_BATCH
 * connections) and, for each fd, makes a copy of the context the server
 * was started in, calls protocol_factory() in it and makes the transport,
 * whose connection_made() runs at once (asyncio runs it from its accept
 * task); then the POLL is armed again.  A connection is taken from the
 * backlog only by a loop that is about to serve it: with processes sharing
 * the listening socket (pre-fork servers), a worker whose loop is blocked
 * leaves the connections to the others, as with asyncio and uvloop.
 * io_uring's ACCEPT (multishot or not) accepts in the kernel, on behalf of
 * whichever process armed it, even while its loop is blocked: not used
 * here (ARCHITECTURE.md, "Servers", has the measurements).
 *
 * The Python Server object (python/ringloop/_net.py, a subclass of
 * asyncio's) owns the listening socket and decides when to start and stop.
 *
 * Out of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM) accepting pauses; as
 * asyncio, the error goes to the exception handler ("socket.accept() out
 * of system resource") and accepting resumes after ACCEPT_RETRY_DELAY, so
 * a listener never spins on a backlog it cannot drain. */
#include "net_internal.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <structmember.h>

/* Connections accepted per readiness event at most (asyncio's default
 * backlog, which asyncio uses as its batch): what is left in the backlog
 * completes the re-armed POLL at once, after the other ready callbacks
 * and I/O had their turn. */
#define ACCEPT_BATCH 100

typedef struct {
    PyObject_HEAD
    RlLoop *loop; /* strong */
    PyObject *sock;
    PyObject *protocol_factory;
    PyObject *server;
    PyObject *context;  /* the start_serving() context */
    PyObject *retry;    /* the TimerHandle of a pause, or NULL */
    PyObject *weakreflist;
    rl_netop pop;       /* POLLIN on the listening socket */
    int32_t err;        /* the error that ended the op */
    int fd;
    uint8_t serving;    /* start() called and not stopped */
    uint8_t queued;     /* accept_fn is on the ready queue */
    uint8_t err_queued; /* accept_error_fn is on the ready queue */
    uint8_t polled;     /* a POLL of ours completed on fd (SAME_FILE) */
} RlListener;

static int
listener_arm(RlListener *l)
{
    /* The listener's fd is the server's socket from start() to stop(),
     * and the socket is closed only after stop(). */
    l->pop.op.flags = l->polled ? RL_OPF_SAME_FILE : 0;
    l->pop.op.u.poll.events = POLLIN;
    return rl_netop_submit(l->loop, &l->pop);
}

/* Arm the POLL again if still serving and nothing is armed or paused.
 * Otherwise, or on success, 0; else -errno. */
static int
listener_rearm(RlListener *l)
{
    if (!l->serving || l->loop->closed || l->retry != NULL ||
        l->pop.op.state != RL_OPS_IDLE) {
        return 0;
    }
    return listener_arm(l);
}

static int accept_error_fn(RlLoop *loop, PyObject *a, PyObject *b);

/* Queue the report of err (-errno) and the pause after it. */
static void
queue_error(RlListener *l, int32_t err)
{
    if (l->err_queued) {
        return;
    }
    l->err = err;
    l->err_queued = 1;
    if (rl_loop_call_soon_c(l->loop, accept_error_fn,
                            Py_NewRef((PyObject *)l), NULL) < 0) {
        l->err_queued = 0;
        PyErr_WriteUnraisable((PyObject *)l->loop);
    }
}

/* One accepted connection, in the ready phase.  -1 only for an exception
 * that must leave the loop. */
static int
accept_one(RlListener *l, int fd)
{
    RlLoop *loop = l->loop;
    PyObject *ctx = PyContext_Copy(l->context);
    PyObject *protocol = NULL;
    int rc = 0;
    if (ctx == NULL) {
        close(fd);
        goto error;
    }
    if (PyContext_Enter(ctx) < 0) {
        close(fd);
        goto error;
    }
    protocol = PyObject_CallNoArgs(l->protocol_factory);
    PyObject *e = protocol == NULL ? rl_err_get_raised() : NULL;
    if (PyContext_Exit(ctx) < 0) {
        Py_XDECREF(e);
        close(fd);
        goto error;
    }
    if (protocol == NULL) {
        close(fd);
        rl_err_set_raised(e);
        goto error;
    }
    /* connection_made() runs in ctx from its Handle (not entered here). */
    RlStream *t = rl_stream_new(loop, fd, NULL, protocol, NULL, l->server,
                                NULL, Py_NewRef(ctx), 1);
    if (t == NULL) {
        if (!rl_net_exc_is_fatal()) {
            /* The transport could not be made: the fd is still ours. */
            close(fd);
        }
        goto error;
    }
    Py_DECREF(t);
    goto done;
error:
    if (rl_net_exc_is_fatal()) {
        rc = -1;
    }
    else {
        /* asyncio reports this in debug mode only. */
        PyObject *exc = rl_err_get_raised();
        if (loop->debug) {
            rc = rl_net_report(
                loop, "Error on transport creation for incoming connection",
                exc, loop->st->net->str_protocol, protocol, NULL, NULL);
        }
        Py_XDECREF(exc);
    }
done:
    Py_XDECREF(protocol);
    Py_XDECREF(ctx);
    return rc;
}

/* loop.call_later(ACCEPT_RETRY_DELAY, listener._resume) */
static int
schedule_retry(RlListener *l)
{
    rl_state *st = l->loop->st;
    PyObject *resume = PyObject_GetAttrString((PyObject *)l, "_resume");
    if (resume == NULL) {
        return -1;
    }
    PyObject *delay = PyFloat_FromDouble(RL_ACCEPT_RETRY_DELAY);
    if (delay == NULL) {
        Py_DECREF(resume);
        return -1;
    }
    PyObject *stack[3] = {(PyObject *)l->loop, delay, resume};
    PyObject *h = PyObject_VectorcallMethod(st->net->str_call_later, stack, 3,
                                            NULL);
    Py_DECREF(delay);
    Py_DECREF(resume);
    if (h == NULL) {
        return -1;
    }
    Py_XSETREF(l->retry, h);
    return 0;
}

/* Accepting failed with err (errno, not one of the transient ones): report
 * it and pause for ACCEPT_RETRY_DELAY.  -1 only for an exception that must
 * leave the loop. */
static int
listener_error(RlListener *l, int err)
{
    RlLoop *loop = l->loop;
    rl_state *st = loop->st;
    int rc = 0;
    PyObject *exc = rl_net_oserror(-err, NULL);
    PyObject *trsock = exc ? PyObject_CallOneArg(st->net->aio_TransportSocket,
                                                 l->sock)
                           : NULL;
    if (trsock == NULL) {
        Py_XDECREF(exc);
        rc = rl_net_exc_is_fatal() ? -1 : 0;
        if (rc == 0) {
            PyErr_WriteUnraisable((PyObject *)l);
        }
        goto retry;
    }
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        rc = rl_net_report(loop, "socket.accept() out of system resource",
                           exc, st->net->str_socket, trsock, NULL, NULL);
    }
    else {
        /* asyncio lets the error reach the exception handler and keeps
         * its reader (a busy loop if the error persists); we report it
         * and retry after the same delay. */
        rc = rl_net_report(loop, "Error on accepting connections", exc,
                           st->net->str_socket, trsock, NULL, NULL);
    }
    Py_DECREF(exc);
    Py_DECREF(trsock);
retry:
    /* The handler may have stopped the server; a SystemExit from it
     * still leaves the pause scheduled. */
    if (l->serving && !loop->closed) {
        PyObject *pending = rc < 0 ? rl_err_get_raised() : NULL;
        if (schedule_retry(l) < 0) {
            if (rl_net_exc_is_fatal()) {
                Py_XDECREF(pending);
                return -1;
            }
            PyErr_WriteUnraisable((PyObject *)l);
        }
        if (pending != NULL) {
            rl_err_set_raised(pending);
        }
    }
    return rc;
}

/* A connection that died in the backlog, or a signal: go on. */
static int
accept_err_transient(int err)
{
    return err == ECONNABORTED || err == EINTR || err == EAGAIN ||
           err == EPROTO;
}

/* The POLL fired: accept what the backlog holds, serve it, arm again. */
static int
accept_fn(RlLoop *loop, PyObject *a, PyObject *b)
{
    (void)b;
    RlListener *l = (RlListener *)a;
    int rc = 0;
    int err = 0;
    l->queued = 0;
    /* Python code (protocol_factory, connection_made) may stop the
     * listener and close the socket: check before each accept4(). */
    for (int i = 0; i < ACCEPT_BATCH && l->serving && !loop->closed; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            err = errno;
            if (err == EAGAIN || err == EWOULDBLOCK) {
                err = 0;
                break;
            }
            if (accept_err_transient(err)) {
                err = 0;
                continue;
            }
            break;
        }
        if (accept_one(l, fd) < 0) {
            /* SystemExit/KeyboardInterrupt: leave the loop; the rest of
             * the backlog waits for the next run. */
            rc = -1;
            break;
        }
    }
    if (err != 0 && rc == 0 && l->serving && !loop->closed) {
        rc = listener_error(l, err);
    }
    else {
        int r = listener_rearm(l);
        if (r < 0) {
            queue_error(l, r);
        }
    }
    Py_DECREF(a);
    return rc;
}

/* The POLL failed, or arming it did (from a record or _resume). */
static int
accept_error_fn(RlLoop *loop, PyObject *a, PyObject *b)
{
    (void)b;
    RlListener *l = (RlListener *)a;
    int rc = 0;
    int err = -l->err;
    l->err_queued = 0;
    if (l->serving && !loop->closed) {
        int r = accept_err_transient(err) ? listener_rearm(l) : -err;
        if (r < 0) {
            rc = listener_error(l, -r);
        }
    }
    Py_DECREF(a);
    return rc;
}

/* In dispatch, no Python: the listening socket is readable (or the POLL
 * failed or was cancelled).  One-shot: nothing stays armed in the kernel
 * until the record has run. */
static void
pop_cb(rl_op *op, int32_t res, uint32_t flags)
{
    (void)flags;
    RlListener *l = rl_container_of(op, RlListener, pop.op);
    RlLoop *loop = l->loop;
    rl_netop_done(loop, &l->pop);
    if (res > 0) {
        l->polled = 1;
        if (l->serving && !l->queued) {
            l->queued = 1;
            if (rl_loop_call_soon_c(loop, accept_fn,
                                    Py_NewRef((PyObject *)l), NULL) < 0) {
                l->queued = 0;
                PyErr_WriteUnraisable((PyObject *)loop);
            }
        }
    }
    else if (res == -ECANCELED || res == 0) {
        /* stop() cancelled it; start() since then found it still in
         * flight: arm it now. */
        if (l->serving && !l->queued) {
            int r = listener_rearm(l);
            if (r < 0) {
                queue_error(l, r);
            }
        }
    }
    else if (l->serving) {
        queue_error(l, res);
    }
    rl_net_release_owner(loop, (PyObject *)l);
}

/* ---------------------------------------------------------------------- */
/* Python methods */

static PyObject *
Listener_start(RlListener *l, PyObject *Py_UNUSED(ignored))
{
    if (l->serving) {
        Py_RETURN_NONE;
    }
    if (rl_loop_check_closed(l->loop) < 0) {
        return NULL;
    }
    l->context = l->context ? l->context : PyContext_CopyCurrent();
    if (l->context == NULL) {
        return NULL;
    }
    l->serving = 1;
    if (l->pop.op.state == RL_OPS_IDLE) {
        l->polled = 0; /* a new serving period: let epoll check the fd */
        int rc = listener_arm(l);
        if (rc < 0) {
            l->serving = 0;
            return rl_raise_errno(rc);
        }
    }
    Py_RETURN_NONE;
}

/* End of an accept pause (call_later). */
static PyObject *
Listener__resume(RlListener *l, PyObject *Py_UNUSED(ignored))
{
    Py_CLEAR(l->retry);
    int rc = listener_rearm(l);
    if (rc < 0) {
        queue_error(l, rc);
    }
    Py_RETURN_NONE;
}

/* Stop accepting.  The caller closes the socket right after (asyncio's
 * _stop_serving does): the cancel reaches the kernel first (flush). */
static PyObject *
Listener_stop(RlListener *l, PyObject *Py_UNUSED(ignored))
{
    l->serving = 0;
    if (l->retry != NULL) {
        PyObject *r = PyObject_CallMethod(l->retry, "cancel", NULL);
        Py_XDECREF(r);
        Py_CLEAR(l->retry);
        if (r == NULL) {
            return NULL;
        }
    }
    if (l->pop.op.state == RL_OPS_ARMED &&
        rl_netop_cancel(l->loop, &l->pop) == 0) {
        rl_net_flush(l->loop);
    }
    Py_RETURN_NONE;
}

static PyObject *
Listener_is_serving(RlListener *l, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(l->serving);
}

static int
Listener_traverse(RlListener *l, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(l));
    Py_VISIT((PyObject *)l->loop);
    Py_VISIT(l->sock);
    Py_VISIT(l->protocol_factory);
    Py_VISIT(l->server);
    Py_VISIT(l->context);
    Py_VISIT(l->retry);
    return 0;
}

static int
Listener_clear(RlListener *l)
{
    Py_CLEAR(l->sock);
    Py_CLEAR(l->protocol_factory);
    Py_CLEAR(l->server);
    Py_CLEAR(l->context);
    Py_CLEAR(l->retry);
    return 0;
}

static void
Listener_dealloc(RlListener *l)
{
    PyTypeObject *tp = Py_TYPE(l);
    PyObject_GC_UnTrack(l);
    if (l->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)l);
    }
    Listener_clear(l);
    Py_CLEAR(l->loop);
    tp->tp_free((PyObject *)l);
    Py_DECREF(tp);
}

static PyMethodDef Listener_methods[] = {
    {"start", (PyCFunction)Listener_start, METH_NOARGS, NULL},
    {"stop", (PyCFunction)Listener_stop, METH_NOARGS, NULL},
    {"_resume", (PyCFunction)Listener__resume, METH_NOARGS, NULL},
    {"is_serving", (PyCFunction)Listener_is_serving, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Listener_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(RlListener, weakreflist),
     READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot Listener_slots[] = {
    {Py_tp_members, Listener_members},
    {Py_tp_dealloc, Listener_dealloc},
    {Py_tp_traverse, Listener_traverse},
    {Py_tp_clear, Listener_clear},
    {Py_tp_methods, Listener_methods},
    {0, NULL},
};

static PyType_Spec Listener_spec = {
    .name = "ringloop._core._Listener",
    .basicsize = sizeof(RlListener),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = Listener_slots,
};

int
rl_listener_init_type(PyObject *module, rl_state *st)
{
    (void)module;
    st->net->ListenerType = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &Listener_spec, NULL);
    return st->net->ListenerType == NULL ? -1 : 0;
}

/* loop._listener(sock, protocol_factory, server): not started yet. */
PyObject *
rl_listener_new(RlLoop *loop, PyObject *const *args, Py_ssize_t nargs)
{
    rl_state *st = loop->st;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError,
                        "_listener(sock, protocol_factory, server)");
        return NULL;
    }
    if (rl_loop_check_closed(loop) < 0) {
        return NULL;
    }
    /* As selectors' _fileobj_to_fd (asyncio's _start_serving goes through
     * it): a bad socket object is a ValueError. */
    PyObject *f = PyObject_CallMethodNoArgs(args[0], st->str_fileno);
    long fd = -1;
    if (f != NULL) {
        PyObject *n = PyNumber_Index(f);
        Py_DECREF(f);
        if (n != NULL) {
            fd = PyLong_AsLong(n);
            Py_DECREF(n);
        }
    }
    if (fd < 0 || fd > INT32_MAX) {
        if (PyErr_Occurred() &&
            !PyErr_ExceptionMatches(PyExc_TypeError) &&
            !PyErr_ExceptionMatches(PyExc_ValueError) &&
            !PyErr_ExceptionMatches(PyExc_AttributeError) &&
            !PyErr_ExceptionMatches(PyExc_OverflowError)) {
            return NULL;
        }
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "Invalid file object: %R", args[0]);
        return NULL;
    }
    RlListener *l = PyObject_GC_New(RlListener, st->net->ListenerType);
    if (l == NULL) {
        return NULL;
    }
    l->loop = (RlLoop *)Py_NewRef((PyObject *)loop);
    l->sock = Py_NewRef(args[0]);
    l->protocol_factory = Py_NewRef(args[1]);
    l->server = args[2] == Py_None ? NULL : Py_NewRef(args[2]);
    l->context = NULL;
    l->retry = NULL;
    l->weakreflist = NULL;
    l->err = 0;
    l->fd = (int)fd;
    l->serving = l->queued = l->err_queued = l->polled = 0;
    rl_netop_init(&l->pop, (PyObject *)l, pop_cb, (int)fd, RL_OP_POLL,
                  NULL);
    PyObject_GC_Track(l);
    return (PyObject *)l;
}
