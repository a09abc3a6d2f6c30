/* loadgen.c -- TCP echo load generator for benchmarks/ (epoll, one thread).
 *
 *   loadgen HOST PORT CONNS SIZE ROUND_TRIPS [TIMEOUT_S]
 *
 * Opens CONNS connections (TCP_NODELAY), makes one untimed round trip on
 * each (so every connection is accepted and served), prints "READY" and
 * waits for a line on stdin (the caller samples the server's CPU clock
 * then).  Then ROUND_TRIPS round trips in total, spread evenly over the
 * connections, each connection ping-ponging one SIZE-byte message at a
 * time.  Every echoed byte is compared with what was sent: the messages are
 * slices of a seeded pseudo-random pool at offsets that change with the
 * connection and the round, so a server that mixes up connections, drops,
 * reorders or repeats bytes is caught.  Prints
 *
 *   DONE <round_trips> <seconds> <bytes_each_way>
 *
 * (time from the first timed send to the last echoed byte), closes the
 * connections, and exits 0.  Any error, mismatch, early EOF or the timeout
 * prints "ERROR <text>" and exits 1.
 *
 * One epoll thread is plenty: it does one send and one or a few recvs per
 * round trip with no allocation and no copy besides the kernel's, which is
 * several times less work than any Python server does per round trip. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define POOL_SIZE (1u << 20)

typedef struct {
    int fd;
    uint64_t seq;      /* message number on this connection */
    uint64_t todo;     /* timed round trips left */
    size_t sent;       /* bytes of the current message sent */
    size_t received;   /* bytes of its echo received */
    const uint8_t *msg; /* the current message (a slice of the pool) */
    int want_out;      /* EPOLLOUT registered */
    int busy;          /* a message is in flight */
} conn_t;

static uint8_t *pool;
static size_t msg_size;
static uint8_t *rxbuf;

static void
die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("ERROR ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    exit(1);
}

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const uint8_t *
message_for(int idx, uint64_t seq)
{
    uint64_t x = (uint64_t)idx * 0x9E3779B97F4A7C15ull + seq * 0xBF58476D1CE4E5B9ull;
    x ^= x >> 31;
    return pool + (x % (POOL_SIZE - msg_size + 1));
}

static void
set_out(int ep, conn_t *c, int idx, int on)
{
    if (c->want_out == on) {
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0),
                             .data.u32 = (uint32_t)idx};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0) {
        die("epoll_ctl: %s", strerror(errno));
    }
    c->want_out = on;
}

/* Send what the current message still has to send. */
static void
pump_out(int ep, conn_t *c, int idx)
{
    while (c->sent < msg_size) {
        ssize_t n = send(c->fd, c->msg + c->sent, msg_size - c->sent,
                         MSG_NOSIGNAL);
        if (n > 0) {
            c->sent += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_out(ep, c, idx, 1);
            return;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        die("send on connection %d: %s", idx, strerror(errno));
    }
    set_out(ep, c, idx, 0);
}

static void
start_message(int ep, conn_t *c, int idx)
{
    c->msg = message_for(idx, c->seq);
    c->sent = 0;
    c->received = 0;
    c->busy = 1;
    pump_out(ep, c, idx);
}

/* Read and check echoed bytes.  Returns 1 when the message is complete. */
static int
pump_in(conn_t *c, int idx)
{
    for (;;) {
        size_t want = msg_size - c->received;
        if (want == 0) {
            return 1;
        }
        ssize_t n = recv(c->fd, rxbuf, want, 0);
        if (n > 0) {
            if (!c->busy) {
                die("connection %d: %zd bytes nobody asked for", idx, n);
            }
            if (memcmp(rxbuf, c->msg + c->received, (size_t)n) != 0) {
                die("connection %d message %llu: echoed bytes differ at "
                    "offset %zu",
                    idx, (unsigned long long)c->seq, c->received);
            }
            c->received += (size_t)n;
            continue;
        }
        if (n == 0) {
            die("connection %d: EOF from the server", idx);
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 0;
        }
        if (errno == EINTR) {
            continue;
        }
        die("recv on connection %d: %s", idx, strerror(errno));
    }
}

/* Run until every connection did `rounds[i]` round trips. */
static void
run_rounds(int ep, conn_t *conns, int nconns, uint64_t *left_total,
           double deadline)
{
    struct epoll_event evs[256];
    for (int i = 0; i < nconns; i++) {
        if (conns[i].todo > 0) {
            start_message(ep, &conns[i], i);
        }
    }
    while (*left_total > 0) {
        int n = epoll_wait(ep, evs, 256, 1000);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("epoll_wait: %s", strerror(errno));
        }
        if (now() > deadline) {
            die("timed out with %llu round trips left",
                (unsigned long long)*left_total);
        }
        for (int k = 0; k < n; k++) {
            int idx = (int)evs[k].data.u32;
            conn_t *c = &conns[idx];
            if ((evs[k].events & EPOLLOUT) && c->busy) {
                pump_out(ep, c, idx);
            }
            if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                if (pump_in(c, idx)) {
                    if (c->sent != msg_size) {
                        die("connection %d: echo ahead of the request", idx);
                    }
                    c->busy = 0;
                    c->seq++;
                    c->todo--;
                    (*left_total)--;
                    if (c->todo > 0) {
                        start_message(ep, c, idx);
                    }
                }
            }
        }
    }
}

int
main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr,
                "usage: %s HOST PORT CONNS SIZE ROUND_TRIPS [TIMEOUT_S]\n",
                argv[0]);
        return 2;
    }
    const char *host = argv[1];
    const char *port = argv[2];
    int nconns = atoi(argv[3]);
    msg_size = (size_t)strtoull(argv[4], NULL, 10);
    uint64_t total = strtoull(argv[5], NULL, 10);
    double timeout = argc > 6 ? atof(argv[6]) : 60.0;
    if (nconns < 1 || msg_size < 1 || msg_size > POOL_SIZE / 2 ||
        total < (uint64_t)nconns) {
        die("bad arguments");
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    pool = malloc(POOL_SIZE);
    rxbuf = malloc(msg_size);
    conn_t *conns = calloc((size_t)nconns, sizeof(conn_t));
    if (pool == NULL || rxbuf == NULL || conns == NULL) {
        die("out of memory");
    }
    uint64_t s = 0x243F6A8885A308D3ull; /* xorshift64*, fixed seed */
    for (size_t i = 0; i < POOL_SIZE; i++) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        pool[i] = (uint8_t)((s * 0x2545F4914F6CDD1Dull) >> 56);
    }

    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        die("getaddrinfo: %s", gai_strerror(rc));
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        die("epoll_create1: %s", strerror(errno));
    }
    for (int i = 0; i < nconns; i++) {
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            die("socket: %s", strerror(errno));
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            die("connect %d: %s", i, strerror(errno));
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
            die("fcntl: %s", strerror(errno));
        }
        conns[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            die("epoll_ctl: %s", strerror(errno));
        }
    }
    freeaddrinfo(ai);

    /* One untimed round trip per connection. */
    uint64_t left = (uint64_t)nconns;
    for (int i = 0; i < nconns; i++) {
        conns[i].todo = 1;
    }
    run_rounds(ep, conns, nconns, &left, now() + timeout);

    printf("READY\n");
    char line[64];
    if (fgets(line, sizeof(line), stdin) == NULL) {
        die("no GO line on stdin");
    }

    for (int i = 0; i < nconns; i++) {
        conns[i].todo = total / (uint64_t)nconns +
                        ((uint64_t)i < total % (uint64_t)nconns ? 1 : 0);
    }
    left = total;
    double t0 = now();
    run_rounds(ep, conns, nconns, &left, t0 + timeout);
    double t1 = now();
    printf("DONE %llu %.9f %llu\n", (unsigned long long)total, t1 - t0,
           (unsigned long long)(total * msg_size));
    for (int i = 0; i < nconns; i++) {
        close(conns[i].fd);
    }
    close(ep);
    free(conns);
    free(rxbuf);
    free(pool);
    return 0;
}
