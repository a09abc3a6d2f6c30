/* net_internal.h -- what net.c, stream.c and server.c share (and nobody
 * else): the layouts of the transport, listener and sock_* objects, and the
 * helpers around rl_netop.  Include after internal.h. */
#ifndef RL_NET_INTERNAL_H
#define RL_NET_INTERNAL_H

#include "internal.h"
#include "net.h"
#include "sockops.h"

#include <sys/socket.h>
#include <sys/uio.h>

/* asyncio.constants */
#define RL_LOG_THRESHOLD_FOR_CONNLOST_WRITES 5
#define RL_ACCEPT_RETRY_DELAY 1.0

/* ---------------------------------------------------------------------- */
/* rl_netop: see net.h */

static inline void
rl_netop_init(rl_netop *n, PyObject *owner, rl_op_cb cb, int fd,
              rl_op_kind kind, rl_netop_forget_fn forget)
{
    memset(n, 0, sizeof(*n));
    n->op.cb = cb;
    n->op.fd = fd;
    n->op.kind = (uint8_t)kind;
    n->owner = owner;
    n->forget = forget;
}

/* Submit; on success the op holds a reference to its owner. */
int rl_netop_submit(RlLoop *loop, rl_netop *n);

/* asyncio's _set_write_buffer_limits(high, low) (stream.c): the limits as
 * asyncio keeps them (new references) and as size_t for comparisons with
 * the buffer size (clamped, floats floored).  0, or -1 raised. */
int rl_net_write_limits(PyObject *high_o, PyObject *low_o, PyObject **high,
                        PyObject **low, size_t *h, size_t *l);
/* Cancel if armed (0 or -errno from the reactor; -ENOENT if idle). */
int rl_netop_cancel(RlLoop *loop, rl_netop *n);
/* The op's final completion arrived (called first thing in its callback):
 * unlink it; the caller now owns the owner reference the op held and must
 * give it back with rl_net_release_owner() (or hand it to a ready record). */
void rl_netop_done(RlLoop *loop, rl_netop *n);
/* Drop a reference from inside rl_reactor_dispatch(): never the last one
 * there (a dealloc could run Python code); that one is dropped from the
 * ready queue instead. */
void rl_net_release_owner(RlLoop *loop, PyObject *owner);
/* Make every op submitted so far reach the kernel, so that the fd of an op
 * just cancelled may be closed at once (see reactor.h, flush). */
void rl_net_flush(RlLoop *loop);
/* Flush, then deliver the completions that are ready (the final ones of
 * ops just cancelled, usually).  close()/abort() use it so that
 * connection_lost() is queued at once when nothing is left in flight, at
 * the point of the ready queue where asyncio's close() puts it. */
void rl_net_reap_cancelled(RlLoop *loop);

/* 1 if n may be armed: idle in the reactor, and no delivery of its last
 * completion is waiting on the ready queue (see net.h). */
static inline int
rl_netop_armable(const rl_netop *n)
{
    return n->op.state == RL_OPS_IDLE && !n->queued;
}
/* Queue fn(loop, owner, NULL) to hand n's result to Python, stealing
 * owner_ref (a reference to n->owner): from the completion callback, after
 * rl_netop_done(), the one the op held; after a failed submission, one the
 * caller took.  The record must call rl_netop_delivered() once the result
 * left the op's buffers, and drop the reference.  -1: the record could not
 * be queued (exception set; the reference is released). */
int rl_netop_queue(RlLoop *loop, rl_netop *n, rl_ready_fn fn,
                   PyObject *owner_ref);
/* The queued result was taken: n may be armed again. */
static inline void
rl_netop_delivered(rl_netop *n)
{
    n->queued = 0;
}

/* A ready-queue record whose only job is to drop `a`. */
int rl_net_release_fn(RlLoop *loop, PyObject *a, PyObject *b);

/* ---------------------------------------------------------------------- */
/* Calling out to Python */

/* method(obj, arg) in context ctx (may be NULL: current context).
 * arg may be NULL (no argument). */
PyObject *rl_net_call_method(PyObject *ctx, PyObject *obj, PyObject *name,
                             PyObject *arg);
/* loop.call_exception_handler({'message': msg, 'exception': exc, key1:
 * val1, key2: val2}) with NULL keys skipped.  Returns -1 if the handler
 * raised SystemExit/KeyboardInterrupt (exception set), else 0. */
int rl_net_report(RlLoop *loop, const char *msg, PyObject *exc,
                  PyObject *key1, PyObject *val1, PyObject *key2,
                  PyObject *val2);
/* 1 if the current exception is SystemExit/KeyboardInterrupt. */
int rl_net_exc_is_fatal(void);
/* asyncio.log.logger.<level>(fmt, *args) */
int rl_net_log(RlLoop *loop, PyObject *level, const char *fmt,
               PyObject *arg1, PyObject *arg2);
/* OSError (the right subclass) for -errno, as an object (no exception
 * set), or NULL with an exception. */
PyObject *rl_net_oserror(int neg_errno, PyObject *msg);

/* ---------------------------------------------------------------------- */
/* Addresses */

/* Python address -> sockaddr for family (AF_INET, AF_INET6, AF_UNIX).
 * 1: done; 0: the host is not a numeric address (resolve it first) or
 * the family is not handled here; -1: error (exception set). */
int rl_sockaddr_from_py(int family, PyObject *address,
                        struct sockaddr_storage *ss, socklen_t *len);
/* sockaddr -> Python address as the socket module returns it; NULL with
 * an exception, or Py_None for unknown families. */
PyObject *rl_sockaddr_to_py(const struct sockaddr *sa, socklen_t len);

/* ---------------------------------------------------------------------- */
/* fd -> transport map (asyncio's loop._transports) */

int rl_net_fdmap_set(RlLoop *loop, int fd, struct RlStream *t);
void rl_net_fdmap_clear(RlLoop *loop, int fd, struct RlStream *t);

/* ---------------------------------------------------------------------- */
/* stream.c */

/* A chunk of the write queue. */
typedef struct {
    PyObject *obj;   /* the exact bytes holding the data, or NULL: mem */
    char *mem;       /* our own copy (malloc), or NULL: obj */
    const char *ptr; /* first unsent byte */
    size_t len;      /* unsent bytes */
    size_t cap;      /* mem only: bytes allocated after ptr's origin */
} rl_wchunk;

typedef struct RlStream {
    PyObject_HEAD
    /* The __slots__ of asyncio.transports._FlowControlMixin and its bases,
     * at the offsets CPython gives them (sorted by name), so that this type
     * can derive from it: isinstance(t, asyncio.Transport) holds and
     * asyncio code reading t._loop / t._protocol_paused works.  net.c checks
     * the offsets at import and falls back to `object` as the base if they
     * ever differ. */
    PyObject *aio_extra;           /* _extra: dict, or NULL until needed */
    PyObject *aio_high_water;      /* _high_water: int */
    PyObject *aio_loop;            /* _loop: the loop */
    PyObject *aio_low_water;       /* _low_water: int */
    PyObject *aio_protocol_paused; /* _protocol_paused: bool */
    /* ours */
    RlLoop *loop;         /* borrowed: aio_loop holds it */
    PyObject *protocol;   /* NULL after connection_lost (asyncio: None) */
    PyObject *context;    /* protocol callbacks run in it */
    PyObject *sock;       /* socket.socket; NULL until asked for when we
                           * only have the fd (accepted connections) */
    PyObject *server;     /* Server or NULL */
    PyObject *lost_exc;   /* what connection_lost() gets */
    PyObject *dict;
    PyObject *weakreflist;
    /* read side: one op at a time, a POLL (nothing pinned: the read is
     * done when it fires) or a RECV into rbuf (Protocol) or rview
     * (BufferedProtocol: the buffer from get_buffer(), pinned); see
     * stream.c for when each is used */
    rl_netop rop;
    PyObject *rbuf;
    Py_buffer *rview;
    PyObject *rview_proto; /* the protocol rview came from */
    /* write side: a queue of chunks, one SEND/SENDMSG at a time */
    rl_netop wop;
    rl_wchunk *wq;
    uint32_t wq_head, wq_len, wq_cap;
    size_t wsize;      /* unsent bytes queued (get_write_buffer_size) */
    size_t w_inflight; /* bytes the armed wop covers */
    struct msghdr *wmsg; /* SENDMSG header + iovecs (allocated on use) */
    size_t high, low;  /* write buffer limits */
    unsigned conn_lost;
    unsigned pipe_conn_lost; /* write pipe: asyncio's _conn_lost (writes that
                              * failed or were dropped) */
    int32_t rres;      /* result of the RECV not delivered yet */
    int fd;            /* -1 once closed */
    int family;
    uint8_t rrecv;     /* next read is a RECV (a stream is flowing) */
    uint8_t closing;   /* close() or a fatal error: no more reading */
    uint8_t eof;       /* write_eof() called */
    uint8_t paused;    /* pause_reading() */
    uint8_t buffered;  /* protocol is a BufferedProtocol */
    uint8_t eof_seen;  /* the peer's EOF was delivered */
    uint8_t rstash;    /* rres holds a result to deliver on resume */
    uint8_t wdropped;  /* queue dropped: free it when wop is idle */
    uint8_t shut_wr;   /* shutdown(SHUT_WR) done */
    uint8_t final_queued; /* the connection_lost record is queued */
    uint8_t lost_done;    /* connection_lost ran; fd closed */
    uint8_t protocol_connected;
    uint8_t owns_sock;    /* close the socket at the end */
    uint8_t pipe;         /* RL_PIPE_READ/RL_PIPE_WRITE: a pipe transport
                           * (read()/write() instead of recv()/send(),
                           * asyncio's pipe semantics); sock then holds
                           * the pipe object */
    uint8_t fd_used;      /* an op of ours completed with data on fd: later
                           * ones may say RL_OPF_SAME_FILE (we own the fd) */
    struct rl_sendfile *sf; /* loop.sendfile() state (sendfile.c), or NULL */
} RlStream;

#define RL_PIPE_READ 1
#define RL_PIPE_WRITE 2

int rl_stream_init_type(PyObject *module, rl_state *st);
/* Loop._rl_make_pipe_transport(kind, pipe, protocol, waiter, extra): the
 * native read (kind 0) or write (kind 1) pipe transport; see stream.c,
 * "pipes". */
PyObject *rl_pipe_make_transport(RlLoop *loop, PyObject *const *args,
                                 Py_ssize_t nargs);
/* New transport on a connected, non-blocking socket.  sock may be NULL
 * (then fd is used and the socket object is made when asked for).  ctx:
 * the context of protocol callbacks (stolen reference).  Schedules
 * connection_made (through a Handle, as asyncio), the start of reading and
 * waiter's result (if any) on the ready queue unless `now`: then
 * connection_made is called at once and reading starts (the caller runs on
 * the ready queue, where asyncio would have run them). */
RlStream *rl_stream_new(RlLoop *loop, int fd, PyObject *sock,
                        PyObject *protocol, PyObject *waiter,
                        PyObject *server, PyObject *extra, PyObject *ctx,
                        int now);
/* Loop._make_socket_transport(sock, protocol, waiter=None, *, extra=None,
 * server=None) */
PyObject *rl_stream_make_transport(RlLoop *loop, PyObject *const *args,
                                   Py_ssize_t nargs, PyObject *kwnames);
/* Return 1 if t is a transport that is not closing. */
int rl_stream_is_live(RlStream *t);
/* For sendfile.c: nothing queued, in flight or pending on the write side. */
int rl_stream_write_idle(RlStream *t);
/* For sendfile.c: an op of t ended; queue connection_lost() if it was the
 * last one of a transport that is ending. */
void rl_stream_op_ended(RlStream *t);

/* ---------------------------------------------------------------------- */
/* sendfile.c: loop.sendfile()'s zero-copy path inside the stream transport
 * (the "sendfile" entry behind the write queue). */

struct rl_sendfile;
/* StreamTransport._sendfile_start(fd, offset, count, fut) and
 * _sendfile_stop() */
PyObject *rl_sendfile_start(RlStream *t, PyObject *const *args,
                            Py_ssize_t nargs);
PyObject *rl_sendfile_stop(RlStream *t, PyObject *unused);
/* 1 while a sendfile refuses write() */
int rl_sendfile_active(RlStream *t);
/* 1 while its op is in the kernel (the socket must stay open) */
int rl_sendfile_busy(RlStream *t);
/* The write queue drained (dispatch or Python context): start a waiting
 * sendfile. */
void rl_sendfile_drained(RlStream *t);
/* The transport ends (close/abort/fatal error; dispatch-safe): end the
 * sendfile with the bytes sent so far. */
void rl_sendfile_abort(RlStream *t);
/* Dealloc: free the state (no op can be armed then). */
void rl_sendfile_free(RlStream *t);

/* ---------------------------------------------------------------------- */
/* server.c */

int rl_listener_init_type(PyObject *module, rl_state *st);
/* Loop._listener(sock, protocol_factory, server, backlog) */
PyObject *rl_listener_new(RlLoop *loop, PyObject *const *args,
                          Py_ssize_t nargs);

#endif /* RL_NET_INTERNAL_H */
