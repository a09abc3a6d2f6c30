/* internal.h -- the contract between ringloop's C files: module state, object
 * layouts and cross-file functions.  The only header .c files share besides
 * common.h, compat.h, reactor.h and timerheap.h.  It knows nothing of the
 * parts outside core/ and aio/ (net/, ...): their state is opaque here, and
 * their hooks reach the loop through rl_loop_parts (below). */
#ifndef RL_INTERNAL_H
#define RL_INTERNAL_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdatomic.h>
#include <stdint.h>

#include "common.h"
#include "compat.h"
#include "reactor.h"
#include "timerheap.h"

typedef struct RlLoop RlLoop;
typedef struct RlHandle RlHandle;

/* ---------------------------------------------------------------------- */
/* Module state: every type, cached import and interned string.  traverse
 * and clear in module.c mirror this struct line for line. */
typedef struct RlFuture RlFuture;
typedef struct RlTask RlTask;
typedef struct RlFutureIter RlFutureIter;

typedef struct rl_state {
    PyTypeObject *LoopType;
    PyTypeObject *HandleType;
    PyTypeObject *TimerHandleType;
    PyTypeObject *FutureType;
    PyTypeObject *TaskType;
    PyTypeObject *FutureIterType;
    PyTypeObject *TaskCallType;

    /* cached stdlib objects (borrowed from nothing: strong refs here) */
    PyObject *asyncio_Future;          /* asyncio.Future */
    PyObject *asyncio_extract_stack;   /* asyncio.format_helpers.extract_stack */
    PyObject *asyncio_iscoroutinefunction; /* asyncio.iscoroutinefunction */
    PyObject *asyncio_events_get_running_loop; /* events._get_running_loop */
    PyObject *asyncio_Task;             /* asyncio.Task */
    PyObject *asyncio_Handle;           /* asyncio.Handle */
    PyObject *asyncio_TimerHandle;      /* asyncio.TimerHandle */
    PyObject *asyncio_CancelledError;
    PyObject *asyncio_InvalidStateError;
    PyObject *asyncio_get_event_loop;   /* per version, see module.c */
    PyObject *asyncio_future_repr;      /* base_futures._future_repr */
    PyObject *asyncio_task_repr;        /* base_tasks._task_repr */
    PyObject *asyncio_task_get_stack;   /* base_tasks._task_get_stack */
    PyObject *asyncio_task_print_stack; /* base_tasks._task_print_stack */
    PyObject *asyncio_iscoroutine;      /* coroutines.iscoroutine */
    PyObject *asyncio_current_tasks;    /* tasks._current_tasks (a dict) */
    PyObject *asyncio_scheduled_tasks;  /* 3.11 _all_tasks, 3.12+ _scheduled_tasks */
    PyObject *asyncio_eager_tasks;      /* 3.12+ tasks._eager_tasks, else NULL */
    PyObject *iscoroutine_typecache;    /* a set of types known to be coros */
    /* The WeakSet behind all_tasks(), driven from C (see task.c
     * register_task); NULL when its layout is not the expected one. */
    PyObject *ws_data;                  /* WeakSet.data (a set of weakrefs) */
    PyObject *ws_pending;               /* WeakSet._pending_removals (list) */
    PyObject *ws_iterating;             /* WeakSet._iterating (set) */
    PyObject *ws_remove_cb;             /* C weakref callback */

    /* hooks installed by the Python package (ringloop/_hooks.py) */
    PyObject *hook_handle_repr;  /* (handle) -> str */
    PyObject *hook_format_cb;    /* (callback, args, debug) -> str */
    PyObject *hook_slow_cb;      /* (loop, handle, seconds) -> None */

    /* interned strings */
    PyObject *str_call_exception_handler;
    PyObject *str_message;
    PyObject *str_exception;
    PyObject *str_handle;
    PyObject *str_source_traceback;
    PyObject *str_fileno;
    PyObject *str_context;
    PyObject *str_set_result;
    PyObject *str_set_exception;
    PyObject *str_done;
    PyObject *str_add;
    PyObject *str_discard;
    PyObject *str_cancel;
    PyObject *str_throw;
    PyObject *str_result;
    PyObject *str_get_loop;
    PyObject *str_loop_attr; /* "_loop" */
    PyObject *str_add_done_callback;
    PyObject *str_call_soon;
    PyObject *str_asyncio_future_blocking;
    PyObject *str_msg;
    PyObject *str_get_debug;

    uint64_t task_name_counter;
    RlFutureIter *fi_freelist;
    int fi_freelist_len;

    /* Parts outside core/ (rl_loop_parts): opaque here, allocated by the
     * part's module_init, freed by its module_free. */
    struct rl_net_state *net;   /* net/net.h */
    struct rl_sock_state *sock; /* net/sockops.h */
} rl_state;

/* ---------------------------------------------------------------------- */
/* The ready queue: a ring of plain C records.  A record is a function plus
 * two owned references; running it hands both references to fn.  Public
 * Handles are one kind of record (fn = rl_handle_ready_fn, a = handle).
 * fn returns 0, or -1 with an exception that must leave the loop
 * (SystemExit, KeyboardInterrupt); other errors are reported through the
 * loop's exception handler by fn itself. */
typedef int (*rl_ready_fn)(RlLoop *loop, PyObject *a, PyObject *b);

typedef struct {
    rl_ready_fn fn;
    PyObject *a;
    PyObject *b;
} rl_callback;

typedef struct {
    rl_callback *buf;
    size_t cap; /* power of two */
    size_t head;
    size_t len;
} rl_ready;

int rl_ready_grow(rl_ready *q);

/* Steals a and b.  -1 with MemoryError set (a and b are then released). */
RL_INLINE int
rl_ready_push(rl_ready *q, rl_ready_fn fn, PyObject *a, PyObject *b)
{
    if (RL_UNLIKELY(q->len == q->cap) && rl_ready_grow(q) < 0) {
        Py_XDECREF(a);
        Py_XDECREF(b);
        return -1;
    }
    rl_callback *c = &q->buf[(q->head + q->len) & (q->cap - 1)];
    c->fn = fn;
    c->a = a;
    c->b = b;
    q->len++;
    return 0;
}

/* The queue must be non-empty. */
RL_INLINE rl_callback
rl_ready_pop(rl_ready *q)
{
    rl_callback c = q->buf[q->head];
    q->head = (q->head + 1) & (q->cap - 1);
    q->len--;
    return c;
}

/* ---------------------------------------------------------------------- */
/* Handle and TimerHandle share one layout; TimerHandle is a subtype that
 * uses `when`, `scheduled` and `seq`. */
#define RL_HANDLE_INLINE_ARGS 3

struct RlHandle {
    PyObject_HEAD
    PyObject *callback;
    /* Arguments: up to RL_HANDLE_INLINE_ARGS stored inline; more go to
     * argtuple and args[] is unused. */
    PyObject *args[RL_HANDLE_INLINE_ARGS];
    PyObject *argtuple;
    Py_ssize_t nargs;
    PyObject *context;
    RlLoop *loop;
    PyObject *source_traceback;
    PyObject *repr;
    PyObject *weakreflist;
    /* TimerHandle: `when` as asyncio keeps it (what call_at() got, the sum
     * call_later() made); NULL until asked for when it is a plain float. */
    PyObject *when_obj;
    double when;
    char cancelled;
    char scheduled;
    char is_timer;
};

/* ---------------------------------------------------------------------- */
/* Future and Task.  A callback entry with ctx == NULL is a native Task
 * waiting on the future (fn is the task): its wake-up is a C record on the
 * ready ring, no callable object and no Handle. */
typedef struct {
    PyObject *fn;
    PyObject *ctx;
} rl_fut_cb;

enum { RL_FUT_PENDING = 0, RL_FUT_CANCELLED = 1, RL_FUT_FINISHED = 2 };

#define RL_FUTURE_FIELDS                                                      \
    PyObject_HEAD                                                             \
    PyObject *fut_loop;                                                       \
    RlLoop *fut_rloop; /* fut_loop when it is a ringloop loop, else NULL */   \
    PyObject *fut_result;                                                     \
    PyObject *fut_exception;                                                  \
    PyObject *fut_exception_tb;                                               \
    PyObject *fut_cancel_msg;                                                 \
    PyObject *fut_cancelled_exc;                                              \
    PyObject *fut_source_tb;                                                  \
    PyObject *fut_dict;                                                       \
    PyObject *fut_weakreflist;                                                \
    rl_fut_cb fut_cb0;                                                        \
    rl_fut_cb *fut_cbs; /* callbacks after the first */                       \
    uint32_t fut_ncbs;                                                        \
    uint32_t fut_cbcap;                                                       \
    uint8_t fut_state;                                                        \
    uint8_t fut_log_tb;                                                       \
    uint8_t fut_blocking;                                                     \
    uint8_t fut_is_task;

struct RlFuture {
    RL_FUTURE_FIELDS
};

struct RlTask {
    RL_FUTURE_FIELDS
    PyObject *task_coro;
    PyObject *task_context;
    PyObject *task_name; /* NULL: "Task-<task_name_id>", made on demand */
    PyObject *task_fut_waiter;
    uint64_t task_name_id;
    int task_num_cancels_requested;
    uint8_t task_must_cancel;
    uint8_t task_log_destroy_pending;
};

struct RlFutureIter {
    PyObject_HEAD
    RlFuture *future;
};

/* ---------------------------------------------------------------------- */
/* A reader or writer registered with add_reader/add_writer: one one-shot
 * POLL op re-armed after each readiness (level-triggered, as asyncio). */
typedef struct rl_watch {
    rl_op op; /* first: the reactor hands us &op */
    RlLoop *loop;  /* borrowed: the loop frees every watch in close() */
    RlHandle *handle; /* strong; NULL once removed */
    /* strong; NULL once removed: what add_reader() was given, so that
     * remove_reader(sock) finds the watch after sock.close() (fileno() is
     * then -1), as asyncio's selector finds its key by the object. */
    PyObject *fileobj;
    struct rl_watch *next, *prev; /* loop->watches, all live records */
    int fd;
    int dir; /* 0 reader, 1 writer */
} rl_watch;

typedef struct {
    rl_watch *w[2];
} rl_fdslot;

/* The fd -> watch table is sparse: a directory of pages of
 * RL_FDPAGE_SLOTS slots.  A page exists while one of its fds is watched;
 * only fds found open get one (add_reader checks first), so a huge fd
 * number costs a directory entry per page below it, never a slot each. */
#define RL_FDPAGE_SHIFT 8
#define RL_FDPAGE_SLOTS (1 << RL_FDPAGE_SHIFT)
typedef struct {
    size_t used; /* non-NULL w[] entries in the page */
    rl_fdslot slot[RL_FDPAGE_SLOTS];
} rl_fdpage;

#define RL_FREELIST_MAX 2048

struct RlLoop {
    PyObject_HEAD
    rl_state *st;      /* borrowed: `module` keeps it alive */
    PyObject *module;  /* strong */
    rl_reactor *reactor;
    rl_ready ready;
    rl_timerheap timers;
    uint64_t timer_seq;
    Py_ssize_t timers_cancelled;
    rl_fdpage **fdpages; /* see rl_fdpage; NULL entries for empty pages */
    size_t nfdpages;
    rl_watch *watches;
    RlHandle *freelist[2]; /* Handle, TimerHandle; linked via ->callback */
    int nfree[2];
    PyObject *current_handle; /* debug mode: the handle being run */
    PyObject *weakreflist;
    double clock_resolution;
    double slow_callback_duration;
    unsigned long thread_id;
    /* Parts outside core/: allocated by their loop_new hook (Loop_new),
     * freed by loop_free (dealloc); never NULL on a Loop that exists. */
    struct rl_loop_net *net;   /* net/net.h */
    struct rl_loop_sock *sock; /* net/sockops.h */
    /* Parts that have work for their before_wait hook: each counts itself
     * in while it has (the loop calls the hooks only when > 0). */
    int before_wait_wanted;
    atomic_int wake_pending;
    PyObject *task_factory;
    char backend_fallback[200]; /* why auto did not get io_uring, or "" */
    char native_tasks; /* create_future/create_task: ringloop's types */
    unsigned long fork_gen; /* rl_fork_generation when the loop was made */
    char has_thread; /* running: thread_id is valid */
    char closed;
    char stopping;
    char debug;
    /* loop.time was replaced on the instance (mock.patch.object(loop,
     * "time")) or overridden by a subclass: the scheduler then reads the
     * clock through it, as asyncio's _run_once and call_later do. */
    char time_patched;
};

/* ---------------------------------------------------------------------- */
/* module.c */
extern PyModuleDef rl_module_def;
rl_state *rl_get_state_by_type(PyTypeObject *tp);

/* loop.c */
int rl_loop_init_type(PyObject *module, rl_state *st);
/* Bumped in the child after every fork(): a loop made before the fork must
 * not drive its ring/epoll set (shared with the parent) in the child. */
extern volatile unsigned long rl_fork_generation;
double rl_loop_time(void);
int rl_loop_check_closed(RlLoop *loop);
/* Schedule handle (stolen) on loop's ready queue. */
int rl_loop_push_handle(RlLoop *loop, RlHandle *handle);
/* Report an exception raised by a callback (the current exception) through
 * loop.call_exception_handler.  Returns -1 if the exception must leave the
 * loop (SystemExit/KeyboardInterrupt, or the handler raised one), else 0. */
int rl_loop_report_callback_error(RlLoop *loop, RlHandle *handle);

/* handle.c */
int rl_handle_init_types(PyObject *module, rl_state *st);
/* New handle.  callback and args borrowed; context may be NULL (copy the
 * current one).  TimerHandle when is_timer. */
RlHandle *rl_handle_new(RlLoop *loop, int is_timer, PyObject *callback,
                        PyObject *const *args, Py_ssize_t nargs,
                        PyObject *context);
int rl_handle_ready_fn(RlLoop *loop, PyObject *a, PyObject *b);
/* Release a handle the loop holds: recycles it to the loop's free list when
 * the loop holds the only reference. */
void rl_handle_release(RlLoop *loop, RlHandle *h);
void rl_handle_freelist_clear(RlLoop *loop);
/* Handle.cancel(): 0 or -1 (debug repr failed). */
int rl_handle_cancel(RlHandle *h);

/* future.c -- the futures the C code hands out (sock_*, transports'
 * waiters): ringloop.Future, or asyncio.Future when the loop runs with
 * native_tasks=False.  Use these, not method calls, so both work. */
PyObject *rl_future_new(RlLoop *loop);
int rl_future_init_types(PyObject *module, rl_state *st);
static inline int
rl_future_check(rl_state *st, PyObject *o)
{
    return Py_IS_TYPE(o, st->FutureType) || Py_IS_TYPE(o, st->TaskType) ||
           PyObject_TypeCheck(o, st->FutureType);
}
/* Native future internals shared with task.c */
int rl_fut_set_result(rl_state *st, RlFuture *fut, PyObject *res);
int rl_fut_set_exception(rl_state *st, RlFuture *fut, PyObject *exc);
int rl_fut_cancel(rl_state *st, RlFuture *fut, PyObject *msg);
int rl_fut_add_callback(rl_state *st, RlFuture *fut, PyObject *fn,
                        PyObject *ctx);
PyObject *rl_fut_make_cancelled_error(rl_state *st, RlFuture *fut);
int rl_fut_init(rl_state *st, RlFuture *fut, PyObject *loop);
/* Schedule fn(arg) on fut's loop in ctx (NULL: a fresh copy). */
int rl_call_soon_on(rl_state *st, PyObject *loop, RlLoop *rloop,
                    PyObject *fn, PyObject *arg, PyObject *ctx);

/* task.c */
int rl_task_init_types(PyObject *module, rl_state *st);
int rl_task_init_registry(PyObject *module, rl_state *st);
/* A new native Task for coro on a ringloop loop (create_task's fast path);
 * name/context may be NULL. */
PyObject *rl_task_new(rl_state *st, RlLoop *loop, PyObject *coro,
                      PyObject *name, PyObject *context);
/* Wake a native task waiting on fut (fut's callbacks saw ctx == NULL). */
int rl_task_schedule_wakeup(rl_state *st, RlTask *task, PyObject *fut);
/* 0 or -1.  Like asyncio's _set_result_unless_cancelled: a future that is
 * already done (cancelled by its awaiter) is left alone. */
int rl_future_set_result_unless_done(PyObject *fut, PyObject *result);
int rl_future_set_exception_unless_done(PyObject *fut, PyObject *exc);
/* 1 done, 0 pending, -1 error */
int rl_future_is_done(PyObject *fut);
/* future.c: cancel(msg=None)'s arguments (Future and Task); msg borrowed. */
int rl_parse_cancel_args(rl_state *st, PyObject *const *args,
                         Py_ssize_t nargs, PyObject *kwnames, PyObject **msg);

/* loop.c: schedule a C function on the ready ring (steals a and b). */
static inline int
rl_loop_call_soon_c(RlLoop *loop, rl_ready_fn fn, PyObject *a, PyObject *b)
{
    return rl_ready_push(&loop->ready, fn, a, b);
}

/* ---------------------------------------------------------------------- */
/* Loop parts.  core/ is the run cycle, callbacks, timers and watches; what
 * else the Loop type offers (transports, servers, sock_*, datagrams; TLS,
 * subprocesses and files as they land) is a part outside core/, listed by
 * module.c in rl_loop_parts.  Module and loop life cycles call every part's
 * hooks in order without knowing what they do, so core/ includes nothing of
 * the parts.  Any hook may be NULL. */
typedef struct rl_loop_part {
    const char *name;
    PyMethodDef *methods; /* joined into the Loop type's methods */
    /* module life: init allocates the part's slice of rl_state */
    int (*module_init)(PyObject *module, rl_state *st);
    int (*module_traverse)(rl_state *st, visitproc visit, void *arg);
    void (*module_clear)(rl_state *st);
    void (*module_free)(rl_state *st); /* after clear; NULL-safe */
    /* loop life */
    int (*loop_new)(RlLoop *loop); /* Loop_new; -1 with an exception */
    int (*loop_traverse)(RlLoop *loop, visitproc visit, void *arg);
    /* close()/dealloc, right after the reactor was destroyed: every op is
     * IDLE again (or deliberately leaked) and no completion will come. */
    void (*loop_after_reactor_destroy)(RlLoop *loop);
    void (*loop_free)(RlLoop *loop); /* dealloc, last; NULL-safe */
    /* add_reader & co: 0, or -1 with RuntimeError if the part owns fd
     * (asyncio's _ensure_fd_no_transport). */
    int (*check_fd_free)(RlLoop *loop, int fd);
    /* Before each wait, outside any callback; never raises.  Called only
     * while loop->before_wait_wanted > 0, which a part increments while it
     * has such work (and must then return at once when it has none). */
    void (*before_wait)(RlLoop *loop);
} rl_loop_part;

/* module.c: every part, NULL-terminated, in init order. */
extern const rl_loop_part *const rl_loop_parts[];

/* loop.c: rl_loop_part.check_fd_free of every part. */
int rl_loop_check_fd_free(RlLoop *loop, int fd);

/* errors.c */
/* Set an OSError (the right subclass) for a negative errno; returns NULL. */
PyObject *rl_raise_errno(int neg_errno);
PyObject *rl_raise_errno_msg(int neg_errno, const char *msg);

#endif /* RL_INTERNAL_H */
