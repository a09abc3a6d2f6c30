/* Conformance test of the reactor contract (src/reactor/reactor.h), run against one
 * backend chosen by argv[1] ("io_uring" or "epoll").  Pure C: it links the
 * backend sources directly, without Python.  Exit 0 = pass, 77 = skip
 * (backend unavailable here), anything else = fail.
 *
 * Built and run by tests/test_reactor_c.py. */
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const rl_reactor_ops *OPS;
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

typedef struct {
    rl_op op;
    int ncalls;
    int32_t last_res;
    uint32_t last_flags;
    int final;
    char buf[256];
    int resubmit;
    rl_reactor *r;
} top;

static void
top_cb(rl_op *op, int32_t res, uint32_t flags)
{
    top *t = (top *)op;
    t->ncalls++;
    t->last_res = res;
    t->last_flags = flags;
    if (!(flags & RL_CQE_MORE)) {
        t->final++;
        if (op->state != RL_OPS_IDLE) {
            fprintf(stderr, "final completion but op not IDLE\n");
            failures++;
        }
    }
    if (t->resubmit > 0 && !(flags & RL_CQE_MORE)) {
        t->resubmit--;
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

/* Wait + dispatch until cond holds or the deadline passes. */
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
test_create_destroy(void)
{
    rl_reactor *r = mk();
    CHECK(r->ops == OPS);
    CHECK(OPS->inflight(r) == 0);
    /* A zero-timeout wait with nothing to do returns at once. */
    double t0 = now_s();
    CHECK(rl_reactor_wait(r, 0) >= 0);
    CHECK(rl_reactor_dispatch(r) == 0);
    CHECK(now_s() - t0 < 0.5);
    rl_reactor_destroy(r);
}

static void
test_timeout(void)
{
    rl_reactor *r = mk();
    double t0 = now_s();
    int rc = rl_reactor_wait(r, 30 * 1000000LL);
    double dt = now_s() - t0;
    CHECK(rc >= 0);
    CHECK(dt >= 0.025);
    CHECK(dt < 1.0);
    rl_reactor_destroy(r);
}

static void
test_poll_in_level(void)
{
    rl_reactor *r = mk();
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    top t;
    top_init(&t, r, RL_OP_POLL, sv[0]);
    t.op.u.poll.events = POLLIN;
    t.op.flags = RL_OPF_CHECK_FD;
    CHECK(rl_reactor_submit(r, &t.op) == 0);
    CHECK(t.op.state == RL_OPS_ARMED);
    CHECK(t.ncalls == 0); /* never synchronous */
    CHECK(OPS->inflight(r) == 1);
    rl_reactor_wait(r, 20 * 1000000LL);
    rl_reactor_dispatch(r);
    CHECK(t.ncalls == 0);
    CHECK(write(sv[1], "x", 1) == 1);
    SPIN_UNTIL(r, t.ncalls == 1, 2.0);
    CHECK(t.ncalls == 1);
    CHECK(t.last_res > 0 && (t.last_res & POLLIN));
    CHECK(t.op.state == RL_OPS_IDLE);
    CHECK(OPS->inflight(r) == 0);
    /* Level-triggered: data still unread, so a resubmit completes again. */
    t.op.flags = 0;
    CHECK(rl_reactor_submit(r, &t.op) == 0);
    SPIN_UNTIL(r, t.ncalls == 2, 2.0);
    CHECK(t.ncalls == 2 && (t.last_res & POLLIN));
    /* Drain; now it must not complete. */
    char c;
    CHECK(read(sv[0], &c, 1) == 1);
    CHECK(rl_reactor_submit(r, &t.op) == 0);
    rl_reactor_wait(r, 20 * 1000000LL);
    rl_reactor_dispatch(r);
    CHECK(t.ncalls == 2);
    /* Hang-up is reported to a reader. */
    close(sv[1]);
    SPIN_UNTIL(r, t.ncalls == 3, 2.0);
    CHECK(t.ncalls == 3);
    CHECK(t.last_res & (POLLIN | POLLHUP));
    close(sv[0]);
    rl_reactor_destroy(r);
}

static void
test_poll_in_and_out_same_fd(void)
{
    rl_reactor *r = mk();
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    top rd, wr;
    top_init(&rd, r, RL_OP_POLL, sv[0]);
    rd.op.u.poll.events = POLLIN;
    top_init(&wr, r, RL_OP_POLL, sv[0]);
    wr.op.u.poll.events = POLLOUT;
    CHECK(rl_reactor_submit(r, &rd.op) == 0);
    CHECK(rl_reactor_submit(r, &wr.op) == 0);
    SPIN_UNTIL(r, wr.ncalls == 1, 2.0);
    CHECK(wr.ncalls == 1 && (wr.last_res & POLLOUT));
    CHECK(rd.ncalls == 0);
    CHECK(rd.op.state == RL_OPS_ARMED);
    CHECK(write(sv[1], "y", 1) == 1);
    SPIN_UNTIL(r, rd.ncalls == 1, 2.0);
    CHECK(rd.ncalls == 1 && (rd.last_res & POLLIN));
    CHECK(wr.ncalls == 1);
    close(sv[0]);
    close(sv[1]);
    rl_reactor_destroy(r);
}

static void
test_resubmit_from_callback(void)
{
    rl_reactor *r = mk();
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    top t;
    top_init(&t, r, RL_OP_POLL, sv[0]);
    t.op.u.poll.events = POLLOUT;
    t.resubmit = 5;
    CHECK(rl_reactor_submit(r, &t.op) == 0);
    SPIN_UNTIL(r, t.ncalls == 6, 2.0);
    CHECK(t.ncalls == 6);
    CHECK(t.op.state == RL_OPS_IDLE);
    close(sv[0]);
    close(sv[1]);
    rl_reactor_destroy(r);
}

static void
test_cancel(void)
{
    rl_reactor *r = mk();
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    top t;
    top_init(&t, r, RL_OP_POLL, sv[0]);
    t.op.u.poll.events = POLLIN;
    CHECK(rl_reactor_cancel(r, &t.op) == -ENOENT);
    CHECK(rl_reactor_submit(r, &t.op) == 0);
    /* Cancel before it ever reached the kernel. */
    CHECK(rl_reactor_cancel(r, &t.op) == 0);
    CHECK(t.ncalls == 0); /* never synchronous */
    CHECK(t.op.state == RL_OPS_CANCELLING);
    CHECK(rl_reactor_cancel(r, &t.op) == -EALREADY);
    SPIN_UNTIL(r, t.ncalls == 1, 2.0);
    CHECK(t.ncalls == 1);
    CHECK(t.last_res == -ECANCELED);
    CHECK(t.op.state == RL_OPS_IDLE);
    CHECK(OPS->inflight(r) == 0);
    /* Cancel after it reached the kernel. */
    CHECK(rl_reactor_submit(r, &t.op) == 0);
    rl_reactor_wait(r, 10 * 1000000LL);
    rl_reactor_dispatch(r);
    CHECK(t.ncalls == 1);
    CHECK(rl_reactor_cancel(r, &t.op) == 0);
    SPIN_UNTIL(r, t.ncalls == 2, 2.0);
    CHECK(t.ncalls == 2 && t.last_res == -ECANCELED);
    /* The fd still works for a new op after a cancel. */
    CHECK(rl_reactor_submit(r, &t.op) == 0);
    CHECK(write(sv[1], "z", 1) == 1);
    SPIN_UNTIL(r, t.ncalls == 3, 2.0);
    CHECK(t.ncalls == 3 && (t.last_res & POLLIN));
    close(sv[0]);
    close(sv[1]);
    rl_reactor_destroy(r);
}

static void
test_check_fd(void)
{
    rl_reactor *r = mk();
    top t;
    top_init(&t, r, RL_OP_POLL, 987654);
    t.op.u.poll.events = POLLIN;
    t.op.flags = RL_OPF_CHECK_FD;
    CHECK(rl_reactor_submit(r, &t.op) == -EBADF);
    CHECK(t.op.state == RL_OPS_IDLE);
    char path[] = "/tmp/rl_reactor_test_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    unlink(path);
    t.op.fd = fd;
    CHECK(rl_reactor_submit(r, &t.op) == -EPERM);
    CHECK(t.op.state == RL_OPS_IDLE);
    CHECK(OPS->inflight(r) == 0);
    close(fd);
    rl_reactor_destroy(r);
}

static void *
wake_thread(void *arg)
{
    usleep(50 * 1000);
    rl_reactor_wakeup((rl_reactor *)arg);
    return NULL;
}

static void
test_wakeup(void)
{
    rl_reactor *r = mk();
    /* Pending wakeup makes the next wait return at once. */
    rl_reactor_wakeup(r);
    rl_reactor_wakeup(r);
    double t0 = now_s();
    CHECK(rl_reactor_wait(r, 5LL * 1000000000LL) >= 0);
    rl_reactor_dispatch(r);
    CHECK(now_s() - t0 < 1.0);
    /* Several wakeups coalesce: the next wait blocks until its timeout. */
    t0 = now_s();
    rl_reactor_wait(r, 30 * 1000000LL);
    rl_reactor_dispatch(r);
    CHECK(now_s() - t0 >= 0.02);
    /* A wakeup from another thread ends an infinite wait. */
    pthread_t th;
    CHECK(pthread_create(&th, NULL, wake_thread, r) == 0);
    t0 = now_s();
    CHECK(rl_reactor_wait(r, -1) >= 0);
    rl_reactor_dispatch(r);
    double dt = now_s() - t0;
    pthread_join(th, NULL);
    CHECK(dt < 3.0);
    CHECK(OPS->inflight(r) == 0);
    rl_reactor_destroy(r);
}

static void
on_alarm(int sig)
{
    (void)sig;
}

static void
test_eintr(void)
{
    rl_reactor *r = mk();
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm; /* no SA_RESTART, as CPython installs them */
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 0}, {0, 50 * 1000}};
    setitimer(ITIMER_REAL, &it, NULL);
    double t0 = now_s();
    int rc = rl_reactor_wait(r, 3LL * 1000000000LL);
    double dt = now_s() - t0;
    signal(SIGALRM, SIG_DFL);
    CHECK(rc == -EINTR);
    CHECK(dt < 2.0);
    rl_reactor_destroy(r);
}

static void
test_recv_send(void)
{
    rl_reactor *r = mk();
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    top rx, tx;
    top_init(&rx, r, RL_OP_RECV, sv[0]);
    rx.op.u.io.buf = rx.buf;
    rx.op.u.io.len = sizeof(rx.buf);
    CHECK(rl_reactor_submit(r, &rx.op) == 0);
    rl_reactor_wait(r, 10 * 1000000LL);
    rl_reactor_dispatch(r);
    CHECK(rx.ncalls == 0);
    top_init(&tx, r, RL_OP_SEND, sv[1]);
    memcpy(tx.buf, "hello", 5);
    tx.op.u.io.buf = tx.buf;
    tx.op.u.io.len = 5;
    CHECK(rl_reactor_submit(r, &tx.op) == 0);
    SPIN_UNTIL(r, rx.ncalls == 1 && tx.ncalls == 1, 2.0);
    CHECK(tx.ncalls == 1 && tx.last_res == 5);
    CHECK(rx.ncalls == 1 && rx.last_res == 5);
    CHECK(memcmp(rx.buf, "hello", 5) == 0);
    /* EOF */
    CHECK(rl_reactor_submit(r, &rx.op) == 0);
    shutdown(sv[1], SHUT_WR);
    SPIN_UNTIL(r, rx.ncalls == 2, 2.0);
    CHECK(rx.ncalls == 2 && rx.last_res == 0);
    /* Error: send on a socket whose peer is gone -> EPIPE, no SIGPIPE. */
    close(sv[0]);
    top_init(&tx, r, RL_OP_SEND, sv[1]);
    tx.op.u.io.buf = tx.buf;
    tx.op.u.io.len = 5;
    /* SHUT_WR'd already: EPIPE */
    CHECK(rl_reactor_submit(r, &tx.op) == 0);
    SPIN_UNTIL(r, tx.ncalls == 1, 2.0);
    CHECK(tx.ncalls == 1 && tx.last_res == -EPIPE);
    close(sv[1]);
    rl_reactor_destroy(r);
}

static void
test_recv_cancel(void)
{
    rl_reactor *r = mk();
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    top rx;
    top_init(&rx, r, RL_OP_RECV, sv[0]);
    rx.op.u.io.buf = rx.buf;
    rx.op.u.io.len = sizeof(rx.buf);
    CHECK(rl_reactor_submit(r, &rx.op) == 0);
    rl_reactor_wait(r, 10 * 1000000LL);
    rl_reactor_dispatch(r);
    CHECK(rl_reactor_cancel(r, &rx.op) == 0);
    SPIN_UNTIL(r, rx.ncalls == 1, 2.0);
    CHECK(rx.ncalls == 1 && rx.last_res == -ECANCELED);
    /* Data sent after the cancel is still there for a plain read. */
    CHECK(write(sv[1], "abc", 3) == 3);
    usleep(1000);
    CHECK(read(sv[0], rx.buf, sizeof(rx.buf)) == 3);
    close(sv[0]);
    close(sv[1]);
    rl_reactor_destroy(r);
}

static void
test_udp_msg(void)
{
    rl_reactor *r = mk();
    int a = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int b = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    CHECK(a >= 0 && b >= 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(a, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    socklen_t sl = sizeof(sa);
    CHECK(getsockname(a, (struct sockaddr *)&sa, &sl) == 0);

    top rx, tx;
    struct sockaddr_in from;
    struct iovec riov = {0};
    struct msghdr rmsg = {0};
    top_init(&rx, r, RL_OP_RECVMSG, a);
    riov.iov_base = rx.buf;
    riov.iov_len = sizeof(rx.buf);
    rmsg.msg_name = &from;
    rmsg.msg_namelen = sizeof(from);
    rmsg.msg_iov = &riov;
    rmsg.msg_iovlen = 1;
    rx.op.u.msg.msg = &rmsg;
    CHECK(rl_reactor_submit(r, &rx.op) == 0);

    struct iovec tiov[2] = {{(void *)"dat", 3}, {(void *)"agram", 5}};
    struct msghdr tmsg = {0};
    tmsg.msg_name = &sa;
    tmsg.msg_namelen = sizeof(sa);
    tmsg.msg_iov = tiov;
    tmsg.msg_iovlen = 2;
    top_init(&tx, r, RL_OP_SENDMSG, b);
    tx.op.u.msg.msg = &tmsg;
    CHECK(rl_reactor_submit(r, &tx.op) == 0);
    SPIN_UNTIL(r, rx.ncalls == 1 && tx.ncalls == 1, 2.0);
    CHECK(tx.last_res == 8);
    CHECK(rx.last_res == 8);
    CHECK(memcmp(rx.buf, "datagram", 8) == 0);
    CHECK(rmsg.msg_namelen == sizeof(struct sockaddr_in));
    CHECK(from.sin_family == AF_INET);
    CHECK(from.sin_addr.s_addr == htonl(INADDR_LOOPBACK));
    close(a);
    close(b);
    rl_reactor_destroy(r);
}

static int
listener(struct sockaddr_in *sa)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(l, (struct sockaddr *)sa, sizeof(*sa)) != 0 || listen(l, 64)) {
        return -1;
    }
    socklen_t sl = sizeof(*sa);
    getsockname(l, (struct sockaddr *)sa, &sl);
    return l;
}

typedef struct {
    rl_op op;
    int fds[16];
    int nfds;
    int final;
    int32_t final_res;
} acc_t;

static void
acc_cb(rl_op *op, int32_t res, uint32_t flags)
{
    acc_t *a = (acc_t *)op;
    if (res >= 0 && a->nfds < 16) {
        a->fds[a->nfds++] = res;
    }
    if (!(flags & RL_CQE_MORE)) {
        a->final++;
        a->final_res = res;
    }
}

static void
test_accept_connect(void)
{
    rl_reactor *r = mk();
    struct sockaddr_in sa;
    int l = listener(&sa);
    CHECK(l >= 0);

    /* single-shot accept with the peer address */
    struct sockaddr_in peer;
    socklen_t peerlen = sizeof(peer);
    top one;
    top_init(&one, r, RL_OP_ACCEPT, l);
    one.op.u.accept.addr = (struct sockaddr *)&peer;
    one.op.u.accept.addrlen = &peerlen;
    CHECK(rl_reactor_submit(r, &one.op) == 0);

    top con;
    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    top_init(&con, r, RL_OP_CONNECT, c);
    con.op.u.connect.addr = (struct sockaddr *)&sa;
    con.op.u.connect.addrlen = sizeof(sa);
    CHECK(rl_reactor_submit(r, &con.op) == 0);
    SPIN_UNTIL(r, one.ncalls == 1 && con.ncalls == 1, 2.0);
    if (con.last_res == RL_CONNECT_SETTLED) {
        con.last_res = rl_connect_settled_result(c);
    }
    CHECK(con.ncalls == 1 && con.last_res == 0);
    CHECK(one.ncalls == 1 && one.last_res >= 0);
    CHECK(peer.sin_family == AF_INET);
    int fl = fcntl(one.last_res, F_GETFL);
    CHECK(fl & O_NONBLOCK);
    CHECK(fcntl(one.last_res, F_GETFD) & FD_CLOEXEC);
    close(one.last_res);
    close(c);

    /* multishot accept */
    acc_t acc;
    memset(&acc, 0, sizeof(acc));
    acc.op.cb = acc_cb;
    acc.op.kind = RL_OP_ACCEPT;
    acc.op.flags = RL_OPF_MULTISHOT;
    acc.op.fd = l;
    CHECK(rl_reactor_submit(r, &acc.op) == 0);
    int cl[3];
    for (int i = 0; i < 3; i++) {
        cl[i] = socket(AF_INET, SOCK_STREAM, 0);
        CHECK(connect(cl[i], (struct sockaddr *)&sa, sizeof(sa)) == 0);
    }
    SPIN_UNTIL(r, acc.nfds == 3, 2.0);
    CHECK(acc.nfds == 3);
    CHECK(acc.final == 0);
    CHECK(acc.op.state == RL_OPS_ARMED);
    CHECK(rl_reactor_cancel(r, &acc.op) == 0);
    SPIN_UNTIL(r, acc.final == 1, 2.0);
    CHECK(acc.final == 1);
    CHECK(acc.op.state == RL_OPS_IDLE);
    for (int i = 0; i < 3; i++) {
        close(cl[i]);
        close(acc.fds[i]);
    }
    close(l);

    /* refused */
    int c2 = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    top_init(&con, r, RL_OP_CONNECT, c2);
    con.op.u.connect.addr = (struct sockaddr *)&sa; /* l is closed now */
    con.op.u.connect.addrlen = sizeof(sa);
    CHECK(rl_reactor_submit(r, &con.op) == 0);
    SPIN_UNTIL(r, con.ncalls == 1, 2.0);
    if (con.last_res == RL_CONNECT_SETTLED) {
        con.last_res = rl_connect_settled_result(c2);
    }
    CHECK(con.ncalls == 1 && con.last_res == -ECONNREFUSED);
    close(c2);
    CHECK(OPS->inflight(r) == 0);
    rl_reactor_destroy(r);
}

static void
test_pipe_read_write(void)
{
    rl_reactor *r = mk();
    int p[2];
    CHECK(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
    top rd, wr;
    top_init(&rd, r, RL_OP_READ, p[0]);
    rd.op.u.io.buf = rd.buf;
    rd.op.u.io.len = sizeof(rd.buf);
    CHECK(rl_reactor_submit(r, &rd.op) == 0);
    top_init(&wr, r, RL_OP_WRITE, p[1]);
    memcpy(wr.buf, "pipe!", 5);
    wr.op.u.io.buf = wr.buf;
    wr.op.u.io.len = 5;
    CHECK(rl_reactor_submit(r, &wr.op) == 0);
    SPIN_UNTIL(r, rd.ncalls == 1 && wr.ncalls == 1, 2.0);
    CHECK(wr.last_res == 5);
    CHECK(rd.last_res == 5 && memcmp(rd.buf, "pipe!", 5) == 0);
    CHECK(rl_reactor_submit(r, &rd.op) == 0);
    close(p[1]);
    SPIN_UNTIL(r, rd.ncalls == 2, 2.0);
    CHECK(rd.last_res == 0);
    close(p[0]);
    rl_reactor_destroy(r);
}

/* More ops in flight than any ring has SQ entries: submit must flush, never
 * fail, and every op must complete exactly once. */
static void
test_many_ops(void)
{
    enum { N = 3000 };
    rl_reactor *r = mk();
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    top *ts = calloc(N, sizeof(top));
    CHECK(ts != NULL);
    for (int i = 0; i < N; i++) {
        top_init(&ts[i], r, RL_OP_POLL, sv[0]);
        ts[i].op.u.poll.events = (i % 2) ? POLLOUT : POLLIN;
        CHECK(rl_reactor_submit(r, &ts[i].op) == 0);
    }
    CHECK(OPS->inflight(r) == N);
    int done = 0;
    double deadline = now_s() + 5.0;
    while (done < N / 2 && now_s() < deadline) {
        rl_reactor_wait(r, 50 * 1000000LL);
        rl_reactor_dispatch(r);
        done = 0;
        for (int i = 0; i < N; i++) {
            done += ts[i].ncalls;
        }
    }
    CHECK(done == N / 2); /* all writers, no reader */
    CHECK(write(sv[1], "q", 1) == 1);
    deadline = now_s() + 5.0;
    while (done < N && now_s() < deadline) {
        rl_reactor_wait(r, 50 * 1000000LL);
        rl_reactor_dispatch(r);
        done = 0;
        for (int i = 0; i < N; i++) {
            done += ts[i].ncalls;
        }
    }
    CHECK(done == N);
    for (int i = 0; i < N; i++) {
        CHECK(ts[i].ncalls == 1);
    }
    CHECK(OPS->inflight(r) == 0);
    free(ts);
    close(sv[0]);
    close(sv[1]);
    rl_reactor_destroy(r);
}

/* destroy() with ops in flight: no callback, no crash, no leak (ASan). */
static void
test_destroy_inflight(void)
{
    rl_reactor *r = mk();
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    top a, b, c;
    top_init(&a, r, RL_OP_POLL, sv[0]);
    a.op.u.poll.events = POLLIN;
    top_init(&b, r, RL_OP_RECV, sv[0]);
    b.op.u.io.buf = b.buf;
    b.op.u.io.len = sizeof(b.buf);
    top_init(&c, r, RL_OP_POLL, sv[1]);
    c.op.u.poll.events = POLLIN;
    CHECK(rl_reactor_submit(r, &a.op) == 0);
    CHECK(rl_reactor_submit(r, &b.op) == 0);
    rl_reactor_wait(r, 0);
    rl_reactor_dispatch(r);
    CHECK(rl_reactor_submit(r, &c.op) == 0);
    CHECK(rl_reactor_cancel(r, &a.op) == 0);
    rl_reactor_destroy(r);
    CHECK(a.ncalls == 0 && b.ncalls == 0 && c.ncalls == 0);
    close(sv[0]);
    close(sv[1]);
}

/* A closed fd, then a new file with the same number: a poll on the new one
 * must work (epoll's auto-removal and stale registrations). */
static void
test_fd_reuse(void)
{
    rl_reactor *r = mk();
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    top t;
    top_init(&t, r, RL_OP_POLL, sv[0]);
    t.op.u.poll.events = POLLIN;
    CHECK(rl_reactor_submit(r, &t.op) == 0);
    CHECK(write(sv[1], "x", 1) == 1);
    SPIN_UNTIL(r, t.ncalls == 1, 2.0);
    CHECK(t.ncalls == 1);
    int old = sv[0];
    close(sv[0]);
    close(sv[1]);
    int sv2[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv2) == 0);
    int fd = sv2[0];
    if (fd != old) {
        CHECK(dup2(sv2[0], old) == old);
        close(sv2[0]);
        fd = old;
    }
    top_init(&t, r, RL_OP_POLL, fd);
    t.op.u.poll.events = POLLIN;
    t.op.flags = RL_OPF_CHECK_FD;
    CHECK(rl_reactor_submit(r, &t.op) == 0);
    CHECK(write(sv2[1], "y", 1) == 1);
    SPIN_UNTIL(r, t.ncalls == 1, 2.0);
    CHECK(t.ncalls == 1 && (t.last_res & POLLIN));
    close(fd);
    close(sv2[1]);
    rl_reactor_destroy(r);
}

/* flush(): after cancelling a RECV submitted in this very iteration and
 * flushing, its fd may be closed and its number reused at once: the
 * cancelled op must not read from the new socket that got the number. */
static void
test_flush_then_close(void)
{
    rl_reactor *r = mk();
    int sv[2], sv2[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    top t;
    top_init(&t, r, RL_OP_RECV, sv[0]);
    t.op.u.io.buf = t.buf;
    t.op.u.io.len = sizeof(t.buf);
    CHECK(rl_reactor_submit(r, &t.op) == 0);
    CHECK(rl_reactor_cancel(r, &t.op) == 0);
    CHECK(rl_reactor_flush(r) == 0);
    int fd = sv[0];
    close(sv[0]);
    close(sv[1]);
    /* The lowest free numbers: sv2[0] takes the old fd's number. */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv2) == 0);
    CHECK(sv2[0] == fd || sv2[1] == fd);
    int reused = sv2[0] == fd ? sv2[0] : sv2[1];
    int other = reused == sv2[0] ? sv2[1] : sv2[0];
    CHECK(write(other, "abc", 3) == 3);
    SPIN_UNTIL(r, t.final == 1, 2.0);
    CHECK(t.final == 1);
    CHECK(t.last_res == -ECANCELED);
    char buf[8];
    CHECK(read(reused, buf, sizeof(buf)) == 3); /* nothing was stolen */
    CHECK(OPS->inflight(r) == 0);
    CHECK(rl_reactor_flush(r) == 0); /* nothing queued: a no-op */
    close(sv2[0]);
    close(sv2[1]);
    rl_reactor_destroy(r);
}

/* flush(): a listening socket whose multishot accept was cancelled and
 * flushed, then closed, refuses connections at once (the cancelled request
 * does not keep it open). */
static void
test_flush_listener_close(void)
{
    rl_reactor *r = mk();
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    CHECK(ls >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof(a);
    CHECK(bind(ls, (struct sockaddr *)&a, sizeof(a)) == 0);
    CHECK(listen(ls, 16) == 0);
    CHECK(getsockname(ls, (struct sockaddr *)&a, &al) == 0);
    top t;
    top_init(&t, r, RL_OP_ACCEPT, ls);
    t.op.flags = RL_OPF_MULTISHOT;
    CHECK(rl_reactor_submit(r, &t.op) == 0);
    rl_reactor_wait(r, 10 * 1000000LL); /* armed in the kernel */
    rl_reactor_dispatch(r);
    CHECK(rl_reactor_cancel(r, &t.op) == 0);
    CHECK(rl_reactor_flush(r) == 0);
    close(ls);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(c >= 0);
    int rc = connect(c, (struct sockaddr *)&a, sizeof(a));
    int e = errno;
    close(c);
    CHECK(rc < 0 && e == ECONNREFUSED);
    SPIN_UNTIL(r, t.final == 1, 2.0);
    CHECK(t.final == 1);
    CHECK(OPS->inflight(r) == 0);
    rl_reactor_destroy(r);
}

/* RL_OPF_USER_FD polls: level-triggered like any POLL, and the reactor keeps
 * no reference to the file: closing the fd under the armed op closes the
 * socket (the peer sees EOF); the op then completes only when cancelled. */
static void
test_user_fd_poll(void)
{
    rl_reactor *r = mk();
    int sv[2], sv2[2];
    top t, u2;
    char c;
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv2) == 0);
    top_init(&t, r, RL_OP_POLL, sv[0]);
    t.op.flags = RL_OPF_USER_FD | RL_OPF_CHECK_FD;
    t.op.u.poll.events = POLLIN;
    CHECK(rl_reactor_submit(r, &t.op) == 0);
    CHECK(OPS->inflight(r) == 1);
    CHECK(rl_reactor_wait(r, 0) >= 0);
    CHECK(rl_reactor_dispatch(r) == 0);
    CHECK(write(sv[1], "a", 1) == 1);
    t.resubmit = 2; /* not drained: fires again each time (level) */
    SPIN_UNTIL(r, t.ncalls == 3, 5.0);
    CHECK(t.ncalls == 3 && (t.last_res & POLLIN));
    CHECK(t.op.state == RL_OPS_IDLE);
    CHECK(read(sv[0], &c, 1) == 1);
    t.op.flags = RL_OPF_USER_FD;
    CHECK(rl_reactor_submit(r, &t.op) == 0);
    /* a second user poll, and a plain one, on other fds */
    top_init(&u2, r, RL_OP_POLL, sv2[0]);
    u2.op.flags = RL_OPF_USER_FD;
    u2.op.u.poll.events = POLLOUT;
    CHECK(rl_reactor_submit(r, &u2.op) == 0);
    SPIN_UNTIL(r, u2.ncalls == 1, 5.0);
    CHECK(u2.ncalls == 1 && (u2.last_res & POLLOUT));
    CHECK(t.ncalls == 3 && t.op.state == RL_OPS_ARMED);
    /* closed under the armed op: the socket is really closed */
    CHECK(close(sv[0]) == 0);
    SPIN_UNTIL(r, 0, 0.05);
    CHECK(read(sv[1], &c, 1) == 0);
    CHECK(t.ncalls == 3);
    CHECK(rl_reactor_cancel(r, &t.op) == 0);
    SPIN_UNTIL(r, t.ncalls == 4, 5.0);
    CHECK(t.ncalls == 4 && t.last_res == -ECANCELED);
    CHECK(OPS->inflight(r) == 0);
    rl_reactor_destroy(r);
    close(sv[1]);
    close(sv2[0]);
    close(sv2[1]);
}

/* Fork (reactor.h, "Fork"): in a child every entry point is inert, so what
 * the child does with the inherited reactor never reaches the parent's ring
 * or epoll set; the parent's ops complete as if nothing happened. */
static void
test_fork_inert(void)
{
    rl_reactor *r = mk();
    int sv[2], sv2[2], sv3[2];
    top rd, pl, extra, woken;
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv2) == 0);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv3) == 0);
    top_init(&rd, r, RL_OP_RECV, sv[0]);
    rd.op.u.io.buf = rd.buf;
    rd.op.u.io.len = sizeof(rd.buf);
    top_init(&pl, r, RL_OP_POLL, sv2[0]);
    pl.op.u.poll.events = POLLIN;
    CHECK(rl_reactor_submit(r, &rd.op) == 0);
    CHECK(rl_reactor_submit(r, &pl.op) == 0);
    /* let both reach the kernel / the epoll set */
    CHECK(rl_reactor_wait(r, 20 * 1000000LL) >= 0);
    CHECK(rl_reactor_dispatch(r) == 0);

    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int bad = 0;
        top_init(&extra, r, RL_OP_POLL, sv3[0]);
        extra.op.u.poll.events = POLLIN;
        bad += rl_reactor_cancel(r, &rd.op) != 0;
        bad += rd.op.state != RL_OPS_CANCELLING;
        bad += rl_reactor_cancel(r, &rd.op) != -EALREADY;
        bad += rl_reactor_cancel(r, &pl.op) != 0;
        bad += rl_reactor_submit(r, &extra.op) != 0;
        bad += extra.op.state != RL_OPS_ARMED;
        bad += rl_reactor_submit(r, &extra.op) != -EBUSY;
        bad += write(sv3[1], "c", 1) != 1;
        bad += rl_reactor_flush(r) != 0;
        rl_reactor_wakeup(r);
        bad += rl_reactor_wait(r, 0) != -ECHILD;
        bad += rl_reactor_wait(r, -1) != -ECHILD; /* never blocks */
        bad += rl_reactor_dispatch(r) != 0;
        bad += extra.ncalls != 0 || rd.ncalls != 0 || pl.ncalls != 0;
        bad += rl_reactor_cancel(r, &extra.op) != 0;
        rl_reactor_destroy(r);
        _exit(bad);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* the child's wakeup() did not reach the parent's wait */
    CHECK(rl_reactor_wait(r, 0) >= 0);
    CHECK(rl_reactor_dispatch(r) == 0);
    CHECK(rd.op.state == RL_OPS_ARMED && pl.op.state == RL_OPS_ARMED);
    CHECK(write(sv[1], "data", 4) == 4);
    CHECK(write(sv2[1], "p", 1) == 1);
    SPIN_UNTIL(r, rd.ncalls == 1 && pl.ncalls == 1, 5.0);
    CHECK(rd.ncalls == 1 && rd.last_res == 4);
    CHECK(memcmp(rd.buf, "data", 4) == 0);
    CHECK(pl.ncalls == 1 && (pl.last_res & POLLIN));
    /* and the reactor goes on working */
    CHECK(rl_reactor_submit(r, &rd.op) == 0);
    CHECK(write(sv[1], "more", 4) == 4);
    SPIN_UNTIL(r, rd.ncalls == 2, 5.0);
    CHECK(rd.ncalls == 2 && rd.last_res == 4);
    top_init(&woken, r, RL_OP_POLL, sv3[0]);
    woken.op.u.poll.events = POLLIN;
    CHECK(rl_reactor_submit(r, &woken.op) == 0); /* sv3 has "c" queued */
    SPIN_UNTIL(r, woken.ncalls == 1, 5.0);
    CHECK(woken.ncalls == 1 && (woken.last_res & POLLIN));
    CHECK(OPS->inflight(r) == 0);
    rl_reactor_destroy(r);
    for (int i = 0; i < 2; i++) {
        close(sv[i]);
        close(sv2[i]);
        close(sv3[i]);
    }
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s io_uring|epoll\n", argv[0]);
        return 2;
    }
    if (strcmp(argv[1], "epoll") == 0) {
        OPS = &rl_epoll_ops;
    }
    else if (strcmp(argv[1], "io_uring") == 0) {
        OPS = &rl_uring_ops;
        int err = 0;
        char why[256] = "";
        rl_reactor *r = OPS->create(&err, why, sizeof(why));
        if (r == NULL) {
            printf("SKIP: io_uring unavailable: %s\n", why);
            return 77;
        }
        rl_reactor_destroy(r);
    }
    else {
        fprintf(stderr, "unknown backend %s\n", argv[1]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    test_create_destroy();
    test_timeout();
    test_poll_in_level();
    test_poll_in_and_out_same_fd();
    test_resubmit_from_callback();
    test_cancel();
    test_check_fd();
    test_wakeup();
    test_eintr();
    test_recv_send();
    test_recv_cancel();
    test_udp_msg();
    test_accept_connect();
    test_pipe_read_write();
    test_many_ops();
    test_destroy_inflight();
    test_fd_reuse();
    test_flush_then_close();
    test_flush_listener_close();
    test_user_fd_poll();
    test_fork_inert();
    if (failures) {
        fprintf(stderr, "%s: %d failure(s)\n", argv[1], failures);
        return 1;
    }
    printf("%s: all reactor conformance tests passed\n", argv[1]);
    return 0;
}
