/* sockops.c -- loop.sock_recv, sock_recv_into, sock_recvfrom,
 * sock_recvfrom_into, sock_sendall and sock_sendto as direct reactor ops.
 *
 * Each call returns a request object (RlSockReq) that is its own awaitable:
 * a coroutine-like object (send/throw/close/__await__), so it behaves like
 * asyncio's `async def sock_*`: nothing happens until it is first awaited or
 * stepped by a Task, every check raises at that point, asyncio.iscoroutine()
 * is true and create_task() accepts it.
 *
 * First step: the checks asyncio makes (SSL socket, non-blocking socket in
 * debug mode).  Sends then try the syscall inline (MSG_DONTWAIT) and only
 * what would block gets a Future and an op (SEND, SENDMSG); receives arm
 * their op (RECV, RECVMSG) directly -- measured cheaper than asyncio's
 * inline first attempt, which RINGLOOP_SOCK_RECV_INLINE=1 restores.  The
 * request then yields the Future; the op's completion resolves it from C.
 *
 * Native path: the socket is exactly socket.socket or _socket.socket, and
 * its arguments have the plain forms (int sizes, writable/readable
 * contiguous buffers, numeric addresses of AF_INET/AF_INET6/AF_UNIX).
 * Generic path, for everything else (subclasses that may override recv,
 * mocks, odd address forms, other families): the socket's own Python
 * method is called, as asyncio does, and a POLL op stands in for the
 * selector; the retry runs in the ready phase (it is user code).
 *
 * Ordering and cancellation: per fd and direction, requests form a FIFO
 * queue (rl_sockfd); only the head has an op.  A cancelled request whose op
 * is in flight is cancelled in the reactor and stays the head (a zombie)
 * until the op's final completion, because the kernel may still deliver
 * bytes or write into the buffer.  Bytes a receive obtained after its
 * awaiter was gone (the op completed before the cancel reached it) are not
 * lost: they are kept as the fd's stash and served to the next receive on
 * the same socket.  The buffers an op uses (the bytes being filled, the
 * caller's buffer for *_into, the data being sent) stay pinned until the
 * op's final completion, also when the loop closes. */
#include "net_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum {
    K_RECV = 0,
    K_RECV_INTO,
    K_RECVFROM,
    K_RECVFROM_INTO,
    K_ACCEPT, /* the reading direction, no stash */
    K_SENDALL,
    K_SENDTO,
    K_CONNECT, /* the writing direction */
};
#define K_IS_SEND(k) ((k) >= K_SENDALL)
#define K_IS_RECV(k) ((k) <= K_RECVFROM_INTO) /* data: the stash applies */
#define K_IS_CONN(k) ((k) == K_ACCEPT || (k) == K_CONNECT)
#define K_DIR(k) (K_IS_SEND(k) ? 1 : 0)

static const char *const kind_names[] = {
    "sock_recv",    "sock_recv_into", "sock_recvfrom", "sock_recvfrom_into",
    "sock_accept",  "sock_sendall",   "sock_sendto",   "sock_connect",
};

/* The awaitable's state. */
enum {
    AW_INIT = 0, /* not stepped yet */
    AW_WAITING,  /* suspended on fut (through fut_iter) */
    AW_DONE,     /* returned, raised, or closed */
};

/* The request's place in its fd queue. */
enum {
    Q_NONE = 0, /* not queued (not started, inline, or finished) */
    Q_QUEUED,   /* behind the head */
    Q_HEAD,     /* may have an op in the reactor */
    Q_ZOMBIE,   /* head, abandoned, op still in flight */
};

struct RlSockReq {
    PyObject_HEAD
    rl_netop nop;        /* in the reactor while armed (holds a reference
                          * to the request, net.h) */
    RlLoop *loop;        /* strong */
    PyObject *sock;      /* strong */
    PyObject *arg;       /* n, buf or data as given */
    PyObject *arg2;      /* sendto: address; recvfrom_into: nbytes */
    PyObject *fut;       /* strong, from arming on */
    PyObject *fut_iter;  /* fut.__await__() while suspended */
    PyObject *buf;       /* recv/recvfrom: the bytes being filled; generic
                          * sendall: a memoryview of the data */
    Py_buffer view;      /* *_into target, sendall/sendto data (pinned) */
    struct msghdr msg;   /* RECVMSG / SENDMSG */
    struct iovec iov;
    struct sockaddr_storage ss;
    Py_ssize_t n;   /* bytes wanted / to send */
    Py_ssize_t pos; /* sendall: bytes sent so far */
    RlSockReq *qnext, *qprev; /* fd queue */
    RlSockReq *lnext, *lprev; /* loop->sock->reqs */
    int fd;
    int family;
    int type, proto;     /* sock_accept: of the new socket */
    socklen_t sslen;     /* sock_connect/sock_accept: of ss */
    int32_t res;         /* sock_connect/sock_accept: the completion's */
    uint8_t kind;
    uint8_t aw;
    uint8_t qs;
    uint8_t native;
    uint8_t has_view;
    uint8_t abandoned; /* the awaiter is gone: nobody takes a result */
    uint8_t orphaned;  /* its socket was closed under it: the awaiter
                        * stays pending, as asyncio's (see
                        * sock_loop_before_wait) */
    uint8_t started;   /* the first attempt was made */
    uint8_t prepared;  /* sock_connect/sock_accept: checked at creation */
    uint8_t blocking;  /* sock_accept: the fd is in blocking mode, so no
                        * inline accept4() (it would block the loop) */
    /* A receive's outcome handed to fut (the result, or the exception
     * instance) until the awaiter takes it: if it leaves instead (a Task
     * cancelled between the completion and its wake-up), the bytes go to
     * the stash, never lost (issue 9, defect 6). */
    PyObject *unclaimed;
};

#define ST(loop) ((loop)->st->net)

/* ---------------------------------------------------------------------- */
/* small helpers */

PyObject *
rl_sock_errno_exc(int neg_errno)
{
    rl_raise_errno(neg_errno);
    return rl_err_get_raised();
}

int
rl_sock_is_native(rl_state *st, PyObject *sock)
{
    PyObject *tp = (PyObject *)Py_TYPE(sock);
    return tp == st->net->socket_socket || tp == st->net->socket__socket;
}

/* sock.fileno() as an int (-1 for a closed socket). */
static int
sock_fileno(RlLoop *loop, PyObject *sock, int *fd)
{
    PyObject *r = PyObject_CallMethodNoArgs(sock, loop->st->str_fileno);
    if (r == NULL) {
        return -1;
    }
    long v = PyLong_AsLong(r);
    Py_DECREF(r);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (v < -1 || v > INT32_MAX) {
        PyErr_Format(PyExc_ValueError, "Invalid file descriptor: %ld", v);
        return -1;
    }
    *fd = (int)v;
    return 0;
}

/* The exception to raise is BlockingIOError or InterruptedError: asyncio
 * then waits for the fd instead. */
static int
err_is_would_block(void)
{
    return PyErr_ExceptionMatches(PyExc_BlockingIOError) ||
           PyErr_ExceptionMatches(PyExc_InterruptedError);
}

rl_sockfd *
rl_sock_fd(RlLoop *loop, int fd)
{
    rl_loop_sock *ls = loop->sock;
    if (fd < 0) {
        PyErr_SetString(PyExc_ValueError, "negative file descriptor");
        return NULL;
    }
    if ((size_t)fd >= ls->nfds) {
        size_t n = ls->nfds ? ls->nfds : 64;
        while (n <= (size_t)fd) {
            n *= 2;
        }
        rl_sockfd *nf = PyMem_Realloc(ls->fds, n * sizeof(rl_sockfd));
        if (nf == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        memset(nf + ls->nfds, 0, (n - ls->nfds) * sizeof(rl_sockfd));
        ls->fds = nf;
        ls->nfds = n;
    }
    return &ls->fds[fd];
}

static inline rl_sockfd *
fd_peek(RlLoop *loop, int fd)
{
    if (fd < 0 || (size_t)fd >= loop->sock->nfds) {
        return NULL;
    }
    return &loop->sock->fds[fd];
}

int
rl_sock_check_fd_free(RlLoop *loop, int fd)
{
    rl_sockfd *f = fd_peek(loop, fd);
    if (f != NULL && f->dgram != NULL) {
        /* A datagram transport that is closing no longer owns it
         * (asyncio: transport.is_closing()). */
        PyObject *tr = (PyObject *)f->dgram;
        PyObject *closing = PyObject_CallMethod(tr, "is_closing", NULL);
        if (closing == NULL) {
            return -1;
        }
        int c = PyObject_IsTrue(closing);
        Py_DECREF(closing);
        if (c < 0) {
            return -1;
        }
        if (!c) {
            PyErr_Format(PyExc_RuntimeError,
                         "File descriptor %d is used by transport %R", fd,
                         tr);
            return -1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* the stash (bytes a receive got after its awaiter had gone) */

static void
stash_clear(RlLoop *loop, rl_sockfd *f)
{
    if (f->stash_data != NULL) {
        loop->sock->nstash--;
    }
    Py_CLEAR(f->stash_data);
    Py_CLEAR(f->stash_addr);
    Py_CLEAR(f->stash_owner);
    f->stash_owner_id = NULL;
}

/* Keep data (bytes, or an exception instance) for the next receive on
 * req's socket.  `front`: the data came before what is stashed already (a
 * result the awaiter was given but never took, see stash_unclaimed()). */
static void
stash_put(RlSockReq *req, PyObject *data, PyObject *addr, int front)
{
    RlLoop *loop = req->loop;
    rl_sockfd *f = rl_sock_fd(loop, req->fd);
    if (f == NULL) {
        PyErr_WriteUnraisable((PyObject *)req);
        return;
    }
    if (f->stash_data != NULL) {
        /* Two receives abandoned back to back both got data: join them
         * (a stream) -- for datagrams the second is kept separately only
         * in order, which one slot cannot do; keep the first. */
        if (PyBytes_Check(f->stash_data) && PyBytes_Check(data) &&
            f->stash_owner_id == (void *)req->sock) {
            PyObject *joined = PyBytes_FromStringAndSize(NULL, 0);
            if (joined != NULL) {
                PyBytes_Concat(&joined, front ? data : f->stash_data);
            }
            if (joined != NULL) {
                PyBytes_Concat(&joined, front ? f->stash_data : data);
            }
            if (joined == NULL) {
                PyErr_WriteUnraisable((PyObject *)req);
                return;
            }
            Py_SETREF(f->stash_data, joined);
        }
        return;
    }
    PyObject *wr = PyWeakref_NewRef(req->sock, NULL);
    if (wr == NULL) {
        PyErr_Clear(); /* _socket.socket has no weak references */
    }
    f->stash_data = Py_NewRef(data);
    f->stash_addr = Py_XNewRef(addr);
    f->stash_owner = wr;
    f->stash_owner_id = (void *)req->sock;
    loop->sock->nstash++;
}

/* The fd's stash if it belongs to sock (a stash of a socket since closed,
 * whose fd number was reused, is dropped). */
static rl_sockfd *
stash_get(RlLoop *loop, PyObject *sock, int fd)
{
    if (loop->sock->nstash == 0) {
        return NULL;
    }
    rl_sockfd *f = fd_peek(loop, fd);
    if (f == NULL || f->stash_data == NULL) {
        return NULL;
    }
    int mine = f->stash_owner_id == (void *)sock;
    if (mine && f->stash_owner != NULL) {
        PyObject *o = NULL;
#if RL_PY313
        if (PyWeakref_GetRef(f->stash_owner, &o) < 0) {
            PyErr_Clear();
        }
#else
        o = Py_XNewRef(PyWeakref_GetObject(f->stash_owner));
#endif
        mine = o == sock;
        Py_XDECREF(o);
    }
    if (!mine) {
        stash_clear(loop, f);
        return NULL;
    }
    return f;
}

static int
sock_is_stream(int fd)
{
    int type = 0;
    socklen_t len = sizeof(type);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
        return 1;
    }
    return type == SOCK_STREAM;
}

/* Serve a receive from the stash: 1 and *result, or -1 (the stashed
 * exception, or an error).  The stash is consumed as recv(2) would consume
 * the socket: a stream keeps what did not fit, a datagram is truncated. */
static int
stash_serve(RlSockReq *req, rl_sockfd *f, PyObject **result)
{
    RlLoop *loop = req->loop;
    PyObject *data = Py_NewRef(f->stash_data);
    PyObject *addr = Py_XNewRef(f->stash_addr);
    PyObject *rest = NULL, *res = NULL;
    stash_clear(loop, f);
    if (!PyBytes_Check(data)) {
        /* A stashed exception: raise it as the syscall would have. */
        PyErr_SetObject((PyObject *)Py_TYPE(data), data);
        Py_DECREF(data);
        Py_XDECREF(addr);
        return -1;
    }
    Py_ssize_t have = PyBytes_GET_SIZE(data);
    Py_ssize_t take = have < req->n ? have : req->n;
    if (take < have && sock_is_stream(req->fd)) {
        rest = PyBytes_FromStringAndSize(PyBytes_AS_STRING(data) + take,
                                         have - take);
        if (rest == NULL) {
            goto error;
        }
    }
    if (addr == NULL && (req->kind == K_RECVFROM ||
                         req->kind == K_RECVFROM_INTO)) {
        /* The abandoned receive did not ask for the address. */
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        memset(&ss, 0, sizeof(ss));
        if (sock_is_stream(req->fd) ||
            getpeername(req->fd, (struct sockaddr *)&ss, &sl) != 0) {
            sl = 0;
        }
        addr = rl_sockaddr_build((struct sockaddr *)&ss, sl);
        if (addr == NULL) {
            goto error;
        }
    }
    switch (req->kind) {
    case K_RECV:
    case K_RECVFROM: {
        PyObject *b =
            take == have ? Py_NewRef(data)
                         : PyBytes_FromStringAndSize(PyBytes_AS_STRING(data),
                                                     take);
        if (b == NULL) {
            goto error;
        }
        if (req->kind == K_RECV) {
            res = b;
        }
        else {
            res = PyTuple_Pack(2, b, addr);
            Py_DECREF(b);
        }
        break;
    }
    case K_RECV_INTO:
    case K_RECVFROM_INTO:
        memcpy(req->view.buf, PyBytes_AS_STRING(data), (size_t)take);
        if (req->kind == K_RECV_INTO) {
            res = PyLong_FromSsize_t(take);
        }
        else {
            res = Py_BuildValue("nO", take, addr);
        }
        break;
    }
    if (res == NULL) {
        goto error;
    }
    if (rest != NULL) {
        stash_put(req, rest, NULL, 0);
        Py_DECREF(rest);
    }
    Py_DECREF(data);
    Py_XDECREF(addr);
    *result = res;
    return 1;

error:
    Py_DECREF(data);
    Py_XDECREF(addr);
    Py_XDECREF(rest);
    return -1;
}

/* ---------------------------------------------------------------------- */
/* queues */

static void
loop_list_add(RlSockReq *req)
{
    rl_loop_sock *ls = req->loop->sock;
    Py_INCREF(req); /* the loop's reference, while queued */
    req->lprev = NULL;
    req->lnext = ls->reqs;
    if (ls->reqs != NULL) {
        ls->reqs->lprev = req;
    }
    else {
        req->loop->before_wait_wanted++; /* sock_loop_before_wait */
    }
    ls->reqs = req;
}

/* Drops the loop's reference: req may be gone on return. */
static void
loop_list_del(RlSockReq *req)
{
    rl_loop_sock *ls = req->loop->sock;
    if (req->lprev != NULL) {
        req->lprev->lnext = req->lnext;
    }
    else {
        ls->reqs = req->lnext;
        if (ls->reqs == NULL) {
            req->loop->before_wait_wanted--;
        }
    }
    if (req->lnext != NULL) {
        req->lnext->lprev = req->lprev;
    }
    req->lnext = req->lprev = NULL;
    Py_DECREF(req);
}

static void
queue_unlink(rl_sockfd *f, RlSockReq *req)
{
    int d = K_DIR(req->kind);
    if (req->qprev != NULL) {
        req->qprev->qnext = req->qnext;
    }
    else {
        f->head[d] = req->qnext;
    }
    if (req->qnext != NULL) {
        req->qnext->qprev = req->qprev;
    }
    else {
        f->tail[d] = req->qprev;
    }
    req->qnext = req->qprev = NULL;
    req->qs = Q_NONE;
}

static void
release_view(RlSockReq *req)
{
    if (req->has_view) {
        req->has_view = 0;
        PyBuffer_Release(&req->view);
    }
}

static int start_queued_fn(RlLoop *loop, PyObject *a, PyObject *b);
static void req_abandon(RlSockReq *req);

/* The head is done with the kernel: take it out of its queue, unpin its
 * buffers, let the next request of the queue start (in the ready phase:
 * its first attempt may be user code), drop the loop's reference. */
static void
finish_head(RlSockReq *req)
{
    RlLoop *loop = req->loop;
    rl_sockfd *f = fd_peek(loop, req->fd);
    if (req->qs == Q_NONE || f == NULL) {
        return;
    }
    queue_unlink(f, req);
    release_view(req);
    RlSockReq *next = f->head[K_DIR(req->kind)];
    if (next != NULL && next->qs == Q_QUEUED) {
        next->qs = Q_HEAD;
        if (rl_loop_call_soon_c(loop, start_queued_fn, Py_NewRef(next),
                                NULL) < 0) {
            PyErr_WriteUnraisable((PyObject *)loop);
        }
    }
    loop_list_del(req);
}

/* ---------------------------------------------------------------------- */
/* preparing and arming ops */

static void
prep_op(RlSockReq *req)
{
    rl_op *op = &req->nop.op;
    op->fd = req->fd;
    op->flags = 0;
    if (!req->native) {
        op->kind = RL_OP_POLL;
        op->u.poll.events = K_IS_SEND(req->kind) ? POLLOUT : POLLIN;
        return;
    }
    switch (req->kind) {
    case K_RECV:
        op->kind = RL_OP_RECV;
        op->u.io.buf = PyBytes_AS_STRING(req->buf);
        op->u.io.len = (size_t)req->n;
        op->u.io.msg_flags = 0;
        break;
    case K_RECV_INTO:
        op->kind = RL_OP_RECV;
        op->u.io.buf = req->view.buf;
        op->u.io.len = (size_t)req->n;
        op->u.io.msg_flags = 0;
        break;
    case K_RECVFROM:
    case K_RECVFROM_INTO:
        memset(&req->ss, 0, sizeof(req->ss));
        req->iov.iov_base = req->kind == K_RECVFROM
                                ? PyBytes_AS_STRING(req->buf)
                                : req->view.buf;
        req->iov.iov_len = (size_t)req->n;
        memset(&req->msg, 0, sizeof(req->msg));
        req->msg.msg_name = &req->ss;
        req->msg.msg_namelen = sizeof(req->ss);
        req->msg.msg_iov = &req->iov;
        req->msg.msg_iovlen = 1;
        op->kind = RL_OP_RECVMSG;
        op->u.msg.msg = &req->msg;
        op->u.msg.msg_flags = 0;
        break;
    case K_SENDALL:
        op->kind = RL_OP_SEND;
        op->u.io.buf = (char *)req->view.buf + req->pos;
        op->u.io.len = (size_t)(req->view.len - req->pos);
        op->u.io.msg_flags = 0;
        break;
    case K_CONNECT:
        op->kind = RL_OP_CONNECT;
        op->u.connect.addr = (struct sockaddr *)&req->ss;
        op->u.connect.addrlen = req->sslen;
        break;
    case K_ACCEPT:
        memset(&req->ss, 0, sizeof(req->ss));
        req->sslen = sizeof(req->ss);
        op->kind = RL_OP_ACCEPT;
        op->u.accept.addr = (struct sockaddr *)&req->ss;
        op->u.accept.addrlen = &req->sslen;
        break;
    case K_SENDTO:
        /* msg_name/namelen were set when the address was parsed. */
        req->iov.iov_base = req->view.buf;
        req->iov.iov_len = (size_t)req->view.len;
        req->msg.msg_iov = &req->iov;
        req->msg.msg_iovlen = 1;
        op->kind = RL_OP_SENDMSG;
        op->u.msg.msg = &req->msg;
        op->u.msg.msg_flags = 0;
        break;
    }
}

/* Put the head's op in the reactor.  -1 with an exception. */
static int
arm(RlSockReq *req)
{
    prep_op(req);
    int rc = rl_netop_submit(req->loop, &req->nop);
    if (rc < 0) {
        rl_raise_errno(rc);
        return -1;
    }
    if (req->kind == K_CONNECT) {
        /* asyncio calls connect() in this step: the kernel sees it now,
         * not at the next wait (a listener may start listening between). */
        rl_net_flush(req->loop);
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* the attempts: 1 done (*result or an exception to deliver in *exc),
 * 0 would block, -1 error raised (not to be delivered: a bug or
 * MemoryError) */

static int
shrink_bytes(PyObject **b, Py_ssize_t n)
{
    if (PyBytes_GET_SIZE(*b) == n) {
        return 0;
    }
    return _PyBytes_Resize(b, n);
}

/* The result object of a finished native receive of res bytes. */
static PyObject *
recv_result(RlSockReq *req, Py_ssize_t res, socklen_t namelen)
{
    PyObject *addr, *r;
    switch (req->kind) {
    case K_RECV:
        if (shrink_bytes(&req->buf, res) < 0) {
            return NULL;
        }
        return Py_NewRef(req->buf);
    case K_RECV_INTO:
        return PyLong_FromSsize_t(res);
    case K_RECVFROM:
        if (shrink_bytes(&req->buf, res) < 0) {
            return NULL;
        }
        addr = rl_sockaddr_build((struct sockaddr *)&req->ss, namelen);
        if (addr == NULL) {
            return NULL;
        }
        r = PyTuple_Pack(2, req->buf, addr);
        Py_DECREF(addr);
        return r;
    case K_RECVFROM_INTO:
        addr = rl_sockaddr_build((struct sockaddr *)&req->ss, namelen);
        if (addr == NULL) {
            return NULL;
        }
        r = Py_BuildValue("nO", res, addr);
        Py_DECREF(addr);
        return r;
    default:
        Py_RETURN_NONE;
    }
}

/* (socket, address) for the connection fd accepted into req->ss /
 * req->sslen, as socket.accept() makes them; the fd is closed on failure.
 * NULL with an exception. */
static PyObject *
accept_result(RlSockReq *req, int fd)
{
    PyObject *conn = PyObject_CallFunction(
        ST(req->loop)->socket_socket, "iiii", req->family,
        req->type | SOCK_NONBLOCK, req->proto, fd);
    if (conn == NULL) {
        close(fd);
        return NULL;
    }
    PyObject *addr = rl_sockaddr_to_py((struct sockaddr *)&req->ss,
                                       req->sslen);
    if (addr == Py_None) {
        Py_DECREF(addr);
        addr = PyObject_CallMethod(conn, "getpeername", NULL);
    }
    if (addr == NULL) {
        Py_DECREF(conn);
        return NULL;
    }
    PyObject *pair = PyTuple_Pack(2, conn, addr);
    Py_DECREF(conn);
    Py_DECREF(addr);
    return pair;
}

static int
attempt_native(RlSockReq *req, PyObject **result, PyObject **exc)
{
    int fd = req->fd;
    ssize_t n;
    socklen_t sl = sizeof(req->ss);
    for (;;) {
        switch (req->kind) {
        case K_RECV:
            n = recv(fd, PyBytes_AS_STRING(req->buf), (size_t)req->n,
                     MSG_DONTWAIT);
            break;
        case K_RECV_INTO:
            n = recv(fd, req->view.buf, (size_t)req->n, MSG_DONTWAIT);
            break;
        case K_RECVFROM:
        case K_RECVFROM_INTO:
            memset(&req->ss, 0, sizeof(req->ss));
            sl = sizeof(req->ss);
            n = recvfrom(fd,
                         req->kind == K_RECVFROM ? PyBytes_AS_STRING(req->buf)
                                                 : req->view.buf,
                         (size_t)req->n, MSG_DONTWAIT,
                         (struct sockaddr *)&req->ss, &sl);
            break;
        case K_SENDALL:
            n = send(fd, (char *)req->view.buf + req->pos,
                     (size_t)(req->view.len - req->pos),
                     MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n >= 0) {
                req->pos += n;
                if (req->pos < req->view.len) {
                    continue; /* a stream takes more until EAGAIN */
                }
            }
            break;
        case K_SENDTO:
            n = sendto(fd, req->view.buf, (size_t)req->view.len,
                       MSG_DONTWAIT | MSG_NOSIGNAL,
                       (struct sockaddr *)&req->ss, req->msg.msg_namelen);
            break;
        case K_ACCEPT:
            /* socket.accept() (non-inheritable); as with it, a connection
             * aborted in the backlog is an error (ECONNABORTED). */
            memset(&req->ss, 0, sizeof(req->ss));
            sl = sizeof(req->ss);
            n = accept4(fd, (struct sockaddr *)&req->ss, &sl,
                        SOCK_NONBLOCK | SOCK_CLOEXEC);
            break;
        default:
            n = -1;
            errno = EINVAL;
            break;
        }
        if (n >= 0) {
            break;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 0;
        }
        *exc = rl_sock_errno_exc(-errno);
        return *exc == NULL ? -1 : 1;
    }
    if (req->kind == K_SENDALL) {
        *result = Py_NewRef(Py_None);
    }
    else if (req->kind == K_SENDTO) {
        *result = PyLong_FromSsize_t(n);
    }
    else if (req->kind == K_ACCEPT) {
        req->sslen = sl;
        *result = accept_result(req, (int)n);
    }
    else {
        *result = recv_result(req, n, sl);
    }
    return *result == NULL ? -1 : 1;
}

/* The generic path: the socket's own method, as asyncio calls it. */
static int
attempt_generic(RlSockReq *req, PyObject **result, PyObject **exc)
{
    rl_net_state *ss = ST(req->loop);
    PyObject *r = NULL;
    PyObject *sock = req->sock;
    switch (req->kind) {
    case K_RECV:
        r = PyObject_CallMethodOneArg(sock, ss->str_recv, req->arg);
        break;
    case K_RECV_INTO:
        r = PyObject_CallMethodOneArg(sock, ss->str_recv_into, req->arg);
        break;
    case K_RECVFROM:
        r = PyObject_CallMethodOneArg(sock, ss->str_recvfrom, req->arg);
        break;
    case K_RECVFROM_INTO:
        r = PyObject_CallMethodObjArgs(sock, ss->str_recvfrom_into, req->arg,
                                       req->arg2, NULL);
        break;
    case K_SENDALL: {
        /* asyncio: sock.send(data) first, then sock.send(view[pos:]). */
        PyObject *chunk;
        if (req->buf == NULL) {
            chunk = Py_NewRef(req->arg);
        }
        else {
            chunk = PySequence_GetSlice(req->buf, req->pos, PY_SSIZE_T_MAX);
            if (chunk == NULL) {
                return -1;
            }
        }
        r = PyObject_CallMethodOneArg(sock, ss->str_send, chunk);
        Py_DECREF(chunk);
        Py_ssize_t n = 0;
        if (r != NULL) {
            n = PyNumber_AsSsize_t(r, PyExc_OverflowError);
            Py_CLEAR(r);
            if (n == -1 && PyErr_Occurred()) {
                break;
            }
        }
        else if (err_is_would_block()) {
            PyErr_Clear(); /* n = 0 */
        }
        else {
            break;
        }
        if (req->buf == NULL) {
            req->n = PyObject_Length(req->arg);
            if (req->n < 0) {
                return -1;
            }
        }
        req->pos += n;
        if (req->pos >= req->n) {
            *result = Py_NewRef(Py_None);
            return 1;
        }
        if (req->buf == NULL) {
            req->buf = PyMemoryView_FromObject(req->arg);
            if (req->buf == NULL) {
                return -1;
            }
        }
        return 0; /* the rest when writable again */
    }
    case K_SENDTO:
        if (req->started) {
            /* asyncio's retry passes flags */
            PyObject *zero = PyLong_FromLong(0);
            if (zero == NULL) {
                return -1;
            }
            r = PyObject_CallMethodObjArgs(sock, ss->str_sendto, req->arg,
                                           zero, req->arg2, NULL);
            Py_DECREF(zero);
        }
        else {
            r = PyObject_CallMethodObjArgs(sock, ss->str_sendto, req->arg,
                                           req->arg2, NULL);
        }
        break;
    }
    req->started = 1;
    if (r != NULL) {
        *result = r;
        return 1;
    }
    if (err_is_would_block()) {
        PyErr_Clear();
        return 0;
    }
    if (PyErr_ExceptionMatches(PyExc_Exception)) {
        *exc = rl_err_get_raised();
        return 1;
    }
    return -1; /* SystemExit, KeyboardInterrupt... propagate */
}

/* ---------------------------------------------------------------------- */
/* delivering results */

/* Keep the outcome of a receive nobody will take (result or exc) in the
 * stash.  For *_into the bytes sit in the caller's buffer, which it may
 * reuse from now on: they are copied out (from the pinned view while the
 * request has it, else from a new export of the buffer).  Never raises. */
static void
stash_outcome(RlSockReq *req, PyObject *result, PyObject *exc, int front)
{
    PyObject *data = NULL, *addr = NULL;
    if (!K_IS_RECV(req->kind)) {
        return;
    }
    if (exc != NULL) {
        stash_put(req, exc, NULL, front);
        return;
    }
    if (result == NULL) {
        return;
    }
    switch (req->kind) {
    case K_RECV:
        if (PyBytes_Check(result)) {
            data = Py_NewRef(result);
        }
        break;
    case K_RECVFROM:
        if (PyTuple_Check(result) && PyTuple_GET_SIZE(result) == 2 &&
            PyBytes_Check(PyTuple_GET_ITEM(result, 0))) {
            data = Py_NewRef(PyTuple_GET_ITEM(result, 0));
            addr = Py_NewRef(PyTuple_GET_ITEM(result, 1));
        }
        break;
    case K_RECV_INTO:
    case K_RECVFROM_INTO: {
        PyObject *nb = result;
        if (req->kind == K_RECVFROM_INTO) {
            if (!PyTuple_Check(result) || PyTuple_GET_SIZE(result) != 2) {
                break;
            }
            nb = PyTuple_GET_ITEM(result, 0);
            addr = Py_NewRef(PyTuple_GET_ITEM(result, 1));
        }
        if (!PyLong_Check(nb)) {
            break;
        }
        Py_ssize_t n = PyLong_AsSsize_t(nb);
        if (n < 0) {
            break;
        }
        if (req->has_view) {
            if (n <= req->view.len) {
                data = PyBytes_FromStringAndSize(req->view.buf, n);
            }
        }
        else {
            Py_buffer v;
            if (PyObject_GetBuffer(req->arg, &v, PyBUF_SIMPLE) == 0) {
                if (n <= v.len) {
                    data = PyBytes_FromStringAndSize(v.buf, n);
                }
                PyBuffer_Release(&v);
            }
        }
        break;
    }
    }
    if (data != NULL) {
        stash_put(req, data, addr, front);
    }
    else if (PyErr_Occurred()) {
        PyErr_WriteUnraisable((PyObject *)req);
    }
    Py_XDECREF(data);
    Py_XDECREF(addr);
}

/* Hand the outcome of a request to its Future; a receive whose awaiter is
 * gone keeps the bytes (or the error) for the next receive.  Steals
 * result/exc.  Never raises (called from op callbacks). */
static void
deliver(RlSockReq *req, PyObject *result, PyObject *exc)
{
    int gone = req->abandoned;
    if (!gone && req->fut != NULL) {
        int done = rl_future_is_done(req->fut);
        if (done < 0) {
            PyErr_WriteUnraisable((PyObject *)req);
            done = 1;
        }
        gone = done;
    }
    if (gone) {
        stash_outcome(req, result, exc, 0);
    }
    else if (exc != NULL) {
        if (rl_future_set_exception_unless_done(req->fut, exc) < 0) {
            PyErr_WriteUnraisable((PyObject *)req);
        }
        else if (K_IS_RECV(req->kind)) {
            Py_XSETREF(req->unclaimed, Py_NewRef(exc));
        }
    }
    else if (result != NULL) {
        if (rl_future_set_result_unless_done(req->fut, result) < 0) {
            PyErr_WriteUnraisable((PyObject *)req);
        }
        else if (K_IS_RECV(req->kind)) {
            Py_XSETREF(req->unclaimed, Py_NewRef(result));
        }
    }
    Py_XDECREF(result);
    Py_XDECREF(exc);
}

/* An attempt failed with a Python error that is not the outcome of the
 * syscall (MemoryError while building the result...): the awaiter gets it
 * all the same. */
static void
deliver_current_error(RlSockReq *req)
{
    PyObject *exc = rl_err_get_raised();
    if (exc == NULL) {
        return;
    }
    if (!PyErr_GivenExceptionMatches(exc, PyExc_Exception)) {
        /* KeyboardInterrupt & co: let the loop see it. */
        rl_err_set_raised(exc);
        return;
    }
    deliver(req, NULL, exc);
}

/* ---------------------------------------------------------------------- */
/* completions (from the reactor's dispatch: no user code here) */

static int generic_retry_fn(RlLoop *loop, PyObject *a, PyObject *b);

static int conn_ready_fn(RlLoop *loop, PyObject *a, PyObject *b);

/* The op's final completion, minus the reference bookkeeping. */
static void
req_complete(RlSockReq *req, int32_t res)
{
    PyObject *result = NULL, *exc = NULL;

    if (K_IS_CONN(req->kind)) {
        if (req->orphaned || req->abandoned || req->qs == Q_ZOMBIE) {
            /* Nobody takes it: an accepted fd is ours to close; a
             * connect's error stays in the socket (asyncio's too). */
            if (req->kind == K_ACCEPT && res >= 0) {
                close(res);
            }
            finish_head(req);
        }
        else {
            /* SO_ERROR is read and the socket object made (Python) in the
             * ready phase, and only for an awaiter still there. */
            req->res = res;
            if (rl_netop_queue(req->loop, &req->nop, conn_ready_fn,
                               Py_NewRef(req)) < 0) {
                deliver_current_error(req);
                finish_head(req);
            }
        }
        return;
    }
    if (req->orphaned) {
        /* Its socket was closed: nothing to deliver, nobody to wake. */
        finish_head(req);
        return;
    }
    if (req->qs == Q_ZOMBIE || req->abandoned) {
        /* Abandoned: nobody takes a result, but bytes that did arrive
         * are kept for the next receive. */
        if (req->native && !K_IS_SEND(req->kind) && res != -ECANCELED) {
            if (res >= 0) {
                result = recv_result(req, res, req->msg.msg_namelen);
                if (result == NULL) {
                    PyErr_WriteUnraisable((PyObject *)req);
                }
            }
            else {
                exc = rl_sock_errno_exc(res);
            }
            deliver(req, result, exc);
        }
        finish_head(req);
        return;
    }
    if (!req->native) {
        /* The POLL fired: retry the method in the ready phase. */
        if (res < 0) {
            deliver(req, NULL, rl_sock_errno_exc(res));
            finish_head(req);
            return;
        }
        if (rl_loop_call_soon_c(req->loop, generic_retry_fn,
                                Py_NewRef(req), NULL) < 0) {
            deliver_current_error(req);
            finish_head(req);
        }
        return;
    }
    if (res < 0) {
        exc = rl_sock_errno_exc(res);
    }
    else if (req->kind == K_SENDALL) {
        req->pos += res;
        if (req->pos < req->view.len) {
            /* Short write: the rest, unless the awaiter left meanwhile. */
            int done = rl_future_is_done(req->fut);
            if (done == 0 && arm(req) == 0) {
                return;
            }
            if (done != 0) {
                PyErr_Clear();
                finish_head(req);
                return;
            }
            exc = rl_err_get_raised();
        }
        else {
            result = Py_NewRef(Py_None);
        }
    }
    else if (req->kind == K_SENDTO) {
        result = PyLong_FromLong(res);
    }
    else {
        result = recv_result(req, res, req->msg.msg_namelen);
    }
    if (result == NULL && exc == NULL) {
        exc = rl_err_get_raised();
    }
    deliver(req, result, exc);
    finish_head(req);
}

static void
req_op_cb(rl_op *op, int32_t res, uint32_t flags)
{
    (void)flags;
    RlSockReq *req = rl_container_of(op, RlSockReq, nop.op);
    RlLoop *loop = req->loop;
    rl_netop_done(loop, &req->nop); /* the op's reference is ours now */
    req_complete(req, res);
    rl_net_release_owner(loop, (PyObject *)req);
}

/* Ready phase: a sock_connect()/sock_accept() completed. */
static int
conn_ready_fn(RlLoop *loop, PyObject *a, PyObject *b)
{
    (void)loop;
    (void)b;
    RlSockReq *req = (RlSockReq *)a;
    int32_t res = req->res;
    int rc = 0;
    rl_netop_delivered(&req->nop);
    int done = req->fut != NULL ? rl_future_is_done(req->fut) : 1;
    if (done < 0) {
        PyErr_WriteUnraisable((PyObject *)req);
        done = 1;
    }
    if (req->orphaned || req->abandoned || done) {
        if (req->kind == K_ACCEPT && res >= 0) {
            close(res);
        }
        goto finish;
    }
    if (req->kind == K_CONNECT) {
        if (res == RL_CONNECT_SETTLED) {
            res = rl_connect_settled_result(req->fd);
        }
        if (res == 0) {
            deliver(req, Py_NewRef(Py_None), NULL);
            goto finish;
        }
        PyObject *msg = NULL, *exc = NULL;
        if (req->family != AF_UNIX) {
            msg = PyUnicode_FromFormat("Connect call failed %R", req->arg);
        }
        if (msg != NULL || req->family == AF_UNIX) {
            exc = rl_net_oserror(res, msg);
            Py_XDECREF(msg);
        }
        if (exc == NULL) {
            goto error;
        }
        deliver(req, NULL, exc);
        goto finish;
    }
    /* ACCEPT */
    if (res < 0) {
        PyObject *exc = rl_net_oserror(res, NULL);
        if (exc == NULL) {
            goto error;
        }
        deliver(req, NULL, exc);
        goto finish;
    }
    PyObject *pair = accept_result(req, (int)res);
    if (pair == NULL) {
        goto error;
    }
    deliver(req, pair, NULL);
    goto finish;
error:
    if (PyErr_ExceptionMatches(PyExc_Exception)) {
        /* Could not build the result: the awaiter gets the error. */
        deliver_current_error(req);
    }
    else {
        rc = -1; /* SystemExit, KeyboardInterrupt: leave the loop */
    }
finish:
    finish_head(req);
    Py_DECREF(req);
    return rc;
}

/* Ready-phase record: the generic path's retry after its POLL fired. */
static int
generic_retry_fn(RlLoop *loop, PyObject *a, PyObject *b)
{
    (void)loop;
    (void)b;
    RlSockReq *req = (RlSockReq *)a;
    PyObject *result = NULL, *exc = NULL;
    int rc = 0;
    if (req->qs != Q_HEAD) {
        Py_DECREF(req);
        return 0;
    }
    if (req->abandoned) {
        finish_head(req);
        Py_DECREF(req);
        return 0;
    }
    int done = rl_future_is_done(req->fut);
    if (done != 0) {
        /* asyncio's _sock_recv: `if fut.done(): return` */
        PyErr_Clear();
        finish_head(req);
        Py_DECREF(req);
        return 0;
    }
    int r = attempt_generic(req, &result, &exc);
    if (r == 0) {
        if (req->loop->reactor != NULL && arm(req) == 0) {
            Py_DECREF(req);
            return 0;
        }
        if (req->loop->reactor == NULL) {
            PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        }
        r = -1;
    }
    if (r < 0) {
        if (PyErr_ExceptionMatches(PyExc_Exception)) {
            exc = rl_err_get_raised();
        }
        else {
            rc = -1; /* SystemExit, KeyboardInterrupt: leave the loop */
        }
    }
    if (rc == 0) {
        deliver(req, result, exc);
    }
    finish_head(req);
    Py_DECREF(req);
    return rc;
}

/* Ready-phase record: a queued request became the head. */
static int
start_queued_fn(RlLoop *loop, PyObject *a, PyObject *b)
{
    (void)b;
    RlSockReq *req = (RlSockReq *)a;
    PyObject *result = NULL, *exc = NULL;
    int rc = 0, r;
    if (req->qs != Q_HEAD || loop->reactor == NULL) {
        Py_DECREF(req);
        return 0;
    }
    if (req->abandoned) {
        finish_head(req);
        Py_DECREF(req);
        return 0;
    }
    int done = rl_future_is_done(req->fut);
    if (done != 0) {
        PyErr_Clear();
        finish_head(req);
        Py_DECREF(req);
        return 0;
    }
    int cur = -1;
    if (sock_fileno(loop, req->sock, &cur) < 0) {
        PyErr_Clear();
    }
    if (cur != req->fd) {
        /* Its socket was closed while it waited for its turn (the fd
         * number may name another socket now): pending for ever, as
         * asyncio's. */
        req->orphaned = 1;
        finish_head(req);
        Py_DECREF(req);
        return 0;
    }
    rl_sockfd *f = NULL;
    if (K_IS_RECV(req->kind) &&
        (f = stash_get(loop, req->sock, req->fd)) != NULL) {
        r = stash_serve(req, f, &result);
    }
    else if (req->kind == K_CONNECT || (req->kind == K_ACCEPT &&
                                        req->blocking)) {
        r = 0; /* the op (no inline attempt) */
    }
    else if (req->native) {
        r = attempt_native(req, &result, &exc);
    }
    else {
        r = attempt_generic(req, &result, &exc);
    }
    if (r == 0) {
        if (arm(req) == 0) {
            Py_DECREF(req);
            return 0;
        }
        r = -1;
    }
    if (r < 0) {
        if (PyErr_ExceptionMatches(PyExc_Exception)) {
            exc = rl_err_get_raised();
        }
        else {
            rc = -1;
        }
    }
    if (rc == 0) {
        deliver(req, result, exc);
    }
    finish_head(req);
    Py_DECREF(req);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* starting: the first step of the awaitable */

/* The checks asyncio's sock_* make before anything else: not an SSLSocket
 * (base_events._check_ssl_socket; a native socket, exactly socket.socket,
 * cannot be one); non-blocking in debug mode.  0, or -1 raised. */
static int
check_asyncio_sock(RlLoop *loop, PyObject *sock, int native)
{
    rl_state *st = loop->st;
    if (!native && st->net->ssl_SSLSocket != Py_None) {
        int is = PyObject_IsInstance(sock, st->net->ssl_SSLSocket);
        if (is < 0) {
            return -1;
        }
        if (is) {
            PyErr_SetString(PyExc_TypeError,
                            "Socket cannot be of type SSLSocket");
            return -1;
        }
    }
    if (loop->debug) {
        PyObject *t = PyObject_CallMethodNoArgs(sock, st->net->str_gettimeout);
        if (t == NULL) {
            return -1;
        }
        /* asyncio: `sock.gettimeout() != 0` (None, a blocking socket, too) */
        int blocking = t == Py_None || PyObject_IsTrue(t);
        Py_DECREF(t);
        if (blocking < 0) {
            return -1;
        }
        if (blocking) {
            PyErr_SetString(PyExc_ValueError,
                            "the socket must be non-blocking");
            return -1;
        }
    }
    return 0;
}

/* asyncio's argument checks and the native/generic choice.  -1 raised. */
static int
prepare(RlSockReq *req)
{
    RlLoop *loop = req->loop;
    rl_state *st = loop->st;
    PyObject *sock = req->sock;
    req->native = (uint8_t)rl_sock_is_native(st, sock);
    if ((!req->native || loop->debug) &&
        check_asyncio_sock(loop, sock, req->native) < 0) {
        return -1;
    }
    if (req->kind == K_RECVFROM_INTO) {
        /* asyncio: `if not nbytes: nbytes = len(buf)` */
        int t = PyObject_IsTrue(req->arg2);
        if (t < 0) {
            return -1;
        }
        if (!t) {
            Py_ssize_t n = PyObject_Length(req->arg);
            if (n < 0) {
                return -1;
            }
            PyObject *nb = PyLong_FromSsize_t(n);
            if (nb == NULL) {
                return -1;
            }
            Py_SETREF(req->arg2, nb);
        }
    }
    if (!req->native) {
        return 0;
    }
    if (sock_fileno(loop, sock, &req->fd) < 0) {
        return -1;
    }
    if (req->fd < 0) {
        /* A closed socket: the generic path, whose sock.recv() & co check
         * their arguments first, as asyncio's (sock.recv(0) returns b"",
         * a bad size raises ValueError/TypeError), then say EBADF. */
        req->native = 0;
        return 0;
    }
    if (req->kind == K_RECVFROM || req->kind == K_RECVFROM_INTO ||
        req->kind == K_SENDTO) {
        PyObject *fam = PyObject_GetAttr(sock, st->net->str_family);
        if (fam == NULL) {
            return -1;
        }
        long v = PyLong_AsLong(fam);
        Py_DECREF(fam);
        if (v == -1 && PyErr_Occurred()) {
            return -1;
        }
        req->family = (int)v;
        if (!rl_sockaddr_native_family(req->family)) {
            req->native = 0;
            return 0;
        }
    }
    /* The arguments in their plain forms, or the generic path (whose
     * method call then raises CPython's exact errors). */
    switch (req->kind) {
    case K_RECV:
    case K_RECVFROM: {
        if (!PyLong_CheckExact(req->arg)) {
            req->native = 0;
            return 0;
        }
        Py_ssize_t n = PyLong_AsSsize_t(req->arg);
        if (n == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            req->native = 0;
            return 0;
        }
        if (n < 0) {
            PyErr_Format(PyExc_ValueError, "negative buffersize in %s",
                         req->kind == K_RECV ? "recv" : "recvfrom");
            return -1;
        }
        if (n == 0 && req->kind == K_RECV) {
            /* socket.recv(0) answers b'' without a syscall: so do we (a
             * queued request would otherwise wait for data). */
            req->native = 2;
        }
        req->n = n;
        req->buf = PyBytes_FromStringAndSize(NULL, n);
        if (req->buf == NULL) {
            return -1;
        }
        break;
    }
    case K_RECV_INTO:
    case K_RECVFROM_INTO: {
        Py_ssize_t nb = 0;
        if (req->kind == K_RECVFROM_INTO) {
            if (!PyLong_CheckExact(req->arg2)) {
                req->native = 0;
                return 0;
            }
            nb = PyLong_AsSsize_t(req->arg2);
            if (nb == -1 && PyErr_Occurred()) {
                PyErr_Clear();
                req->native = 0;
                return 0;
            }
            if (nb < 0) {
                PyErr_SetString(PyExc_ValueError,
                                "negative buffersize in recvfrom_into");
                return -1;
            }
        }
        if (PyObject_GetBuffer(req->arg, &req->view, PyBUF_WRITABLE) < 0) {
            PyErr_Clear();
            req->native = 0;
            return 0;
        }
        req->has_view = 1;
        if (nb == 0) {
            nb = req->view.len;
        }
        else if (req->view.len < nb) {
            release_view(req);
            PyErr_SetString(PyExc_ValueError,
                            "nbytes is greater than the length of the "
                            "buffer");
            return -1;
        }
        req->n = nb;
        break;
    }
    case K_SENDALL:
    case K_SENDTO:
        if (PyObject_GetBuffer(req->arg, &req->view, PyBUF_SIMPLE) < 0) {
            PyErr_Clear();
            req->native = 0;
            return 0;
        }
        req->has_view = 1;
        req->n = req->view.len;
        if (req->kind == K_SENDTO) {
            socklen_t sl = 0;
            memset(&req->msg, 0, sizeof(req->msg));
            if (!rl_sockaddr_parse(req->family, req->arg2, &req->ss, &sl)) {
                release_view(req);
                req->native = 0;
                return 0;
            }
            req->msg.msg_name = &req->ss;
            req->msg.msg_namelen = sl;
        }
        break;
    }
    return 0;
}

/* Queue the request behind others or make it the head and arm it.  The
 * loop must be open; req->fut exists.  -1 raised. */
static int
enqueue(RlSockReq *req)
{
    RlLoop *loop = req->loop;
    rl_sockfd *f = rl_sock_fd(loop, req->fd);
    if (f == NULL) {
        return -1;
    }
    int d = K_DIR(req->kind);
    /* Requests queued for a socket that has been closed since (its fd
     * number now names req's socket) would never complete: drop them. */
    RlSockReq *q = f->head[d];
    while (q != NULL) {
        RlSockReq *nx = q->qnext;
        if (q->sock != req->sock && q->qs != Q_ZOMBIE) {
            int qfd = -1;
            if (sock_fileno(loop, q->sock, &qfd) < 0) {
                PyErr_Clear();
            }
            if (qfd != req->fd) {
                req_abandon(q);
            }
        }
        q = nx;
    }
    req->qnext = NULL;
    req->qprev = f->tail[d];
    if (f->tail[d] != NULL) {
        f->tail[d]->qnext = req;
    }
    else {
        f->head[d] = req;
    }
    f->tail[d] = req;
    loop_list_add(req);
    if (f->head[d] != req) {
        req->qs = Q_QUEUED;
        return 0;
    }
    req->qs = Q_HEAD;
    if (arm(req) < 0) {
        queue_unlink(f, req);
        loop_list_del(req); /* the caller still holds a reference */
        return -1;
    }
    return 0;
}

/* The first step.  1: finished (*result, or -1 raised); 0: waiting on
 * req->fut. */
static int
req_start(RlSockReq *req, PyObject **result)
{
    RlLoop *loop = req->loop;
    PyObject *exc = NULL;
    int r;
    *result = NULL;
    if (!req->prepared && prepare(req) < 0) {
        return -1;
    }
    if (req->native == 2) {
        *result = Py_NewRef(req->buf); /* recv(0) */
        return 1;
    }
    if (req->native) {
        rl_sockfd *f = fd_peek(loop, req->fd);
        int busy = f != NULL && f->head[K_DIR(req->kind)] != NULL;
        if (K_IS_RECV(req->kind) && !busy &&
            (f = stash_get(loop, req->sock, req->fd)) != NULL) {
            r = stash_serve(req, f, result);
            release_view(req);
            return r;
        }
        if (busy) {
            r = 0; /* wait for our turn */
        }
        else if (req->kind == K_CONNECT ||
                 (req->kind == K_ACCEPT && req->blocking) ||
                 (K_IS_RECV(req->kind) && !loop->sock->recv_inline &&
                  loop->reactor != NULL)) {
            /* The op directly (see ARCHITECTURE.md).  sock_accept() tries
             * accept4() first, as asyncio's sock.accept(): a socket that
             * does not listen fails at once with the syscall's error
             * (EINVAL, EOPNOTSUPP) on both backends, where an ACCEPT op
             * would never complete on epoll (no POLLIN ever comes).  Not
             * on a blocking fd (asyncio requires non-blocking sockets, but
             * checks only in debug mode): accept4() would block the loop
             * until a connection came. */
            r = 0;
        }
        else {
            r = attempt_native(req, result, &exc);
        }
    }
    else {
        r = attempt_generic(req, result, &exc);
    }
    if (r != 0) {
        release_view(req);
        if (exc != NULL) {
            rl_err_set_raised(exc);
            return -1;
        }
        return r < 0 ? -1 : 1;
    }
    /* It would block: wait for the fd, as asyncio's _add_reader does. */
    if (!req->native) {
        if (sock_fileno(loop, req->sock, &req->fd) < 0) {
            return -1;
        }
    }
    if (rl_loop_check_closed(loop) < 0 ||
        rl_net_check_fd_free(loop, req->fd) < 0 ||
        rl_sock_check_fd_free(loop, req->fd) < 0) {
        release_view(req);
        return -1;
    }
    req->fut = rl_future_new(loop);
    if (req->fut == NULL) {
        release_view(req);
        return -1;
    }
    if (enqueue(req) < 0) {
        release_view(req);
        return -1;
    }
    if (K_IS_CONN(req->kind)) {
        /* Cancel the op as soon as the Future is cancelled, not only when
         * the Task throws into us one step later: a connect must not go on
         * meanwhile (a listener may start listening in between). */
        PyObject *cb = PyObject_GetAttrString((PyObject *)req, "_fut_done");
        PyObject *ok = cb == NULL ? NULL
                                  : PyObject_CallMethodOneArg(
                                        req->fut,
                                        loop->st->net->str_add_done_callback,
                                        cb);
        Py_XDECREF(cb);
        if (ok == NULL) {
            req_abandon(req);
            return -1;
        }
        Py_DECREF(ok);
    }
    return 0;
}

/* The awaiter is gone (cancelled, closed, thrown into): cancel the op.
 * The Future is left as it is (asyncio leaves it pending too). */
static void
req_abandon(RlSockReq *req)
{
    RlLoop *loop = req->loop;
    req->abandoned = 1;
    switch (req->qs) {
    case Q_QUEUED: {
        rl_sockfd *f = fd_peek(loop, req->fd);
        if (f != NULL) {
            queue_unlink(f, req);
        }
        release_view(req);
        loop_list_del(req);
        break;
    }
    case Q_HEAD:
        if (loop->reactor != NULL && req->nop.op.state == RL_OPS_ARMED) {
            req->qs = Q_ZOMBIE;
            /* The caller may close the socket right after (create_connection
             * does): the cancel must reach the kernel now. */
            if (rl_netop_cancel(loop, &req->nop) == 0) {
                rl_net_flush(loop);
            }
        }
        else if (req->nop.op.state == RL_OPS_IDLE && !req->nop.queued) {
            /* Between attempts (a ready record pending): done now. */
            finish_head(req);
        }
        else {
            req->qs = Q_ZOMBIE; /* already cancelling */
        }
        break;
    default:
        break;
    }
}

/* ---------------------------------------------------------------------- */
/* the awaitable */

static PySendResult
req_am_send(RlSockReq *req, PyObject *arg, PyObject **presult)
{
    PySendResult r;
    switch (req->aw) {
    case AW_INIT: {
        PyObject *result = NULL;
        if (arg != Py_None) {
            /* As a coroutine's first send(); the request stays unstarted. */
            PyErr_SetString(PyExc_TypeError,
                            "can't send non-None value to a just-started "
                            "coroutine");
            *presult = NULL;
            return PYGEN_ERROR;
        }
        req->aw = AW_DONE;
        int s = req_start(req, &result);
        if (s < 0) {
            *presult = NULL;
            return PYGEN_ERROR;
        }
        if (s > 0) {
            *presult = result;
            return PYGEN_RETURN;
        }
        PyAsyncMethods *am = Py_TYPE(req->fut)->tp_as_async;
        req->fut_iter = (am != NULL && am->am_await != NULL)
                            ? am->am_await(req->fut)
                            : PyObject_CallMethod(req->fut, "__await__",
                                                  NULL);
        if (req->fut_iter == NULL) {
            req_abandon(req);
            *presult = NULL;
            return PYGEN_ERROR;
        }
        req->aw = AW_WAITING;
        arg = Py_None;
    }
    /* fall through */
    case AW_WAITING:
        r = PyIter_Send(req->fut_iter, arg, presult);
        if (r != PYGEN_NEXT) {
            req->aw = AW_DONE;
            Py_CLEAR(req->fut_iter);
            Py_CLEAR(req->unclaimed); /* taken */
            if (r == PYGEN_ERROR) {
                req_abandon(req);
            }
        }
        return r;
    default:
        PyErr_SetString(PyExc_RuntimeError,
                        "cannot reuse already awaited coroutine");
        *presult = NULL;
        return PYGEN_ERROR;
    }
}

/* StopIteration(value) for tp_iternext/send(). */
static PyObject *
gen_result(PySendResult r, PyObject *res)
{
    if (r == PYGEN_NEXT) {
        return res;
    }
    if (r == PYGEN_RETURN) {
        if (res == Py_None) {
            Py_DECREF(res);
            PyErr_SetNone(PyExc_StopIteration);
            return NULL;
        }
        PyObject *e = PyObject_CallOneArg(PyExc_StopIteration, res);
        Py_DECREF(res);
        if (e != NULL) {
            PyErr_SetObject(PyExc_StopIteration, e);
            Py_DECREF(e);
        }
        return NULL;
    }
    return NULL;
}

static PyObject *
req_iternext(RlSockReq *req)
{
    PyObject *res = NULL;
    PySendResult r = req_am_send(req, Py_None, &res);
    if (r == PYGEN_RETURN && res == Py_None) {
        /* tp_iternext may end without setting StopIteration */
        Py_DECREF(res);
        return NULL;
    }
    return gen_result(r, res);
}

static PyObject *
SockReq_send(RlSockReq *req, PyObject *arg)
{
    /* Two statements: the evaluation order of function arguments is
     * unspecified, and gen_result() must see res after req_am_send() set
     * it (it used to get NULL: SystemError on every send()). */
    PyObject *res = NULL;
    PySendResult r = req_am_send(req, arg, &res);
    return gen_result(r, res);
}

/* The awaiter leaves (throw/close) after its receive had completed: what
 * fut holds goes back in front of the stash. */
static void
stash_unclaimed(RlSockReq *req)
{
    PyObject *u = req->unclaimed;
    if (u == NULL) {
        return;
    }
    req->unclaimed = NULL;
    PyObject *saved = rl_err_get_raised();
    if (PyExceptionInstance_Check(u)) {
        stash_outcome(req, NULL, u, 1);
    }
    else {
        stash_outcome(req, u, NULL, 1);
    }
    Py_DECREF(u);
    rl_err_set_raised(saved);
}

/* The checks a coroutine's throw() makes before it touches its frame
 * (CPython's _gen_throw): 0, or -1 with TypeError, the request left as
 * it was. */
static int
throw_check_args(PyObject *typ, PyObject *val, PyObject *tb)
{
    if (tb != NULL && tb != Py_None && !PyTraceBack_Check(tb)) {
        PyErr_SetString(PyExc_TypeError,
                        "throw() third argument must be a traceback object");
        return -1;
    }
    if (PyExceptionClass_Check(typ)) {
        return 0;
    }
    if (PyExceptionInstance_Check(typ)) {
        if (val != NULL && val != Py_None) {
            PyErr_SetString(PyExc_TypeError,
                            "instance exception may not have a separate "
                            "value");
            return -1;
        }
        return 0;
    }
    PyErr_Format(PyExc_TypeError,
                 "exceptions must be classes or instances deriving from "
                 "BaseException, not %s",
                 Py_TYPE(typ)->tp_name);
    return -1;
}

static PyObject *
SockReq_throw(RlSockReq *req, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "throw expected 1 to 3 arguments");
        return NULL;
    }
#if RL_PY312
    if (nargs > 1 &&
        PyErr_WarnEx(PyExc_DeprecationWarning,
                     "the (type, exc, tb) signature of throw() is "
                     "deprecated, use the single-arg signature instead.",
                     1) < 0) {
        return NULL;
    }
#endif
    PyObject *typ = args[0];
    PyObject *val = nargs > 1 ? args[1] : NULL;
    PyObject *tb = nargs > 2 ? args[2] : NULL;
    if (req->aw == AW_WAITING) {
        /* As a coroutine suspended in `await fut`: the Future's iterator
         * gets the arguments as given (it checks them), and whatever it
         * raises ends us. */
        req->aw = AW_DONE;
        stash_unclaimed(req);
        req_abandon(req);
        PyObject *it = req->fut_iter;
        req->fut_iter = NULL;
        PyObject *r = PyObject_VectorcallMethod(
            ST(req->loop)->str_throw, (PyObject *[]){it, typ, val, tb},
            1 + (size_t)nargs, NULL);
        Py_DECREF(it);
        return r;
    }
    if (throw_check_args(typ, val, tb) < 0) {
        return NULL;
    }
    if (req->aw == AW_DONE) {
        /* An exhausted (or closed) coroutine refuses any further step. */
        PyErr_SetString(PyExc_RuntimeError,
                        "cannot reuse already awaited coroutine");
        return NULL;
    }
    /* Not started: the exception is raised at the start and ends it. */
    req->aw = AW_DONE;
    if (PyExceptionInstance_Check(typ)) {
        PyErr_SetObject((PyObject *)Py_TYPE(typ), typ);
    }
    else {
        PyErr_SetObject(typ, val != NULL ? val : Py_None);
    }
    if (tb != NULL && tb != Py_None) {
        PyObject *exc = rl_err_get_raised();
        if (PyException_SetTraceback(exc, tb) < 0) {
            Py_DECREF(exc);
            return NULL;
        }
        rl_err_set_raised(exc);
    }
    return NULL;
}

/* sock_connect/sock_accept: their Future is done; if it was cancelled
 * (the op is still ours), give the op up now. */
static PyObject *
SockReq_fut_done(RlSockReq *req, PyObject *Py_UNUSED(fut))
{
    if (!req->abandoned && req->qs != Q_NONE &&
        (req->nop.op.state == RL_OPS_ARMED || req->qs == Q_QUEUED)) {
        req_abandon(req);
    }
    Py_RETURN_NONE;
}

static PyObject *
SockReq_close(RlSockReq *req, PyObject *Py_UNUSED(ignored))
{
    if (req->aw == AW_WAITING) {
        stash_unclaimed(req);
        req_abandon(req);
        Py_CLEAR(req->fut_iter);
    }
    req->aw = AW_DONE;
    Py_RETURN_NONE;
}

static PyObject *
SockReq_await(RlSockReq *req, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(req);
}

static PyObject *
SockReq_am_await(RlSockReq *req)
{
    return Py_NewRef(req);
}

static PyObject *
SockReq_get_name(RlSockReq *req, void *Py_UNUSED(c))
{
    return PyUnicode_FromString(kind_names[req->kind]);
}

static PyObject *
SockReq_get_qualname(RlSockReq *req, void *Py_UNUSED(c))
{
    return PyUnicode_FromFormat("Loop.%s", kind_names[req->kind]);
}

static PyObject *
SockReq_repr(RlSockReq *req)
{
    static const char *const aw_names[] = {"created", "waiting", "done"};
    return PyUnicode_FromFormat("<ringloop %s() %s>", kind_names[req->kind],
                                aw_names[req->aw]);
}

static int
SockReq_traverse(RlSockReq *req, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(req));
    Py_VISIT(req->loop);
    Py_VISIT(req->sock);
    Py_VISIT(req->arg);
    Py_VISIT(req->arg2);
    Py_VISIT(req->fut);
    Py_VISIT(req->fut_iter);
    Py_VISIT(req->unclaimed);
    Py_VISIT(req->buf);
    if (req->has_view) {
        Py_VISIT(req->view.obj);
    }
    return 0;
}

static int
SockReq_clear(RlSockReq *req)
{
    /* Queued requests are the loop's: it releases them (after the
     * reactor let go of their buffers). */
    if (req->qs != Q_NONE) {
        return 0;
    }
    Py_CLEAR(req->fut_iter);
    Py_CLEAR(req->unclaimed);
    Py_CLEAR(req->fut);
    release_view(req);
    Py_CLEAR(req->buf);
    Py_CLEAR(req->arg);
    Py_CLEAR(req->arg2);
    Py_CLEAR(req->sock);
    Py_CLEAR(req->loop);
    return 0;
}

static void
SockReq_dealloc(RlSockReq *req)
{
    PyTypeObject *tp = Py_TYPE(req);
    PyObject_GC_UnTrack(req);
    /* Never in a queue here: the queue holds a reference. */
    req->qs = Q_NONE;
    (void)SockReq_clear(req);
    tp->tp_free((PyObject *)req);
    Py_DECREF(tp);
}

/* The Future's done callback is not used: cancellation reaches the request
 * through throw()/close() from the Task that awaits it. */

static PyMethodDef SockReq_methods[] = {
    {"send", (PyCFunction)SockReq_send, METH_O,
     "send(value)\n--\n\nStep the awaitable (coroutine protocol)."},
    {"throw", RL_CFUNC(SockReq_throw), METH_FASTCALL,
     "throw(typ[, val[, tb]])\n--\n\nRaise an exception into it."},
    {"close", (PyCFunction)SockReq_close, METH_NOARGS,
     "close()\n--\n\nAbandon it (cancels the operation)."},
    {"__await__", (PyCFunction)SockReq_await, METH_NOARGS, NULL},
    {"_fut_done", (PyCFunction)SockReq_fut_done, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef SockReq_getset[] = {
    {"__name__", (getter)SockReq_get_name, NULL, NULL, NULL},
    {"__qualname__", (getter)SockReq_get_qualname, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot SockReq_slots[] = {
    {Py_am_await, SockReq_am_await},
    {Py_am_send, req_am_send},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, req_iternext},
    {Py_tp_methods, SockReq_methods},
    {Py_tp_getset, SockReq_getset},
    {Py_tp_repr, SockReq_repr},
    {Py_tp_traverse, SockReq_traverse},
    {Py_tp_clear, SockReq_clear},
    {Py_tp_dealloc, SockReq_dealloc},
    {0, NULL},
};

static PyType_Spec SockReq_spec = {
    .name = "ringloop._core.SockOp",
    .basicsize = sizeof(RlSockReq),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = SockReq_slots,
};

/* ---------------------------------------------------------------------- */
/* the Loop methods */

/* f(sock, a[, b]) with keywords: names[nmax], the first nreq required. */
static int
parse_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
           const char *fname, const char *const *names, int nreq, int nmax,
           PyObject **out)
{
    for (int i = 0; i < nmax; i++) {
        out[i] = NULL;
    }
    if (nargs > nmax) {
        PyErr_Format(PyExc_TypeError,
                     "%s() takes %d positional arguments but %zd were given",
                     fname, nmax + 1, nargs + 1);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        out[i] = args[i];
    }
    if (kwnames != NULL) {
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(kwnames); k++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, k);
            int found = -1;
            for (int i = 0; i < nmax; i++) {
                if (PyUnicode_CompareWithASCIIString(key, names[i]) == 0) {
                    found = i;
                    break;
                }
            }
            if (found < 0) {
                PyErr_Format(PyExc_TypeError,
                             "%s() got an unexpected keyword argument '%S'",
                             fname, key);
                return -1;
            }
            if (out[found] != NULL) {
                PyErr_Format(PyExc_TypeError,
                             "%s() got multiple values for argument '%s'",
                             fname, names[found]);
                return -1;
            }
            out[found] = args[nargs + k];
        }
    }
    for (int i = 0; i < nreq; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError,
                         "%s() missing 1 required positional argument: '%s'",
                         fname, names[i]);
            return -1;
        }
    }
    return 0;
}

static PyObject *
req_new(RlLoop *loop, int kind, PyObject *sock, PyObject *arg,
        PyObject *arg2)
{
    if (loop->st == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Loop.__init__() was not called");
        return NULL;
    }
    RlSockReq *req =
        PyObject_GC_New(RlSockReq, (loop)->st->sock->SockReqType);
    if (req == NULL) {
        return NULL;
    }
    memset((char *)req + sizeof(PyObject), 0,
           sizeof(RlSockReq) - sizeof(PyObject));
    rl_netop_init(&req->nop, (PyObject *)req, req_op_cb, -1, RL_OP_RECV,
                  NULL);
    req->loop = (RlLoop *)Py_NewRef(loop);
    req->sock = Py_NewRef(sock);
    req->arg = Py_NewRef(arg);
    req->arg2 = Py_XNewRef(arg2);
    req->kind = (uint8_t)kind;
    req->fd = -1;
    PyObject_GC_Track(req);
    return (PyObject *)req;
}

#define DEF_SOCK_METHOD(cname, kind, nreq, nmax, ...)                         \
    static PyObject *cname(RlLoop *self, PyObject *const *args,               \
                           Py_ssize_t nargs, PyObject *kwnames)               \
    {                                                                         \
        static const char *const names[] = {__VA_ARGS__};                    \
        PyObject *a[3];                                                       \
        if (parse_args(args, nargs, kwnames, kind_names[kind], names, nreq,   \
                       nmax, a) < 0) {                                        \
            return NULL;                                                      \
        }                                                                     \
        return req_new(self, kind, a[0], a[1], nmax > 2 ? a[2] : NULL);       \
    }

DEF_SOCK_METHOD(Loop_sock_recv, K_RECV, 2, 2, "sock", "n")
DEF_SOCK_METHOD(Loop_sock_recv_into, K_RECV_INTO, 2, 2, "sock", "buf")
DEF_SOCK_METHOD(Loop_sock_recvfrom, K_RECVFROM, 2, 2, "sock", "bufsize")
DEF_SOCK_METHOD(Loop_sock_sendall, K_SENDALL, 2, 2, "sock", "data")
DEF_SOCK_METHOD(Loop_sock_sendto, K_SENDTO, 3, 3, "sock", "data", "address")
#undef DEF_SOCK_METHOD

/* check_asyncio_sock(), then the fd.  Returns the fd, or -1 with an
 * exception. */
static int
sock_checks(RlLoop *loop, PyObject *sock)
{
    rl_state *st = loop->st;
    if (check_asyncio_sock(loop, sock, rl_sock_is_native(st, sock)) < 0) {
        return -1;
    }
    PyObject *f = PyObject_CallMethodNoArgs(sock, st->str_fileno);
    if (f == NULL) {
        return -1;
    }
    long fd = PyLong_AsLong(f);
    Py_DECREF(f);
    if (fd == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (fd < 0 || fd > INT32_MAX) {
        /* A closed socket: let the syscall report EBADF. */
        return INT32_MAX;
    }
    return (int)fd;
}

static int
sock_int_attr(PyObject *sock, const char *name, int *v)
{
    PyObject *o = PyObject_GetAttrString(sock, name);
    if (o == NULL) {
        return -1;
    }
    long l = PyLong_AsLong(o);
    Py_DECREF(o);
    if (l == -1 && PyErr_Occurred()) {
        return -1;
    }
    *v = (int)l;
    return 0;
}

/* A sock_connect()/sock_accept() request, checked now (the wrapper's first
 * step: SockMixin in _sockops.py): as asyncio, nothing happens before. */
static RlSockReq *
conn_req_new(RlLoop *loop, int kind, PyObject *sock, PyObject *address)
{
    if (rl_loop_check_closed(loop) < 0) {
        return NULL;
    }
    int fd = sock_checks(loop, sock);
    if (fd < 0 || rl_net_check_fd_free(loop, fd) < 0) {
        return NULL;
    }
    RlSockReq *req = (RlSockReq *)req_new(loop, kind, sock,
                                          address != NULL ? address : Py_None,
                                          NULL);
    if (req == NULL) {
        return NULL;
    }
    req->fd = fd;
    req->native = 1;
    req->prepared = 1;
    if (sock_int_attr(sock, "family", &req->family) < 0 ||
        (kind == K_ACCEPT && (sock_int_attr(sock, "type", &req->type) < 0 ||
                              sock_int_attr(sock, "proto", &req->proto) <
                                  0))) {
        Py_DECREF(req);
        return NULL;
    }
    if (kind == K_ACCEPT) {
        /* (a closed socket's INT32_MAX fails: accept4() says EBADF) */
        int fl = fcntl(fd, F_GETFL);
        req->blocking = fl >= 0 && !(fl & O_NONBLOCK);
    }
    return req;
}

/* sock_connect() on a closed socket (sock_checks() gave INT32_MAX): once
 * the address is checked, what asyncio's sock.connect() raises.  0, or -1
 * raised. */
static int
conn_check_open(RlSockReq *req)
{
    if (req->fd == INT32_MAX) {
        rl_raise_errno(-EBADF);
        return -1;
    }
    return 0;
}

/* _sock_connect(sock, address): the request, or, for a host name or a
 * family parsed in Python only, the _sock_connect_slow() coroutine. */
static PyObject *
Loop_sock_connect(RlLoop *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError,
                        "sock_connect() takes 2 arguments (sock, address)");
        return NULL;
    }
    PyObject *sock = args[0], *address = args[1];
    RlSockReq *req = conn_req_new(self, K_CONNECT, sock, address);
    if (req == NULL) {
        return NULL;
    }
    int rc = rl_sockaddr_from_py(req->family, address, &req->ss,
                                 &req->sslen);
    if (rc > 0 && conn_check_open(req) < 0) {
        rc = -1;
    }
    if (rc <= 0) {
        Py_DECREF(req);
        if (rc < 0) {
            return NULL;
        }
        /* A host name (resolve it) or a family we do not parse: the
         * Python path, as asyncio's. */
        PyObject *stack[3] = {(PyObject *)self, sock, address};
        return PyObject_VectorcallMethod(self->st->net->str_sock_connect_slow,
                                         stack, 3, NULL);
    }
    return (PyObject *)req;
}

/* _sock_connect_resolved(sock, address): the address is numeric already
 * (the Python path resolved it); never goes back to Python. */
static PyObject *
Loop__sock_connect_resolved(RlLoop *self, PyObject *const *args,
                            Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "expected (sock, address)");
        return NULL;
    }
    PyObject *address = args[1];
    RlSockReq *req = conn_req_new(self, K_CONNECT, args[0], address);
    if (req == NULL) {
        return NULL;
    }
    int rc = rl_sockaddr_from_py(req->family, address, &req->ss,
                                 &req->sslen);
    if (rc > 0 && conn_check_open(req) < 0) {
        rc = -1;
    }
    if (rc <= 0) {
        if (rc == 0) {
            PyErr_Format(PyExc_ValueError, "cannot connect to %R", address);
        }
        Py_DECREF(req);
        return NULL;
    }
    return (PyObject *)req;
}

/* _sock_accept(sock) */
static PyObject *
Loop_sock_accept(RlLoop *self, PyObject *sock)
{
    return (PyObject *)conn_req_new(self, K_ACCEPT, sock, NULL);
}

static PyObject *
Loop_sock_recvfrom_into(RlLoop *self, PyObject *const *args, Py_ssize_t nargs,
                        PyObject *kwnames)
{
    static const char *const names[] = {"sock", "buf", "nbytes"};
    PyObject *a[3];
    if (parse_args(args, nargs, kwnames, "sock_recvfrom_into", names, 2, 3,
                   a) < 0) {
        return NULL;
    }
    PyObject *zero = NULL;
    if (a[2] == NULL) {
        zero = PyLong_FromLong(0);
        if (zero == NULL) {
            return NULL;
        }
        a[2] = zero;
    }
    PyObject *r = req_new(self, K_RECVFROM_INTO, a[0], a[1], a[2]);
    Py_XDECREF(zero);
    return r;
}

static PyObject *
Loop__sock_set_recv_inline(RlLoop *self, PyObject *arg)
{
    int v = PyObject_IsTrue(arg);
    if (v < 0) {
        return NULL;
    }
    self->sock->recv_inline = (char)v;
    Py_RETURN_NONE;
}

static PyObject *
Loop__sock_debug(RlLoop *self, PyObject *Py_UNUSED(ignored))
{
    Py_ssize_t nreq = 0;
    for (RlSockReq *r = self->sock->reqs; r != NULL; r = r->lnext) {
        nreq++;
    }
    return Py_BuildValue("{snsnsO}", "queued", nreq, "stashes",
                         (Py_ssize_t)self->sock->nstash, "recv_inline",
                         self->sock->recv_inline ? Py_True : Py_False);
}

#define FASTKW (METH_FASTCALL | METH_KEYWORDS)

static PyMethodDef rl_sock_loop_methods[] = {
    {"_sock_recv", RL_CFUNC(Loop_sock_recv), FASTKW,
     "_sock_recv($self, sock, n)\n--\n\n"
     "Receive up to n bytes from sock (awaitable; returns bytes)."},
    {"_sock_recv_into", RL_CFUNC(Loop_sock_recv_into), FASTKW,
     "_sock_recv_into($self, sock, buf)\n--\n\n"
     "Receive into the writable buffer buf (awaitable; returns the "
     "number of bytes)."},
    {"_sock_recvfrom", RL_CFUNC(Loop_sock_recvfrom), FASTKW,
     "_sock_recvfrom($self, sock, bufsize)\n--\n\n"
     "Receive a datagram (awaitable; returns (bytes, address))."},
    {"_sock_recvfrom_into", RL_CFUNC(Loop_sock_recvfrom_into), FASTKW,
     "_sock_recvfrom_into($self, sock, buf, nbytes=0)\n--\n\n"
     "Receive a datagram into buf (awaitable; returns (nbytes, address))."},
    {"_sock_sendall", RL_CFUNC(Loop_sock_sendall), FASTKW,
     "_sock_sendall($self, sock, data)\n--\n\n"
     "Send all of data (awaitable; returns None)."},
    {"_sock_sendto", RL_CFUNC(Loop_sock_sendto), FASTKW,
     "_sock_sendto($self, sock, data, address)\n--\n\n"
     "Send a datagram to address (awaitable; returns the bytes sent)."},
    {"_sock_connect", RL_CFUNC(Loop_sock_connect), METH_FASTCALL,
     "_sock_connect($self, sock, address, /)\n--\n\n"
     "Connect sock (non-blocking) to address (awaitable)."},
    {"_sock_accept", (PyCFunction)Loop_sock_accept, METH_O,
     "_sock_accept($self, sock, /)\n--\n\n"
     "Accept a connection on sock (awaitable; returns (conn, address))."},
    {"_sock_connect_resolved", RL_CFUNC(Loop__sock_connect_resolved),
     METH_FASTCALL, NULL},
    {"_sock_set_recv_inline", (PyCFunction)Loop__sock_set_recv_inline,
     METH_O, NULL},
    {"_sock_debug", (PyCFunction)Loop__sock_debug, METH_NOARGS, NULL},
    {"_dgram_new", RL_CFUNC(rl_dgram_new), METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

#undef FASTKW

/* ---------------------------------------------------------------------- */
/* module and loop hooks: the part (rl_loop_part, internal.h) */

static int
sock_module_init(PyObject *module, rl_state *st)
{
    /* The cached objects and names are st->net's (the net part comes
     * first in rl_loop_parts). */
    st->sock = PyMem_Calloc(1, sizeof(*st->sock));
    if (st->sock == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    st->sock->SockReqType = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &SockReq_spec, NULL);
    if (st->sock->SockReqType == NULL) {
        return -1;
    }
    return rl_dgram_module_init(module, st);
}

static int
sock_module_traverse(rl_state *st, visitproc visit, void *arg)
{
    if (st->sock != NULL) {
        Py_VISIT(st->sock->SockReqType);
        Py_VISIT(st->sock->DgramType);
    }
    return 0;
}

static void
sock_module_clear(rl_state *st)
{
    if (st->sock != NULL) {
        Py_CLEAR(st->sock->SockReqType);
        Py_CLEAR(st->sock->DgramType);
    }
}

static void
sock_module_free(rl_state *st)
{
    PyMem_Free(st->sock);
    st->sock = NULL;
}

static int
sock_loop_new(RlLoop *loop)
{
    rl_loop_sock *ls = PyMem_Calloc(1, sizeof(*ls));
    if (ls == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    loop->sock = ls;
    /* Receives arm their op directly on both backends: cheaper in the
     * sock_* echo benchmark (ARCHITECTURE.md "loop.sock_*").  1 restores
     * asyncio's inline first attempt. */
    ls->recv_inline = 0;
    const char *env = getenv("RINGLOOP_SOCK_RECV_INLINE");
    if (env != NULL && (env[0] == '0' || env[0] == '1') && env[1] == 0) {
        ls->recv_inline = env[0] == '1';
    }
    return 0;
}

static void
sock_loop_free(RlLoop *loop)
{
    PyMem_Free(loop->sock);
    loop->sock = NULL;
}

static int
sock_loop_traverse(RlLoop *loop, visitproc visit, void *arg)
{
    rl_loop_sock *ls = loop->sock;
    if (ls == NULL) {
        return 0;
    }
    for (RlSockReq *r = ls->reqs; r != NULL; r = r->lnext) {
        Py_VISIT((PyObject *)r);
    }
    if (ls->nstash) {
        for (size_t i = 0; i < ls->nfds; i++) {
            Py_VISIT(ls->fds[i].stash_data);
            Py_VISIT(ls->fds[i].stash_addr);
            Py_VISIT(ls->fds[i].stash_owner);
        }
    }
    return rl_dgram_loop_traverse(loop, visit, arg);
}

/* A socket closed under a pending sock_* call.  asyncio's selector simply
 * forgets the closed fd: the call stays pending (until cancelled) on 3.11,
 * 3.12 and 3.13, and the socket is really closed (the peer sees EOF or
 * EPIPE; a connect in progress is abandoned).  Epoll does the same by
 * itself, but an io_uring op holds a reference to the file: the socket
 * would stay open and the op complete later (with the peer's next bytes,
 * or the connection).  So, before each wait, every armed request whose
 * socket's fileno() changed has its op cancelled, which lets the kernel
 * close the file, and its awaiter is left pending: both backends then
 * behave as asyncio (issue 9, defect 12). */
static void
sock_loop_before_wait(RlLoop *loop)
{
    RlSockReq *r = loop->sock->reqs; /* NULL: nothing pending (the rule) */
    while (r != NULL) {
        if (r->qs != Q_HEAD || r->orphaned ||
            r->nop.op.state != RL_OPS_ARMED) {
            r = r->lnext;
            continue;
        }
        /* Beware: fileno() of a socket subclass is user code, which may
         * finish requests (unlinking them): hold r, step on afterwards. */
        Py_INCREF(r);
        int fd = -1;
        if (sock_fileno(loop, r->sock, &fd) < 0) {
            PyErr_WriteUnraisable(r->sock);
            fd = r->fd;
        }
        if (fd != r->fd && r->nop.op.state == RL_OPS_ARMED) {
            r->orphaned = 1;
            (void)rl_netop_cancel(loop, &r->nop);
        }
        RlSockReq *next = r->lnext;
        Py_DECREF(r);
        r = next;
    }
}

static void
sock_loop_after_reactor_destroy(RlLoop *loop)
{
    rl_loop_sock *ls = loop->sock;
    /* An op the reactor made IDLE: the kernel is done with its buffers.
     * One left ARMED/CANCELLING (a ring that could not be drained, see
     * net_loop_after_reactor_destroy) may still be written by the
     * kernel: its request keeps its buffers (the bytes being filled, the
     * *_into export, the data being sent) and stays a zombie, which
     * nothing ever finishes, clears or frees (its op leaked a reference
     * to it); only the loop's own reference and the fd queue go. */
    while (ls->reqs != NULL) {
        RlSockReq *req = ls->reqs;
        rl_sockfd *f = fd_peek(loop, req->fd);
        if (f != NULL && req->qs != Q_NONE) {
            queue_unlink(f, req);
        }
        if (req->nop.op.state != RL_OPS_IDLE) {
            req->qs = Q_ZOMBIE;
            req->abandoned = 1;
        }
        else {
            req->qs = Q_NONE;
            release_view(req);
        }
        loop_list_del(req);
    }
    rl_dgram_loop_after_reactor_destroy(loop);
    for (size_t i = 0; i < ls->nfds; i++) {
        if (ls->fds[i].stash_data != NULL) {
            stash_clear(loop, &ls->fds[i]);
        }
    }
    PyMem_Free(ls->fds);
    ls->fds = NULL;
    ls->nfds = 0;
    ls->nstash = 0;
}

const rl_loop_part rl_sock_part = {
    .name = "sock",
    .methods = rl_sock_loop_methods,
    .module_init = sock_module_init,
    .module_traverse = sock_module_traverse,
    .module_clear = sock_module_clear,
    .module_free = sock_module_free,
    .loop_new = sock_loop_new,
    .loop_traverse = sock_loop_traverse,
    .loop_after_reactor_destroy = sock_loop_after_reactor_destroy,
    .loop_free = sock_loop_free,
    .check_fd_free = rl_sock_check_fd_free,
    .before_wait = sock_loop_before_wait,
};
