/* net.h -- stream transports, servers and their loop integration.
 * (Owned by the networking work, issue 5.  Included by internal.h.) */
#ifndef RL_NET_H
#define RL_NET_H

/* Per-module networking state (types, cached objects).  Lives inside
 * rl_state as `st->net`. */
typedef struct rl_net_state {
    int unused;
} rl_net_state;

/* Per-loop networking state.  Lives inside RlLoop as `loop->net`. */
typedef struct rl_loop_net {
    int unused;
} rl_loop_net;

#endif /* RL_NET_H */
