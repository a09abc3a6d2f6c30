/* tls.h -- the TLS record layer's C methods (tls.c): what module.c needs. */
#ifndef RL_TLS_H
#define RL_TLS_H

struct rl_loop_part;
extern const struct rl_loop_part rl_tls_part;

#endif /* RL_TLS_H */
