/* sendfile_splice.c -- which zero-copy path should loop.sendfile() take on
 * io_uring?  (issue 11; the answer is in ARCHITECTURE.md, "sendfile")
 *
 *   cc -O2 -o /tmp/sendfile_splice benchmarks/c/sendfile_splice.c \
 *      $(cc -print-file-name=liburing.a)
 *   /tmp/sendfile_splice FILE [reps]
 *
 * Sends FILE (page-cached) to a loopback TCP socket whose reader is a
 * child process (recv into a 1 MiB buffer until EOF), reps times per
 * variant, the variants interleaved:
 *   poll+sendfile  io_uring POLL(POLLOUT) on the non-blocking socket, then
 *                  sendfile(2) until EAGAIN (what src/net/sendfile.c does)
 *   splice         io_uring SPLICE file -> pipe linked with SPLICE pipe ->
 *                  socket, PIPE_CHUNK bytes per pair (the pipe resized to
 *                  it), one pair in flight; the socket is non-blocking (a
 *                  transport's is), so a full socket fails the second
 *                  SPLICE with EAGAIN: then a POLL linked with a SPLICE of
 *                  what is left in the pipe
 * and prints, per variant, the median wall time and the sender's CPU time
 * (user + system, getrusage) per run. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PIPE_CHUNK (1 << 20)

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double
cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 +
           ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

static void
die(const char *what, int err)
{
    fprintf(stderr, "%s: %s\n", what, strerror(err));
    exit(1);
}

/* A connected (sender, reader pid) pair; the reader counts and exits. */
static int
connect_reader(pid_t *pid, long long expect)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    if (bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 1) < 0 ||
        getsockname(ls, (struct sockaddr *)&a, &al) < 0) {
        die("listen", errno);
    }
    *pid = fork();
    if (*pid == 0) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c, (struct sockaddr *)&a, sizeof(a)) < 0) {
            _exit(2);
        }
        static char buf[1 << 20];
        long long got = 0;
        ssize_t k;
        while ((k = recv(c, buf, sizeof(buf), 0)) > 0) {
            got += k;
        }
        _exit(got == expect ? 0 : 3);
    }
    int s = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
    if (s < 0) {
        die("accept", errno);
    }
    close(ls);
    return s;
}

static struct io_uring_cqe *
wait1(struct io_uring *ring)
{
    struct io_uring_cqe *cqe;
    int rc = io_uring_wait_cqe(ring, &cqe);
    if (rc < 0) {
        die("wait", -rc);
    }
    return cqe;
}

static void
run_poll_sendfile(struct io_uring *ring, int s, int f, off_t size)
{
    off_t off = 0;
    while (off < size) {
        ssize_t r = sendfile(s, f, &off, (size_t)(size - off));
        if (r > 0) {
            continue;
        }
        if (r < 0 && errno != EAGAIN) {
            die("sendfile", errno);
        }
        struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
        io_uring_prep_poll_add(sqe, s, POLLOUT);
        io_uring_submit(ring);
        struct io_uring_cqe *cqe = wait1(ring);
        if (cqe->res < 0) {
            die("poll", -cqe->res);
        }
        io_uring_cqe_seen(ring, cqe);
    }
}

static void
run_splice(struct io_uring *ring, int s, int f, off_t size)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        die("pipe", errno);
    }
    (void)fcntl(p[1], F_SETPIPE_SZ, PIPE_CHUNK);
    off_t off = 0;
    while (off < size) {
        unsigned n = (unsigned)(size - off < PIPE_CHUNK ? size - off : PIPE_CHUNK);
        struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
        io_uring_prep_splice(sqe, f, off, p[1], -1, n, 0);
        sqe->flags |= IOSQE_IO_LINK;
        sqe->user_data = 1;
        sqe = io_uring_get_sqe(ring);
        io_uring_prep_splice(sqe, p[0], -1, s, -1, n, 0);
        sqe->user_data = 2;
        io_uring_submit(ring);
        int in = 0, out = 0;
        for (int i = 0; i < 2; i++) {
            struct io_uring_cqe *cqe = wait1(ring);
            int res = cqe->res;
            unsigned long long ud = cqe->user_data;
            io_uring_cqe_seen(ring, cqe);
            if (res == -EAGAIN && ud == 2) {
                continue; /* the socket is full: poll below */
            }
            if (res < 0) {
                die("splice", -res);
            }
            if (ud == 1) {
                in = res;
            }
            else {
                out = res;
            }
        }
        /* Bytes left in the pipe (the socket was full, or took part of
         * them): wait for room, splice the rest. */
        while (out < in) {
            struct io_uring_sqe *sq = io_uring_get_sqe(ring);
            io_uring_prep_poll_add(sq, s, POLLOUT);
            sq->flags |= IOSQE_IO_LINK;
            sq->user_data = 3;
            sq = io_uring_get_sqe(ring);
            io_uring_prep_splice(sq, p[0], -1, s, -1, (unsigned)(in - out), 0);
            sq->user_data = 2;
            io_uring_submit(ring);
            for (int i = 0; i < 2; i++) {
                struct io_uring_cqe *cqe = wait1(ring);
                int res = cqe->res;
                unsigned long long ud = cqe->user_data;
                io_uring_cqe_seen(ring, cqe);
                if (ud == 3) {
                    if (res < 0) {
                        die("poll", -res);
                    }
                    continue;
                }
                if (res == -EAGAIN) {
                    continue;
                }
                if (res < 0) {
                    die("splice", -res);
                }
                out += res;
            }
        }
        off += in;
    }
    close(p[0]);
    close(p[1]);
}

static int
cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE [reps]\n", argv[0]);
        return 2;
    }
    int reps = argc > 2 ? atoi(argv[2]) : 7;
    int f = open(argv[1], O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (f < 0 || fstat(f, &st) < 0) {
        die("open", errno);
    }
    struct io_uring ring;
    int rc = io_uring_queue_init(8, &ring, 0);
    if (rc < 0) {
        die("io_uring", -rc);
    }
    const char *names[2] = {"poll+sendfile", "splice"};
    double wall[2][64], cpus[2][64];
    if (reps > 64) {
        reps = 64;
    }
    for (int r = 0; r < reps; r++) {
        for (int k = 0; k < 2; k++) {
            int v = (r & 1) ? 1 - k : k; /* alternate which goes first */
            pid_t pid;
            int s = connect_reader(&pid, st.st_size);
            double t0 = now(), c0 = cpu();
            if (v == 0) {
                run_poll_sendfile(&ring, s, f, st.st_size);
            }
            else {
                run_splice(&ring, s, f, st.st_size);
            }
            close(s);
            int status;
            waitpid(pid, &status, 0);
            wall[v][r] = now() - t0;
            cpus[v][r] = cpu() - c0;
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "reader failed (%d)\n", status);
                return 1;
            }
        }
    }
    for (int v = 0; v < 2; v++) {
        qsort(wall[v], (size_t)reps, sizeof(double), cmp);
        qsort(cpus[v], (size_t)reps, sizeof(double), cmp);
        double mib = st.st_size / 1048576.0;
        printf("%-14s median %.1f MiB/s (wall %.1f ms, min %.1f max %.1f), "
               "sender CPU %.1f ms\n",
               names[v], mib / wall[v][reps / 2], wall[v][reps / 2] * 1e3,
               wall[v][0] * 1e3, wall[v][reps - 1] * 1e3,
               cpus[v][reps / 2] * 1e3);
    }
    return 0;
}
