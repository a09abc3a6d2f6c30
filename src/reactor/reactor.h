/* reactor.h -- the contract between the loop and its I/O backends.
 *
 * Plain C: no Python.h here, and no backend ever calls into Python or
 * touches the GIL.  Errors are returned as -errno.  The loop converts them to
 * exceptions in one place (errors.c).
 *
 * Model: completion.  The issuer embeds an rl_op in its own struct, fills the
 * public fields and calls rl_reactor_submit().  Exactly one final completion
 * (plus, for multishot ops, any number of intermediate ones flagged
 * RL_CQE_MORE) is later delivered through op->cb from rl_reactor_dispatch(),
 * never synchronously from submit() or cancel().  Until the final completion
 * the op's memory and every buffer it points to belong to the kernel/backend:
 * the issuer must keep them alive and unchanged, also across close.
 *
 * One iteration of the loop is:
 *
 *     timeout = ...;                       (GIL held)
 *     Py_BEGIN_ALLOW_THREADS
 *     n = rl_reactor_wait(r, timeout_ns);  (blocks; fills a batch)
 *     Py_END_ALLOW_THREADS
 *     rl_reactor_dispatch(r);              (GIL held; calls op->cb)
 *
 * io_uring: ops become SQEs; wait() submits everything prepared since the last
 * wait and waits for CQEs in one io_uring_enter; dispatch() walks the CQ.
 * epoll: ops are emulated with readiness plus a non-blocking syscall done by
 * the backend when the fd is ready, so transports are written once.
 */
#ifndef RL_REACTOR_H
#define RL_REACTOR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

typedef struct rl_reactor rl_reactor;
typedef struct rl_op rl_op;

/* What an op does.  res in the callback is given per kind. */
typedef enum {
    /* One-shot readiness of op->fd for op->u.poll.events (POLLIN/POLLOUT).
     * res = revents (> 0; POLLERR/POLLHUP are always reported) or -errno.
     * Level-triggered from the issuer's view: re-submitting while the fd is
     * still ready completes at once.  This is what add_reader/add_writer
     * need. */
    RL_OP_POLL = 1,
    /* recv(fd, buf, len, msg_flags): res = bytes (0 = EOF) or -errno. */
    RL_OP_RECV,
    /* send(fd, buf, len, msg_flags|MSG_NOSIGNAL): res = bytes or -errno.
     * A short write is a normal completion; the issuer resubmits. */
    RL_OP_SEND,
    /* recvmsg / sendmsg with op->u.msg.msg (name, iovecs, control).
     * res = bytes or -errno; msg->msg_namelen/msg_flags are updated on
     * RECVMSG as recvmsg(2) does. */
    RL_OP_RECVMSG,
    RL_OP_SENDMSG,
    /* accept4(fd, addr, addrlen, SOCK_NONBLOCK|SOCK_CLOEXEC):
     * res = new fd or -errno.  With RL_OPF_MULTISHOT the op stays armed and
     * each accepted fd comes with RL_CQE_MORE; addr is then not filled
     * (pass NULL). */
    RL_OP_ACCEPT,
    /* connect(fd, addr, addrlen) on a non-blocking socket: res = 0,
     * -errno, or RL_CONNECT_SETTLED: the connect went on in the background
     * and has settled; its outcome is the socket's SO_ERROR, which the
     * issuer reads (rl_connect_settled_result()) when it consumes the result.
     * Reading SO_ERROR clears it, so it is left to the issuer: a connect
     * cancelled after it settled keeps its error in the socket, where the
     * next connect() finds it, as with asyncio. */
    RL_OP_CONNECT,
    /* read/write on pipes, ttys, character devices: res = bytes or -errno.
     * Never used on regular files. */
    RL_OP_READ,
    RL_OP_WRITE,
    /* --- file ops (ringloop.fs, issue 15): io_uring only; the epoll
     * backend answers -EOPNOTSUPP from submit() (the Python layer runs
     * them in the executor there).  Arguments in op->u.file; res is what
     * the syscall returns or -errno.  None retries on -EAGAIN.
     *   FILE_READ/FILE_WRITE  pread/pwrite(fd, buf, len, off); off
     *                         (uint64_t)-1: the file position
     *   OPENAT    openat(fd, path, flags, mode): res = new fd (the issuer
     *             owns it, also when it raced with a cancel)
     *   STATX     statx(fd, path, flags, mask, buf2)
     *   RENAMEAT  renameat2(fd, path, fd2, path2, flags)
     *   UNLINKAT  unlinkat(fd, path, flags)
     *   MKDIRAT   mkdirat(fd, path, mode)
     *   FSYNC     fsync (flags 0) / fdatasync (flags 1)
     *   CLOSE     close(fd)
     *   SPLICE    splice(fd, off, fd2, off2, len, flags): one end must be
     *             a pipe; an offset of (uint64_t)-1 on the file side means
     *             its position, and must be -1 on the pipe side */
    RL_OP_FILE_READ,
    RL_OP_FILE_WRITE,
    RL_OP_OPENAT,
    RL_OP_STATX,
    RL_OP_RENAMEAT,
    RL_OP_UNLINKAT,
    RL_OP_MKDIRAT,
    RL_OP_FSYNC,
    RL_OP_CLOSE,
    RL_OP_SPLICE,
    RL_OP__COUNT
} rl_op_kind;

/* op->flags, set by the issuer. */
enum {
    RL_OPF_MULTISHOT = 1u << 0, /* RL_OP_ACCEPT only */
    /* RL_OP_POLL: validate the fd as epoll would (EBADF for a bad fd,
     * EPERM for a regular file or directory) and fail submit() at once.
     * The loop sets it on the first arm of add_reader/add_writer. */
    RL_OPF_CHECK_FD = 1u << 1,
    /* The issuer vouches that op->fd names the same open file as when its
     * previous op on the fd was submitted (it owns the fd and has not
     * closed it since).  The epoll backend then trusts its registration of
     * the fd instead of re-checking it with epoll_ctl() (an fd whose last
     * op completed may have been closed and its number reused).  Never on
     * the first op of an issuer on an fd. */
    RL_OPF_SAME_FILE = 1u << 2,
    /* RL_OP_POLL: the issuer does not own the fd (add_reader/add_writer of
     * a user's fd), which may be closed while the op is armed.  The reactor
     * must then not keep the file open: epoll never does (a closed file
     * drops out of the set, and the op simply never completes until it is
     * cancelled, as with a selector); io_uring's POLL request would hold a
     * file reference, so such polls go through an internal epoll set (see
     * uring.c).  Must not change while the op is armed. */
    RL_OPF_USER_FD = 1u << 3,
};

/* flags passed to the callback. */
enum {
    RL_CQE_MORE = 1u << 0, /* multishot: the op is still armed */
};

/* States, owned by the backend.  The issuer may read them. */
enum {
    RL_OPS_IDLE = 0,   /* not in the reactor: the issuer owns everything */
    RL_OPS_ARMED,      /* submitted; a final completion will come */
    RL_OPS_CANCELLING, /* cancel requested; a final completion will come */
};

/* Called from rl_reactor_dispatch() with the GIL held.  When it is called
 * without RL_CQE_MORE the op is IDLE again before the call, so the callback
 * may resubmit it or free it. */
typedef void (*rl_op_cb)(rl_op *op, int32_t res, uint32_t flags);

struct rl_op {
    /* --- set by the issuer ------------------------------------------- */
    rl_op_cb cb;
    int fd;
    uint8_t kind;  /* rl_op_kind */
    uint8_t flags; /* RL_OPF_* */
    /* --- owned by the backend ---------------------------------------- */
    uint8_t state; /* RL_OPS_* */
    uint8_t bflags; /* backend private bits */
    union {
        struct {
            uint32_t events; /* POLLIN | POLLOUT */
        } poll;
        struct {
            void *buf; /* RECV, SEND, READ, WRITE */
            size_t len;
            int msg_flags; /* RECV, SEND only */
        } io;
        struct {
            struct msghdr *msg; /* RECVMSG, SENDMSG */
            int msg_flags;
        } msg;
        struct {
            struct sockaddr *addr; /* may be NULL */
            socklen_t *addrlen;
        } accept;
        struct {
            const struct sockaddr *addr;
            socklen_t addrlen;
        } connect;
        struct {
            void *buf;       /* FILE_READ/WRITE: data; others: the path */
            void *buf2;      /* RENAMEAT: new path; STATX: struct statx */
            uint64_t off;    /* FILE_READ/WRITE; SPLICE: fd's offset */
            uint64_t off2;   /* SPLICE: fd2's offset */
            uint32_t len;    /* FILE_READ/WRITE: bytes; OPENAT/MKDIRAT:
                              * mode; STATX: mask */
            int flags;       /* OPENAT, STATX, RENAMEAT, UNLINKAT, FSYNC */
            int fd2;         /* RENAMEAT: new dirfd; SPLICE: out fd */
        } file;
    } u;
    /* --- backend private ----------------------------------------------
     * epoll keeps ops in per-fd lists and a local completion queue; io_uring
     * uses the op's address as user_data and needs nothing here. */
    rl_op *bprev, *bnext;
    int32_t bres;
    uint32_t bres_flags;
};

typedef enum {
    RL_BACKEND_IO_URING = 1,
    RL_BACKEND_EPOLL = 2,
} rl_backend_kind;

typedef struct rl_reactor_ops {
    const char *name; /* "io_uring" / "epoll" */
    /* Allocate and set up.  On failure return NULL and set *err to -errno;
     * why (if not NULL, size whylen) gets a one-line human explanation. */
    rl_reactor *(*create)(int *err, char *why, size_t whylen);
    /* Tear down: every op in flight is cancelled and its final completion
     * reaped (io_uring waits for the kernel as long as it takes), no
     * callback is called.  The issuer then owns (and frees) all its ops
     * that are IDLE.  An op left ARMED/CANCELLING is one the kernel may
     * still use (io_uring only, when the ring could not be entered any
     * more: a SINGLE_ISSUER ring closed from another thread than the one
     * it belongs to, alive or exited, or io_uring_enter() failing hard):
     * its issuer
     * must leak it and everything it pins, never free it.  (epoll: every
     * op is IDLE afterwards.) */
    void (*destroy)(rl_reactor *r);
    int (*submit)(rl_reactor *r, rl_op *op);
    /* 0: a final completion will follow (res -ECANCELED unless the op had
     * already finished); -EALREADY: already cancelling; -ENOENT: op is IDLE
     * (no completion will follow). */
    int (*cancel)(rl_reactor *r, rl_op *op);
    /* Block until at least one completion, a wakeup, a signal or the
     * timeout (ns; -1 = forever, 0 = do not block).  Called WITHOUT the
     * GIL: must not touch anything Python.  Returns >= 0 or -errno
     * (-EINTR when a signal interrupted the wait). */
    int (*wait)(rl_reactor *r, int64_t timeout_ns);
    /* Deliver what wait() collected, plus ops completed locally (epoll
     * emulation, cancellations).  Called with the GIL.  Returns the number
     * of callbacks made. */
    int (*dispatch)(rl_reactor *r);
    /* Thread-safe and async-signal-safe: make a concurrent or the next
     * wait() return promptly.  The wake-up is consumed by a dispatch()
     * (io_uring reaps the eventfd poll's CQE, epoll reads the eventfd),
     * so one made between wait() and dispatch() may be consumed by that
     * dispatch() without ending any wait; the loop's wake_pending flag is
     * cleared after dispatch() for that reason (loop.c run_once). */
    void (*wakeup)(rl_reactor *r);
    /* Number of ops ARMED or CANCELLING (debug counters, leak checks). */
    size_t (*inflight)(rl_reactor *r);
    /* Hand every op submitted (or cancelled) so far to the kernel now,
     * without waiting, and let the kernel finish the cancelled ones (their
     * completions are delivered by the next dispatch as usual).  Afterwards
     * the fd of an op that was cancelled may be closed (and its number
     * reused) at once: the kernel resolved the fd to its file when it took
     * the request, the op completes -ECANCELED (or with what it did before
     * the cancel) without touching the fd again, and the file is not kept
     * open by the cancelled request (a listening socket closed right after
     * refuses connections).  Without it, a request still queued (io_uring:
     * in the SQ) would be issued on whatever file the number names by the
     * next wait.  0 or -errno.  epoll: nothing to do (its syscalls run in
     * dispatch, a cancelled op is off its fd's lists at once). */
    int (*flush)(rl_reactor *r);
    /* Optional (may be NULL): a one-line explanation of an error this
     * reactor returned, or NULL when strerror() says it all. */
    const char *(*explain)(rl_reactor *r, int err);
} rl_reactor_ops;

/* Every backend's rl_reactor struct begins with this header. */
struct rl_reactor {
    const rl_reactor_ops *ops;
    rl_backend_kind kind;
    /* rl_reactor_fork_generation when the reactor was created: a forked
     * child sees a different value (see rl_reactor_forked). */
    unsigned long fork_gen;
    /* A private epoll set, made when first needed, in which
     * rl_reactor_check_fd() tries the fds it cannot judge by their type;
     * closed by rl_reactor_release_header().  -1: none. */
    int probe_fd;
};

/* Fork.  A child made by fork() inherits the reactor's memory, but the
 * kernel objects behind it (the io_uring ring and its shared SQ/CQ memory,
 * the epoll set) are the parent's: a child that submitted to the ring or
 * called epoll_ctl() on the set would change the parent's registrations and
 * corrupt its queues.  So every entry point of a reactor created before a
 * fork is inert in the child, whoever calls it:
 *   submit()   accepts the op (ARMED, -EBUSY if not IDLE) and nothing
 *              reaches the kernel; no completion ever comes;
 *   cancel()   marks it CANCELLING (-ENOENT/-EALREADY as usual); no
 *              completion comes either;
 *   flush(), dispatch(), wakeup()   do nothing (dispatch returns 0);
 *   wait()     returns -ECHILD at once (the loop refuses to run in the
 *              child before it gets there);
 *   destroy()  releases the child's copies (fds, memory) without touching
 *              the parent's requests, and every op is the issuer's again:
 *              the kernel writes into the parent's memory, never into the
 *              child's copy of a buffer.
 * This is what asyncio's loop gives a child that aborts an inherited
 * transport or closes a server: the call returns, the parent keeps serving.
 * The marker is a generation counter bumped by a pthread_atfork() child
 * handler (one load and compare per call; getpid() would be a syscall:
 * glibc does not cache it).  A fork that bypasses the atfork handlers
 * (a raw clone()) is not detected. */
extern volatile unsigned long rl_reactor_fork_generation;

/* Fill the header; registers the atfork handler on first use.  0 or
 * -errno. */
int rl_reactor_init_header(rl_reactor *r, const rl_reactor_ops *ops,
                           rl_backend_kind kind);

/* Release what the header holds (the probe epoll fd); from destroy(). */
void rl_reactor_release_header(rl_reactor *r);

/* Non-zero in a child forked after r was created. */
static inline int
rl_reactor_forked(const rl_reactor *r)
{
    return __builtin_expect(r->fork_gen != rl_reactor_fork_generation, 0);
}

extern const rl_reactor_ops rl_epoll_ops;
extern const rl_reactor_ops rl_uring_ops;

/* Thin inline dispatchers so call sites read rl_reactor_submit(r, op). */
static inline int
rl_reactor_submit(rl_reactor *r, rl_op *op)
{
    return r->ops->submit(r, op);
}

static inline int
rl_reactor_cancel(rl_reactor *r, rl_op *op)
{
    return r->ops->cancel(r, op);
}

static inline int
rl_reactor_wait(rl_reactor *r, int64_t timeout_ns)
{
    return r->ops->wait(r, timeout_ns);
}

static inline int
rl_reactor_dispatch(rl_reactor *r)
{
    return r->ops->dispatch(r);
}

static inline void
rl_reactor_wakeup(rl_reactor *r)
{
    r->ops->wakeup(r);
}

static inline int
rl_reactor_flush(rl_reactor *r)
{
    return r->ops->flush(r);
}

static inline const char *
rl_reactor_explain(rl_reactor *r, int err)
{
    return r->ops->explain != NULL ? r->ops->explain(r, err) : NULL;
}

static inline void
rl_reactor_destroy(rl_reactor *r)
{
    r->ops->destroy(r);
}

/* Between backends.  The io_uring backend sends RL_OPF_USER_FD polls to an
 * epoll reactor of its own (no wake-up eventfd), whose epoll fd it watches
 * with one io_uring POLL; these drive it:
 *   sync()     apply pending registration changes (rebuilding the set if
 *              needed) and say what to do: the epoll fd to poll (it changes
 *              when rebuilds changes), whether any op waits for readiness,
 *              whether completions are queued locally (then dispatch()
 *              must run without waiting);
 *   harvest()  epoll_wait() without blocking: the events go to the next
 *              dispatch().  >= 0 or -errno.
 * submit/cancel/dispatch/destroy/inflight are the rl_epoll_ops ones. */
typedef struct {
    int epfd;
    uint32_t rebuilds;
    int waiting;
    int local;
} rl_epoll_inner_state;

rl_reactor *rl_epoll_inner_create(int *err);
int rl_epoll_inner_sync(rl_reactor *r, rl_epoll_inner_state *st);
int rl_epoll_inner_harvest(rl_reactor *r);

/* Fault injection for tests (common.c), read at create():
 * RINGLOOP_TEST_SUBMIT_FAIL="N" or "N:ERRNO" (ERRNO a name such as ENOMEM
 * or EAGAIN, or a number; default ENOMEM) makes every Nth submit() of an
 * issuer's op fail at once with -ERRNO, as a submission the kernel could
 * not take.  Unset or invalid: *every = 0 (off). */
typedef struct {
    unsigned every;
    unsigned count;
    int err; /* negative errno */
} rl_fault;

void rl_fault_from_env(rl_fault *f, const char *name);

/* -errno when this call must fail (and counts it), else 0. */
static inline int
rl_fault_hit(rl_fault *f)
{
    if (__builtin_expect(f->every == 0, 1)) {
        return 0;
    }
    if (++f->count < f->every) {
        return 0;
    }
    f->count = 0;
    return f->err;
}

/* Helper both backends share: 0 if fd may be polled as epoll allows, else
 * -EBADF (not an open fd) or -EPERM (a file without poll support: regular
 * files, directories, /dev/null and the like), exactly as asyncio's
 * epoll_ctl(EPOLL_CTL_ADD) says: sockets and pipes pass by their type,
 * regular files and directories fail by theirs, anything else is added to
 * (and removed from) r's private probe epoll set. */
int rl_reactor_check_fd(rl_reactor *r, int fd);

/* A CONNECT result that says "settled, read SO_ERROR" (see RL_OP_CONNECT). */
#define RL_CONNECT_SETTLED 1

/* The outcome of a settled connect on fd: 0 or -errno (reads and clears
 * SO_ERROR). */
int rl_connect_settled_result(int fd);

#endif /* RL_REACTOR_H */
