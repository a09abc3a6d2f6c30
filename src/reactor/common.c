/* reactor/common.c -- small helpers both backends share (no Python). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "reactor.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/stat.h>

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
