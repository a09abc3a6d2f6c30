/* reactor/uring.c -- the io_uring backend of the reactor (see reactor.h).
 *
 * One ring per reactor; no global mutable state, so loops may live in
 * several threads at once.  No Python here.
 *
 * Shape of the backend:
 * - submit() turns an rl_op into one SQE whose user_data is the op's
 *   address.  Nothing enters the kernel unless the SQ is full.
 * - wait() hands every prepared SQE to the kernel and waits for a CQE in
 *   one io_uring_enter (io_uring_submit_and_wait_timeout with EXT_ARG).
 * - dispatch() copies a batch of CQEs out of the ring, releases the slots
 *   (one store to the CQ head per batch), then runs the callbacks.
 * - Internal requests (wake-up eventfd poll, cancel requests) carry small
 *   tags as user_data; an rl_op is at least 4-byte aligned, so no tag can
 *   be mistaken for an op.
 * - An op has at most one request in the kernel at any time (its own, or
 *   the internal poll it waits on before a retry, or the re-armed accept).
 *   That is what makes "cancel by user_data" exact.
 * - The ops ARMED or CANCELLING sit in a list threaded through
 *   bprev/bnext, so destroy() can cancel and reap them (see there).
 * - The issuer never sees -EAGAIN (poll, then retry: see on_op_cqe) nor
 *   an -ECANCELED it did not ask for (see kernel_cancelled).
 *
 * Kernel versions behind the gates: EXT_ARG 5.11, NODROP 5.5, CQSIZE 5.5,
 * multishot poll 5.13, CQE_SKIP_SUCCESS 5.17, SUBMIT_ALL 5.18,
 * COOP_TASKRUN/TASKRUN_FLAG 5.19, multishot accept 5.19, SINGLE_ISSUER
 * 6.0, DEFER_TASKRUN 6.1.
 *
 * Environment, read in create() only:
 *   RINGLOOP_URING_DEFER_TASKRUN=1    try SINGLE_ISSUER|DEFER_TASKRUN first
 *                                     (the ring then belongs to the first
 *                                     thread that runs the loop: enter_ok)
 *   RINGLOOP_TEST_URING_SETUP_ERRNO=E fail as if io_uring_setup gave E
 *   RINGLOOP_TEST_URING_NOWAIT=1      test: force the -EAGAIN retry path
 *   RINGLOOP_TEST_URING_NO_MULTISHOT=1 test: emulate a kernel without
 *                                     multishot accept / multishot poll
 *   RINGLOOP_URING_ENTRIES=N          SQ size (default 512; the kernel
 *                                     rounds up to a power of 2), CQ 4x
 *   RINGLOOP_URING_CQ_ENTRIES=M       CQ size (>= the SQ's): a tiny SQ/CQ
 *                                     makes get_sqe() flush a full SQ and
 *                                     the CQ overflow (NODROP backlog)
 *   RINGLOOP_TEST_URING_ENTER_EAGAIN=N test: every Nth io_uring_enter that
 *                                     would submit answers -EAGAIN instead
 *                                     (the kernel out of request memory)
 *   RINGLOOP_TEST_SUBMIT_FAIL=N[:E]   test (both backends, common.c): every
 *                                     Nth submit() fails with -E (ENOMEM)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "reactor.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

/* user_data of internal requests: a tag in the low 3 bits (never all 0: an
 * rl_op address is 8-byte aligned) and, for TAG_EPOLL, the inner epoll
 * set's rebuild count above them. */
enum {
    TAG_WAKE = 1,   /* poll of the wake-up eventfd */
    TAG_IGNORE = 2, /* cancel requests: their CQE carries nothing */
    TAG_EPOLL = 3,  /* poll of the inner epoll set (RL_OPF_USER_FD polls) */
    TAG_MASK = 7,
};
_Static_assert(_Alignof(rl_op) > TAG_MASK,
               "rl_op addresses must not collide with internal tags");

static inline uint64_t
epoll_tag(uint32_t rebuilds)
{
    return ((uint64_t)rebuilds << 3) | TAG_EPOLL;
}

/* op->bflags */
enum {
    /* The op's request in the kernel is our poll: when it fires, the op is
     * issued again (the previous attempt completed with -EAGAIN). */
    UB_POLLING = 1u << 0,
    /* CONNECT answered -EINPROGRESS: after the poll, read SO_ERROR. */
    UB_CONNECTING = 1u << 1,
    /* The op was issued again after a poll (a re-issued CONNECT may find
     * the socket connected: -EISCONN then means success). */
    UB_RETRIED = 1u << 2,
};

/* Wake-up request state. */
enum {
    WAKE_NONE = 0, /* nothing in the kernel: (re-)arm before waiting */
    WAKE_ARMED,
};

/* Sizes: SQ 512 entries, CQ 4x.  One io_uring_enter flushes the SQ when it
 * fills up, so the SQ only bounds batching, not the number of ops. */
#define RL_URING_SQ_ENTRIES 512u
#define RL_URING_SQ_ENTRIES_SMALL 64u /* retry after ENOMEM, see create */

/* A read/write/recv/send is capped like the kernel caps it (MAX_RW_COUNT),
 * so a huge size_t never wraps in the SQE's 32-bit length: the caller just
 * sees a short transfer, which the contract allows. */
#define RL_URING_MAX_LEN 0x7ffff000u

/* "Forever" in wait(): a day.  The kernel adds the timeout to the current
 * time without saturating, so a near-KTIME_MAX value would wrap into an
 * immediate timeout; a spurious return after a day is harmless. */
#define RL_URING_FOREVER_S (24 * 3600)

/* destroy() re-sends its cancellations after this long (see drain). */
#define RL_URING_DRAIN_NS (1000 * 1000000LL)

#define RL_URING_BATCH 64

typedef struct rl_uring {
    rl_reactor hdr; /* must stay first */
    struct io_uring ring;
    rl_op *ops;      /* ARMED or CANCELLING, linked by bprev/bnext */
    size_t inflight; /* length of that list */
    int efd;         /* wake-up eventfd */
    uint8_t wake_state;
    bool wake_multishot;   /* multishot POLL_ADD works (5.13+) */
    bool multishot_accept; /* kernel can do IORING_ACCEPT_MULTISHOT */
    uint8_t cancel_sqe_flags; /* IOSQE_CQE_SKIP_SUCCESS if supported */
    /* Test hook RINGLOOP_TEST_URING_NOWAIT=1: force the -EAGAIN path. */
    int nowait_msg_flags; /* MSG_DONTWAIT or 0 */
    int nowait_rw_flags;  /* RWF_NOWAIT or 0 */
    pid_t owner_pid;      /* with the fork marker: see uring_destroy */
    /* SINGLE_ISSUER ring (RINGLOOP_URING_DEFER_TASKRUN=1): see enter_ok */
    bool single_issuer;
    bool disabled;        /* created R_DISABLED, not enabled yet */
    pthread_t issuer;     /* the thread that enabled it */
    /* Sizes and fault injection from the environment (see the top). */
    unsigned sq_entries;  /* 0: the defaults */
    unsigned cq_entries;
    unsigned enter_eagain_every; /* RINGLOOP_TEST_URING_ENTER_EAGAIN */
    unsigned enter_count;
    rl_fault submit_fault;       /* RINGLOOP_TEST_SUBMIT_FAIL */
    /* RL_OPF_USER_FD polls live in an inner epoll reactor (created on first
     * use) whose epoll fd is watched by one-shot POLLs tagged TAG_EPOLL. */
    rl_reactor *inner;
    bool epoll_armed;       /* a TAG_EPOLL poll on the current set */
    bool epoll_ready;       /* one fired: harvest before the next dispatch */
    uint32_t epoll_gen;     /* rebuild count of the set that poll watches */
    unsigned epoll_polls;   /* TAG_EPOLL requests in the kernel (drain) */
} rl_uring;

/* A CQE copied out of the ring. */
typedef struct {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
} cqe_copy;

/* ------------------------------------------------------------------------
 * Small helpers
 */

static int64_t
mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void
set_why(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_why(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    if (why == NULL || whylen == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

static void
ops_link(rl_uring *u, rl_op *op)
{
    op->bprev = NULL;
    op->bnext = u->ops;
    if (u->ops != NULL) {
        u->ops->bprev = op;
    }
    u->ops = op;
    u->inflight++;
}

static void
ops_unlink(rl_uring *u, rl_op *op)
{
    if (op->bprev != NULL) {
        op->bprev->bnext = op->bnext;
    }
    else {
        u->ops = op->bnext;
    }
    if (op->bnext != NULL) {
        op->bnext->bprev = op->bprev;
    }
    op->bprev = op->bnext = NULL;
    u->inflight--;
}

/* May this thread enter the ring?  0 or -EEXIST.
 *
 * SINGLE_ISSUER|DEFER_TASKRUN (opt-in) tie the ring to one thread: the
 * kernel answers -EEXIST to io_uring_enter() from any other.  A Python loop
 * is often created in one thread and run in another, so the ring is created
 * disabled (IORING_SETUP_R_DISABLED, which leaves the submitter unset) and
 * enabled here by the first thread that enters it, i.e. the first that runs
 * the loop.  Until then submit() only fills the SQ.  A later enter from
 * another thread fails before reaching the kernel, with -EEXIST as the
 * kernel would, and explain() says why.  Cheap: pthread_self() is a TLS
 * read. */
static int
enter_ok(rl_uring *u)
{
    if (!u->single_issuer) {
        return 0;
    }
    if (u->disabled) {
        int rc = io_uring_enable_rings(&u->ring);
        if (rc < 0) {
            return rc;
        }
        u->disabled = false;
        u->issuer = pthread_self();
        return 0;
    }
    return pthread_equal(u->issuer, pthread_self()) ? 0 : -EEXIST;
}

/* Test hook RINGLOOP_TEST_URING_ENTER_EAGAIN: -EAGAIN when this attempt
 * to enter the kernel must fail as if it had no memory for requests
 * (nothing is submitted: the SQEs stay in the SQ). */
static int
enter_fault(rl_uring *u)
{
    if (__builtin_expect(u->enter_eagain_every == 0, 1)) {
        return 0;
    }
    if (++u->enter_count < u->enter_eagain_every) {
        return 0;
    }
    u->enter_count = 0;
    return -EAGAIN;
}

/* A free SQE.  When the SQ is full, flush it to the kernel (one
 * io_uring_enter, no wait) and retry; fails only on a real error. */
static struct io_uring_sqe *
get_sqe(rl_uring *u, int *err)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    int tries = 0;
    while (sqe == NULL) {
        int rc = enter_ok(u);
        if (rc == 0) {
            rc = enter_fault(u);
        }
        if (rc == 0) {
            rc = io_uring_submit(&u->ring);
        }
        if (rc < 0 && rc != -EAGAIN && rc != -EINTR) {
            *err = rc;
            return NULL;
        }
        sqe = io_uring_get_sqe(&u->ring);
        if (sqe == NULL && ++tries >= 8) {
            /* The kernel keeps refusing (-EAGAIN: no memory for
             * requests) or consumes nothing. */
            *err = rc < 0 ? rc : -EBUSY;
            return NULL;
        }
    }
    return sqe;
}

static unsigned
clamp_len(size_t len)
{
    return len > RL_URING_MAX_LEN ? RL_URING_MAX_LEN : (unsigned)len;
}

/* Events the internal poll waits for before an op is issued again. */
static unsigned
retry_events(const rl_op *op)
{
    switch (op->kind) {
    case RL_OP_SEND:
    case RL_OP_SENDMSG:
    case RL_OP_WRITE:
    case RL_OP_CONNECT:
        return POLLOUT;
    default:
        return POLLIN;
    }
}

/* Prepare the SQE that performs op (submit, retry and multishot re-arm). */
static int
queue_op(rl_uring *u, rl_op *op)
{
    int err = 0;
    struct io_uring_sqe *sqe = get_sqe(u, &err);
    if (sqe == NULL) {
        return err;
    }
    switch (op->kind) {
    case RL_OP_POLL:
        /* One-shot POLL_ADD checks readiness when armed, so re-submitting
         * while the fd is ready completes at once (level semantics).
         * Multishot poll would be edge-triggered: not used here. */
        io_uring_prep_poll_add(sqe, op->fd, op->u.poll.events);
        break;
    case RL_OP_RECV:
        io_uring_prep_recv(sqe, op->fd, op->u.io.buf,
                           clamp_len(op->u.io.len),
                           op->u.io.msg_flags | u->nowait_msg_flags);
        break;
    case RL_OP_SEND:
        io_uring_prep_send(sqe, op->fd, op->u.io.buf,
                           clamp_len(op->u.io.len),
                           op->u.io.msg_flags | MSG_NOSIGNAL |
                               u->nowait_msg_flags);
        break;
    case RL_OP_RECVMSG:
        io_uring_prep_recvmsg(sqe, op->fd, op->u.msg.msg,
                              (unsigned)(op->u.msg.msg_flags |
                                         u->nowait_msg_flags));
        break;
    case RL_OP_SENDMSG:
        io_uring_prep_sendmsg(sqe, op->fd, op->u.msg.msg,
                              (unsigned)(op->u.msg.msg_flags | MSG_NOSIGNAL |
                                         u->nowait_msg_flags));
        break;
    case RL_OP_ACCEPT:
        if (op->flags & RL_OPF_MULTISHOT) {
            /* addr is not filled for multishot (contract); without kernel
             * support a single-shot accept is re-armed after each fd. */
            if (u->multishot_accept) {
                io_uring_prep_multishot_accept(sqe, op->fd, NULL, NULL,
                                               SOCK_NONBLOCK | SOCK_CLOEXEC);
            }
            else {
                io_uring_prep_accept(sqe, op->fd, NULL, NULL,
                                     SOCK_NONBLOCK | SOCK_CLOEXEC);
            }
        }
        else {
            io_uring_prep_accept(sqe, op->fd, op->u.accept.addr,
                                 op->u.accept.addrlen,
                                 SOCK_NONBLOCK | SOCK_CLOEXEC);
        }
        break;
    case RL_OP_CONNECT:
        io_uring_prep_connect(sqe, op->fd, op->u.connect.addr,
                              op->u.connect.addrlen);
        break;
    case RL_OP_READ:
        /* offset -1: current position (pipes, ttys; RW_CUR_POS, 5.6) */
        io_uring_prep_read(sqe, op->fd, op->u.io.buf,
                           clamp_len(op->u.io.len), (uint64_t)-1);
        sqe->rw_flags = u->nowait_rw_flags;
        break;
    case RL_OP_WRITE:
        io_uring_prep_write(sqe, op->fd, op->u.io.buf,
                            clamp_len(op->u.io.len), (uint64_t)-1);
        sqe->rw_flags = u->nowait_rw_flags;
        break;
    /* --- file ops (ringloop.fs, issue 15) --- */
    case RL_OP_FILE_READ:
        io_uring_prep_read(sqe, op->fd, op->u.file.buf, op->u.file.len,
                           op->u.file.off);
        break;
    case RL_OP_FILE_WRITE:
        io_uring_prep_write(sqe, op->fd, op->u.file.buf, op->u.file.len,
                            op->u.file.off);
        break;
    case RL_OP_OPENAT:
        io_uring_prep_openat(sqe, op->fd, (const char *)op->u.file.buf,
                             op->u.file.flags, (mode_t)op->u.file.len);
        break;
    case RL_OP_STATX:
        io_uring_prep_statx(sqe, op->fd, (const char *)op->u.file.buf,
                            op->u.file.flags, op->u.file.len,
                            (struct statx *)op->u.file.buf2);
        break;
    case RL_OP_RENAMEAT:
        io_uring_prep_renameat(sqe, op->fd, (const char *)op->u.file.buf,
                               op->u.file.fd2,
                               (const char *)op->u.file.buf2,
                               (unsigned)op->u.file.flags);
        break;
    case RL_OP_UNLINKAT:
        io_uring_prep_unlinkat(sqe, op->fd, (const char *)op->u.file.buf,
                               op->u.file.flags);
        break;
    case RL_OP_MKDIRAT:
        io_uring_prep_mkdirat(sqe, op->fd, (const char *)op->u.file.buf,
                              (mode_t)op->u.file.len);
        break;
    case RL_OP_FSYNC:
        io_uring_prep_fsync(sqe, op->fd,
                            op->u.file.flags ? IORING_FSYNC_DATASYNC : 0);
        break;
    case RL_OP_CLOSE:
        io_uring_prep_close(sqe, op->fd);
        break;
    case RL_OP_SPLICE:
        io_uring_prep_splice(sqe, op->fd, (int64_t)op->u.file.off,
                             op->u.file.fd2, (int64_t)op->u.file.off2,
                             op->u.file.len, (unsigned)op->u.file.flags);
        break;
    default:
        /* submit() validated the kind before taking the SQE. */
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data64(sqe, TAG_IGNORE);
        return -EINVAL;
    }
    io_uring_sqe_set_data(sqe, op);
    return 0;
}

/* Queue the internal poll an op waits on before it is issued again. */
static int
queue_retry_poll(rl_uring *u, rl_op *op)
{
    int err = 0;
    struct io_uring_sqe *sqe = get_sqe(u, &err);
    if (sqe == NULL) {
        return err;
    }
    io_uring_prep_poll_add(sqe, op->fd, retry_events(op));
    io_uring_sqe_set_data(sqe, op);
    op->bflags |= UB_POLLING;
    return 0;
}

static int
queue_cancel(rl_uring *u, uint64_t key)
{
    int err = 0;
    struct io_uring_sqe *sqe = get_sqe(u, &err);
    if (sqe == NULL) {
        return err;
    }
    io_uring_prep_cancel64(sqe, key, 0);
    /* The cancel request's own CQE says nothing the op's CQE will not:
     * skip it when it succeeds (5.17+). */
    io_uring_sqe_set_flags(sqe, u->cancel_sqe_flags);
    io_uring_sqe_set_data64(sqe, TAG_IGNORE);
    return 0;
}

/* Post the wake-up request: a poll of the eventfd, so that wakeup()'s
 * write ends a concurrent wait.
 *
 * Why not an 8-byte READ of the eventfd: a read consumes the count only
 * up to the moment it completes, so two wakeup() calls made before a wait
 * can still end two waits (measured: the first write completes the read
 * at once, the second is left in the counter).  A multishot poll (5.13)
 * never needs the counter drained nor re-arming: the kernel coalesces the
 * wake-ups that arrive before its completion work runs into one CQE, and
 * every CQE is reaped by the same dispatch.  The counter just grows (one
 * per wakeup(); it cannot reach 2^64 - 2).  Kernels without multishot
 * poll reject it with -EINVAL: then a one-shot poll is used and the
 * counter drained with read(2) before each re-arm. */
static int
arm_wake(rl_uring *u)
{
    int err = 0;
    struct io_uring_sqe *sqe = get_sqe(u, &err);
    if (sqe == NULL) {
        u->wake_state = WAKE_NONE;
        return err;
    }
    if (u->wake_multishot) {
        io_uring_prep_poll_multishot(sqe, u->efd, POLLIN);
    }
    else {
        io_uring_prep_poll_add(sqe, u->efd, POLLIN);
    }
    io_uring_sqe_set_data64(sqe, TAG_WAKE);
    u->wake_state = WAKE_ARMED;
    return 0;
}

static void
on_wake_cqe(rl_uring *u, int32_t res, uint32_t cflags)
{
    if (cflags & IORING_CQE_F_MORE) {
        return; /* multishot poll still armed */
    }
    u->wake_state = WAKE_NONE;
    if (res == -EINVAL && u->wake_multishot) {
        u->wake_multishot = false; /* kernel < 5.13 */
    }
    else if (res > 0 && !u->wake_multishot) {
        uint64_t cnt;
        ssize_t n = read(u->efd, &cnt, sizeof(cnt));
        (void)n; /* EAGAIN: already drained */
    }
    /* Ended (one-shot, or a multishot stopped by CQ overflow): re-arm.
     * Should queuing fail, wait() tries again before blocking. */
    (void)arm_wake(u);
}

/* ------------------------------------------------------------------------
 * create / destroy
 */

static int
read_sysctl_int(const char *path)
{
    int v = -1;
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        return -1;
    }
    if (fscanf(f, "%d", &v) != 1) {
        v = -1;
    }
    fclose(f);
    return v;
}

/* One human line for an io_uring_setup() failure (also used, with the same
 * text, for the simulated failure of RINGLOOP_TEST_URING_SETUP_ERRNO). */
static void
explain_setup_error(int err, char *why, size_t whylen)
{
    char buf[128];
    switch (-err) {
    case ENOSYS:
        set_why(why, whylen,
                "io_uring_setup() failed with ENOSYS: the kernel has no "
                "io_uring (CONFIG_IO_URING off) or a seccomp filter blocks "
                "it (e.g. a container's default profile)");
        break;
    case EPERM: {
        int disabled = read_sysctl_int("/proc/sys/kernel/io_uring_disabled");
        if (disabled > 0) {
            set_why(why, whylen,
                    "io_uring_setup() failed with EPERM: io_uring is "
                    "disabled by sysctl kernel.io_uring_disabled=%d",
                    disabled);
        }
        else {
            set_why(why, whylen,
                    "io_uring_setup() failed with EPERM: not permitted by "
                    "sysctl kernel.io_uring_disabled or by a seccomp / "
                    "container / LSM policy");
        }
        break;
    }
    case ENOMEM:
        set_why(why, whylen,
                "io_uring_setup() failed with ENOMEM: RLIMIT_MEMLOCK too "
                "low for the rings (kernels before 5.12 charge them to "
                "locked memory; raise ulimit -l) or out of memory");
        break;
    case EMFILE:
    case ENFILE:
        set_why(why, whylen,
                "io_uring_setup() failed: out of file descriptors (%s)",
                strerror_r(-err, buf, sizeof(buf)));
        break;
    case EINVAL:
        set_why(why, whylen,
                "io_uring_setup() rejected every flag set tried (EINVAL): "
                "kernel too old for ringloop's io_uring backend");
        break;
    default:
        set_why(why, whylen, "io_uring_setup() failed: %s (errno %d)",
                strerror_r(-err, buf, sizeof(buf)), -err);
        break;
    }
}

/* RINGLOOP_TEST_URING_SETUP_ERRNO: "EPERM", "ENOSYS", ... or a number.
 * Returns the -errno to simulate, 0 when unset, 1 when unparsable. */
static int
test_setup_errno(void)
{
    static const struct {
        const char *name;
        int value;
    } names[] = {
        {"EPERM", EPERM},   {"ENOSYS", ENOSYS}, {"ENOMEM", ENOMEM},
        {"EINVAL", EINVAL}, {"EACCES", EACCES}, {"EMFILE", EMFILE},
        {"ENFILE", ENFILE}, {"EFAULT", EFAULT}, {"EOPNOTSUPP", EOPNOTSUPP},
    };
    const char *s = getenv("RINGLOOP_TEST_URING_SETUP_ERRNO");
    char *end = NULL;
    long v;
    if (s == NULL || *s == '\0') {
        return 0;
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(s, names[i].name) == 0) {
            return -names[i].value;
        }
    }
    v = strtol(s, &end, 10);
    if (end != s && *end == '\0' && v != 0 && v > -4096 && v < 4096) {
        return v > 0 ? (int)-v : (int)v;
    }
    return 1;
}

static bool
env_flag(const char *name)
{
    const char *s = getenv(name);
    return s != NULL && s[0] == '1' && s[1] == '\0';
}

/* A positive number from the environment, at most max; 0 if unset or
 * not one. */
static unsigned
env_uint(const char *name, unsigned max)
{
    const char *s = getenv(name);
    char *end = NULL;
    unsigned long v;
    if (s == NULL || *s == '\0') {
        return 0;
    }
    v = strtoul(s, &end, 10);
    if (*end != '\0' || v > max) {
        return 0;
    }
    return (unsigned)v;
}

/* RINGLOOP_URING_ENTRIES / RINGLOOP_URING_CQ_ENTRIES and the test hooks
 * that count (see the top). */
static void
env_sizes(rl_uring *u)
{
    u->sq_entries = env_uint("RINGLOOP_URING_ENTRIES", 32768);
    u->cq_entries = env_uint("RINGLOOP_URING_CQ_ENTRIES", 65536);
    if (u->cq_entries != 0) {
        unsigned sq = u->sq_entries != 0 ? u->sq_entries
                                         : RL_URING_SQ_ENTRIES;
        if (u->cq_entries < sq) {
            u->cq_entries = sq; /* the kernel wants CQ >= SQ */
        }
    }
    u->enter_eagain_every =
        env_uint("RINGLOOP_TEST_URING_ENTER_EAGAIN", 1000000000u);
    rl_fault_from_env(&u->submit_fault, "RINGLOOP_TEST_SUBMIT_FAIL");
}

/* Set up the ring, trying setup flags from best to plainest.  Each step
 * falls back only on -EINVAL (flag unknown to this kernel). */
static int
setup_ring(rl_uring *u, int fake_err, bool want_defer)
{
    /* SINGLE_ISSUER|DEFER_TASKRUN (6.0/6.1) is NOT the default: it binds
     * submission and completion to one thread, while a Python loop may run
     * in one thread, then in another (the second gets -EEXIST).  Created
     * R_DISABLED (5.10), so that the thread bound is the first that runs
     * the loop, not the creating one (enter_ok).
     * Opt-in: RINGLOOP_URING_DEFER_TASKRUN=1.
     * COOP_TASKRUN (5.19): completions run when we enter the kernel
     * instead of interrupting the thread with an IPI; TASKRUN_FLAG (5.19)
     * makes pending completion work visible in the SQ flags, so a
     * zero-timeout wait knows it must enter.  SUBMIT_ALL (5.18): a bad
     * SQE does not stop the rest of the batch.  CQSIZE (5.5): CQ 4x SQ. */
    static const unsigned flag_sets[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
            IORING_SETUP_R_DISABLED | IORING_SETUP_TASKRUN_FLAG |
            IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE,
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
            IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE,
        IORING_SETUP_CQSIZE,
        0,
    };
    unsigned sizes[] = {RL_URING_SQ_ENTRIES, RL_URING_SQ_ENTRIES_SMALL};
    size_t nsizes = sizeof(sizes) / sizeof(sizes[0]);
    int rc = -EINVAL;
    if (u->sq_entries != 0) {
        sizes[0] = u->sq_entries; /* RINGLOOP_URING_ENTRIES: no fallback */
        nsizes = 1;
    }
    for (size_t s = 0; s < nsizes; s++) {
        for (size_t i = want_defer ? 0 : 1;
             i < sizeof(flag_sets) / sizeof(flag_sets[0]); i++) {
            struct io_uring_params p;
            memset(&p, 0, sizeof(p));
            p.flags = flag_sets[i];
            p.cq_entries = u->cq_entries != 0 && s == 0
                               ? u->cq_entries
                               : 4 * sizes[s];
            if (fake_err != 0) {
                rc = fake_err;
            }
            else {
                rc = io_uring_queue_init_params(sizes[s], &u->ring, &p);
            }
            if (rc == 0) {
                u->single_issuer = i == 0;
                u->disabled = i == 0;
                return 0;
            }
            if (rc != -EINVAL) {
                break;
            }
        }
        /* ENOMEM: on 5.11 (EXT_ARG, still memlock-accounted) a smaller ring
         * may fit under the default 64 KiB RLIMIT_MEMLOCK. */
        if (rc != -ENOMEM) {
            break;
        }
    }
    return rc;
}

/* The opcodes the contract needs (all from 5.6; checked anyway, since a
 * restricted or patched kernel may lack one). */
static int
probe_opcodes(rl_uring *u, char *why, size_t whylen)
{
    static const struct {
        int op;
        const char *name;
    } need[] = {
        {IORING_OP_POLL_ADD, "POLL_ADD"},
        {IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL"},
        {IORING_OP_RECV, "RECV"},
        {IORING_OP_SEND, "SEND"},
        {IORING_OP_RECVMSG, "RECVMSG"},
        {IORING_OP_SENDMSG, "SENDMSG"},
        {IORING_OP_ACCEPT, "ACCEPT"},
        {IORING_OP_CONNECT, "CONNECT"},
        {IORING_OP_READ, "READ"},
        {IORING_OP_WRITE, "WRITE"},
    };
    struct io_uring_probe *probe = io_uring_get_probe_ring(&u->ring);
    if (probe == NULL) {
        set_why(why, whylen,
                "io_uring: cannot probe supported opcodes "
                "(IORING_REGISTER_PROBE failed)");
        return -EOPNOTSUPP;
    }
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
        if (!io_uring_opcode_supported(probe, need[i].op)) {
            set_why(why, whylen,
                    "io_uring: the kernel lacks opcode IORING_OP_%s",
                    need[i].name);
            io_uring_free_probe(probe);
            return -EOPNOTSUPP;
        }
    }
    /* Multishot accept came in 5.19 together with IORING_OP_SOCKET and has
     * no probe bit of its own: use SOCKET as the witness.  Without it,
     * RL_OPF_MULTISHOT accept is emulated by re-arming single accepts. */
    u->multishot_accept = io_uring_opcode_supported(probe, IORING_OP_SOCKET);
    io_uring_free_probe(probe);
    return 0;
}

static rl_reactor *
uring_create(int *err, char *why, size_t whylen)
{
    rl_uring *u = NULL;
    bool ring_up = false;
    char ebuf[128];
    int rc;

    if (why != NULL && whylen > 0) {
        why[0] = '\0';
    }
    u = calloc(1, sizeof(*u));
    if (u == NULL) {
        rc = -ENOMEM;
        set_why(why, whylen, "io_uring: out of memory");
        goto error;
    }
    u->efd = -1;
    rc = rl_reactor_init_header(&u->hdr, &rl_uring_ops, RL_BACKEND_IO_URING);
    if (rc < 0) {
        set_why(why, whylen, "io_uring: pthread_atfork() failed");
        goto error;
    }
    u->owner_pid = getpid();

    /* Environment is read here only. */
    rc = test_setup_errno();
    if (rc == 1) {
        rc = -EINVAL;
        set_why(why, whylen,
                "RINGLOOP_TEST_URING_SETUP_ERRNO is neither an errno name "
                "nor a number");
        goto error;
    }
    env_sizes(u);
    rc = setup_ring(u, rc, env_flag("RINGLOOP_URING_DEFER_TASKRUN"));
    if (rc < 0) {
        explain_setup_error(rc, why, whylen);
        goto error;
    }
    ring_up = true;

    /* EXT_ARG (5.11): the wait timeout is passed to io_uring_enter itself;
     * without it liburing would queue a TIMEOUT SQE of its own per wait. */
    if (!(u->ring.features & IORING_FEAT_EXT_ARG)) {
        rc = -EOPNOTSUPP;
        set_why(why, whylen,
                "io_uring: the kernel lacks IORING_FEAT_EXT_ARG "
                "(Linux >= 5.11 needed)");
        goto error;
    }
    /* NODROP (5.5): a full CQ never loses a completion. */
    if (!(u->ring.features & IORING_FEAT_NODROP)) {
        rc = -EOPNOTSUPP;
        set_why(why, whylen,
                "io_uring: the kernel lacks IORING_FEAT_NODROP "
                "(Linux >= 5.5 needed)");
        goto error;
    }
    rc = probe_opcodes(u, why, whylen);
    if (rc < 0) {
        goto error;
    }
    u->wake_multishot = true;
    if (env_flag("RINGLOOP_TEST_URING_NO_MULTISHOT")) {
        /* Test hook: behave as on a kernel without multishot accept and
         * multishot poll (emulated accept, one-shot wake-up poll). */
        u->multishot_accept = false;
        u->wake_multishot = false;
    }
    if (env_flag("RINGLOOP_TEST_URING_NOWAIT")) {
        /* Test hook: make the kernel answer -EAGAIN instead of waiting, so
         * the poll-then-retry path runs on kernels that never need it. */
        u->nowait_msg_flags = MSG_DONTWAIT;
        u->nowait_rw_flags = RWF_NOWAIT;
    }
    if (u->ring.features & IORING_FEAT_CQE_SKIP) {
        u->cancel_sqe_flags = IOSQE_CQE_SKIP_SUCCESS;
    }

    u->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (u->efd < 0) {
        rc = -errno;
        set_why(why, whylen, "io_uring: eventfd() failed: %s",
                strerror_r(-rc, ebuf, sizeof(ebuf)));
        goto error;
    }
    rc = arm_wake(u);
    if (rc == 0 && !u->disabled) {
        /* Enter once now: the wake-up poll is live from the start, and a
         * policy that allows io_uring_setup but not io_uring_enter shows
         * up here rather than in the first wait.  (A disabled ring is
         * entered first by the thread that runs the loop: enter_ok.) */
        rc = io_uring_submit(&u->ring);
    }
    if (rc < 0) {
        set_why(why, whylen, "io_uring: io_uring_enter() failed: %s",
                strerror_r(-rc, ebuf, sizeof(ebuf)));
        goto error;
    }
    *err = 0;
    return &u->hdr;

error:
    if (ring_up) {
        io_uring_queue_exit(&u->ring);
    }
    if (u != NULL) {
        if (u->efd >= 0) {
            close(u->efd);
        }
        free(u);
    }
    *err = rc;
    return NULL;
}

/* Reap CQEs during destroy: no callback; an op's final CQE forgets it; an
 * accepted fd nobody can receive any more is closed. */
static void
drain_cqes(rl_uring *u)
{
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&u->ring, head, cqe)
    {
        uint64_t ud = cqe->user_data;
        n++;
        if (ud == TAG_WAKE) {
            if (!(cqe->flags & IORING_CQE_F_MORE)) {
                u->wake_state = WAKE_NONE;
            }
            continue;
        }
        if ((ud & TAG_MASK) == TAG_EPOLL) {
            u->epoll_polls--;
            continue;
        }
        if (ud & TAG_MASK) {
            continue;
        }
        rl_op *op = (rl_op *)(uintptr_t)ud;
        if (op->state == RL_OPS_IDLE) {
            continue;
        }
        if ((op->kind == RL_OP_ACCEPT || op->kind == RL_OP_OPENAT) &&
            cqe->res >= 0 && !(op->bflags & UB_POLLING)) {
            close(cqe->res);
        }
        if (cqe->flags & IORING_CQE_F_MORE) {
            continue;
        }
        ops_unlink(u, op);
        op->state = RL_OPS_IDLE;
        op->bflags = 0;
    }
    io_uring_cq_advance(&u->ring, n);
}

/* Cancel every in-flight request and reap it before the ring goes.
 *
 * io_uring_queue_exit() alone is not enough for "the issuer then owns (and
 * frees) all its ops": closing the ring only starts an asynchronous
 * teardown (io_ring_exit_work), so a request running in io-wq, or one
 * completing before the exit work reaches it, could still write into an
 * issuer's buffer after destroy() returned.  Cancelling and reaping makes
 * that impossible and leaves every op IDLE.
 *
 * There is no deadline: a buffer must never be freed while the kernel may
 * still write to it, so the drain goes on until the last final completion
 * is reaped, re-sending the cancellations every RL_URING_DRAIN_NS (a
 * request the kernel could not cancel at once, e.g. one in io-wq between
 * two steps, gets another try).  Network requests and pipe/tty reads,
 * the only ones issued here, are cancellable, so in practice one round
 * trip does it.  The only way out with ops left is a ring this thread may
 * not enter (a SINGLE_ISSUER ring owned by another thread, alive or
 * exited: an exited owner's requests stay armed) or a hard
 * error of io_uring_enter(): those ops stay ARMED/CANCELLING (see
 * reactor.h, destroy) and their issuer must leak them. */
static void
cancel_all(rl_uring *u)
{
    for (rl_op *op = u->ops; op != NULL; op = op->bnext) {
        if (queue_cancel(u, (uint64_t)(uintptr_t)op) < 0) {
            break;
        }
    }
    if (u->wake_state != WAKE_NONE) {
        (void)queue_cancel(u, TAG_WAKE);
    }
    if (u->epoll_armed) {
        /* older ones were cancelled when the set was rebuilt */
        (void)queue_cancel(u, epoll_tag(u->epoll_gen));
    }
}

static bool
drained(const rl_uring *u)
{
    return u->ops == NULL && u->wake_state == WAKE_NONE &&
           u->epoll_polls == 0;
}

static void
drain(rl_uring *u)
{
    int64_t next_cancel;
    if (u->disabled) {
        /* Never entered: nothing ever reached the kernel. */
        while (u->ops != NULL) {
            rl_op *op = u->ops;
            ops_unlink(u, op);
            op->state = RL_OPS_IDLE;
            op->bflags = 0;
        }
        return;
    }
    if (enter_ok(u) < 0) {
        /* Another thread owns the ring: what its requests completed can
         * still be reaped, the rest stays armed. */
        drain_cqes(u);
        return;
    }
    cancel_all(u);
    next_cancel = mono_ns() + RL_URING_DRAIN_NS;
    for (;;) {
        drain_cqes(u);
        if (drained(u)) {
            break;
        }
        int64_t left = next_cancel - mono_ns();
        if (left <= 0) {
            cancel_all(u);
            next_cancel = mono_ns() + RL_URING_DRAIN_NS;
            left = RL_URING_DRAIN_NS;
        }
        struct __kernel_timespec ts = {.tv_sec = left / 1000000000LL,
                                       .tv_nsec = left % 1000000000LL};
        struct io_uring_cqe *cqe = NULL;
        int rc = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts,
                                                  NULL);
        if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN &&
            rc != -EBUSY) {
            drain_cqes(u);
            break;
        }
    }
}

static void
uring_destroy(rl_reactor *r)
{
    rl_uring *u = (rl_uring *)r;
    if (u == NULL) {
        return;
    }
    /* In a forked child the ring (shared memory, same kernel context) still
     * belongs to the parent: cancelling would kill the parent's ops.  The
     * pid is checked too (destroy is rare): it also catches a fork that
     * bypassed the atfork handler. */
    if (!rl_reactor_forked(r) && getpid() == u->owner_pid) {
        drain(u);
        /* Ops still ARMED/CANCELLING now (see drain) keep their state:
         * the kernel may still use them, the issuer must leak them. */
    }
    else {
        /* A forked child: the kernel works on the parent's memory, never
         * on the child's copies, which are the issuer's again. */
        while (u->ops != NULL) {
            rl_op *op = u->ops;
            ops_unlink(u, op);
            op->state = RL_OPS_IDLE;
            op->bflags = 0;
        }
    }
    io_uring_queue_exit(&u->ring);
    close(u->efd);
    rl_reactor_release_header(&u->hdr);
    if (u->inner != NULL) {
        /* its ops are the issuer's, as after an epoll destroy */
        rl_epoll_ops.destroy(u->inner);
    }
    free(u);
}

/* ------------------------------------------------------------------------
 * submit / cancel
 */

/* In a forked child (reactor.h, "Fork"): the op is parked, nothing reaches
 * the ring (its SQ is the parent's). */
static int
forked_submit(rl_uring *u, rl_op *op)
{
    if (op->state != RL_OPS_IDLE) {
        return -EBUSY;
    }
    op->bflags = 0;
    op->state = RL_OPS_ARMED;
    ops_link(u, op);
    return 0;
}

/* RL_OPF_USER_FD polls (reactor.h): an io_uring POLL request holds a
 * reference to the fd's file, so a socket the user closes without
 * remove_reader() would stay open (its peer never sees EOF).  They go to an
 * inner epoll reactor instead (epoll.c: level-triggered, lazy epoll_ctl,
 * a closed file drops out of the set by itself), whose epoll fd is watched
 * by one one-shot io_uring POLL, re-armed before each wait while any of its
 * ops waits; when it fires, dispatch() harvests the set with a zero-timeout
 * epoll_wait() and runs the inner dispatch.  The POLL holds a reference to
 * the epoll file only.  Cost per wake-up: one epoll_wait() (measured in the
 * issue-9 report); the native transports, which own their fds and cancel
 * their ops before closing them, keep direct POLLs. */
static int
submit_user_poll(rl_uring *u, rl_op *op)
{
    if (u->inner == NULL) {
        int err = 0;
        u->inner = rl_epoll_inner_create(&err);
        if (u->inner == NULL) {
            return err < 0 ? err : -ENOMEM;
        }
    }
    /* (checked by uring_submit() already: the inner set need not probe
     * again, with a probe fd of its own) */
    uint8_t flags = op->flags;
    op->flags = (uint8_t)(flags & ~RL_OPF_CHECK_FD);
    int rc = rl_epoll_ops.submit(u->inner, op);
    op->flags = flags;
    return rc;
}

/* Before a wait: apply the inner set's registration changes and keep one
 * POLL on its epoll fd while any inner op waits.  Returns 1 when inner
 * completions are queued locally (the wait must not block). */
static int
prepare_inner(rl_uring *u)
{
    rl_epoll_inner_state st;
    int err = 0;
    struct io_uring_sqe *sqe;
    (void)rl_epoll_inner_sync(u->inner, &st);
    if (u->epoll_armed && u->epoll_gen != st.rebuilds) {
        /* the set was replaced: its old epoll fd is gone */
        if (queue_cancel(u, epoll_tag(u->epoll_gen)) == 0) {
            u->epoll_armed = false;
        }
    }
    if (st.waiting && !u->epoll_armed && !u->epoll_ready) {
        sqe = get_sqe(u, &err);
        if (sqe != NULL) {
            io_uring_prep_poll_add(sqe, st.epfd, POLLIN);
            io_uring_sqe_set_data64(sqe, epoll_tag(st.rebuilds));
            u->epoll_armed = true;
            u->epoll_gen = st.rebuilds;
            u->epoll_polls++;
        }
    }
    return st.local || u->epoll_ready;
}

static void
on_epoll_cqe(rl_uring *u, uint64_t ud, int32_t res)
{
    u->epoll_polls--;
    if (!u->epoll_armed || (uint32_t)(ud >> 3) != u->epoll_gen) {
        return; /* the poll of a replaced set */
    }
    u->epoll_armed = false;
    if (res == -ECANCELED) {
        return; /* kernel-cancelled (thread exit): re-armed by wait() */
    }
    u->epoll_ready = true;
}

/* Harvest the inner set if its poll fired and run its completions. */
static int
dispatch_inner(rl_uring *u)
{
    if (u->epoll_ready) {
        u->epoll_ready = false;
        (void)rl_epoll_inner_harvest(u->inner);
    }
    return rl_epoll_ops.dispatch(u->inner);
}

static int
forked_cancel(rl_op *op)
{
    if (op->state == RL_OPS_IDLE) {
        return -ENOENT;
    }
    if (op->state == RL_OPS_CANCELLING) {
        return -EALREADY;
    }
    op->state = RL_OPS_CANCELLING;
    return 0;
}

static int
uring_submit(rl_reactor *r, rl_op *op)
{
    rl_uring *u = (rl_uring *)r;
    int rc;

    if (rl_reactor_forked(r)) {
        return forked_submit(u, op);
    }
    if (op->state != RL_OPS_IDLE) {
        return -EBUSY;
    }
    if (op->kind < RL_OP_POLL || op->kind >= RL_OP__COUNT) {
        return -EINVAL;
    }
    if ((op->flags & RL_OPF_MULTISHOT) && op->kind != RL_OP_ACCEPT) {
        return -EINVAL;
    }
    if (op->kind == RL_OP_POLL && (op->flags & RL_OPF_CHECK_FD)) {
        /* before submit_user_poll() may create the inner epoll fd, which
         * could take the number of a closed fd */
        rc = rl_reactor_check_fd(&u->hdr, op->fd);
        if (rc < 0) {
            return rc;
        }
    }
    rc = rl_fault_hit(&u->submit_fault);
    if (rc < 0) {
        return rc;
    }
    if (op->kind == RL_OP_POLL && (op->flags & RL_OPF_USER_FD)) {
        return submit_user_poll(u, op);
    }
    op->bflags = 0;
    rc = queue_op(u, op);
    if (rc < 0) {
        return rc;
    }
    op->state = RL_OPS_ARMED;
    ops_link(u, op);
    return 0;
}

static int
uring_cancel(rl_reactor *r, rl_op *op)
{
    rl_uring *u = (rl_uring *)r;
    int rc;

    if (rl_reactor_forked(r)) {
        return forked_cancel(op);
    }
    if (op->kind == RL_OP_POLL && (op->flags & RL_OPF_USER_FD) &&
        u->inner != NULL) {
        return rl_epoll_ops.cancel(u->inner, op);
    }
    if (op->state == RL_OPS_IDLE) {
        return -ENOENT;
    }
    if (op->state == RL_OPS_CANCELLING) {
        return -EALREADY;
    }
    /* Queued after the op's own SQE (if that is still in the SQ), so the
     * kernel always sees the request before its cancellation. */
    rc = queue_cancel(u, (uint64_t)(uintptr_t)op);
    if (rc < 0) {
        return rc;
    }
    op->state = RL_OPS_CANCELLING;
    return 0;
}

/* ------------------------------------------------------------------------
 * wait / dispatch / wakeup
 */

static bool
transient(int rc)
{
    /* -EAGAIN: the kernel could not allocate requests right now;
     * -EBUSY: (old kernels) CQ overflow must be reaped first. */
    return rc == -EAGAIN || rc == -EBUSY;
}

static int
uring_wait(rl_reactor *r, int64_t timeout_ns)
{
    rl_uring *u = (rl_uring *)r;
    struct io_uring *ring = &u->ring;
    struct io_uring_cqe *cqe = NULL;
    struct __kernel_timespec ts;
    int64_t t0 = 0;
    unsigned pending;
    int rc;

    if (rl_reactor_forked(r)) {
        return -ECHILD;
    }
    rc = enter_ok(u);
    if (rc < 0) {
        return rc;
    }
    if (u->wake_state == WAKE_NONE) {
        (void)arm_wake(u);
    }
    if (u->inner != NULL && prepare_inner(u)) {
        timeout_ns = 0;
    }
    if (timeout_ns == 0 || io_uring_cq_ready(ring) > 0) {
        /* Do not block.  io_uring_submit() enters only if there is
         * something to submit or completion work pending (TASKRUN flag). */
        rc = enter_fault(u);
        if (rc == 0) {
            rc = io_uring_submit(ring);
        }
        if (rc < 0 && !transient(rc)) {
            return rc;
        }
        return (int)io_uring_cq_ready(ring);
    }

    pending = io_uring_sq_ready(ring);
    if (timeout_ns < 0) {
        ts.tv_sec = RL_URING_FOREVER_S;
        ts.tv_nsec = 0;
    }
    else {
        ts.tv_sec = timeout_ns / 1000000000LL;
        ts.tv_nsec = timeout_ns % 1000000000LL;
        if (pending > 0) {
            t0 = mono_ns();
        }
    }
    /* One io_uring_enter: submit everything, wait for one CQE.  With
     * EXT_ARG and a timeout, liburing 2.3 never enters a second time. */
    rc = enter_fault(u);
    if (rc == 0) {
        rc = io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, NULL);
    }
    if (rc == -ETIME) {
        return 0;
    }
    if (rc == -EINTR) {
        return -EINTR;
    }
    if (rc < 0) {
        return transient(rc) ? (int)io_uring_cq_ready(ring) : rc;
    }
    rc = (int)io_uring_cq_ready(ring);
    if (rc > 0 || pending == 0) {
        return rc;
    }
    /* Nothing completed although the kernel submitted our SQEs.  When an
     * io_uring_enter submits anything, the kernel returns the number
     * submitted and drops the wait's own result (-ETIME or -EINTR), so
     * tell them apart by the clock: before the deadline it was a signal.
     * (A rare spurious -EINTR only costs the loop one extra iteration.) */
    if (timeout_ns < 0 || mono_ns() - t0 < timeout_ns) {
        return -EINTR;
    }
    return 0;
}

/* Final completion: the op is IDLE before its callback, which may then
 * resubmit or free it.  Nothing touches op after the call. */
static int
complete(rl_uring *u, rl_op *op, int32_t res)
{
    ops_unlink(u, op);
    op->state = RL_OPS_IDLE;
    op->bflags = 0;
    op->cb(op, res, 0);
    return 1;
}

/* -ECANCELED for an op we never cancelled (state ARMED): the kernel
 * cancelled the request itself.  Measured on 6.18: when the thread that
 * submitted a request (the one that called wait()) exits, the request
 * stays armed but completes with -ECANCELED when it fires, because its
 * completion work has no task left to run in.  A loop created or run in
 * one thread and later run in another hits exactly that, so such an op
 * is issued again (by the current thread) instead of being reported: the
 * cancelled request transferred nothing, so this is always safe. */
static bool
kernel_cancelled(const rl_op *op, int32_t res)
{
    return res == -ECANCELED && op->state == RL_OPS_ARMED;
}

/* A multishot accept CQE (real or emulated). */
static int
on_accept_multi(rl_uring *u, rl_op *op, int32_t res, uint32_t cflags)
{
    int rc;
    if (cflags & IORING_CQE_F_MORE) {
        /* The kernel request stays armed, also while cancelling: the
         * final CQE (without F_MORE) comes later. */
        op->cb(op, res, RL_CQE_MORE);
        return 1;
    }
    if (kernel_cancelled(op, res)) {
        rc = queue_op(u, op);
        return rc < 0 ? complete(u, op, rc) : 0;
    }
    if (res >= 0 && op->state == RL_OPS_ARMED) {
        /* The kernel ended the request although it succeeded (emulation,
         * or a real multishot stopped by CQ overflow): re-arm before the
         * callback, so a cancel() from the callback finds the request. */
        rc = queue_op(u, op);
        if (rc < 0) {
            return complete(u, op, res); /* the fd still gets delivered */
        }
        op->cb(op, res, RL_CQE_MORE);
        return 1;
    }
    if (res == -EAGAIN && op->state == RL_OPS_ARMED &&
        queue_retry_poll(u, op) == 0) {
        return 0;
    }
    /* An error, or cancelling: the final completion (res may be an fd
     * that raced with the cancel: the issuer owns it). */
    if (res == -EAGAIN) {
        res = -ECANCELED;
    }
    return complete(u, op, res);
}

static int
on_op_cqe(rl_uring *u, rl_op *op, int32_t res, uint32_t cflags)
{
    int rc;

    if (op->state == RL_OPS_IDLE) {
        /* Cannot happen: an IDLE op has no request in the kernel. */
        return 0;
    }
    if (op->bflags & UB_POLLING) {
        /* Our poll before a retry fired (or failed, or was cancelled). */
        op->bflags &= (uint8_t)~UB_POLLING;
        if (op->state == RL_OPS_CANCELLING) {
            /* The cancel request may already be spent: do not re-issue. */
            return complete(u, op, -ECANCELED);
        }
        if (kernel_cancelled(op, res)) {
            rc = queue_retry_poll(u, op);
            return rc < 0 ? complete(u, op, rc) : 0;
        }
        if (res < 0) {
            return complete(u, op, res);
        }
        if (op->bflags & UB_CONNECTING) {
            return complete(u, op, RL_CONNECT_SETTLED);
        }
        rc = queue_op(u, op);
        if (rc < 0) {
            return complete(u, op, rc);
        }
        op->bflags |= UB_RETRIED;
        return 0;
    }
    if (op->kind == RL_OP_ACCEPT && (op->flags & RL_OPF_MULTISHOT)) {
        return on_accept_multi(u, op, res, cflags);
    }
    /* -EAGAIN: the kernel did not wait.  Kernels before "allow retry for
     * O_NONBLOCK if async is supported" (~5.14, liburing#364) answer so
     * for READ/WRITE on any O_NONBLOCK fd; measured on 6.18: never for
     * the O_NONBLOCK pipes, sockets, ptys and eventfds used here, only
     * when the issuer passes MSG_DONTWAIT.  -EINPROGRESS/-EALREADY on
     * CONNECT: older kernels report the non-blocking connect instead of
     * waiting for it.  Either way: poll, then retry (or read SO_ERROR);
     * the issuer never sees them, and the fd's flags are left alone. */
    if ((res == -EAGAIN && op->kind != RL_OP_POLL &&
         op->kind < RL_OP_FILE_READ) ||
        (op->kind == RL_OP_CONNECT &&
         (res == -EINPROGRESS || res == -EALREADY))) {
        if (op->state == RL_OPS_CANCELLING) {
            return complete(u, op, -ECANCELED);
        }
        if (res != -EAGAIN) {
            op->bflags |= UB_CONNECTING;
        }
        rc = queue_retry_poll(u, op);
        if (rc < 0) {
            return complete(u, op, rc);
        }
        return 0;
    }
    if (kernel_cancelled(op, res)) {
        rc = queue_op(u, op);
        if (rc < 0) {
            return complete(u, op, rc);
        }
        op->bflags |= UB_RETRIED;
        return 0;
    }
    if (res == -EISCONN && op->kind == RL_OP_CONNECT &&
        (op->bflags & UB_RETRIED)) {
        res = 0;
    }
    return complete(u, op, res);
}

static int
uring_dispatch(rl_reactor *r)
{
    rl_uring *u = (rl_uring *)r;
    struct io_uring_cq *cq = &u->ring.cq;
    cqe_copy batch[RL_URING_BATCH];
    int ncb = 0;
    /* Only what is in the CQ now: completions that callbacks cause (an SQ
     * flush enters the kernel) wait for the next iteration, so a callback
     * that resubmits an op ready at once cannot starve the loop. */
    unsigned tail;

    if (rl_reactor_forked(r)) {
        return 0; /* the CQ is the parent's */
    }
    tail = io_uring_smp_load_acquire(cq->ktail);
    for (;;) {
        /* Re-read the head each batch: the slots of a batch are released
         * before its callbacks run, so a nested dispatch() (not expected)
         * could not make us see a CQE twice. */
        unsigned head = *cq->khead;
        int avail = (int)(tail - head);
        unsigned n;
        if (avail <= 0) {
            break;
        }
        n = avail > RL_URING_BATCH ? RL_URING_BATCH : (unsigned)avail;
        for (unsigned i = 0; i < n; i++) {
            const struct io_uring_cqe *cqe =
                &cq->cqes[io_uring_cqe_index(&u->ring, head + i,
                                             cq->ring_mask)];
            batch[i].user_data = cqe->user_data;
            batch[i].res = cqe->res;
            batch[i].flags = cqe->flags;
        }
        /* Release the slots before any callback runs: the kernel can post
         * into them while callbacks submit (no overflow pressure). */
        io_uring_cq_advance(&u->ring, n);
        for (unsigned i = 0; i < n; i++) {
            uint64_t ud = batch[i].user_data;
            if ((ud & TAG_MASK) == 0) {
                ncb += on_op_cqe(u, (rl_op *)(uintptr_t)ud, batch[i].res,
                                 batch[i].flags);
            }
            else if (ud == TAG_WAKE) {
                on_wake_cqe(u, batch[i].res, batch[i].flags);
            }
            else if ((ud & TAG_MASK) == TAG_EPOLL) {
                on_epoll_cqe(u, ud, batch[i].res);
            }
            /* TAG_IGNORE: a cancel request's own result. */
        }
    }
    if (u->inner != NULL) {
        ncb += dispatch_inner(u);
    }
    return ncb;
}

/* Thread-safe and async-signal-safe: one write(2). */
static void
uring_wakeup(rl_reactor *r)
{
    rl_uring *u = (rl_uring *)r;
    uint64_t one = 1;
    int saved = errno;
    ssize_t n;
    if (rl_reactor_forked(r)) {
        return; /* would wake the parent's loop */
    }
    /* EAGAIN (counter saturated) means a wake-up is pending anyway. */
    n = write(u->efd, &one, sizeof(one));
    (void)n;
    errno = saved;
}

static size_t
uring_inflight(rl_reactor *r)
{
    rl_uring *u = (rl_uring *)r;
    return u->inflight +
           (u->inner != NULL ? rl_epoll_ops.inflight(u->inner) : 0);
}

/* Submit what the SQ holds and run pending completion work, without
 * waiting.  The kernel took its own reference to each request's file at
 * submission (no fixed files here), so the issuer may close an fd whose ops
 * it has cancelled; running the completion work (deferred with
 * DEFER_TASKRUN until an enter with GETEVENTS) lets the cancelled requests
 * drop those references now: a listening socket closed right after its
 * accept was cancelled refuses connections at once, as with epoll. */
static int
uring_flush(rl_reactor *r)
{
    rl_uring *u = (rl_uring *)r;
    int rc;
    if (rl_reactor_forked(r)) {
        return 0;
    }
    rc = enter_ok(u);
    if (rc < 0) {
        return rc;
    }
    rc = io_uring_submit_and_get_events(&u->ring);
    return rc < 0 && !transient(rc) && rc != -EINTR ? rc : 0;
}

static const char *
uring_explain(rl_reactor *r, int err)
{
    rl_uring *u = (rl_uring *)r;
    if (err == -EEXIST && u->single_issuer && !u->disabled) {
        return "io_uring: this loop's ring was created with "
               "RINGLOOP_URING_DEFER_TASKRUN=1 (IORING_SETUP_SINGLE_ISSUER|"
               "DEFER_TASKRUN), which binds it to the first thread that ran "
               "the loop; it cannot be used from another thread (unset "
               "RINGLOOP_URING_DEFER_TASKRUN for loops that change threads)";
    }
    if (err == -ECHILD && rl_reactor_forked(r)) {
        return "io_uring: this reactor was created before os.fork() and is "
               "inert in the child";
    }
    return NULL;
}

const rl_reactor_ops rl_uring_ops = {
    .name = "io_uring",
    .create = uring_create,
    .destroy = uring_destroy,
    .submit = uring_submit,
    .cancel = uring_cancel,
    .wait = uring_wait,
    .dispatch = uring_dispatch,
    .wakeup = uring_wakeup,
    .inflight = uring_inflight,
    .flush = uring_flush,
    .explain = uring_explain,
};
