/* io_uring-specific tests of the reactor backend (src/reactor/uring.c),
 * beyond the shared conformance test (test_reactor.c).  Pure C.
 *
 * Build and run (from the repository root):
 *
 *   cc -std=c11 -O1 -g -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
 *      -Wmissing-prototypes -Isrc tests/c/test_uring_extra.c \
 *      src/reactor/common.c src/reactor/uring.c \
 *      $(cc -print-file-name=liburing.a) -lpthread \
 *      -o tests/c/bin/test_uring_extra
 *   tests/c/bin/test_uring_extra
 *
 * Also run it (and test_reactor io_uring) with each backend hook set:
 * RINGLOOP_TEST_URING_NOWAIT=1 (every data op goes through the -EAGAIN
 * poll-then-retry path), RINGLOOP_TEST_URING_NO_MULTISHOT=1 (emulated
 * multishot accept, one-shot wake-up poll), RINGLOOP_URING_DEFER_TASKRUN=1.
 *
 * Exit 0 = pass, 77 = skip (io_uring unavailable), anything else = fail. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "reactor.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static const rl_reactor_ops *OPS = &rl_uring_ops;
static int failures;

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: %s: CHECK(%s) failed\n", __FILE__,        \
                    __LINE__, __func__, #cond);                               \
            failures++;                                                       \
            return;                                                           \
        }                                                                     \
    } while (0)

typedef struct top top;
struct top {
    rl_op op;
    int ncalls;
    int nmore;
    int32_t last_res;
    uint32_t last_flags;
    rl_reactor *r;
    /* optional actions run from the callback */
    top *cancel_other;      /* cancel this op */
    int cancel_other_rc;
    int resubmit_as_pollin; /* resubmit self as POLLIN once */
    int cancel_self_after;  /* multishot: cancel self after n fds */
    int fds[64];
    int nfds;
    char buf[256];
};

static void
top_cb(rl_op *op, int32_t res, uint32_t flags)
{
    top *t = (top *)op;
    t->ncalls++;
    t->last_res = res;
    t->last_flags = flags;
    if (flags & RL_CQE_MORE) {
        t->nmore++;
    }
    else if (op->state != RL_OPS_IDLE) {
        fprintf(stderr, "final completion but op not IDLE\n");
        failures++;
    }
    if (op->kind == RL_OP_ACCEPT && res >= 0 && t->nfds < 64) {
        t->fds[t->nfds++] = res;
    }
    if (t->cancel_other != NULL) {
        t->cancel_other_rc = rl_reactor_cancel(t->r, &t->cancel_other->op);
        t->cancel_other = NULL;
    }
    if (t->cancel_self_after > 0 && t->nfds == t->cancel_self_after &&
        (flags & RL_CQE_MORE)) {
        if (rl_reactor_cancel(t->r, op) != 0) {
            fprintf(stderr, "cancel from multishot callback failed\n");
            failures++;
        }
    }
    if (t->resubmit_as_pollin && !(flags & RL_CQE_MORE)) {
        t->resubmit_as_pollin = 0;
        op->u.poll.events = POLLIN;
        if (rl_reactor_submit(t->r, op) != 0) {
            fprintf(stderr, "resubmit from callback failed\n");
            failures++;
        }
    }
}

static void
top_init(top *t, rl_reactor *r, int kind, int fd)
{
    memset(t, 0, sizeof(*t));
    t->op.cb = top_cb;
    t->op.kind = (uint8_t)kind;
    t->op.fd = fd;
    t->r = r;
}

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

#define SPIN_UNTIL(r, cond, secs)                                             \
    do {                                                                      \
        double deadline_ = now_s() + (secs);                                  \
        while (!(cond) && now_s() < deadline_) {                              \
            int rc_ = rl_reactor_wait((r), 50 * 1000000LL);                   \
            if (rc_ < 0 && rc_ != -EINTR) {                                   \
                fprintf(stderr, "wait: %s\n", strerror(-rc_));                \
                break;                                                        \
            }                                                                 \
            rl_reactor_dispatch(r);                                           \
        }                                                                     \
    } while (0)

static rl_reactor *
mk(void)
{
    int err = 0;
    char why[256] = "";
    rl_reactor *r = OPS->create(&err, why, sizeof(why));
    if (r == NULL) {
        fprintf(stderr, "create failed: %s (%s)\n", strerror(-err), why);
        exit(1);
    }
    return r;
}

static void
on_alarm(int sig)
{
    (void)sig;
}

static void
arm_alarm_ms(int ms)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm; /* no SA_RESTART */
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 0}, {0, ms * 1000}};
    setitimer(ITIMER_REAL, &it, NULL);
}

/* A signal during a wait that also submitted SQEs: the kernel reports the
 * number submitted, not -EINTR; the backend must still say -EINTR. */
static void
test_eintr_with_submission(void)
{
    rl_reactor *r = mk();
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    top t;
    top_init(&t, r, RL_OP_POLL, sv[0]);
    t.op.u.poll.events = POLLIN;
    CHECK(rl_reactor_submit(r, &t.op) == 0); /* pending SQE */
    arm_alarm_ms(50);
    double t0 = now_s();
    int rc = rl_reactor_wait(r, 3LL * 1000000000LL);
    double dt = now_s() - t0;
    CHECK(rc == -EINTR);
    CHECK(dt < 2.0);
    /* Same with an infinite wait. */
    top t2;
    top_init(&t2, r, RL_OP_POLL, sv[0]);
    t2.op.u.poll.events = POLLIN;
    CHECK(rl_reactor_submit(r, &t2.op) == 0);
    arm_alarm_ms(50);
    t0 = now_s();
    rc = rl_reactor_wait(r, -1);
    dt = now_s() - t0;
    signal(SIGALRM, SIG_DFL);
    CHECK(rc == -EINTR);
    CHECK(dt < 2.0);
    /* A timed-out wait that submitted is a timeout, not -EINTR. */
    top t3;
    top_init(&t3, r, RL_OP_POLL, sv[0]);
    t3.op.u.poll.events = POLLIN;
    CHECK(rl_reactor_submit(r, &t3.op) == 0);
    t0 = now_s();
    rc = rl_reactor_wait(r, 30 * 1000000LL);
    dt = now_s() - t0;
    CHECK(rc == 0);
    CHECK(dt >= 0.025);
    CHECK(OPS->inflight(r) == 3);
    close(sv[0]);
    close(sv[1]);
    rl_reactor_destroy(r);
    CHECK(t.op.state == RL_OPS_IDLE && t.ncalls == 0);
}

/* A zero-timeout wait never blocks, with or without pending SQEs. */
static void
test_zero_timeout_with_pending(void)
{
    rl_reactor *r = mk();
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    top t;
    top_init(&t, r, RL_OP_POLL, sv[0]);
    t.op.u.poll.events = POLLOUT;
    CHECK(rl_reactor_submit(r, &t.op) == 0);
    double t0 = now_s();
    CHECK(rl_reactor_wait(r, 0) >= 0);
    /* POLLOUT is ready: completed during the submit itself. */
    CHECK(rl_reactor_dispatch(r) == 1);
    CHECK(t.ncalls == 1 && (t.last_res & POLLOUT));
    CHECK(now_s() - t0 < 0.5);
    close(sv[0]);
    close(sv[1]);
    rl_reactor_destroy(r);
}

/* More immediate completions than the CQ holds (NODROP overflow). */
static void
test_cq_overflow(void)
{
    enum { N = 10000 };
    rl_reactor *r = mk();
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    top *ts = calloc(N, sizeof(top));
    CHECK(ts != NULL);
    for (int i = 0; i < N; i++) {
        top_init(&ts[i], r, RL_OP_POLL, sv[0]);
        ts[i].op.u.poll.events = POLLOUT;
        CHECK(rl_reactor_submit(r, &ts[i].op) == 0);
    }
    int done = 0;
    double deadline = now_s() + 5.0;
    while (done < N && now_s() < deadline) {
        rl_reactor_wait(r, 50 * 1000000LL);
        done += rl_reactor_dispatch(r);
    }
    CHECK(done == N);
    for (int i = 0; i < N; i++) {
        CHECK(ts[i].ncalls == 1 && (ts[i].last_res & POLLOUT));
    }
    CHECK(OPS->inflight(r) == 0);
    free(ts);
    close(sv[0]);
    close(sv[1]);
    rl_reactor_destroy(r);
}

/* A callback cancels an op whose CQE is later in the same batch; that op
 * gets its real result as final, is resubmitted from its callback, and the
 * stale cancel request must not kill the new incarnation. */
static void
test_cancel_later_in_batch(void)
{
    rl_reactor *r = mk();
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    top a, b;
    top_init(&a, r, RL_OP_POLL, sv[0]);
    a.op.u.poll.events = POLLOUT;
    top_init(&b, r, RL_OP_POLL, sv[0]);
    b.op.u.poll.events = POLLOUT;
    a.cancel_other = &b;
    b.resubmit_as_pollin = 1;
    CHECK(rl_reactor_submit(r, &a.op) == 0);
    CHECK(rl_reactor_submit(r, &b.op) == 0);
    SPIN_UNTIL(r, a.ncalls == 1 && b.ncalls == 1, 2.0);
    CHECK(a.ncalls == 1 && b.ncalls == 1);
    CHECK(a.cancel_other_rc == 0);
    CHECK(b.last_res > 0 && (b.last_res & POLLOUT)); /* real result */
    CHECK(b.op.state == RL_OPS_ARMED);               /* resubmitted */
    /* Let the stale cancel reach the kernel. */
    for (int i = 0; i < 3; i++) {
        rl_reactor_wait(r, 10 * 1000000LL);
        rl_reactor_dispatch(r);
    }
    CHECK(b.ncalls == 1);
    CHECK(b.op.state == RL_OPS_ARMED);
    CHECK(write(sv[1], "x", 1) == 1);
    SPIN_UNTIL(r, b.ncalls == 2, 2.0);
    CHECK(b.ncalls == 2 && (b.last_res & POLLIN));
    CHECK(OPS->inflight(r) == 0);
    close(sv[0]);
    close(sv[1]);
    rl_reactor_destroy(r);
}

/* The issuer passes MSG_DONTWAIT: the kernel answers -EAGAIN, which the
 * backend must absorb (poll, then retry); cancel works in that phase. */
static void
test_dontwait_flags(void)
{
    rl_reactor *r = mk();
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    top rx;
    top_init(&rx, r, RL_OP_RECV, sv[0]);
    rx.op.u.io.buf = rx.buf;
    rx.op.u.io.len = sizeof(rx.buf);
    rx.op.u.io.msg_flags = MSG_DONTWAIT;
    CHECK(rl_reactor_submit(r, &rx.op) == 0);
    for (int i = 0; i < 3; i++) {
        rl_reactor_wait(r, 10 * 1000000LL);
        rl_reactor_dispatch(r);
    }
    CHECK(rx.ncalls == 0);
    CHECK(rx.op.state == RL_OPS_ARMED);
    CHECK(write(sv[1], "abc", 3) == 3);
    SPIN_UNTIL(r, rx.ncalls == 1, 2.0);
    CHECK(rx.ncalls == 1 && rx.last_res == 3);
    /* cancel while waiting in the internal poll */
    CHECK(rl_reactor_submit(r, &rx.op) == 0);
    for (int i = 0; i < 3; i++) {
        rl_reactor_wait(r, 10 * 1000000LL);
        rl_reactor_dispatch(r);
    }
    CHECK(rx.ncalls == 1);
    CHECK(rl_reactor_cancel(r, &rx.op) == 0);
    SPIN_UNTIL(r, rx.ncalls == 2, 2.0);
    CHECK(rx.ncalls == 2 && rx.last_res == -ECANCELED);
    CHECK(OPS->inflight(r) == 0);
    /* the data written next is still there */
    CHECK(write(sv[1], "de", 2) == 2);
    usleep(1000);
    CHECK(read(sv[0], rx.buf, sizeof(rx.buf)) == 2);
    close(sv[0]);
    close(sv[1]);
    rl_reactor_destroy(r);
}

static int
listener(struct sockaddr_in *sa)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(l, (struct sockaddr *)sa, sizeof(*sa)) != 0 || listen(l, 64)) {
        return -1;
    }
    socklen_t sl = sizeof(*sa);
    getsockname(l, (struct sockaddr *)sa, &sl);
    return l;
}

/* Multishot accept, cancelled from its own callback; run with the kernel's
 * multishot and with the emulation (re-armed single accepts). */
static void
run_multishot_cancel_from_cb(void)
{
    rl_reactor *r = mk();
    struct sockaddr_in sa;
    int l = listener(&sa);
    CHECK(l >= 0);
    top acc;
    top_init(&acc, r, RL_OP_ACCEPT, l);
    acc.op.flags = RL_OPF_MULTISHOT;
    acc.cancel_self_after = 2;
    CHECK(rl_reactor_submit(r, &acc.op) == 0);
    int cl[4];
    for (int i = 0; i < 4; i++) {
        cl[i] = socket(AF_INET, SOCK_STREAM, 0);
        CHECK(connect(cl[i], (struct sockaddr *)&sa, sizeof(sa)) == 0);
    }
    SPIN_UNTIL(r, acc.op.state == RL_OPS_IDLE, 2.0);
    CHECK(acc.op.state == RL_OPS_IDLE);
    CHECK(acc.nfds >= 2);
    CHECK(acc.nmore >= 2);
    CHECK(acc.ncalls == acc.nmore + 1); /* exactly one final */
    for (int i = 0; i < acc.nfds; i++) {
        CHECK(fcntl(acc.fds[i], F_GETFL) & O_NONBLOCK);
        CHECK(fcntl(acc.fds[i], F_GETFD) & FD_CLOEXEC);
        close(acc.fds[i]);
    }
    CHECK(OPS->inflight(r) == 0);
    for (int i = 0; i < 4; i++) {
        close(cl[i]);
    }
    close(l);
    rl_reactor_destroy(r);
}

static void
test_multishot_accept_cancel_from_cb(void)
{
    run_multishot_cancel_from_cb();
    setenv("RINGLOOP_TEST_URING_NO_MULTISHOT", "1", 1);
    run_multishot_cancel_from_cb();
    unsetenv("RINGLOOP_TEST_URING_NO_MULTISHOT");
}

/* destroy(): no callback; ops IDLE afterwards; an fd accepted by the kernel
 * but never delivered is closed (the client sees EOF). */
static void
test_destroy_reaps(void)
{
    rl_reactor *r = mk();
    struct sockaddr_in sa;
    int l = listener(&sa);
    CHECK(l >= 0);
    top acc, rd;
    top_init(&acc, r, RL_OP_ACCEPT, l);
    CHECK(rl_reactor_submit(r, &acc.op) == 0);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    top_init(&rd, r, RL_OP_RECV, sv[0]);
    rd.op.u.io.buf = rd.buf;
    rd.op.u.io.len = sizeof(rd.buf);
    CHECK(rl_reactor_submit(r, &rd.op) == 0);
    rl_reactor_wait(r, 0);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(c, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    /* Let the accept complete in the kernel, but never dispatch it. */
    rl_reactor_wait(r, 100 * 1000000LL);
    rl_reactor_destroy(r);
    CHECK(acc.ncalls == 0 && rd.ncalls == 0);
    CHECK(acc.op.state == RL_OPS_IDLE && rd.op.state == RL_OPS_IDLE);
    struct timeval tv = {2, 0};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char b;
    CHECK(recv(c, &b, 1, 0) == 0); /* the accepted fd was closed */
    /* data written after destroy is not eaten by a forgotten recv */
    CHECK(write(sv[1], "q", 1) == 1);
    usleep(1000);
    CHECK(read(sv[0], &b, 1) == 1);
    close(c);
    close(l);
    close(sv[0]);
    close(sv[1]);
}

typedef struct {
    rl_reactor *r;
    int n;
    int finished; /* atomic */
} waker_arg;

static void *
waker(void *p)
{
    waker_arg *a = p;
    for (int i = 0; i < a->n; i++) {
        rl_reactor_wakeup(a->r);
    }
    __atomic_add_fetch(&a->finished, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

/* Many wake-ups from several threads while the loop runs: waits end, no
 * callback is made, then everything has coalesced and the next wait
 * blocks until its timeout. */
static void
test_wakeup_storm(void)
{
    rl_reactor *r = mk();
    pthread_t th[4];
    waker_arg a = {r, 20000, 0};
    for (int i = 0; i < 4; i++) {
        CHECK(pthread_create(&th[i], NULL, waker, &a) == 0);
    }
    double deadline = now_s() + 10.0;
    int iterations = 0;
    while (__atomic_load_n(&a.finished, __ATOMIC_SEQ_CST) < 4 &&
           now_s() < deadline) {
        CHECK(rl_reactor_wait(r, 100 * 1000000LL) >= 0);
        CHECK(rl_reactor_dispatch(r) == 0); /* wake-ups make no callback */
        iterations++;
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
    }
    /* reap what is left, then the ring must be quiet */
    for (int i = 0; i < 3; i++) {
        rl_reactor_wait(r, 0);
        rl_reactor_dispatch(r);
    }
    double t0 = now_s();
    rl_reactor_wait(r, 30 * 1000000LL);
    rl_reactor_dispatch(r);
    CHECK(now_s() - t0 >= 0.02);
    /* and wake-ups still work, from this thread and another */
    rl_reactor_wakeup(r);
    t0 = now_s();
    CHECK(rl_reactor_wait(r, 2LL * 1000000000LL) >= 0);
    CHECK(now_s() - t0 < 1.0);
    rl_reactor_dispatch(r);
    a.n = 1;
    CHECK(pthread_create(&th[0], NULL, waker, &a) == 0);
    t0 = now_s();
    CHECK(rl_reactor_wait(r, 2LL * 1000000000LL) >= 0);
    CHECK(now_s() - t0 < 1.0);
    pthread_join(th[0], NULL);
    rl_reactor_destroy(r);
    (void)iterations;
}

/* A reactor created in one thread and run in another (what a Python loop
 * may do): the default setup flags must allow it. */
static void *
create_in_thread(void *p)
{
    *(rl_reactor **)p = mk();
    return NULL;
}

static void
test_other_thread(void)
{
    rl_reactor *r = NULL;
    pthread_t th;
    CHECK(pthread_create(&th, NULL, create_in_thread, &r) == 0);
    pthread_join(th, NULL);
    CHECK(r != NULL);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    top rx;
    top_init(&rx, r, RL_OP_RECV, sv[0]);
    rx.op.u.io.buf = rx.buf;
    rx.op.u.io.len = sizeof(rx.buf);
    CHECK(rl_reactor_submit(r, &rx.op) == 0);
    CHECK(write(sv[1], "hi", 2) == 2);
    SPIN_UNTIL(r, rx.ncalls == 1, 2.0);
    CHECK(rx.ncalls == 1 && rx.last_res == 2);
    close(sv[0]);
    close(sv[1]);
    rl_reactor_destroy(r);
}

/* The thread that submitted requests exits, the loop goes on in another
 * thread: the kernel then completes those requests with -ECANCELED when
 * they fire; the backend must re-issue them, never report them. */
typedef struct {
    rl_reactor *r;
    top *ops;
    int n;
} exit_arg;

static void *
submit_and_exit(void *p)
{
    exit_arg *a = p;
    for (int i = 0; i < a->n; i++) {
        if (rl_reactor_submit(a->r, &a->ops[i].op) != 0) {
            failures++;
        }
    }
    rl_reactor_wait(a->r, 10 * 1000000LL); /* this thread submits them */
    rl_reactor_dispatch(a->r);
    return NULL;
}

static void
test_submitter_thread_exits(void)
{
    rl_reactor *r = NULL;
    pthread_t th;
    CHECK(pthread_create(&th, NULL, create_in_thread, &r) == 0);
    pthread_join(th, NULL); /* the wake-up poll's submitter is gone */
    CHECK(r != NULL);
    int sv[2], sv2[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv2) == 0);
    struct sockaddr_in sa;
    int l = listener(&sa);
    CHECK(l >= 0);
    top ops[4];
    top_init(&ops[0], r, RL_OP_POLL, sv2[0]);
    ops[0].op.u.poll.events = POLLIN;
    top_init(&ops[1], r, RL_OP_RECV, sv[0]);
    ops[1].op.u.io.buf = ops[1].buf;
    ops[1].op.u.io.len = sizeof(ops[1].buf);
    top_init(&ops[2], r, RL_OP_ACCEPT, l);
    ops[2].op.flags = RL_OPF_MULTISHOT;
    top_init(&ops[3], r, RL_OP_POLL, sv[1]);
    ops[3].op.u.poll.events = POLLIN;
    exit_arg a = {r, ops, 4};
    CHECK(pthread_create(&th, NULL, submit_and_exit, &a) == 0);
    pthread_join(th, NULL);
    CHECK(ops[0].ncalls == 0 && ops[1].ncalls == 0 && ops[2].ncalls == 0);
    /* wake-up still ends a wait */
    rl_reactor_wakeup(r);
    double t0 = now_s();
    CHECK(rl_reactor_wait(r, 2LL * 1000000000LL) >= 0);
    CHECK(now_s() - t0 < 1.0);
    rl_reactor_dispatch(r);
    /* the orphaned requests fire: real results, no -ECANCELED */
    CHECK(write(sv[1], "hey", 3) == 3);
    CHECK(write(sv2[1], "!", 1) == 1);
    SPIN_UNTIL(r, ops[0].ncalls == 1 && ops[1].ncalls == 1, 2.0);
    CHECK(ops[0].ncalls == 1 && (ops[0].last_res & POLLIN));
    CHECK(ops[1].ncalls == 1 && ops[1].last_res == 3);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(c, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    SPIN_UNTIL(r, ops[2].nfds == 1, 2.0);
    CHECK(ops[2].nfds == 1 && ops[2].op.state == RL_OPS_ARMED);
    CHECK(ops[2].last_flags & RL_CQE_MORE);
    /* and the issuer's cancel still works on an orphaned request */
    CHECK(rl_reactor_cancel(r, &ops[3].op) == 0);
    CHECK(rl_reactor_cancel(r, &ops[2].op) == 0);
    SPIN_UNTIL(r, ops[3].ncalls == 1 && ops[2].op.state == RL_OPS_IDLE,
               2.0);
    CHECK(ops[3].ncalls == 1 && ops[3].last_res == -ECANCELED);
    CHECK(ops[2].op.state == RL_OPS_IDLE);
    CHECK(OPS->inflight(r) == 0);
    close(ops[2].fds[0]);
    close(c);
    close(l);
    close(sv[0]);
    close(sv[1]);
    close(sv2[0]);
    close(sv2[1]);
    rl_reactor_destroy(r);
}

/* Two loops in two threads at once, each ping-ponging on its own pair. */
static void *
pingpong(void *p)
{
    int *ok = p;
    rl_reactor *r = mk();
    int sv[2];
    *ok = 0;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0) {
        return NULL;
    }
    top rx, tx;
    int rounds = 0;
    for (; rounds < 2000; rounds++) {
        top_init(&rx, r, RL_OP_RECV, sv[rounds & 1]);
        rx.op.u.io.buf = rx.buf;
        rx.op.u.io.len = sizeof(rx.buf);
        top_init(&tx, r, RL_OP_SEND, sv[!(rounds & 1)]);
        memcpy(tx.buf, "ping", 4);
        tx.op.u.io.buf = tx.buf;
        tx.op.u.io.len = 4;
        if (rl_reactor_submit(r, &rx.op) || rl_reactor_submit(r, &tx.op)) {
            break;
        }
        SPIN_UNTIL(r, rx.ncalls == 1 && tx.ncalls == 1, 2.0);
        if (rx.last_res != 4 || tx.last_res != 4) {
            break;
        }
    }
    *ok = rounds == 2000 && OPS->inflight(r) == 0;
    close(sv[0]);
    close(sv[1]);
    rl_reactor_destroy(r);
    return NULL;
}

static void
test_parallel_loops(void)
{
    pthread_t th[3];
    int ok[3];
    for (int i = 0; i < 3; i++) {
        CHECK(pthread_create(&th[i], NULL, pingpong, &ok[i]) == 0);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
    }
    for (int i = 0; i < 3; i++) {
        CHECK(ok[i]);
    }
}

/* READ/WRITE on a pty (ttys are in the contract), both O_NONBLOCK. */
static void
test_tty(void)
{
    rl_reactor *r = mk();
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (m < 0) {
        printf("  (no pty here: test_tty skipped)\n");
        rl_reactor_destroy(r);
        return;
    }
    CHECK(grantpt(m) == 0 && unlockpt(m) == 0);
    int s = open(ptsname(m), O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    CHECK(s >= 0);
    struct termios tio;
    CHECK(tcgetattr(s, &tio) == 0);
    cfmakeraw(&tio);
    CHECK(tcsetattr(s, TCSANOW, &tio) == 0);
    top rd, wr;
    top_init(&rd, r, RL_OP_READ, s);
    rd.op.u.io.buf = rd.buf;
    rd.op.u.io.len = sizeof(rd.buf);
    CHECK(rl_reactor_submit(r, &rd.op) == 0);
    for (int i = 0; i < 3; i++) {
        rl_reactor_wait(r, 10 * 1000000LL);
        rl_reactor_dispatch(r);
    }
    CHECK(rd.ncalls == 0);
    top_init(&wr, r, RL_OP_WRITE, m);
    memcpy(wr.buf, "tty!", 4);
    wr.op.u.io.buf = wr.buf;
    wr.op.u.io.len = 4;
    CHECK(rl_reactor_submit(r, &wr.op) == 0);
    SPIN_UNTIL(r, rd.ncalls == 1 && wr.ncalls == 1, 2.0);
    CHECK(wr.last_res == 4);
    CHECK(rd.last_res == 4 && memcmp(rd.buf, "tty!", 4) == 0);
    /* cancel a pending tty read */
    CHECK(rl_reactor_submit(r, &rd.op) == 0);
    rl_reactor_wait(r, 10 * 1000000LL);
    rl_reactor_dispatch(r);
    CHECK(rl_reactor_cancel(r, &rd.op) == 0);
    SPIN_UNTIL(r, rd.ncalls == 2, 2.0);
    CHECK(rd.ncalls == 2 && rd.last_res == -ECANCELED);
    close(s);
    close(m);
    rl_reactor_destroy(r);
}

static void
test_submit_errors(void)
{
    rl_reactor *r = mk();
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    top t;
    top_init(&t, r, RL_OP_POLL, sv[0]);
    t.op.u.poll.events = POLLIN;
    CHECK(rl_reactor_submit(r, &t.op) == 0);
    CHECK(rl_reactor_submit(r, &t.op) == -EBUSY); /* already armed */
    top bad;
    top_init(&bad, r, 99, sv[0]);
    CHECK(rl_reactor_submit(r, &bad.op) == -EINVAL);
    top_init(&bad, r, RL_OP_RECV, sv[0]);
    bad.op.flags = RL_OPF_MULTISHOT;
    CHECK(rl_reactor_submit(r, &bad.op) == -EINVAL);
    CHECK(bad.op.state == RL_OPS_IDLE);
    /* a bad fd without CHECK_FD fails in the completion */
    top_init(&bad, r, RL_OP_RECV, 987654);
    bad.op.u.io.buf = bad.buf;
    bad.op.u.io.len = 1;
    CHECK(rl_reactor_submit(r, &bad.op) == 0);
    SPIN_UNTIL(r, bad.ncalls == 1, 2.0);
    CHECK(bad.ncalls == 1 && bad.last_res == -EBADF);
    CHECK(OPS->inflight(r) == 1);
    close(sv[0]);
    close(sv[1]);
    rl_reactor_destroy(r);
}

static void
test_setup_errno_env(void)
{
    static const struct {
        const char *val;
        int err;
    } cases[] = {{"EPERM", -EPERM}, {"ENOSYS", -ENOSYS},
                 {"ENOMEM", -ENOMEM}, {"22", -EINVAL},
                 {"bogus", -EINVAL}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int err = 0;
        char why[256] = "";
        setenv("RINGLOOP_TEST_URING_SETUP_ERRNO", cases[i].val, 1);
        rl_reactor *r = OPS->create(&err, why, sizeof(why));
        unsetenv("RINGLOOP_TEST_URING_SETUP_ERRNO");
        CHECK(r == NULL);
        CHECK(err == cases[i].err);
        CHECK(why[0] != '\0' && strchr(why, '\n') == NULL);
    }
    /* why may be NULL */
    int err = 0;
    setenv("RINGLOOP_TEST_URING_SETUP_ERRNO", "EPERM", 1);
    CHECK(OPS->create(&err, NULL, 0) == NULL && err == -EPERM);
    unsetenv("RINGLOOP_TEST_URING_SETUP_ERRNO");
}

/* Randomised mix of ops, cancels (also from callbacks), resubmits from
 * callbacks and I/O on the peers; checks the state machine invariants:
 * exactly one final completion per accepted submit, never -EAGAIN, cancel
 * return codes match the state, inflight() matches. */
enum { S_OPS = 48, S_PAIRS = 6 };

typedef struct sop sop;
struct sop {
    rl_op op;
    int armed;  /* test-side: submitted, final not seen yet */
    int finals;
    char buf[64];
    struct iovec iov;
    struct msghdr msg;
};

static sop *s_ops;
static rl_reactor *s_r;
static int s_sv[S_PAIRS][2];
static int s_pipes[S_PAIRS][2];
static unsigned s_seed = 12345;
static int s_bad;

static unsigned
s_rand(void)
{
    s_seed = s_seed * 1103515245u + 12345u;
    return (s_seed >> 16) & 0x7fff;
}

static int s_prepare_and_submit(sop *o);

static void
s_cancel_check(sop *o)
{
    int st = o->op.state;
    int rc = rl_reactor_cancel(s_r, &o->op);
    int want = st == RL_OPS_IDLE ? -ENOENT
               : st == RL_OPS_ARMED ? 0
                                    : -EALREADY;
    if (rc != want) {
        fprintf(stderr, "cancel in state %d gave %d\n", st, rc);
        s_bad++;
    }
}

static void
s_cb(rl_op *op, int32_t res, uint32_t flags)
{
    sop *o = (sop *)op;
    if (flags & RL_CQE_MORE) {
        fprintf(stderr, "unexpected MORE\n");
        s_bad++;
        return;
    }
    if (!o->armed || op->state != RL_OPS_IDLE) {
        fprintf(stderr, "final completion of an op not armed\n");
        s_bad++;
    }
    o->armed = 0;
    o->finals++;
    if (res == -EAGAIN || res == -EINPROGRESS) {
        fprintf(stderr, "kind %d delivered %d\n", op->kind, res);
        s_bad++;
    }
    unsigned x = s_rand() % 8;
    if (x == 0) {
        (void)s_prepare_and_submit(o);
    }
    else if (x == 1) {
        s_cancel_check(&s_ops[s_rand() % S_OPS]);
    }
}

static int
s_prepare_and_submit(sop *o)
{
    int pair = (int)(s_rand() % S_PAIRS);
    int side = (int)(s_rand() % 2);
    memset(&o->op, 0, sizeof(o->op));
    o->op.cb = s_cb;
    switch (s_rand() % 8) {
    case 0:
        o->op.kind = RL_OP_POLL;
        o->op.fd = s_sv[pair][side];
        o->op.u.poll.events = (s_rand() % 2) ? POLLIN : POLLOUT;
        break;
    case 1:
    case 2:
        o->op.kind = RL_OP_RECV;
        o->op.fd = s_sv[pair][side];
        o->op.u.io.buf = o->buf;
        o->op.u.io.len = 1 + s_rand() % sizeof(o->buf);
        break;
    case 3:
        o->op.kind = RL_OP_SEND;
        o->op.fd = s_sv[pair][side];
        o->op.u.io.buf = o->buf;
        o->op.u.io.len = 1 + s_rand() % sizeof(o->buf);
        break;
    case 4:
        o->op.kind = (s_rand() % 2) ? RL_OP_RECVMSG : RL_OP_SENDMSG;
        o->op.fd = s_sv[pair][side];
        o->iov.iov_base = o->buf;
        o->iov.iov_len = 1 + s_rand() % sizeof(o->buf);
        memset(&o->msg, 0, sizeof(o->msg));
        o->msg.msg_iov = &o->iov;
        o->msg.msg_iovlen = 1;
        o->op.u.msg.msg = &o->msg;
        break;
    case 5:
    case 6:
        o->op.kind = RL_OP_READ;
        o->op.fd = s_pipes[pair][0];
        o->op.u.io.buf = o->buf;
        o->op.u.io.len = 1 + s_rand() % sizeof(o->buf);
        break;
    default:
        o->op.kind = RL_OP_WRITE;
        o->op.fd = s_pipes[pair][1];
        o->op.u.io.buf = o->buf;
        o->op.u.io.len = 1 + s_rand() % sizeof(o->buf);
        break;
    }
    int rc = rl_reactor_submit(s_r, &o->op);
    if (rc != 0) {
        fprintf(stderr, "submit failed: %d\n", rc);
        s_bad++;
        return rc;
    }
    o->armed = 1;
    return 0;
}

static void
run_random_stress(unsigned seed)
{
    char junk[4096];
    long total_finals = 0;
    memset(junk, 'j', sizeof(junk));
    s_seed = seed;
    s_r = mk();
    s_bad = 0;
    s_ops = calloc(S_OPS, sizeof(sop));
    CHECK(s_ops != NULL);
    for (int i = 0; i < S_PAIRS; i++) {
        CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0,
                         s_sv[i]) == 0);
        CHECK(pipe2(s_pipes[i], O_NONBLOCK | O_CLOEXEC) == 0);
    }
    for (int step = 0; step < 30000 && s_bad == 0; step++) {
        sop *o = &s_ops[s_rand() % S_OPS];
        switch (s_rand() % 10) {
        case 0:
        case 1:
        case 2:
            if (o->op.state == RL_OPS_IDLE && !o->armed) {
                (void)s_prepare_and_submit(o);
            }
            break;
        case 3:
        case 4:
            s_cancel_check(o);
            break;
        case 5: {
            int pr = (int)(s_rand() % S_PAIRS);
            if (write(s_sv[pr][s_rand() % 2], junk, 1 + s_rand() % 100) <
                0) {
                /* full: fine */
            }
            if (write(s_pipes[pr][1], junk, 1 + s_rand() % 100) < 0) {
                /* full: fine */
            }
            break;
        }
        case 6: {
            int pr = (int)(s_rand() % S_PAIRS);
            if (read(s_sv[pr][s_rand() % 2], junk, sizeof(junk)) < 0) {
                /* empty: fine */
            }
            if (read(s_pipes[pr][0], junk, sizeof(junk)) < 0) {
                /* empty: fine */
            }
            break;
        }
        default:
            rl_reactor_wait(s_r, (s_rand() % 4) ? 0 : 1000000);
            rl_reactor_dispatch(s_r);
            break;
        }
        size_t armed = 0;
        for (int i = 0; i < S_OPS; i++) {
            armed += s_ops[i].armed;
        }
        if (OPS->inflight(s_r) != armed) {
            fprintf(stderr, "inflight %zu != armed %zu at step %d\n",
                    OPS->inflight(s_r), armed, step);
            s_bad++;
        }
    }
    CHECK(s_bad == 0);
    /* Wind down: cancel everything, every op must end. */
    for (int i = 0; i < S_OPS; i++) {
        if (s_ops[i].op.state == RL_OPS_ARMED) {
            CHECK(rl_reactor_cancel(s_r, &s_ops[i].op) == 0);
        }
    }
    double deadline = now_s() + 3.0;
    while (OPS->inflight(s_r) > 0 && now_s() < deadline) {
        /* callbacks may still resubmit: keep cancelling */
        rl_reactor_wait(s_r, 10 * 1000000LL);
        rl_reactor_dispatch(s_r);
        for (int i = 0; i < S_OPS; i++) {
            if (s_ops[i].op.state == RL_OPS_ARMED) {
                (void)rl_reactor_cancel(s_r, &s_ops[i].op);
            }
        }
    }
    CHECK(OPS->inflight(s_r) == 0);
    CHECK(s_bad == 0);
    for (int i = 0; i < S_OPS; i++) {
        CHECK(!s_ops[i].armed);
        total_finals += s_ops[i].finals;
    }
    CHECK(total_finals > 1000); /* it did exercise something */
    rl_reactor_destroy(s_r);
    for (int i = 0; i < S_PAIRS; i++) {
        close(s_sv[i][0]);
        close(s_sv[i][1]);
        close(s_pipes[i][0]);
        close(s_pipes[i][1]);
    }
    free(s_ops);
}

static void
test_random_stress(void)
{
    for (unsigned seed = 1; seed <= 4; seed++) {
        run_random_stress(seed * 7919u);
    }
}

/* RINGLOOP_URING_DEFER_TASKRUN=1: the SINGLE_ISSUER ring is created
 * disabled and belongs to the first thread that enters it, not to the
 * creating one; another thread gets -EEXIST (with an explanation) before
 * reaching the kernel, and a destroy() that cannot enter the ring leaves
 * the ops the kernel may still use ARMED (the issuer must leak them). */
typedef struct {
    rl_reactor *r;
    top *op;
    int go[2];   /* main -> thread: exit */
    int done[2]; /* thread -> main: ring entered */
    int ok;
} defer_arg;

static void *
defer_owner(void *p)
{
    defer_arg *a = p;
    char c;
    if (rl_reactor_submit(a->r, &a->op->op) == 0 &&
        rl_reactor_wait(a->r, 10 * 1000000LL) >= 0) {
        rl_reactor_dispatch(a->r);
        a->ok = 1;
    }
    if (write(a->done[1], "x", 1) != 1 || read(a->go[0], &c, 1) != 1) {
        a->ok = 0;
    }
    return NULL;
}

static void
test_defer_taskrun_threads(void)
{
    int sv[2];
    top rx, pl;
    defer_arg a;
    pthread_t th;
    char c;
    setenv("RINGLOOP_URING_DEFER_TASKRUN", "1", 1);
    rl_reactor *r = mk();
    unsetenv("RINGLOOP_URING_DEFER_TASKRUN");
    memset(&a, 0, sizeof(a));
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    CHECK(pipe(a.go) == 0 && pipe(a.done) == 0);
    top_init(&rx, r, RL_OP_RECV, sv[0]);
    rx.op.u.io.buf = rx.buf;
    rx.op.u.io.len = sizeof(rx.buf);
    a.r = r;
    a.op = &rx;
    CHECK(pthread_create(&th, NULL, defer_owner, &a) == 0);
    CHECK(read(a.done[0], &c, 1) == 1);
    CHECK(a.ok);
    int rc = rl_reactor_wait(r, 0);
    if (rc == -EEXIST) {
        /* a SINGLE_ISSUER ring (kernel >= 6.1): bound to that thread */
        const char *why = rl_reactor_explain(r, rc);
        CHECK(why != NULL && strstr(why, "DEFER_TASKRUN") != NULL);
        CHECK(rl_reactor_flush(r) == -EEXIST);
        /* submit only fills the SQ: accepted */
        top_init(&pl, r, RL_OP_POLL, sv[1]);
        pl.op.u.poll.events = POLLOUT;
        CHECK(rl_reactor_submit(r, &pl.op) == 0);
        /* the owner lives: destroy cannot cancel, the ops stay ARMED */
        rl_reactor_destroy(r);
        CHECK(rx.op.state == RL_OPS_ARMED);
        CHECK(rx.ncalls == 0 && pl.ncalls == 0);
    }
    else {
        CHECK(rc >= 0); /* older kernel: the default flags, any thread */
        rl_reactor_destroy(r);
        CHECK(rx.op.state == RL_OPS_IDLE);
    }
    CHECK(write(a.go[1], "x", 1) == 1);
    pthread_join(th, NULL);
    close(a.go[0]);
    close(a.go[1]);
    close(a.done[0]);
    close(a.done[1]);
    close(sv[0]);
    close(sv[1]);
}

/* Created here, run (and left) by another thread, destroyed here.  The
 * requests of the exited owner stay armed in the kernel (see
 * kernel_cancelled in uring.c) and no thread may enter the ring to cancel
 * them any more: destroy() leaves such an op ARMED, for its issuer to
 * leak (the ring's teardown cancels it; the op's memory must outlive it). */
static void *
defer_runner(void *p)
{
    defer_arg *a = p;
    top *t = a->op;
    a->ok = rl_reactor_submit(a->r, &t->op) == 0;
    for (int i = 0; i < 100 && t->ncalls == 0; i++) {
        if (rl_reactor_wait(a->r, 10 * 1000000LL) < 0) {
            a->ok = 0;
            break;
        }
        rl_reactor_dispatch(a->r);
    }
    /* leave one op armed behind */
    a->ok = a->ok && t->ncalls == 1 && t->last_res == 2 &&
            rl_reactor_submit(a->r, &t->op) == 0 &&
            rl_reactor_wait(a->r, 0) >= 0;
    return NULL;
}

static void
test_defer_taskrun_owner_exits(void)
{
    int sv[2];
    top rx;
    defer_arg a;
    pthread_t th;
    setenv("RINGLOOP_URING_DEFER_TASKRUN", "1", 1);
    rl_reactor *r = mk();
    unsetenv("RINGLOOP_URING_DEFER_TASKRUN");
    memset(&a, 0, sizeof(a));
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    top_init(&rx, r, RL_OP_RECV, sv[0]);
    rx.op.u.io.buf = rx.buf;
    rx.op.u.io.len = sizeof(rx.buf);
    CHECK(write(sv[1], "hi", 2) == 2);
    a.r = r;
    a.op = &rx;
    CHECK(pthread_create(&th, NULL, defer_runner, &a) == 0);
    pthread_join(th, NULL);
    CHECK(a.ok);
    CHECK(rx.op.state == RL_OPS_ARMED);
    rl_reactor_destroy(r);
    if (rx.op.state != RL_OPS_IDLE) {
        CHECK(rx.op.state == RL_OPS_ARMED); /* SINGLE_ISSUER: abandoned */
    }
    CHECK(rx.ncalls == 1);
    close(sv[0]);
    close(sv[1]);
}

int
main(void)
{
    int err = 0;
    char why[256] = "";
    rl_reactor *r = OPS->create(&err, why, sizeof(why));
    if (r == NULL) {
        printf("SKIP: io_uring unavailable: %s\n", why);
        return 77;
    }
    rl_reactor_destroy(r);
    signal(SIGPIPE, SIG_IGN);
    test_eintr_with_submission();
    test_zero_timeout_with_pending();
    test_cq_overflow();
    test_cancel_later_in_batch();
    test_dontwait_flags();
    test_multishot_accept_cancel_from_cb();
    test_destroy_reaps();
    test_wakeup_storm();
    /* DEFER_TASKRUN binds the ring to its creating thread: the very reason
     * it is opt-in (other threads get -EEXIST). */
    if (getenv("RINGLOOP_URING_DEFER_TASKRUN") == NULL) {
        test_other_thread();
        test_submitter_thread_exits();
    }
    test_parallel_loops();
    test_defer_taskrun_threads();
    test_defer_taskrun_owner_exits();
    /* The NOWAIT test hook sets RWF_NOWAIT, which a tty (no FMODE_NOWAIT)
     * refuses with EOPNOTSUPP; plain O_NONBLOCK tty reads do wait. */
    if (getenv("RINGLOOP_TEST_URING_NOWAIT") == NULL) {
        test_tty();
    }
    test_submit_errors();
    test_setup_errno_env();
    test_random_stress();
    if (failures) {
        fprintf(stderr, "io_uring extra: %d failure(s)\n", failures);
        return 1;
    }
    printf("io_uring extra tests passed\n");
    return 0;
}
