/* reactor/common.c -- small helpers both backends share (no Python). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "reactor.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

volatile unsigned long rl_reactor_fork_generation;

static void
after_fork_child(void)
{
    rl_reactor_fork_generation++; /* async-signal-safe: a plain store */
}

static int atfork_rc;

static void
register_atfork(void)
{
    atfork_rc = pthread_atfork(NULL, NULL, after_fork_child);
}

int
rl_reactor_init_header(rl_reactor *r, const rl_reactor_ops *ops,
                       rl_backend_kind kind)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    int rc = pthread_once(&once, register_atfork);
    if (rc == 0) {
        rc = atfork_rc;
    }
    r->ops = ops;
    r->kind = kind;
    r->probe_fd = -1;
    r->fork_gen = rl_reactor_fork_generation;
    return -rc;
}

void
rl_reactor_release_header(rl_reactor *r)
{
    if (r->probe_fd >= 0) {
        close(r->probe_fd);
        r->probe_fd = -1;
    }
}

int
rl_reactor_check_fd(rl_reactor *r, int fd)
{
    struct stat st;
    if (fd < 0) {
        return -EBADF;
    }
    if (fstat(fd, &st) != 0) {
        return -errno;
    }
    /* Sockets and pipes can always be polled; regular files and
     * directories never (epoll_ctl() refuses them with EPERM). */
    if (S_ISSOCK(st.st_mode) || S_ISFIFO(st.st_mode)) {
        return 0;
    }
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
        return -EPERM;
    }
    /* The rest (character and block devices, eventfd, timerfd, signalfd,
     * epoll, pidfd, ...) depends on the driver: whether its file has a
     * poll method is what epoll_ctl() tests (EPERM without one, e.g.
     * /dev/null, /dev/zero), so ask it the same question, in a set of our
     * own.  Both backends then refuse what asyncio's epoll refuses, and the
     * io_uring backend no longer arms a POLL that completes at once with
     * the driver's default mask. */
    if (r->probe_fd < 0) {
        r->probe_fd = epoll_create1(EPOLL_CLOEXEC);
        if (r->probe_fd < 0) {
            return 0; /* no verdict: accept, as before */
        }
    }
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    if (epoll_ctl(r->probe_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        int e = errno;
        /* EPERM: no poll method; EBADF: closed meanwhile.  Anything else
         * (ENOMEM, ENOSPC: out of watches; ELOOP) is about our set, not
         * about the fd: no verdict. */
        return e == EPERM || e == EBADF ? -e : 0;
    }
    (void)epoll_ctl(r->probe_fd, EPOLL_CTL_DEL, fd, &ev);
    return 0;
}

int
rl_connect_settled_result(int fd)
{
    int soerr = 0;
    socklen_t len = sizeof(soerr);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) {
        return -errno;
    }
    return -soerr;
}

void
rl_fault_from_env(rl_fault *f, const char *name)
{
    static const struct {
        const char *name;
        int err;
    } names[] = {
        {"ENOMEM", ENOMEM}, {"EAGAIN", EAGAIN}, {"ENOBUFS", ENOBUFS},
        {"EINTR", EINTR},   {"EBUSY", EBUSY},   {"ENOSPC", ENOSPC},
    };
    const char *s = getenv(name);
    char *end = NULL;
    unsigned long every;

    f->every = 0;
    f->count = 0;
    f->err = -ENOMEM;
    if (s == NULL || *s == '\0') {
        return;
    }
    every = strtoul(s, &end, 10);
    if (end == s || every == 0 || every > 1000000000ul) {
        return;
    }
    if (*end == ':') {
        const char *e = end + 1;
        char *nend = NULL;
        long num = strtol(e, &nend, 10);
        int found = 0;
        if (nend != e && *nend == '\0' && num > 0 && num < 4096) {
            f->err = -(int)num;
            found = 1;
        }
        for (size_t i = 0; !found && i < sizeof(names) / sizeof(names[0]);
             i++) {
            if (strcmp(e, names[i].name) == 0) {
                f->err = -names[i].err;
                found = 1;
            }
        }
        if (!found) {
            return;
        }
    }
    else if (*end != '\0') {
        return;
    }
    f->every = (unsigned)every;
}
