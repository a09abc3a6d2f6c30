/* common.h -- tiny helpers every ringloop C file may use.  No Python. */
#ifndef RL_COMMON_H
#define RL_COMMON_H

#include <stddef.h>

#define RL_LIKELY(x) __builtin_expect(!!(x), 1)
#define RL_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define RL_INLINE static inline __attribute__((always_inline))
#define RL_UNUSED __attribute__((unused))
#define RL_UNREACHABLE() __builtin_unreachable()
#define RL_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#define rl_container_of(ptr, type, member)                                    \
    ((type *)((char *)(ptr)-offsetof(type, member)))

#endif /* RL_COMMON_H */
