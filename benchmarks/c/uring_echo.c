/* uring_echo.c -- a minimal io_uring TCP echo server: the reference for
 * "the best a single-threaded server can do" in benchmarks/ (echo cases).
 *
 *   uring_echo PORT MAX_CONNS      (PORT 0: any; prints "PORT <n>")
 *
 * One ring, one thread.  One ACCEPT in flight; per connection one RECV
 * into its own 64 KiB buffer, then one SEND of what arrived (re-issued on
 * a short send), then RECV again: what the Python servers do, minus
 * Python.  Everything prepared in an iteration is submitted with the wait
 * (io_uring_submit_and_wait), completions are reaped in a batch.  The ring
 * uses SINGLE_ISSUER|DEFER_TASKRUN when the kernel has them (6.1), else
 * COOP_TASKRUN, else nothing.  Exits 0 once MAX_CONNS connections were
 * accepted and all of them closed, so its CPU time can be read by the
 * parent (wait4) or from /proc while it runs. */
#define _GNU_SOURCE
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE 65536
#define QUEUE_DEPTH 4096

enum { EV_ACCEPT = 1, EV_RECV, EV_SEND };

typedef struct conn {
    int fd;
    int kind; /* what its op in flight is */
    size_t len, off;
    char buf[BUF_SIZE];
} conn_t;

static struct io_uring ring;
static int accept_tag = EV_ACCEPT; /* user_data of the accept: &accept_tag */

static struct io_uring_sqe *
sqe_get(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    while (sqe == NULL) {
        io_uring_submit(&ring);
        sqe = io_uring_get_sqe(&ring);
    }
    return sqe;
}

static void
queue_accept(int lfd)
{
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data(sqe, &accept_tag);
}

static void
queue_recv(conn_t *c)
{
    struct io_uring_sqe *sqe = sqe_get();
    c->kind = EV_RECV;
    io_uring_prep_recv(sqe, c->fd, c->buf, BUF_SIZE, 0);
    io_uring_sqe_set_data(sqe, c);
}

static void
queue_send(conn_t *c)
{
    struct io_uring_sqe *sqe = sqe_get();
    c->kind = EV_SEND;
    io_uring_prep_send(sqe, c->fd, c->buf + c->off, c->len - c->off,
                       MSG_NOSIGNAL);
    io_uring_sqe_set_data(sqe, c);
}

static int
setup_ring(void)
{
    static const unsigned flags[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_COOP_TASKRUN,
        0,
    };
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof(p));
        p.flags = flags[i];
        if (io_uring_queue_init_params(QUEUE_DEPTH, &ring, &p) == 0) {
            return 0;
        }
    }
    return -1;
}

int
main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s PORT MAX_CONNS\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    long max_conns = atol(argv[2]);
    setvbuf(stdout, NULL, _IOLBF, 0);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(lfd, 4096) != 0) {
        perror("bind/listen");
        return 1;
    }
    socklen_t sl = sizeof(sa);
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    if (setup_ring() != 0) {
        fprintf(stderr, "io_uring setup failed\n");
        return 1;
    }
    printf("PORT %d\n", ntohs(sa.sin_port));

    long accepted = 0, open_conns = 0;
    queue_accept(lfd);
    for (;;) {
        struct io_uring_cqe *cqe;
        int rc = io_uring_submit_and_wait(&ring, 1);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            fprintf(stderr, "submit_and_wait: %s\n", strerror(-rc));
            return 1;
        }
        unsigned head, n = 0;
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            n++;
            void *ud = io_uring_cqe_get_data(cqe);
            int res = cqe->res;
            if (ud == &accept_tag) {
                if (res >= 0) {
                    conn_t *c = malloc(sizeof(conn_t));
                    if (c == NULL) {
                        close(res);
                    }
                    else {
                        c->fd = res;
                        setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one,
                                   sizeof(one));
                        accepted++;
                        open_conns++;
                        queue_recv(c);
                    }
                }
                if (accepted < max_conns) {
                    queue_accept(lfd);
                }
                continue;
            }
            conn_t *c = ud;
            if (c->kind == EV_RECV) {
                if (res <= 0) {
                    close(c->fd);
                    free(c);
                    open_conns--;
                    continue;
                }
                c->len = (size_t)res;
                c->off = 0;
                queue_send(c);
            }
            else {
                if (res < 0) {
                    close(c->fd);
                    free(c);
                    open_conns--;
                    continue;
                }
                c->off += (size_t)res;
                if (c->off < c->len) {
                    queue_send(c);
                }
                else {
                    queue_recv(c);
                }
            }
        }
        io_uring_cq_advance(&ring, n);
        if (accepted >= max_conns && open_conns == 0) {
            break;
        }
    }
    io_uring_queue_exit(&ring);
    close(lfd);
    return 0;
}
