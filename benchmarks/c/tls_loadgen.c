/* tls_loadgen.c -- TLS echo / handshake load generator for benchmarks/
 * (OpenSSL, epoll, one thread).  loadgen.c over TLS.
 *
 *   tls_loadgen HOST PORT CONNS SIZE COUNT TIMEOUT_S echo
 *   tls_loadgen HOST PORT 1 SIZE COUNT TIMEOUT_S handshake
 *
 * echo: opens CONNS connections (TCP_NODELAY), completes the TLS handshake
 * on each (certificate not verified: the benchmark's self-signed one) and
 * makes one untimed round trip on each, prints "READY" and waits for a line
 * on stdin.  Then COUNT round trips in total, spread evenly over the
 * connections, each connection ping-ponging one SIZE-byte message at a
 * time; every echoed byte is compared with what was sent (seeded pool,
 * offsets changing per connection and round, as loadgen.c).
 *
 * handshake: after READY, COUNT times in a row: connect, full handshake
 * (no session resumption), one SIZE-byte round trip (so the server's
 * application protocol really got the connection), close_notify, wait for
 * the server's end of the connection (no more bytes), close.
 *
 * Prints "DONE <count> <seconds> <bytes_each_way>" and exits 0; any error
 * prints "ERROR <text>" and exits 1. */
#define _GNU_SOURCE
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

#include <openssl/err.h>
#include <openssl/ssl.h>

#define POOL_SIZE (1u << 20)

typedef struct {
    int fd;
    SSL *ssl;
    uint64_t seq;
    uint64_t todo;
    size_t sent;
    size_t received;
    const uint8_t *msg;
    int want_out;
    int busy;
} conn_t;

static uint8_t *pool;
static size_t msg_size;
static uint8_t *rxbuf;
static SSL_CTX *ctx;
static struct addrinfo *ai;

static void
die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("ERROR ");
    vprintf(fmt, ap);
    unsigned long e = ERR_get_error();
    if (e != 0) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof(buf));
        printf(" (%s)", buf);
    }
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

static void
pump_out(int ep, conn_t *c, int idx)
{
    while (c->sent < msg_size) {
        int n = SSL_write(c->ssl, c->msg + c->sent, (int)(msg_size - c->sent));
        if (n > 0) {
            c->sent += (size_t)n;
            continue;
        }
        int err = SSL_get_error(c->ssl, n);
        if (err == SSL_ERROR_WANT_WRITE) {
            set_out(ep, c, idx, 1);
            return;
        }
        if (err == SSL_ERROR_WANT_READ) {
            return; /* retried on the next EPOLLIN */
        }
        die("SSL_write on connection %d: error %d", idx, err);
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

static int
pump_in(conn_t *c, int idx)
{
    for (;;) {
        size_t want = msg_size - c->received;
        if (want == 0) {
            return 1;
        }
        int n = SSL_read(c->ssl, rxbuf, (int)want);
        if (n > 0) {
            if (!c->busy) {
                die("connection %d: %d bytes nobody asked for", idx, n);
            }
            if (memcmp(rxbuf, c->msg + c->received, (size_t)n) != 0) {
                die("connection %d message %llu: echoed bytes differ at "
                    "offset %zu",
                    idx, (unsigned long long)c->seq, c->received);
            }
            c->received += (size_t)n;
            continue;
        }
        int err = SSL_get_error(c->ssl, n);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
            return 0;
        }
        if (err == SSL_ERROR_ZERO_RETURN) {
            die("connection %d: close_notify from the server", idx);
        }
        die("SSL_read on connection %d: error %d (%s)", idx, err,
            strerror(errno));
    }
}

/* An idle connection became readable: TLS records without application
 * data (a session ticket) are fine; data nobody asked for is not. */
static void
drain_idle(conn_t *c, int idx)
{
    for (;;) {
        int n = SSL_read(c->ssl, rxbuf, (int)msg_size);
        if (n > 0) {
            die("connection %d: %d bytes nobody asked for", idx, n);
        }
        int err = SSL_get_error(c->ssl, n);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
            return;
        }
        die("SSL_read on idle connection %d: error %d", idx, err);
    }
}

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
            if (!c->busy) {
                drain_idle(c, idx);
                continue;
            }
            if (c->sent < msg_size) {
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

/* A blocking TCP connection with a completed TLS handshake. */
static void
open_tls(conn_t *c, int i)
{
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        die("socket: %s", strerror(errno));
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        die("connect %d: %s", i, strerror(errno));
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
        die("SSL_new");
    }
    if (SSL_connect(ssl) != 1) {
        die("SSL_connect %d", i);
    }
    c->fd = fd;
    c->ssl = ssl;
}

static void
close_tls(conn_t *c)
{
    SSL_shutdown(c->ssl); /* our close_notify; the server's is not awaited */
    SSL_free(c->ssl);
    close(c->fd);
    c->ssl = NULL;
    c->fd = -1;
}

/* handshake mode: one connection at a time, blocking. */
static void
one_handshake(int i, uint64_t seq)
{
    conn_t c = {0};
    open_tls(&c, i);
    const uint8_t *msg = message_for(i, seq);
    size_t sent = 0, got = 0;
    while (sent < msg_size) {
        int n = SSL_write(c.ssl, msg + sent, (int)(msg_size - sent));
        if (n <= 0) {
            die("handshake %llu: SSL_write", (unsigned long long)seq);
        }
        sent += (size_t)n;
    }
    while (got < msg_size) {
        int n = SSL_read(c.ssl, rxbuf, (int)(msg_size - got));
        if (n <= 0) {
            die("handshake %llu: SSL_read", (unsigned long long)seq);
        }
        if (memcmp(rxbuf, msg + got, (size_t)n) != 0) {
            die("handshake %llu: echoed bytes differ", (unsigned long long)seq);
        }
        got += (size_t)n;
    }
    /* close_notify, then the server's end: nothing more may come */
    SSL_shutdown(c.ssl);
    int n = SSL_read(c.ssl, rxbuf, (int)msg_size);
    if (n > 0) {
        die("handshake %llu: %d bytes nobody asked for",
            (unsigned long long)seq, n);
    }
    SSL_free(c.ssl);
    close(c.fd);
}

int
main(int argc, char **argv)
{
    if (argc < 8) {
        fprintf(stderr,
                "usage: %s HOST PORT CONNS SIZE COUNT TIMEOUT_S echo|handshake\n",
                argv[0]);
        return 2;
    }
    const char *host = argv[1];
    const char *port = argv[2];
    int nconns = atoi(argv[3]);
    msg_size = (size_t)strtoull(argv[4], NULL, 10);
    uint64_t total = strtoull(argv[5], NULL, 10);
    double timeout = atof(argv[6]);
    int handshake = strcmp(argv[7], "handshake") == 0;
    if (!handshake && strcmp(argv[7], "echo") != 0) {
        die("mode must be echo or handshake");
    }
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
    uint64_t s = 0x243F6A8885A308D3ull;
    for (size_t i = 0; i < POOL_SIZE; i++) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        pool[i] = (uint8_t)((s * 0x2545F4914F6CDD1Dull) >> 56);
    }

    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        die("SSL_CTX_new");
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);

    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM};
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        die("getaddrinfo: %s", gai_strerror(rc));
    }

    if (handshake) {
        one_handshake(0, 0); /* untimed */
        printf("READY\n");
        char line[64];
        if (fgets(line, sizeof(line), stdin) == NULL) {
            die("no GO line on stdin");
        }
        double t0 = now();
        for (uint64_t k = 0; k < total; k++) {
            one_handshake((int)(k % 1000), k);
            if (now() > t0 + timeout) {
                die("timed out after %llu handshakes", (unsigned long long)k);
            }
        }
        double t1 = now();
        printf("DONE %llu %.9f %llu\n", (unsigned long long)total, t1 - t0,
               (unsigned long long)(total * msg_size));
        freeaddrinfo(ai);
        SSL_CTX_free(ctx);
        free(conns);
        free(rxbuf);
        free(pool);
        return 0;
    }

    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        die("epoll_create1: %s", strerror(errno));
    }
    for (int i = 0; i < nconns; i++) {
        open_tls(&conns[i], i);
        int fl = fcntl(conns[i].fd, F_GETFL);
        if (fl < 0 || fcntl(conns[i].fd, F_SETFL, fl | O_NONBLOCK) != 0) {
            die("fcntl: %s", strerror(errno));
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev) != 0) {
            die("epoll_ctl: %s", strerror(errno));
        }
    }
    freeaddrinfo(ai);

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
        close_tls(&conns[i]);
    }
    close(ep);
    SSL_CTX_free(ctx);
    free(conns);
    free(rxbuf);
    free(pool);
    return 0;
}
