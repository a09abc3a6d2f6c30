/* reactor/common.c -- small helpers both backends share (no Python). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "reactor.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

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
    r->fork_gen = rl_reactor_fork_generation;
    return -rc;
}

int
rl_reactor_check_fd(int fd)
{
    struct stat st;
    if (fd < 0) {
        return -EBADF;
    }
    if (fstat(fd, &st) != 0) {
        return -errno;
    }
    /* epoll_ctl() refuses regular files and directories with EPERM; the
     * io_uring backend follows so both backends raise the same error. */
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
        return -EPERM;
    }
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
