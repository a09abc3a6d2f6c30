/* fs.h -- ringloop.fs's native file requests (fs.c): what module.c needs. */
#ifndef RL_FS_H
#define RL_FS_H

struct rl_loop_part;
extern const struct rl_loop_part rl_fs_part;

#endif /* RL_FS_H */
