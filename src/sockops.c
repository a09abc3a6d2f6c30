/* sockops.c -- loop.sock_* as direct reactor ops (issue 5). */
#include "internal.h"

PyMethodDef rl_sock_loop_methods[] = {
    {NULL, NULL, 0, NULL},
};
