/* reactor/epoll.c -- readiness backend that emulates the completion model.
 *
 * Each fd has a record (a table indexed by fd) holding two FIFO lists of
 * armed ops: IN (POLL/POLLIN, RECV, RECVMSG, ACCEPT, READ) and OUT (POLL/
 * POLLOUT, SEND, SENDMSG, CONNECT, WRITE).  The epoll interest of an fd is
 * the union of its non-empty directions, registered level-triggered.  When
 * epoll reports readiness, dispatch() runs the ops of the ready direction in
 * FIFO order: it does each op's syscall non-blockingly and delivers the
 * result as a completion.  EAGAIN leaves the op armed for the next wakeup.
 *
 * Registration changes are lazy: submit()/cancel() only put the fd on a dirty
 * list, and wait() applies the net change just before epoll_wait.  The usual
 * "op completes, its callback resubmits it" therefore costs no epoll_ctl.
 *
 * Completions that do not come from readiness (cancellations, a connect()
 * that settled at once, a registration that failed) go through a local
 * completion queue that dispatch() drains; wait() does not block while it is
 * non-empty.
 *
 * epoll registers (file, fd) pairs and forgets them only when the file's
 * last reference goes away, while the issuer closes fds without telling us.
 * Two consequences, both handled here:
 *  - an fd closed and reopened between two flushes may have silently lost its
 *    registration although our record still says "registered": when an fd's
 *    interest went to zero and comes back, the flush re-asserts it with
 *    EPOLL_CTL_MOD (ENOENT -> ADD) instead of trusting the record;
 *  - a registration can outlive our close()-then-DEL if the file has another
 *    reference (dup, fork before exec).  Each registration carries a
 *    generation in epoll_data; an event for an fd we do not watch, or with an
 *    old generation, marks the epoll set stale and the next wait() rebuilds
 *    it from our records (closing the old set drops the ghosts).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "reactor.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { DIR_IN = 0, DIR_OUT = 1 };

/* op->bflags bits */
enum {
    BF_LISTED = 1u << 0, /* in an fd's IN or OUT list */
    BF_QUEUED = 1u << 1, /* in the local completion queue, bres is the res */
    BF_OUT = 1u << 2,    /* direction of the op */
};

/* epoll_data of the wakeup eventfd.  fd registrations use
 * (generation << 32 | fd) and an fd is never 0xffffffff. */
#define WAKE_KEY UINT64_MAX

#define EVENTS_MIN 64
#define EVENTS_MAX 4096
/* Multishot accept: at most this many accepts per op per dispatch, then the
 * op stays armed and level-triggered epoll reports the listener again. */
#define ACCEPT_BATCH 64
/* Linux MAX_RW_COUNT: the kernel never moves more in one call, so results fit
 * in int32_t whatever len the issuer passes. */
#define MAX_IO ((size_t)0x7ffff000)

typedef struct {
    rl_op *head[2]; /* FIFO per direction, linked through bprev/bnext */
    rl_op *tail[2];
    uint32_t gen;   /* bumped at each EPOLL_CTL_ADD, echoed in events */
    int dnext;      /* next fd on the dirty list (valid while dirty) */
    uint8_t kmask;  /* EPOLLIN|EPOLLOUT as registered in the kernel */
    uint8_t dirty;  /* on the dirty list */
    uint8_t verify; /* interest dropped to 0 since the last flush: the fd may
                     * have been closed and reused, do not trust kmask */
} fdrec;

typedef struct {
    rl_reactor hdr;
    int epfd;
    int efd; /* eventfd for wakeup(); constant for the reactor's life */
    fdrec *fds;
    size_t nfds;
    int dirty_head; /* -1: empty */
    rl_op *cq_head; /* local completion queue, linked through bnext */
    rl_op *cq_tail;
    size_t ncq;
    size_t inflight;
    struct epoll_event *events;
    int evcap;
    int nready; /* events collected by the last wait() */
    /* Incremented by each dispatch(); ops take it as a stamp (bres_flags)
     * when listed, so a dispatch skips ops submitted by its own callbacks:
     * no endless "complete, resubmit, complete" within one dispatch, and a
     * new op never acts on readiness observed before it existed. */
    uint32_t epoch;
    /* The op the list walk in run_dir() will visit next; removing that op
     * from its list advances it, so callbacks may cancel anything. */
    rl_op *iter_next;
    /* Op whose final callback is running, and whether detaching it left its
     * fd with no interest (see submit: resubmitting it is the hot path). */
    rl_op *cur_op;
    int cur_fd;
    uint8_t cur_empty;
    uint8_t woke;
    uint8_t in_dispatch;
    uint8_t need_rebuild;
    uint8_t grow_events;
    uint8_t no_pwait2;
    /* Incremented each time rebuild_epoll() replaced epfd (inner use). */
    uint32_t rebuilds;
    /* Test hook RINGLOOP_TEST_SUBMIT_FAIL (reactor.h); off when inner (the
     * io_uring reactor applies its own before forwarding). */
    rl_fault submit_fault;
} ep_reactor;

/* ------------------------------------------------------------------------
 * fd records, lists, queue
 */

static int
ensure_fd(ep_reactor *r, int fd)
{
    size_t want = (size_t)fd + 1;
    if (want <= r->nfds) {
        return 0;
    }
    size_t n = r->nfds ? r->nfds : 64;
    while (n < want) {
        n *= 2;
    }
    fdrec *p = realloc(r->fds, n * sizeof(*p));
    if (p == NULL) {
        return -ENOMEM;
    }
    memset(p + r->nfds, 0, (n - r->nfds) * sizeof(*p));
    r->fds = p;
    r->nfds = n;
    return 0;
}

static inline uint32_t
rec_want(const fdrec *rec)
{
    return (rec->head[DIR_IN] ? (uint32_t)EPOLLIN : 0) |
           (rec->head[DIR_OUT] ? (uint32_t)EPOLLOUT : 0);
}

static inline void
mark_dirty(ep_reactor *r, int fd)
{
    fdrec *rec = &r->fds[fd];
    if (!rec->dirty) {
        rec->dirty = 1;
        rec->dnext = r->dirty_head;
        r->dirty_head = fd;
    }
}

static inline void
list_append(fdrec *rec, int dir, rl_op *op)
{
    op->bnext = NULL;
    op->bprev = rec->tail[dir];
    if (rec->tail[dir] != NULL) {
        rec->tail[dir]->bnext = op;
    }
    else {
        rec->head[dir] = op;
    }
    rec->tail[dir] = op;
    op->bflags |= BF_LISTED;
}

static inline void
list_remove(ep_reactor *r, fdrec *rec, int dir, rl_op *op)
{
    if (r->iter_next == op) {
        r->iter_next = op->bnext;
    }
    if (op->bprev != NULL) {
        op->bprev->bnext = op->bnext;
    }
    else {
        rec->head[dir] = op->bnext;
    }
    if (op->bnext != NULL) {
        op->bnext->bprev = op->bprev;
    }
    else {
        rec->tail[dir] = op->bprev;
    }
    op->bprev = op->bnext = NULL;
    op->bflags &= (uint8_t)~BF_LISTED;
}

/* Take op off its fd list; account for the fd's interest going away. */
static void
detach(ep_reactor *r, rl_op *op)
{
    int fd = op->fd;
    int dir = (op->bflags & BF_OUT) ? DIR_OUT : DIR_IN;
    fdrec *rec = &r->fds[fd];
    list_remove(r, rec, dir, op);
    if (rec->head[dir] == NULL) {
        mark_dirty(r, fd);
    }
}

static void
cq_push(ep_reactor *r, rl_op *op, int32_t res)
{
    op->bres = res;
    op->bres_flags = 0;
    op->bflags |= BF_QUEUED;
    op->bnext = NULL;
    if (r->cq_tail != NULL) {
        r->cq_tail->bnext = op;
    }
    else {
        r->cq_head = op;
    }
    r->cq_tail = op;
    r->ncq++;
}

/* ------------------------------------------------------------------------
 * Registration (wait() side)
 */

static inline uint64_t
fd_key(int fd, uint32_t gen)
{
    return ((uint64_t)gen << 32) | (uint32_t)fd;
}

/* Make the kernel interest of fd equal to want (non-zero).  MOD->ENOENT and
 * ADD->EEXIST swap the operation: our record can be wrong after the fd was
 * closed (epoll dropped it) or closed and reused. */
static int
apply_interest(ep_reactor *r, int fd, fdrec *rec, uint32_t want)
{
    struct epoll_event ev;
    int op = rec->kmask ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    memset(&ev, 0, sizeof(ev));
    ev.events = want;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (op == EPOLL_CTL_ADD) {
            rec->gen++;
        }
        ev.data.u64 = fd_key(fd, rec->gen);
        if (epoll_ctl(r->epfd, op, fd, &ev) == 0) {
            rec->kmask = (uint8_t)want;
            return 0;
        }
        if (op == EPOLL_CTL_MOD && errno == ENOENT) {
            op = EPOLL_CTL_ADD;
        }
        else if (op == EPOLL_CTL_ADD && errno == EEXIST) {
            op = EPOLL_CTL_MOD;
        }
        else {
            break;
        }
    }
    rec->kmask = 0;
    return -errno;
}

/* The fd cannot be watched: complete all its ops with err. */
static void
fail_fd(ep_reactor *r, fdrec *rec, int32_t err)
{
    for (int dir = DIR_IN; dir <= DIR_OUT; dir++) {
        rl_op *op;
        while ((op = rec->head[dir]) != NULL) {
            list_remove(r, rec, dir, op);
            cq_push(r, op, err);
        }
    }
}

static void
flush_dirty(ep_reactor *r)
{
    int fd;
    while ((fd = r->dirty_head) >= 0) {
        fdrec *rec = &r->fds[fd];
        r->dirty_head = rec->dnext;
        rec->dirty = 0;
        uint32_t want = rec_want(rec);
        int verify = rec->verify;
        rec->verify = 0;
        if (want == rec->kmask && !verify) {
            continue; /* the common resubmit case: nothing to do */
        }
        if (want == 0) {
            if (rec->kmask != 0) {
                /* Must DEL: an fd registered with no events still reports
                 * EPOLLERR/EPOLLHUP, level-triggered, i.e. a busy loop.
                 * ENOENT/EBADF mean the fd was closed: nothing to undo. */
                (void)epoll_ctl(r->epfd, EPOLL_CTL_DEL, fd, NULL);
                rec->kmask = 0;
            }
            continue;
        }
        int rc = apply_interest(r, fd, rec, want);
        if (rc < 0) {
            fail_fd(r, rec, rc);
        }
    }
}

/* Replace the epoll set by a fresh one holding only what our records want;
 * closing the old set drops ghost registrations we cannot DEL any more. */
static void
rebuild_epoll(ep_reactor *r)
{
    struct epoll_event ev;
    r->need_rebuild = 0;
    int nep = epoll_create1(EPOLL_CLOEXEC);
    if (nep < 0) {
        return; /* keep the old set; spurious wakeups are not fatal */
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.u64 = WAKE_KEY;
    if (r->efd >= 0 && epoll_ctl(nep, EPOLL_CTL_ADD, r->efd, &ev) != 0) {
        close(nep);
        return;
    }
    close(r->epfd);
    r->epfd = nep;
    r->rebuilds++;
    for (size_t i = 0; i < r->nfds; i++) {
        if (r->fds[i].kmask != 0) {
            r->fds[i].kmask = 0;
            mark_dirty(r, (int)i);
        }
    }
}

/* ------------------------------------------------------------------------
 * Doing the ops (dispatch() side)
 */

enum { IO_DONE, IO_AGAIN };

static inline size_t
io_len(size_t len)
{
    return len > MAX_IO ? MAX_IO : len;
}

/* One non-blocking attempt at op's syscall.  IO_DONE: *res is final. */
static int
do_io(rl_op *op, int fd, int32_t *res)
{
    for (;;) {
        ssize_t n;
        switch (op->kind) {
        case RL_OP_RECV:
            n = recv(fd, op->u.io.buf, io_len(op->u.io.len),
                     op->u.io.msg_flags | MSG_DONTWAIT);
            break;
        case RL_OP_SEND:
            n = send(fd, op->u.io.buf, io_len(op->u.io.len),
                     op->u.io.msg_flags | MSG_NOSIGNAL | MSG_DONTWAIT);
            break;
        case RL_OP_RECVMSG:
            n = recvmsg(fd, op->u.msg.msg, op->u.msg.msg_flags | MSG_DONTWAIT);
            break;
        case RL_OP_SENDMSG:
            n = sendmsg(fd, op->u.msg.msg,
                        op->u.msg.msg_flags | MSG_NOSIGNAL | MSG_DONTWAIT);
            break;
        case RL_OP_ACCEPT:
            n = accept4(fd, op->u.accept.addr, op->u.accept.addrlen,
                        SOCK_NONBLOCK | SOCK_CLOEXEC);
            break;
        case RL_OP_CONNECT:
            /* Only EINPROGRESS connects get here: writable means settled.
             * SO_ERROR is for the issuer to read (see RL_OP_CONNECT). */
            n = RL_CONNECT_SETTLED;
            break;
        case RL_OP_READ:
            n = read(fd, op->u.io.buf, io_len(op->u.io.len));
            break;
        case RL_OP_WRITE:
            n = write(fd, op->u.io.buf, io_len(op->u.io.len));
            break;
        default:
            n = -1;
            errno = EINVAL;
            break;
        }
        if (n >= 0) {
            *res = (int32_t)n;
            return IO_DONE;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return IO_AGAIN;
        }
        /* The connection died in the backlog: the listener is still fine,
         * try the next one (asyncio's accept loop skips it too). */
        if (op->kind == RL_OP_ACCEPT && errno == ECONNABORTED) {
            continue;
        }
        *res = -errno;
        return IO_DONE;
    }
}

/* Final completion of a listed op from the readiness path. */
static void
finish(ep_reactor *r, rl_op *op, int32_t res)
{
    int fd = op->fd;
    detach(r, op);
    op->state = RL_OPS_IDLE;
    r->inflight--;
    r->cur_op = op;
    r->cur_fd = fd;
    r->cur_empty = rec_want(&r->fds[fd]) == 0;
    op->cb(op, res, 0);
    /* op may be freed or resubmitted now; do not touch it.  The callback may
     * have grown the table: look the record up again. */
    r->cur_op = NULL;
    r->cur_empty = 0;
    fdrec *rec = &r->fds[fd];
    if (rec_want(rec) == 0 && rec->kmask != 0) {
        /* Nothing left on the fd, it will be DELeted; until then it may be
         * closed and reused, so a new arm must not trust kmask. */
        rec->verify = 1;
        mark_dirty(r, fd);
    }
}

static int
run_multishot_accept(ep_reactor *r, int fd, rl_op *op, int *blocked)
{
    int ncb = 0;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int nfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (nfd >= 0) {
            op->cb(op, nfd, RL_CQE_MORE);
            ncb++;
            /* Cancelled from its own callback: it sits in the local queue
             * (still alive, CANCELLING) and must not accept any more. */
            if (op->state != RL_OPS_ARMED || !(op->bflags & BF_LISTED)) {
                return ncb;
            }
            continue;
        }
        int e = errno;
        if (e == EINTR || e == ECONNABORTED) {
            continue;
        }
        if (e == EAGAIN || e == EWOULDBLOCK) {
            *blocked = 1;
            return ncb;
        }
        /* EMFILE, ENFILE, ENOBUFS, EBADF...: end the op instead of spinning
         * on a listener that stays readable. */
        finish(r, op, -e);
        return ncb + 1;
    }
    *blocked = 1; /* cap reached: the rest next time, keep fairness */
    return ncb;
}

/* Run the ops of one direction of fd after epoll reported ev. */
static int
run_dir(ep_reactor *r, int fd, int dir, uint32_t ev)
{
    int ncb = 0;
    int blocked = 0; /* a data op met EAGAIN: later data ops would too, and
                      * must not overtake it (byte order of sends) */
    rl_op *op = r->fds[fd].head[dir];
    while (op != NULL && op->bres_flags != r->epoch) {
        r->iter_next = op->bnext;
        if (op->kind == RL_OP_POLL) {
            /* Readiness from the batch is a hint that may be stale after
             * earlier callbacks, as with any selector. */
            uint32_t m = op->u.poll.events | POLLERR | POLLHUP | POLLRDHUP;
            int32_t res = (int32_t)(ev & m);
            if (res > 0) {
                finish(r, op, res);
                ncb++;
            }
        }
        else if (!blocked) {
            if (op->kind == RL_OP_ACCEPT && (op->flags & RL_OPF_MULTISHOT)) {
                ncb += run_multishot_accept(r, fd, op, &blocked);
            }
            else {
                int32_t res = 0;
                if (do_io(op, fd, &res) == IO_AGAIN) {
                    blocked = 1;
                }
                else {
                    finish(r, op, res);
                    ncb++;
                }
            }
        }
        /* Ops newer than this dispatch sit at the tail (FIFO), so the walk
         * stops at the first of them. */
        op = r->iter_next;
    }
    r->iter_next = NULL;
    return ncb;
}

/* An event we did not ask for: a registration that outlived its fd. */
static void
stale_event(ep_reactor *r, uint32_t ufd)
{
    /* We want nothing on this fd: if the fd number still names the
     * registered file, a DEL is enough.  Otherwise (fd closed, or reused by
     * another file we may be watching) only a new epoll set gets rid of it. */
    if (ufd <= INT_MAX && (ufd >= r->nfds || r->fds[ufd].kmask == 0) &&
        epoll_ctl(r->epfd, EPOLL_CTL_DEL, (int)ufd, NULL) == 0) {
        return;
    }
    r->need_rebuild = 1;
}

static int
run_local(ep_reactor *r)
{
    /* Take the queue as it is now: completions queued by these callbacks
     * wait for the next dispatch (wait() will not block meanwhile).  This
     * bounds the work even if callbacks keep cancelling and resubmitting. */
    rl_op *op = r->cq_head;
    int ncb = 0;
    r->cq_head = r->cq_tail = NULL;
    r->ncq = 0;
    while (op != NULL) {
        rl_op *next = op->bnext;
        int32_t res = op->bres;
        op->bnext = NULL;
        op->bflags &= (uint8_t)~BF_QUEUED;
        op->state = RL_OPS_IDLE;
        r->inflight--;
        op->cb(op, res, 0);
        ncb++;
        op = next;
    }
    return ncb;
}

/* ------------------------------------------------------------------------
 * rl_reactor_ops
 */

static void
set_why(char *why, size_t whylen, const char *what, int e)
{
    char buf[128];
    if (why != NULL && whylen > 0) {
        snprintf(why, whylen, "%s: %s", what, strerror_r(e, buf, sizeof(buf)));
    }
}

static rl_reactor *
ep_create_impl(int *err, char *why, size_t whylen, int inner)
{
    struct epoll_event ev;
    int e = 0;
    ep_reactor *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        e = ENOMEM;
        set_why(why, whylen, "epoll reactor", e);
        goto error;
    }
    r->epfd = -1;
    r->efd = -1;
    r->dirty_head = -1;
    r->cur_fd = -1;
    e = -rl_reactor_init_header(&r->hdr, &rl_epoll_ops, RL_BACKEND_EPOLL);
    if (e != 0) {
        set_why(why, whylen, "pthread_atfork", e);
        goto error;
    }
    r->events = malloc(EVENTS_MIN * sizeof(*r->events));
    if (r->events == NULL) {
        e = ENOMEM;
        set_why(why, whylen, "epoll reactor", e);
        goto error;
    }
    r->evcap = EVENTS_MIN;
    r->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (r->epfd < 0) {
        e = errno;
        set_why(why, whylen, "epoll_create1", e);
        goto error;
    }
    if (inner) {
        *err = 0;
        return &r->hdr; /* no wake-up eventfd: driven from outside */
    }
    rl_fault_from_env(&r->submit_fault, "RINGLOOP_TEST_SUBMIT_FAIL");
    r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->efd < 0) {
        e = errno;
        set_why(why, whylen, "eventfd", e);
        goto error;
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.u64 = WAKE_KEY;
    if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->efd, &ev) != 0) {
        e = errno;
        set_why(why, whylen, "epoll_ctl(eventfd)", e);
        goto error;
    }
    *err = 0;
    return &r->hdr;

error:
    if (r != NULL) {
        if (r->efd >= 0) {
            close(r->efd);
        }
        if (r->epfd >= 0) {
            close(r->epfd);
        }
        free(r->events);
        free(r);
    }
    *err = -e;
    return NULL;
}

static rl_reactor *
ep_create(int *err, char *why, size_t whylen)
{
    return ep_create_impl(err, why, whylen, 0);
}

static void
ep_destroy(rl_reactor *base)
{
    ep_reactor *r = (ep_reactor *)base;
    if (r == NULL) {
        return;
    }
    /* Ops still in flight are forgotten: nothing of ours outlives this, so
     * they are IDLE and their memory is the issuer's. */
    for (size_t fd = 0; fd < r->nfds; fd++) {
        for (int dir = DIR_IN; dir <= DIR_OUT; dir++) {
            rl_op *op;
            while ((op = r->fds[fd].head[dir]) != NULL) {
                list_remove(r, &r->fds[fd], dir, op);
                op->state = RL_OPS_IDLE;
                op->bflags = 0;
            }
        }
    }
    for (rl_op *op = r->cq_head; op != NULL;) {
        rl_op *next = op->bnext;
        op->bnext = NULL;
        op->state = RL_OPS_IDLE;
        op->bflags = 0;
        op = next;
    }
    close(r->epfd);
    if (r->efd >= 0) {
        close(r->efd);
    }
    rl_reactor_release_header(&r->hdr);
    free(r->fds);
    free(r->events);
    free(r);
}

static int
ep_submit(rl_reactor *base, rl_op *op)
{
    ep_reactor *r = (ep_reactor *)base;
    int dir;
    if (op->state != RL_OPS_IDLE) {
        return -EBUSY;
    }
    if (rl_reactor_forked(base)) {
        /* Parked (reactor.h, "Fork"): the epoll set is the parent's.  The
         * local queue is never run in the child (dispatch is inert); it
         * only lets destroy() find the op. */
        op->bflags = 0;
        op->state = RL_OPS_ARMED;
        r->inflight++;
        cq_push(r, op, -ECANCELED);
        return 0;
    }
    if ((op->flags & RL_OPF_MULTISHOT) && op->kind != RL_OP_ACCEPT) {
        return -EINVAL;
    }
    switch (op->kind) {
    case RL_OP_POLL: {
        /* One direction per op: an op has one list link.  The loop uses a
         * separate op per direction anyway. */
        uint32_t d = op->u.poll.events & (POLLIN | POLLOUT);
        if (d == POLLIN) {
            dir = DIR_IN;
        }
        else if (d == POLLOUT) {
            dir = DIR_OUT;
        }
        else {
            return -EINVAL;
        }
        break;
    }
    case RL_OP_RECV:
    case RL_OP_RECVMSG:
    case RL_OP_ACCEPT:
    case RL_OP_READ:
        dir = DIR_IN;
        break;
    case RL_OP_SEND:
    case RL_OP_SENDMSG:
    case RL_OP_CONNECT:
    case RL_OP_WRITE:
        dir = DIR_OUT;
        break;
    case RL_OP_FILE_READ: /* file ops (ringloop.fs): io_uring only */
    case RL_OP_FILE_WRITE:
    case RL_OP_OPENAT:
    case RL_OP_STATX:
    case RL_OP_RENAMEAT:
    case RL_OP_UNLINKAT:
    case RL_OP_MKDIRAT:
    case RL_OP_FSYNC:
    case RL_OP_CLOSE:
    case RL_OP_SPLICE:
        return -EOPNOTSUPP;
    default:
        return -EINVAL;
    }
    if (op->flags & RL_OPF_CHECK_FD) {
        int rc = rl_reactor_check_fd(&r->hdr, op->fd);
        if (rc < 0) {
            return rc;
        }
    }
    {
        int frc = rl_fault_hit(&r->submit_fault);
        if (frc < 0) {
            return frc;
        }
    }
    op->bprev = op->bnext = NULL;
    op->bres = 0;
    op->bres_flags = 0;
    op->bflags = dir == DIR_OUT ? BF_OUT : 0;

    if (op->fd < 0) {
        /* Reported as a completion, as io_uring would. */
        op->state = RL_OPS_ARMED;
        r->inflight++;
        cq_push(r, op, -EBADF);
        return 0;
    }
    int rc = ensure_fd(r, op->fd);
    if (rc < 0) {
        return rc;
    }
    if (op->kind == RL_OP_CONNECT) {
        int res = 0;
        if (connect(op->fd, op->u.connect.addr, op->u.connect.addrlen) != 0) {
            res = -errno;
        }
        /* EINTR: the connect goes on asynchronously, as EINPROGRESS.
         * Anything else is final (EAGAIN too: on AF_UNIX it means a full
         * backlog, nothing is in progress and POLLOUT would not say when
         * to retry). */
        if (res != -EINPROGRESS && res != -EINTR) {
            op->state = RL_OPS_ARMED;
            r->inflight++;
            cq_push(r, op, res);
            return 0;
        }
    }

    int fd = op->fd;
    fdrec *rec = &r->fds[fd];
    if (rec->head[dir] == NULL) {
        if (rec_want(rec) == 0 && r->cur_empty && fd == r->cur_fd) {
            /* Filling the fd whose last op completes in this very callback.
             * The op itself re-arming is the hot path: trust kmask.  Any
             * other op may be for a new file under the same number, and so
             * is a CONNECT (a retry means close() + socket(), which usually
             * hands back the same number). */
            r->cur_empty = 0;
            if (op != r->cur_op || op->kind == RL_OP_CONNECT) {
                rec->verify = 1;
            }
        }
        mark_dirty(r, fd);
    }
    if (op->flags & RL_OPF_SAME_FILE) {
        /* The issuer owns the fd and has not closed it: the registration
         * made for this file still stands (see RL_OPF_SAME_FILE). */
        rec->verify = 0;
    }
    list_append(rec, dir, op);
    op->bres_flags = r->epoch; /* see ep_reactor.epoch */
    op->state = RL_OPS_ARMED;
    r->inflight++;
    return 0;
}

static int
ep_cancel(rl_reactor *base, rl_op *op)
{
    ep_reactor *r = (ep_reactor *)base;
    if (op->state == RL_OPS_IDLE) {
        return -ENOENT;
    }
    if (op->state == RL_OPS_CANCELLING) {
        return -EALREADY;
    }
    op->state = RL_OPS_CANCELLING;
    if (rl_reactor_forked(base)) {
        return 0; /* no completion will come (reactor.h, "Fork") */
    }
    if (op->bflags & BF_LISTED) {
        int fd = op->fd;
        detach(r, op);
        fdrec *rec = &r->fds[fd];
        if (rec_want(rec) == 0) {
            /* Usually the prelude to close(): re-check before trusting
             * kmask if the fd is armed again. */
            rec->verify = 1;
            mark_dirty(r, fd);
        }
        cq_push(r, op, -ECANCELED);
    }
    /* else: already in the local queue with its result, which stands. */
    return 0;
}

static int
epoll_wait_ns(ep_reactor *r, int64_t timeout_ns)
{
#if defined(__GLIBC_PREREQ)
#if __GLIBC_PREREQ(2, 35)
    if (!r->no_pwait2) {
        struct timespec ts;
        struct timespec *tsp = NULL;
        if (timeout_ns >= 0) {
            ts.tv_sec = (time_t)(timeout_ns / 1000000000);
            ts.tv_nsec = (long)(timeout_ns % 1000000000);
            tsp = &ts;
        }
        int n = epoll_pwait2(r->epfd, r->events, r->evcap, tsp, NULL);
        if (n >= 0 || errno != ENOSYS) {
            return n;
        }
        r->no_pwait2 = 1; /* kernel < 5.11 (or valgrind): milliseconds */
    }
#endif
#endif
    int ms;
    if (timeout_ns < 0) {
        ms = -1;
    }
    else {
        /* Round up: waking early would make the loop spin until the
         * timer is due. */
        int64_t q = timeout_ns / 1000000 + (timeout_ns % 1000000 != 0);
        ms = q > INT_MAX ? INT_MAX : (int)q;
    }
    return epoll_wait(r->epfd, r->events, r->evcap, ms);
}

static int
ep_wait(rl_reactor *base, int64_t timeout_ns)
{
    ep_reactor *r = (ep_reactor *)base;
    if (rl_reactor_forked(base)) {
        return -ECHILD;
    }
    if (r->in_dispatch) {
        return -EBUSY; /* would overwrite the batch being dispatched */
    }
    r->nready = 0;
    if (r->need_rebuild) {
        rebuild_epoll(r);
    }
    flush_dirty(r);
    if (r->grow_events && r->evcap < EVENTS_MAX) {
        struct epoll_event *p =
            realloc(r->events, (size_t)r->evcap * 2 * sizeof(*p));
        if (p != NULL) {
            r->events = p;
            r->evcap *= 2;
        }
    }
    r->grow_events = 0;
    if (r->cq_head != NULL) {
        timeout_ns = 0;
    }
    if (timeout_ns == 0 && r->inflight == r->ncq) {
        /* No op waits for readiness: a non-blocking epoll_wait could only
         * report the wake-up eventfd, which a zero-timeout wait may ignore
         * (a later blocking wait still sees it).  Saves a syscall per
         * iteration of a loop that only runs callbacks. */
        return (int)r->ncq;
    }
    /* EINTR is returned, not retried: the loop must run signal handlers. */
    int n = epoll_wait_ns(r, timeout_ns);
    if (n < 0) {
        return -errno;
    }
    r->nready = n;
    if (n == r->evcap) {
        r->grow_events = 1; /* level-triggered: the rest comes next time */
    }
    size_t total = (size_t)n + r->ncq;
    return total > INT_MAX ? INT_MAX : (int)total;
}

static int
ep_dispatch(rl_reactor *base)
{
    ep_reactor *r = (ep_reactor *)base;
    int ncb = 0;
    if (r->in_dispatch || rl_reactor_forked(base)) {
        return 0;
    }
    r->in_dispatch = 1;
    r->epoch++;
    int n = r->nready;
    r->nready = 0;
    for (int i = 0; i < n; i++) {
        uint64_t key = r->events[i].data.u64;
        uint32_t ev = r->events[i].events;
        if (key == WAKE_KEY) {
            uint64_t v;
            ssize_t rc = read(r->efd, &v, sizeof(v)); /* reset; EAGAIN ok */
            (void)rc;
            continue;
        }
        uint32_t ufd = (uint32_t)key;
        uint32_t gen = (uint32_t)(key >> 32);
        /* kmask and gen change only in wait(), so they still describe the
         * registrations this batch came from. */
        if (ufd >= r->nfds || r->fds[ufd].kmask == 0 ||
            r->fds[ufd].gen != gen) {
            stale_event(r, ufd);
            continue;
        }
        int fd = (int)ufd;
        /* EPOLLERR/EPOLLHUP wake both directions, as asyncio's selector
         * does: the syscalls then report the error or EOF. */
        if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
            ncb += run_dir(r, fd, DIR_IN, ev);
        }
        if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
            ncb += run_dir(r, fd, DIR_OUT, ev);
        }
    }
    ncb += run_local(r);
    r->in_dispatch = 0;
    return ncb;
}

static void
ep_wakeup(rl_reactor *base)
{
    ep_reactor *r = (ep_reactor *)base;
    /* Async-signal-safe: one write(2), errno preserved.  EAGAIN means the
     * counter is already huge, i.e. a wakeup is pending anyway. */
    int saved = errno;
    uint64_t one = 1;
    ssize_t rc;
    if (rl_reactor_forked(base)) {
        return; /* the eventfd is shared with the parent */
    }
    rc = write(r->efd, &one, sizeof(one));
    (void)rc;
    errno = saved;
}

static size_t
ep_inflight(rl_reactor *base)
{
    return ((ep_reactor *)base)->inflight;
}

/* Nothing is queued for the kernel: every syscall runs in dispatch(), and
 * a cancelled op is already off its fd's lists. */
static int
ep_flush(rl_reactor *base)
{
    (void)base;
    return 0;
}

const rl_reactor_ops rl_epoll_ops = {
    .name = "epoll",
    .create = ep_create,
    .destroy = ep_destroy,
    .submit = ep_submit,
    .cancel = ep_cancel,
    .wait = ep_wait,
    .dispatch = ep_dispatch,
    .wakeup = ep_wakeup,
    .inflight = ep_inflight,
    .flush = ep_flush,
};

/* ------------------------------------------------------------------------
 * The inner epoll set of the io_uring backend (reactor.h, "Between
 * backends")
 */

rl_reactor *
rl_epoll_inner_create(int *err)
{
    return ep_create_impl(err, NULL, 0, 1);
}

int
rl_epoll_inner_sync(rl_reactor *base, rl_epoll_inner_state *st)
{
    ep_reactor *r = (ep_reactor *)base;
    if (r->need_rebuild) {
        rebuild_epoll(r);
    }
    flush_dirty(r);
    st->epfd = r->epfd;
    st->rebuilds = r->rebuilds;
    st->waiting = r->inflight > r->ncq;
    st->local = r->ncq > 0;
    return 0;
}

int
rl_epoll_inner_harvest(rl_reactor *base)
{
    ep_reactor *r = (ep_reactor *)base;
    if (r->in_dispatch) {
        return -EBUSY;
    }
    if (r->grow_events && r->evcap < EVENTS_MAX) {
        struct epoll_event *p =
            realloc(r->events, (size_t)r->evcap * 2 * sizeof(*p));
        if (p != NULL) {
            r->events = p;
            r->evcap *= 2;
        }
    }
    r->grow_events = 0;
    int n;
    do {
        n = epoll_wait(r->epfd, r->events, r->evcap, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        r->nready = 0;
        return -errno;
    }
    r->nready = n;
    if (n == r->evcap) {
        r->grow_events = 1;
    }
    return n;
}
