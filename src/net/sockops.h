/* sockops.h -- loop.sock_* requests, datagram transports and the socket
 * address helpers they share.  (Issue 5, the sockets half.  Included by
 * internal.h; the stream transports are in net.h.) */
#ifndef RL_SOCKOPS_H
#define RL_SOCKOPS_H

#include <stdint.h>
#include <sys/socket.h>

typedef struct RlSockReq RlSockReq;
typedef struct RlDgram RlDgram;

/* Per-module state (inside rl_state as `st->sock`): the two types made in
 * sockops.c and dgram.c.  Every cached object and interned name they use
 * is in the one networking block, st->net (net.h). */
typedef struct rl_sock_state {
    PyTypeObject *SockReqType;   /* the awaitable returned by _sock_* */
    PyTypeObject *DgramType;     /* _core.DatagramTransport */
} rl_sock_state;

/* One fd as the sock_* code sees it.  Requests of one direction (0 =
 * receive, 1 = send) are served in FIFO order, one at a time: only the
 * head may have an op in the reactor.  A request abandoned while its op
 * was in flight stays the head (a "zombie") until the op's final
 * completion, so that neither the bytes it may still receive nor the
 * buffer the kernel may still write into are mixed up with the next
 * request's. */
typedef struct rl_sockfd {
    RlSockReq *head[2], *tail[2];
    /* What a receive obtained after its awaiter had gone (cancelled while
     * the data was already on its way): served first to the next receive
     * on the same socket.  data is bytes or an exception instance; addr is
     * the sender's address or NULL; owner identifies the socket (a weak
     * reference, or NULL with owner_id set when it has none). */
    PyObject *stash_data;
    PyObject *stash_addr;
    PyObject *stash_owner;
    void *stash_owner_id;
    RlDgram *dgram; /* borrowed: the datagram transport that owns this fd */
} rl_sockfd;

/* Per-loop state (inside RlLoop as `loop->sock`). */
typedef struct rl_loop_sock {
    rl_sockfd *fds;
    size_t nfds;
    RlSockReq *reqs;   /* every request in an fd queue (one ref each) */
    RlDgram *dgrams;   /* every datagram transport with ops or a record
                        * pending (one ref each) */
    size_t nstash;     /* fds with a stash (fast skip when 0) */
    /* Receives try the syscall at once before arming an op (asyncio's
     * order, 1) or arm the op directly (0, the default); see
     * ARCHITECTURE.md "loop.sock_*". */
    char recv_inline;
} rl_loop_sock;

/* ---------------------------------------------------------------------- */
/* Functions */
struct RlLoop;
struct rl_state;

/* sockops.c: the sock_* and datagram part of the loop (rl_loop_part,
 * internal.h): st->sock, loop->sock and their Loop methods. */
struct rl_loop_part;
extern const struct rl_loop_part rl_sock_part;
/* 0, or -1 with RuntimeError when a datagram transport owns fd. */
int rl_sock_check_fd_free(struct RlLoop *loop, int fd);
/* The fd's record, grown on demand (NULL + MemoryError). */
rl_sockfd *rl_sock_fd(struct RlLoop *loop, int fd);
/* 1 if sock is exactly socket.socket or _socket.socket (the native path
 * may do syscalls on its fd instead of calling its methods). */
int rl_sock_is_native(struct rl_state *st, PyObject *sock);
/* An OSError instance (the right subclass) for -errno. */
PyObject *rl_sock_errno_exc(int neg_errno);

/* dgram.c */
int rl_dgram_module_init(PyObject *module, struct rl_state *st);
void rl_dgram_loop_after_reactor_destroy(struct RlLoop *loop);
int rl_dgram_loop_traverse(struct RlLoop *loop, visitproc visit, void *arg);
/* loop._dgram_new(sock, protocol, address, waiter, extra, connected) */
PyObject *rl_dgram_new(struct RlLoop *loop, PyObject *const *args,
                       Py_ssize_t nargs);

/* sockaddr.c -- CPython's address conventions (socketmodule.c
 * makesockaddr/getsockaddrarg) for the families handled natively:
 * AF_INET, AF_INET6, AF_UNIX. */
/* The Python form of a received address (None when len is 0). */
PyObject *rl_sockaddr_build(const struct sockaddr *sa, socklen_t len);
/* Parse the simple, unambiguous forms of a Python address for family:
 * 1 parsed into *ss / *len; 0 anything else (hostnames, odd types, out of
 * range: the caller then lets socket.socket's own method decide, so the
 * exact errors and name resolution stay CPython's).  Never raises. */
int rl_sockaddr_parse(int family, PyObject *addr,
                      struct sockaddr_storage *ss, socklen_t *len);
/* 1 for the families above. */
int rl_sockaddr_native_family(int family);

#endif /* RL_SOCKOPS_H */
