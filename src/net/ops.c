/* net.c -- networking: module and loop hooks, the rl_netop bookkeeping,
 * helpers the transport code shares, and loop.sock_connect() /
 * loop.sock_accept() as direct CONNECT / ACCEPT ops.
 *
 * The stream transport is in stream.c, the accept side of servers in
 * server.c; the Python part (create_connection, create_server, Server...)
 * in python/ringloop/_net.py. */
#include "net_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include <structmember.h>

/* ---------------------------------------------------------------------- */
/* rl_netop */

static void
held_link(RlLoop *loop, rl_netop *n)
{
    n->prev = NULL;
    n->next = loop->net->held;
    if (n->next != NULL) {
        n->next->prev = n;
    }
    loop->net->held = n;
}

static void
held_unlink(RlLoop *loop, rl_netop *n)
{
    if (n->prev != NULL) {
        n->prev->next = n->next;
    }
    else {
        loop->net->held = n->next;
    }
    if (n->next != NULL) {
        n->next->prev = n->prev;
    }
    n->next = n->prev = NULL;
}

int
rl_netop_submit(RlLoop *loop, rl_netop *n)
{
    if (loop->reactor == NULL) {
        return -ESHUTDOWN; /* the loop is closed */
    }
    int rc = rl_reactor_submit(loop->reactor, &n->op);
    if (rc < 0) {
        return rc;
    }
    if (!n->held) {
        n->held = 1;
        Py_INCREF(n->owner);
        held_link(loop, n);
    }
    return 0;
}

int
rl_netop_cancel(RlLoop *loop, rl_netop *n)
{
    if (loop->reactor == NULL || n->op.state == RL_OPS_IDLE) {
        return -ENOENT;
    }
    return rl_reactor_cancel(loop->reactor, &n->op);
}

void
rl_netop_done(RlLoop *loop, rl_netop *n)
{
    if (n->held) {
        n->held = 0;
        held_unlink(loop, n);
    }
}

int
rl_netop_queue(RlLoop *loop, rl_netop *n, rl_ready_fn fn,
               PyObject *owner_ref)
{
    PyObject *owner = owner_ref;
    assert(owner == n->owner);
    n->queued = 1;
    /* A failed push releases what it was given at once: give it a
     * reference of its own, so that is never the last one here. */
    Py_INCREF(owner);
    if (rl_loop_call_soon_c(loop, fn, owner, NULL) < 0) {
        /* The record is lost: let the op be armed again; the caller
         * reports the error.  owner_ref is dropped from the ready queue
         * when it is the last one. */
        n->queued = 0;
        rl_net_release_owner(loop, owner);
        return -1;
    }
    Py_DECREF(owner); /* the record holds owner_ref */
    return 0;
}

int
rl_net_release_fn(RlLoop *loop, PyObject *a, PyObject *b)
{
    (void)loop;
    Py_XDECREF(a);
    Py_XDECREF(b);
    return 0;
}

void
rl_net_release_owner(RlLoop *loop, PyObject *owner)
{
    if (Py_REFCNT(owner) > 1 || loop->closed) {
        Py_DECREF(owner);
        return;
    }
    /* The last reference: the dealloc may warn (ResourceWarning) or run a
     * finalizer; let the ready queue drop it, outside dispatch. */
    if (rl_loop_call_soon_c(loop, rl_net_release_fn, owner, NULL) < 0) {
        PyErr_WriteUnraisable(owner == NULL ? Py_None : (PyObject *)loop);
    }
}

void
rl_net_flush(RlLoop *loop)
{
    if (loop->reactor != NULL) {
        (void)rl_reactor_flush(loop->reactor);
    }
}

void
rl_net_reap_cancelled(RlLoop *loop)
{
    /* Called from Python code (the ready phase or a coroutine), never from
     * dispatch: the completion callbacks only record results and queue
     * records, so an early dispatch is an early poll, nothing more. */
    if (loop->reactor != NULL) {
        (void)rl_reactor_flush(loop->reactor);
        (void)rl_reactor_dispatch(loop->reactor);
    }
}

/* ---------------------------------------------------------------------- */
/* Calling out to Python */

PyObject *
rl_net_call_method(PyObject *ctx, PyObject *obj, PyObject *name,
                   PyObject *arg)
{
    PyObject *stack[3] = {NULL, obj, arg};
    size_t nargsf = (arg != NULL ? 2 : 1) | PY_VECTORCALL_ARGUMENTS_OFFSET;
    /* Enter ctx unless it is current already (a callback calling back into
     * the transport, e.g. resume_reading() from data_received()). */
    if (ctx != NULL && PyThreadState_Get()->context != ctx) {
        if (PyContext_Enter(ctx) < 0) {
            return NULL;
        }
        PyObject *res = PyObject_VectorcallMethod(name, stack + 1, nargsf,
                                                  NULL);
        PyObject *exc = res == NULL ? rl_err_get_raised() : NULL;
        if (PyContext_Exit(ctx) < 0) {
            Py_XDECREF(exc);
            Py_XDECREF(res);
            return NULL;
        }
        if (exc != NULL) {
            rl_err_set_raised(exc);
        }
        return res;
    }
    return PyObject_VectorcallMethod(name, stack + 1, nargsf, NULL);
}

int
rl_net_exc_is_fatal(void)
{
    return PyErr_ExceptionMatches(PyExc_SystemExit) ||
           PyErr_ExceptionMatches(PyExc_KeyboardInterrupt);
}

int
rl_net_report(RlLoop *loop, const char *msg, PyObject *exc, PyObject *key1,
              PyObject *val1, PyObject *key2, PyObject *val2)
{
    rl_state *st = loop->st;
    PyObject *ctx = PyDict_New();
    PyObject *m = NULL, *res = NULL;
    int rc = 0;
    if (ctx == NULL) {
        goto error;
    }
    m = PyUnicode_FromString(msg);
    if (m == NULL || PyDict_SetItem(ctx, st->str_message, m) < 0) {
        goto error;
    }
    if (exc != NULL && PyDict_SetItem(ctx, st->str_exception, exc) < 0) {
        goto error;
    }
    if (key1 != NULL && val1 != NULL && PyDict_SetItem(ctx, key1, val1) < 0) {
        goto error;
    }
    if (key2 != NULL && val2 != NULL && PyDict_SetItem(ctx, key2, val2) < 0) {
        goto error;
    }
    res = PyObject_CallMethodOneArg((PyObject *)loop,
                                    st->str_call_exception_handler, ctx);
    if (res == NULL) {
        goto error;
    }
    goto done;
error:
    if (rl_net_exc_is_fatal()) {
        rc = -1;
    }
    else {
        PyErr_WriteUnraisable((PyObject *)loop);
    }
done:
    Py_XDECREF(ctx);
    Py_XDECREF(m);
    Py_XDECREF(res);
    return rc;
}

int
rl_net_log(RlLoop *loop, PyObject *level, const char *fmt, PyObject *arg1,
           PyObject *arg2)
{
    (void)loop;
    /* Looked up at each call (cold): tests patch ringloop._net.logger. */
    PyObject *mod = PyImport_ImportModule("ringloop._net");
    PyObject *logger = NULL, *f = NULL, *res = NULL;
    int rc = -1;
    if (mod == NULL) {
        goto done;
    }
    logger = PyObject_GetAttrString(mod, "logger");
    if (logger == NULL) {
        goto done;
    }
    f = PyUnicode_FromString(fmt);
    if (f == NULL) {
        goto done;
    }
    PyObject *stack[4] = {logger, f, arg1, arg2};
    size_t n = 2 + (arg1 != NULL) + (arg1 != NULL && arg2 != NULL);
    res = PyObject_VectorcallMethod(level, stack, n, NULL);
    rc = res == NULL ? -1 : 0;
done:
    Py_XDECREF(mod);
    Py_XDECREF(logger);
    Py_XDECREF(f);
    Py_XDECREF(res);
    return rc;
}

PyObject *
rl_net_oserror(int neg_errno, PyObject *msg)
{
    PyObject *m = msg;
    if (m == NULL) {
        m = PyUnicode_FromString(strerror(-neg_errno));
        if (m == NULL) {
            return NULL;
        }
    }
    else {
        Py_INCREF(m);
    }
    /* OSError(errno, msg) picks the subclass (ConnectionResetError...). */
    PyObject *exc = PyObject_CallFunction(PyExc_OSError, "iO", -neg_errno, m);
    Py_DECREF(m);
    return exc;
}

/* ---------------------------------------------------------------------- */
/* Addresses */

/* 1 and *port; 0: not an int (a service name: resolve); 2: an int out of
 * 0..65535 (nothing raised: only a numeric host makes that an error here,
 * asyncio passes a name to getaddrinfo(), which says gaierror); -1
 * raised. */
static int
port_from_py(PyObject *o, uint16_t *port)
{
    if (!PyLong_Check(o)) {
        return 0;
    }
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
            return -1;
        }
        PyErr_Clear();
        return 2;
    }
    if (v < 0 || v > 65535) {
        return 2;
    }
    *port = (uint16_t)v;
    return 1;
}

/* The port was out of range (port_from_py() said 2) and the host is
 * numeric: what the socket module's connect() raises.  -1. */
static int
port_range_error(void)
{
    PyErr_SetString(PyExc_OverflowError, "connect(): port must be 0-65535.");
    return -1;
}

/* A numeric host as a C string in buf; 0 if it is not one we can parse
 * without a resolver. */
static int
host_from_py(PyObject *o, char *buf, size_t buflen)
{
    const char *s;
    Py_ssize_t n;
    if (PyUnicode_Check(o)) {
        s = PyUnicode_AsUTF8AndSize(o, &n);
        if (s == NULL) {
            return -1;
        }
    }
    else if (PyBytes_Check(o)) {
        s = PyBytes_AS_STRING(o);
        n = PyBytes_GET_SIZE(o);
    }
    else {
        return 0;
    }
    if (n <= 0 || (size_t)n >= buflen || memchr(s, '%', (size_t)n) ||
        memchr(s, 0, (size_t)n)) {
        return 0;
    }
    memcpy(buf, s, (size_t)n);
    buf[n] = 0;
    return 1;
}

int
rl_sockaddr_from_py(int family, PyObject *address,
                    struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    if (family == AF_UNIX) {
        /* As the socket module: str is encoded with the file system
         * encoding (an abstract name has NULs: no FSConverter), a
         * bytes-like object is taken as is, a path-like is fspath()ed. */
        PyObject *path = NULL;
        PyObject *p = Py_NewRef(address);
        if (!PyUnicode_Check(p) && !PyBytes_Check(p) &&
            !PyByteArray_Check(p)) {
            Py_SETREF(p, PyOS_FSPath(p));
            if (p == NULL) {
                PyErr_Clear();
                return 0; /* let the Python path complain */
            }
        }
        path = PyUnicode_Check(p) ? PyUnicode_EncodeFSDefault(p)
                                  : PyBytes_FromObject(p);
        Py_DECREF(p);
        if (path == NULL) {
            return -1;
        }
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        Py_ssize_t n = PyBytes_GET_SIZE(path);
        if ((size_t)n > sizeof(un->sun_path)) {
            Py_DECREF(path);
            PyErr_SetString(PyExc_OSError, "AF_UNIX path too long");
            return -1;
        }
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, PyBytes_AS_STRING(path), (size_t)n);
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
        /* A filesystem path gets its NUL (as the socket module does). */
        if (n > 0 && un->sun_path[0] != 0 &&
            (size_t)n < sizeof(un->sun_path)) {
            (*len)++;
        }
        Py_DECREF(path);
        return 1;
    }
    if (family != AF_INET && family != AF_INET6) {
        return 0;
    }
    if (!PyTuple_Check(address) || PyTuple_GET_SIZE(address) < 2) {
        return 0;
    }
    char host[INET6_ADDRSTRLEN + 1];
    uint16_t port = 0;
    int rc = host_from_py(PyTuple_GET_ITEM(address, 0), host, sizeof(host));
    if (rc <= 0) {
        return rc;
    }
    int prc = port_from_py(PyTuple_GET_ITEM(address, 1), &port);
    if (prc <= 0) {
        return prc;
    }
    if (family == AF_INET) {
        if (PyTuple_GET_SIZE(address) != 2) {
            return 0;
        }
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        if (inet_pton(AF_INET, host, &in->sin_addr) != 1) {
            return 0;
        }
        if (prc == 2) {
            return port_range_error();
        }
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        *len = sizeof(*in);
        return 1;
    }
    if (PyTuple_GET_SIZE(address) > 4) {
        return 0;
    }
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1) {
        return 0;
    }
    if (prc == 2) {
        return port_range_error();
    }
    unsigned long flowinfo = 0, scope_id = 0;
    if (PyTuple_GET_SIZE(address) > 2) {
        flowinfo = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(address, 2));
        if (flowinfo == (unsigned long)-1 && PyErr_Occurred()) {
            return -1;
        }
        if (flowinfo > 0xfffff) {
            PyErr_SetString(PyExc_OverflowError,
                            "connect(): flowinfo must be 0-1048575.");
            return -1;
        }
    }
    if (PyTuple_GET_SIZE(address) > 3) {
        scope_id = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(address, 3));
        if (scope_id == (unsigned long)-1 && PyErr_Occurred()) {
            return -1;
        }
    }
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    in6->sin6_flowinfo = htonl((uint32_t)flowinfo);
    in6->sin6_scope_id = (uint32_t)scope_id;
    *len = sizeof(*in6);
    return 1;
}

PyObject *
rl_sockaddr_to_py(const struct sockaddr *sa, socklen_t len)
{
    char host[INET6_ADDRSTRLEN];
    if (len == 0) {
        Py_RETURN_NONE;
    }
    switch (sa->sa_family) {
    case AF_INET: {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        return Py_BuildValue("(si)", host, (int)ntohs(in->sin_port));
    }
    case AF_INET6: {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        return Py_BuildValue("(siII)", host, (int)ntohs(in6->sin6_port),
                             (unsigned int)ntohl(in6->sin6_flowinfo),
                             (unsigned int)in6->sin6_scope_id);
    }
    case AF_UNIX: {
        /* As the socket module: an abstract name is bytes, a path str
         * (file system encoding), an unnamed socket ''. */
        const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        if (len <= off) {
            return PyUnicode_FromString("");
        }
        size_t n = len - off;
        if (un->sun_path[0] == 0) {
            return PyBytes_FromStringAndSize(un->sun_path, (Py_ssize_t)n);
        }
        n = strnlen(un->sun_path, n);
        return PyUnicode_DecodeFSDefaultAndSize(un->sun_path, (Py_ssize_t)n);
    }
    default:
        Py_RETURN_NONE;
    }
}

/* ---------------------------------------------------------------------- */
/* fd -> transport */

int
rl_net_fdmap_set(RlLoop *loop, int fd, RlStream *t)
{
    rl_loop_net *ln = loop->net;
    if (fd < 0) {
        return 0;
    }
    if ((size_t)fd >= ln->nfdmap) {
        size_t n = ln->nfdmap ? ln->nfdmap : 64;
        while (n <= (size_t)fd) {
            n *= 2;
        }
        RlStream **m = PyMem_Realloc(ln->fdmap, n * sizeof(*m));
        if (m == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memset(m + ln->nfdmap, 0, (n - ln->nfdmap) * sizeof(*m));
        ln->fdmap = m;
        ln->nfdmap = n;
    }
    ln->fdmap[fd] = t;
    return 0;
}

void
rl_net_fdmap_clear(RlLoop *loop, int fd, RlStream *t)
{
    rl_loop_net *ln = loop->net;
    if (fd >= 0 && (size_t)fd < ln->nfdmap && ln->fdmap[fd] == t) {
        ln->fdmap[fd] = NULL;
    }
}

int
rl_net_check_fd_free(RlLoop *loop, int fd)
{
    rl_loop_net *ln = loop->net;
    if (fd < 0 || (size_t)fd >= ln->nfdmap || ln->fdmap[fd] == NULL) {
        return 0;
    }
    RlStream *t = ln->fdmap[fd];
    if (!rl_stream_is_live(t)) {
        return 0;
    }
    PyErr_Format(PyExc_RuntimeError,
                 "File descriptor %d is used by transport %R", fd,
                 (PyObject *)t);
    return -1;
}

/* ---------------------------------------------------------------------- */
/* Loop methods */

static PyObject *
Loop__make_socket_transport(RlLoop *self, PyObject *const *args,
                            Py_ssize_t nargs, PyObject *kwnames)
{
    return rl_stream_make_transport(self, args, nargs, kwnames);
}

static PyObject *
Loop__rl_make_pipe_transport(RlLoop *self, PyObject *const *args,
                             Py_ssize_t nargs)
{
    return rl_pipe_make_transport(self, args, nargs);
}

static PyObject *
Loop__listener(RlLoop *self, PyObject *const *args, Py_ssize_t nargs)
{
    return rl_listener_new(self, args, nargs);
}

static PyObject *
Loop__net_counters(RlLoop *self, PyObject *Py_UNUSED(ignored))
{
    Py_ssize_t held = 0;
    for (rl_netop *n = self->net->held; n != NULL; n = n->next) {
        held++;
    }
    return Py_BuildValue("{snsn}", "ops_held", held, "transports",
                         (Py_ssize_t)self->net->ntransports);
}

/* Ops the loop leaked at close because the reactor could not take them
 * back from the kernel (see net_loop_after_reactor_destroy). */
static PyObject *
Loop__net_leaked(RlLoop *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSize_t(self->net->nleaked);
}

static PyMethodDef net_loop_methods[] = {
    {"_make_socket_transport", RL_CFUNC(Loop__make_socket_transport),
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"_listener", RL_CFUNC(Loop__listener), METH_FASTCALL, NULL},
    {"_rl_make_pipe_transport", RL_CFUNC(Loop__rl_make_pipe_transport),
     METH_FASTCALL, NULL},
    {"_net_counters", (PyCFunction)Loop__net_counters, METH_NOARGS, NULL},
    {"_net_leaked", (PyCFunction)Loop__net_leaked, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

/* ---------------------------------------------------------------------- */
/* module and loop hooks */

static PyObject *
import_attr(const char *modname, const char *attr)
{
    PyObject *m = PyImport_ImportModule(modname);
    if (m == NULL) {
        return NULL;
    }
    PyObject *v = PyObject_GetAttrString(m, attr);
    Py_DECREF(m);
    return v;
}

static int
net_module_init(PyObject *module, rl_state *st)
{
    rl_net_state *ns = st->net = PyMem_Calloc(1, sizeof(*st->net));
    if (ns == NULL) {
        PyErr_NoMemory();
        return -1;
    }
#define INTERN(field, text)                                                   \
    do {                                                                      \
        ns->field = PyUnicode_InternFromString(text);                         \
        if (ns->field == NULL) {                                              \
            return -1;                                                        \
        }                                                                     \
    } while (0)
    INTERN(str_connection_made, "connection_made");
    INTERN(str_connection_lost, "connection_lost");
    INTERN(str_data_received, "data_received");
    INTERN(str_eof_received, "eof_received");
    INTERN(str_get_buffer, "get_buffer");
    INTERN(str_buffer_updated, "buffer_updated");
    INTERN(str_pause_writing, "pause_writing");
    INTERN(str_resume_writing, "resume_writing");
    INTERN(str_attach, "_attach");
    INTERN(str_detach, "_detach");
    INTERN(str_close, "close");
    INTERN(str_add_done_callback, "add_done_callback");
    INTERN(str_sock_connect_slow, "_sock_connect_slow");
    INTERN(str_call_later, "call_later");
    INTERN(str_warning, "warning");
    INTERN(str_debug, "debug");
    INTERN(str_transport, "transport");
    INTERN(str_protocol, "protocol");
    INTERN(str_socket, "socket");
    INTERN(str_sockname, "sockname");
    INTERN(str_peername, "peername");
    INTERN(str_gettimeout, "gettimeout");
    INTERN(str_recv, "recv");
    INTERN(str_recv_into, "recv_into");
    INTERN(str_recvfrom, "recvfrom");
    INTERN(str_recvfrom_into, "recvfrom_into");
    INTERN(str_send, "send");
    INTERN(str_sendto, "sendto");
    INTERN(str_family, "family");
    INTERN(str_throw, "throw");
    INTERN(str_datagram_received, "datagram_received");
    INTERN(str_error_received, "error_received");
#undef INTERN
    ns->socket_socket = import_attr("socket", "socket");
    if (ns->socket_socket == NULL) {
        return -1;
    }
    ns->aio_TransportSocket = import_attr("asyncio.trsock", "TransportSocket");
    if (ns->aio_TransportSocket == NULL) {
        return -1;
    }
    ns->aio_BufferedProtocol = import_attr("asyncio", "BufferedProtocol");
    if (ns->aio_BufferedProtocol == NULL) {
        return -1;
    }
    ns->aio_logger = import_attr("asyncio.log", "logger");
    if (ns->aio_logger == NULL) {
        return -1;
    }
    ns->socket__socket = import_attr("_socket", "socket");
    if (ns->socket__socket == NULL) {
        return -1;
    }
    ns->ssl_SSLSocket = import_attr("ssl", "SSLSocket");
    if (ns->ssl_SSLSocket == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_ImportError)) {
            return -1;
        }
        PyErr_Clear();
        ns->ssl_SSLSocket = Py_NewRef(Py_None);
    }
    if (rl_stream_init_type(module, st) < 0) {
        return -1;
    }
    if (rl_listener_init_type(module, st) < 0) {
        return -1;
    }
    return 0;
}

static int
net_module_traverse(rl_state *st, visitproc visit, void *arg)
{
    rl_net_state *ns = st->net;
    if (ns == NULL) {
        return 0;
    }
    Py_VISIT(ns->StreamType);
    Py_VISIT(ns->ReadPipeType);
    Py_VISIT(ns->WritePipeType);
    Py_VISIT(ns->ListenerType);
    Py_VISIT(ns->socket_socket);
    Py_VISIT(ns->aio_TransportSocket);
    Py_VISIT(ns->aio_BufferedProtocol);
    Py_VISIT(ns->aio_logger);
    Py_VISIT(ns->aio_FlowControlMixin);
    Py_VISIT(ns->ssl_SSLSocket);
    Py_VISIT(ns->str_connection_made);
    Py_VISIT(ns->str_connection_lost);
    Py_VISIT(ns->str_data_received);
    Py_VISIT(ns->str_eof_received);
    Py_VISIT(ns->str_get_buffer);
    Py_VISIT(ns->str_buffer_updated);
    Py_VISIT(ns->str_pause_writing);
    Py_VISIT(ns->str_resume_writing);
    Py_VISIT(ns->str_attach);
    Py_VISIT(ns->str_detach);
    Py_VISIT(ns->str_close);
    Py_VISIT(ns->str_add_done_callback);
    Py_VISIT(ns->str_sock_connect_slow);
    Py_VISIT(ns->str_call_later);
    Py_VISIT(ns->str_warning);
    Py_VISIT(ns->str_debug);
    Py_VISIT(ns->str_transport);
    Py_VISIT(ns->str_protocol);
    Py_VISIT(ns->str_socket);
    Py_VISIT(ns->str_sockname);
    Py_VISIT(ns->str_peername);
    Py_VISIT(ns->str_gettimeout);
    Py_VISIT(ns->socket__socket);
    Py_VISIT(ns->aio_BaseTransport_extra);
    Py_VISIT(ns->str_recv);
    Py_VISIT(ns->str_recv_into);
    Py_VISIT(ns->str_recvfrom);
    Py_VISIT(ns->str_recvfrom_into);
    Py_VISIT(ns->str_send);
    Py_VISIT(ns->str_sendto);
    Py_VISIT(ns->str_family);
    Py_VISIT(ns->str_throw);
    Py_VISIT(ns->str_datagram_received);
    Py_VISIT(ns->str_error_received);
    return 0;
}

static void
net_module_clear(rl_state *st)
{
    rl_net_state *ns = st->net;
    if (ns == NULL) {
        return;
    }
    Py_CLEAR(ns->StreamType);
    Py_CLEAR(ns->ReadPipeType);
    Py_CLEAR(ns->WritePipeType);
    Py_CLEAR(ns->ListenerType);
    Py_CLEAR(ns->socket_socket);
    Py_CLEAR(ns->aio_TransportSocket);
    Py_CLEAR(ns->aio_BufferedProtocol);
    Py_CLEAR(ns->aio_logger);
    Py_CLEAR(ns->aio_FlowControlMixin);
    Py_CLEAR(ns->ssl_SSLSocket);
    Py_CLEAR(ns->str_connection_made);
    Py_CLEAR(ns->str_connection_lost);
    Py_CLEAR(ns->str_data_received);
    Py_CLEAR(ns->str_eof_received);
    Py_CLEAR(ns->str_get_buffer);
    Py_CLEAR(ns->str_buffer_updated);
    Py_CLEAR(ns->str_pause_writing);
    Py_CLEAR(ns->str_resume_writing);
    Py_CLEAR(ns->str_attach);
    Py_CLEAR(ns->str_detach);
    Py_CLEAR(ns->str_close);
    Py_CLEAR(ns->str_add_done_callback);
    Py_CLEAR(ns->str_sock_connect_slow);
    Py_CLEAR(ns->str_call_later);
    Py_CLEAR(ns->str_warning);
    Py_CLEAR(ns->str_debug);
    Py_CLEAR(ns->str_transport);
    Py_CLEAR(ns->str_protocol);
    Py_CLEAR(ns->str_socket);
    Py_CLEAR(ns->str_sockname);
    Py_CLEAR(ns->str_peername);
    Py_CLEAR(ns->str_gettimeout);
    Py_CLEAR(ns->socket__socket);
    Py_CLEAR(ns->aio_BaseTransport_extra);
    Py_CLEAR(ns->str_recv);
    Py_CLEAR(ns->str_recv_into);
    Py_CLEAR(ns->str_recvfrom);
    Py_CLEAR(ns->str_recvfrom_into);
    Py_CLEAR(ns->str_send);
    Py_CLEAR(ns->str_sendto);
    Py_CLEAR(ns->str_family);
    Py_CLEAR(ns->str_throw);
    Py_CLEAR(ns->str_datagram_received);
    Py_CLEAR(ns->str_error_received);
}

static void
net_module_free(rl_state *st)
{
    PyMem_Free(st->net);
    st->net = NULL;
}

static int
net_loop_new(RlLoop *loop)
{
    loop->net = PyMem_Calloc(1, sizeof(*loop->net));
    if (loop->net == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void
net_loop_free(RlLoop *loop)
{
    PyMem_Free(loop->net);
    loop->net = NULL;
}

static int
net_loop_traverse(RlLoop *loop, visitproc visit, void *arg)
{
    if (loop->net == NULL) {
        return 0;
    }
    /* Each held op owns one reference to its owner: the kernel (that is,
     * the loop) keeps the owner alive. */
    for (rl_netop *n = loop->net->held; n != NULL; n = n->next) {
        Py_VISIT(n->owner);
    }
    return 0;
}

static void
net_loop_after_reactor_destroy(RlLoop *loop)
{
    /* No completion will come any more.  An op the reactor made IDLE is
     * ours again: release what it pinned, then its owner (whose dealloc
     * may run Python code, so the list is taken apart first).  An op left
     * ARMED/CANCELLING is one the kernel may still use (reactor.h,
     * destroy: a ring that could not be drained, e.g. a DEFER_TASKRUN ring
     * closed from another thread than its own): it keeps its buffers and
     * the owner reference it holds, deliberately leaked, so that nothing
     * it points to is ever freed (nor cleared by the GC: the reference is
     * counted but visited by nobody once the op leaves the held list). */
    PyObject *owners = NULL;
    size_t n = 0;
    for (rl_netop *p = loop->net->held; p != NULL; p = p->next) {
        n++;
    }
    if (n > 0) {
        owners = PyList_New((Py_ssize_t)n);
        if (owners == NULL) {
            PyErr_Clear(); /* then each owner is dropped on the spot */
        }
    }
    Py_ssize_t i = 0;
    while (loop->net->held != NULL) {
        rl_netop *p = loop->net->held;
        held_unlink(loop, p);
        p->held = 0;
        if (p->op.state != RL_OPS_IDLE) {
            loop->net->nleaked++; /* p->owner's reference stays taken */
            continue;
        }
        if (p->forget != NULL) {
            p->forget(p);
        }
        if (owners != NULL) {
            PyList_SET_ITEM(owners, i++, p->owner); /* steals the op's ref */
        }
        else {
            Py_DECREF(p->owner);
        }
    }
    PyMem_Free(loop->net->fdmap);
    loop->net->fdmap = NULL;
    loop->net->nfdmap = 0;
    PyMem_Free(loop->net->scratch);
    loop->net->scratch = NULL;
    PyMem_Free(loop->net->pipe_scratch);
    loop->net->pipe_scratch = NULL;
    if (owners != NULL) {
        /* Slots of leaked ops stay NULL: list_dealloc skips them. */
        Py_DECREF(owners);
    }
}

const rl_loop_part rl_net_part = {
    .name = "net",
    .methods = net_loop_methods,
    .module_init = net_module_init,
    .module_traverse = net_module_traverse,
    .module_clear = net_module_clear,
    .module_free = net_module_free,
    .loop_new = net_loop_new,
    .loop_traverse = net_loop_traverse,
    .loop_after_reactor_destroy = net_loop_after_reactor_destroy,
    .loop_free = net_loop_free,
    .check_fd_free = rl_net_check_fd_free,
};
