/* dgram.c -- the native datagram transport (create_datagram_endpoint). */
#include "internal.h"

int
rl_dgram_module_init(PyObject *module, rl_state *st)
{
    (void)module;
    (void)st;
    return 0;
}

void
rl_dgram_loop_after_reactor_destroy(RlLoop *loop)
{
    (void)loop;
}

int
rl_dgram_loop_traverse(RlLoop *loop, visitproc visit, void *arg)
{
    (void)loop;
    (void)visit;
    (void)arg;
    return 0;
}
