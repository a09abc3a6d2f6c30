/* net.c -- module and loop hooks of the networking code (issue 5). */
#include "internal.h"

int
rl_net_module_init(PyObject *module, rl_state *st)
{
    (void)module;
    (void)st;
    return 0;
}

int
rl_net_module_traverse(rl_state *st, visitproc visit, void *arg)
{
    (void)st;
    (void)visit;
    (void)arg;
    return 0;
}

void
rl_net_module_clear(rl_state *st)
{
    (void)st;
}

void
rl_net_loop_init(RlLoop *loop)
{
    (void)loop;
}

int
rl_net_loop_traverse(RlLoop *loop, visitproc visit, void *arg)
{
    (void)loop;
    (void)visit;
    (void)arg;
    return 0;
}

void
rl_net_loop_after_reactor_destroy(RlLoop *loop)
{
    (void)loop;
}

int
rl_net_check_fd_free(RlLoop *loop, int fd)
{
    (void)loop;
    (void)fd;
    return 0;
}

PyMethodDef rl_net_loop_methods[] = {
    {NULL, NULL, 0, NULL},
};
