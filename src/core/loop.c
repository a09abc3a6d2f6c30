/* loop.c -- ringloop._core.Loop: the native event loop core.
 *
 * What lives here: the ready queue and timer heap, one iteration of the loop
 * (_run_once: drop cancelled timers, compute the timeout, wait in the
 * reactor with the GIL released, dispatch completions, move due timers to
 * the ready queue, run what is ready), call_soon/call_later/call_at and the
 * thread-safe variant, stop/close, and add_reader/add_writer.  The cold
 * policy (run_forever's setup, exception handler, executors, signals) is in
 * python/ringloop/_loop.py, which subclasses this type. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <structmember.h>

/* asyncio's constants: base_events._MIN_SCHEDULED_TIMER_HANDLES,
 * _MIN_CANCELLED_TIMER_HANDLES_FRACTION and MAXIMUM_SELECT_TIMEOUT. */
#define RL_MIN_SCHEDULED_TIMERS 100
#define RL_MAX_WAIT_SECONDS (24.0 * 3600.0)

volatile unsigned long rl_fork_generation;

static void
after_fork_child(void)
{
    rl_fork_generation++; /* async-signal-safe: a plain store */
}

static int
check_not_forked(RlLoop *loop)
{
    if (RL_UNLIKELY(loop->fork_gen != rl_fork_generation)) {
        PyErr_SetString(PyExc_RuntimeError,
                        "this event loop was created before os.fork(): it "
                        "cannot run in the child process (its io_uring ring "
                        "or epoll set is shared with the parent); close it "
                        "and create a new one");
        return -1;
    }
    return 0;
}

double
rl_loop_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The scheduler's clock: the monotonic clock, or the user's loop.time()
 * when it was replaced (self->time_patched).  0, or -1 raised. */
static int
loop_now(RlLoop *self, double *now)
{
    if (RL_LIKELY(!self->time_patched)) {
        *now = rl_loop_time();
        return 0;
    }
    PyObject *t = PyObject_CallMethod((PyObject *)self, "time", NULL);
    if (t == NULL) {
        return -1;
    }
    *now = PyFloat_AsDouble(t);
    Py_DECREF(t);
    return *now == -1.0 && PyErr_Occurred() ? -1 : 0;
}

int
rl_ready_grow(rl_ready *q)
{
    size_t ncap = q->cap ? q->cap * 2 : 256;
    rl_callback *nb = PyMem_Malloc(ncap * sizeof(rl_callback));
    if (nb == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    /* Unwrap the ring into the new buffer. */
    for (size_t i = 0; i < q->len; i++) {
        nb[i] = q->buf[(q->head + i) & (q->cap - 1)];
    }
    PyMem_Free(q->buf);
    q->buf = nb;
    q->cap = ncap;
    q->head = 0;
    return 0;
}

/* ---------------------------------------------------------------------- */
/* checks shared by the public methods */

int
rl_loop_check_closed(RlLoop *loop)
{
    if (RL_UNLIKELY(loop->closed || loop->reactor == NULL)) {
        PyErr_SetString(PyExc_RuntimeError,
                        loop->module == NULL
                            ? "Loop.__init__() was not called"
                            : "Event loop is closed");
        return -1;
    }
    return 0;
}

/* asyncio's _check_thread (debug mode only). */
static int
check_thread(RlLoop *loop)
{
    if (loop->has_thread && loop->thread_id != PyThread_get_thread_ident()) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Non-thread-safe operation invoked on an event loop "
                        "other than the current one");
        return -1;
    }
    return 0;
}

/* asyncio's _check_callback, always applied for callability (cheap), and
 * for coroutine functions in debug mode as asyncio does. */
static int
check_callback(RlLoop *loop, PyObject *cb, const char *method)
{
    if (PyCoro_CheckExact(cb)) {
        PyErr_Format(PyExc_TypeError, "coroutines cannot be used with %s()",
                     method);
        return -1;
    }
    if (RL_UNLIKELY(loop->debug)) {
        PyObject *r = PyObject_CallOneArg(
            loop->st->asyncio_iscoroutinefunction, cb);
        if (r == NULL) {
            return -1;
        }
        int is = PyObject_IsTrue(r);
        Py_DECREF(r);
        if (is < 0) {
            return -1;
        }
        if (is) {
            PyErr_Format(PyExc_TypeError,
                         "coroutines cannot be used with %s()", method);
            return -1;
        }
    }
    if (!PyCallable_Check(cb)) {
        PyErr_Format(PyExc_TypeError,
                     "a callable object was expected by %s(), got %R", method,
                     cb);
        return -1;
    }
    return 0;
}

/* The keyword part of f(callback, *args, context=None). */
static int
parse_context_kw(RlLoop *loop, PyObject *const *kwvalues, PyObject *kwnames,
                 const char *method, PyObject **context)
{
    *context = NULL;
    if (kwnames == NULL) {
        return 0;
    }
    Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *k = PyTuple_GET_ITEM(kwnames, i);
        int eq = PyUnicode_Compare(k, loop->st->str_context);
        if (eq == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (eq != 0) {
            PyErr_Format(PyExc_TypeError,
                         "%s() got an unexpected keyword argument '%S'",
                         method, k);
            return -1;
        }
        *context = kwvalues[i] == Py_None ? NULL : kwvalues[i];
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* scheduling */

/* Wake the loop for a record just queued from outside its own pass
 * (another thread, a signal handler), unless a wake-up is already on its
 * way.  wake_pending is set only here, right after a push, and cleared by
 * run_once() after its dispatch: so while it is set, either the eventfd
 * write it stands for is still to be consumed or the record is still in
 * the ready queue, and either keeps the loop from blocking (see run_once).
 * Called with the GIL and an open loop. */
static void
wake_for_queued(RlLoop *self)
{
    if (!atomic_exchange(&self->wake_pending, 1)) {
        rl_reactor_wakeup(self->reactor);
    }
}

int
rl_loop_push_handle(RlLoop *loop, RlHandle *h)
{
    return rl_ready_push(&loop->ready, rl_handle_ready_fn, (PyObject *)h,
                         NULL);
}

/* call_soon and call_soon_threadsafe share everything but the checks. */
static PyObject *
call_soon_common(RlLoop *self, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames, const char *method, int threadsafe)
{
    PyObject *context;
    if (parse_context_kw(self, args + nargs, kwnames, method, &context) < 0) {
        return NULL;
    }
    if (nargs < 1) {
        PyErr_Format(PyExc_TypeError,
                     "%s() missing 1 required positional argument: "
                     "'callback'",
                     method);
        return NULL;
    }
    if (rl_loop_check_closed(self) < 0) {
        return NULL;
    }
    if (RL_UNLIKELY(self->debug) && !threadsafe && check_thread(self) < 0) {
        return NULL;
    }
    if (check_callback(self, args[0], method) < 0) {
        return NULL;
    }
    RlHandle *h =
        rl_handle_new(self, 0, args[0], args + 1, nargs - 1, context);
    if (h == NULL) {
        return NULL;
    }
    /* Beware: the debug checks and rl_handle_new (context copy, a GC pass
     * running finalizers, the debug traceback) may run Python code, and
     * any Python code lets another thread take the GIL and close the loop,
     * which frees the ready queue and the reactor.  Check again; from here
     * to the wake-up nothing runs Python, so close() (which holds the GIL
     * throughout) cannot come in between. */
    if (RL_UNLIKELY(self->closed || self->reactor == NULL)) {
        Py_DECREF(h);
        (void)rl_loop_check_closed(self);
        return NULL;
    }
    Py_INCREF(h);
    if (rl_loop_push_handle(self, h) < 0) {
        Py_DECREF(h);
        return NULL;
    }
    if (threadsafe) {
        wake_for_queued(self);
    }
    return (PyObject *)h;
}

static PyObject *
Loop_call_soon(RlLoop *self, PyObject *const *args, Py_ssize_t nargs,
               PyObject *kwnames)
{
    return call_soon_common(self, args, nargs, kwnames,
                            "call_soon", 0);
}

static PyObject *
Loop_call_soon_threadsafe(RlLoop *self, PyObject *const *args,
                          Py_ssize_t nargs, PyObject *kwnames)
{
    return call_soon_common(self, args, nargs, kwnames,
                            "call_soon_threadsafe", 1);
}

/* when_obj (borrowed, may be NULL): `when` as asyncio would keep it. */
static PyObject *
schedule_timer(RlLoop *self, double when, PyObject *when_obj,
               PyObject *const *args, Py_ssize_t nargs, PyObject *context,
               const char *method)
{
    if (rl_loop_check_closed(self) < 0) {
        return NULL;
    }
    if (RL_UNLIKELY(self->debug) && check_thread(self) < 0) {
        return NULL;
    }
    if (check_callback(self, args[0], method) < 0) {
        return NULL;
    }
    RlHandle *h =
        rl_handle_new(self, 1, args[0], args + 1, nargs - 1, context);
    if (h == NULL) {
        return NULL;
    }
    /* Beware: as in call_soon_common, Python code may have run (and the
     * loop been closed from another thread) since the first check. */
    if (RL_UNLIKELY(self->closed || self->reactor == NULL)) {
        Py_DECREF(h);
        (void)rl_loop_check_closed(self);
        return NULL;
    }
    h->when = when;
    h->when_obj = Py_XNewRef(when_obj);
    /* A NaN deadline is due at once: asyncio runs such a timer as soon as
     * it heads its heap (3.11/3.12: max(0, nan) is 0), and a NaN key would
     * break the heap's order (nothing compares below it, so it would sit at
     * the top and hold every later timer back).  The handle keeps NaN. */
    double key = isnan(when) ? -INFINITY : when;
    if (rl_timerheap_push(&self->timers, key, self->timer_seq++, h) < 0) {
        Py_DECREF(h);
        return PyErr_NoMemory();
    }
    h->scheduled = 1;
    Py_INCREF(h); /* the heap's reference */
    return (PyObject *)h;
}

static PyObject *
Loop_call_at(RlLoop *self, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames)
{
    PyObject *context;
    if (parse_context_kw(self, args + nargs, kwnames, "call_at", &context) <
        0) {
        return NULL;
    }
    if (nargs < 2) {
        PyErr_SetString(PyExc_TypeError,
                        "call_at() takes at least 2 positional arguments "
                        "(when, callback)");
        return NULL;
    }
    if (args[0] == Py_None) {
        PyErr_SetString(PyExc_TypeError, "when cannot be None");
        return NULL;
    }
    double when = PyFloat_AsDouble(args[0]);
    if (when == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    return schedule_timer(self, when, args[0], args + 1, nargs - 1, context,
                          "call_at");
}

static PyObject *
Loop_call_later(RlLoop *self, PyObject *const *args, Py_ssize_t nargs,
                PyObject *kwnames)
{
    PyObject *context;
    if (parse_context_kw(self, args + nargs, kwnames, "call_later",
                         &context) < 0) {
        return NULL;
    }
    if (nargs < 2) {
        PyErr_SetString(PyExc_TypeError,
                        "call_later() takes at least 2 positional arguments "
                        "(delay, callback)");
        return NULL;
    }
    if (args[0] == Py_None) {
        PyErr_SetString(PyExc_TypeError, "delay must not be None");
        return NULL;
    }
    PyObject *delay_obj = args[0];
    if (PyFloat_CheckExact(delay_obj) || PyLong_CheckExact(delay_obj)) {
        /* the common case: when is a float, made only if asked for */
        double delay = PyFloat_AsDouble(delay_obj);
        if (delay == -1.0 && PyErr_Occurred()) {
            return NULL;
        }
        double now;
        if (loop_now(self, &now) < 0) {
            return NULL;
        }
        return schedule_timer(self, now + delay, NULL, args + 1,
                              nargs - 1, context, "call_at");
    }
    /* asyncio's self.time() + delay, whatever delay is (the sum may be
     * another type, or fail as asyncio's does) */
    double now_d;
    if (loop_now(self, &now_d) < 0) {
        return NULL;
    }
    PyObject *now = PyFloat_FromDouble(now_d);
    if (now == NULL) {
        return NULL;
    }
    PyObject *when_obj = PyNumber_Add(now, delay_obj);
    Py_DECREF(now);
    if (when_obj == NULL) {
        return NULL;
    }
    double when = PyFloat_AsDouble(when_obj);
    if (when == -1.0 && PyErr_Occurred()) {
        Py_DECREF(when_obj);
        return NULL;
    }
    PyObject *h = schedule_timer(self, when, when_obj, args + 1, nargs - 1,
                                 context, "call_at");
    Py_DECREF(when_obj);
    return h;
}

/* _add_callback(handle): asyncio's name; schedules an existing Handle (the
 * signal machinery reuses one Handle per signal). */
static PyObject *
Loop__add_callback(RlLoop *self, PyObject *handle)
{
    if (!PyObject_TypeCheck(handle, self->st->HandleType)) {
        PyErr_SetString(PyExc_TypeError, "a ringloop Handle was expected");
        return NULL;
    }
    if (rl_loop_check_closed(self) < 0) {
        return NULL;
    }
    if (!((RlHandle *)handle)->cancelled) {
        if (rl_loop_push_handle(self, (RlHandle *)Py_NewRef(handle)) < 0) {
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

static PyObject *
Loop__add_callback_signalsafe(RlLoop *self, PyObject *handle)
{
    PyObject *r = Loop__add_callback(self, handle);
    /* A cancelled handle is not queued: then nothing needs a wake-up, and
     * the flag must not claim one (see wake_for_queued). */
    if (r != NULL && !((RlHandle *)handle)->cancelled) {
        wake_for_queued(self);
    }
    return r;
}

/* _make_handle(callback, *args): a Handle that is not scheduled (one per
 * signal handler, scheduled each time the signal arrives). */
static PyObject *
Loop__make_handle(RlLoop *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "_make_handle() needs a callback");
        return NULL;
    }
    if (rl_loop_check_closed(self) < 0) {
        return NULL;
    }
    return (PyObject *)rl_handle_new(self, 0, args[0], args + 1, nargs - 1,
                                     NULL);
}

/* A bare wake-up (asyncio's name): one eventfd write, always.  It queues
 * nothing, so it leaves wake_pending alone: set without a queued record,
 * the flag would outlive the write once a dispatch consumed it. */
static PyObject *
Loop__write_to_self(RlLoop *self, PyObject *Py_UNUSED(ignored))
{
    if (self->reactor != NULL && !self->closed) {
        rl_reactor_wakeup(self->reactor);
    }
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------------- */
/* one iteration */

static int
drop_cancelled_timer(void *data, void *arg)
{
    RlHandle *h = data;
    (void)arg;
    if (h->cancelled) {
        h->scheduled = 0;
        Py_DECREF(h);
        return 1;
    }
    return 0;
}

static void
clean_timers(RlLoop *self)
{
    rl_timerheap *th = &self->timers;
    if (th->len > RL_MIN_SCHEDULED_TIMERS &&
        (size_t)self->timers_cancelled * 2 > th->len) {
        rl_timerheap_filter(th, drop_cancelled_timer, NULL);
        self->timers_cancelled = 0;
        return;
    }
    while (th->len) {
        RlHandle *h = rl_timerheap_peek(th)->data;
        if (!h->cancelled) {
            break;
        }
        rl_timerheap_pop(th);
        self->timers_cancelled--;
        h->scheduled = 0;
        Py_DECREF(h);
    }
}

/* Debug mode: time every callback (Handles, Task steps and wake-ups) and
 * log the slow ones as asyncio does ("Executing <...> took 0.123 s"). */
static int
run_ready_debug(RlLoop *self, size_t ntodo)
{
    while (ntodo-- && self->ready.len) {
        rl_callback c = rl_ready_pop(&self->ready);
        PyObject *what = Py_NewRef(c.a); /* a Handle or a Task */
        int skip = c.fn == rl_handle_ready_fn && ((RlHandle *)c.a)->cancelled;
        double t0 = rl_loop_time();
        int rc = c.fn(self, c.a, c.b);
        double dt = rl_loop_time() - t0;
        if (rc == 0 && !skip && dt >= self->slow_callback_duration) {
            PyObject *r = PyObject_CallFunction(self->st->hook_slow_cb, "OOd",
                                                self, what, dt);
            if (r == NULL) {
                rc = -1;
            }
            Py_XDECREF(r);
        }
        Py_DECREF(what);
        if (rc < 0) {
            return -1;
        }
    }
    return 0;
}

#if RL_NAN_DEADLINE_RAISES
/* 3.13's _run_once passes a NaN timeout to the selector when a NaN deadline
 * heads the heap and nothing is ready, and select() raises ValueError out of
 * run_forever().  Raise the same, but drop that timer (it is cancelled):
 * asyncio would raise again at every later run, the loop stuck for good. */
static int
raise_nan_deadline(RlLoop *self)
{
    RlHandle *h = rl_timerheap_pop(&self->timers);
    h->scheduled = 0;
    int rc = rl_handle_cancel(h);
    Py_DECREF(h);
    if (rc == 0) {
        PyErr_SetString(PyExc_ValueError,
                        "cannot convert float NaN to integer");
    }
    return -1;
}
#endif

static int
run_once(RlLoop *self)
{
    /* A signal may be pending without having interrupted anything: raised
     * by a C function a callback called directly (_thread.interrupt_main(),
     * signal.raise_signal() from C), or delivered while no bytecode ran
     * since.  asyncio's Python loop acts on it at its next bytecode; we
     * must before blocking, or it waits for the next wake-up.  Before the
     * timeout is computed: a handler may schedule callbacks (asyncio.Runner's
     * SIGINT handler does), and then the wait must not block. */
    if (PyErr_CheckSignals() < 0) {
        return -1;
    }
    clean_timers(self);
    if (RL_UNLIKELY(self->before_wait_wanted > 0)) {
        for (const rl_loop_part *const *p = rl_loop_parts; *p != NULL; p++) {
            if ((*p)->before_wait != NULL) {
                (*p)->before_wait(self); /* sockets closed under sock_* */
            }
        }
    }

    int64_t timeout_ns;
    if (self->ready.len || self->stopping) {
        timeout_ns = 0;
    }
    else if (self->timers.len) {
        const rl_timer *top = rl_timerheap_peek(&self->timers);
#if RL_NAN_DEADLINE_RAISES
        if (RL_UNLIKELY(isnan(((RlHandle *)top->data)->when))) {
            return raise_nan_deadline(self);
        }
#endif
        double now;
        if (loop_now(self, &now) < 0) {
            return -1;
        }
        double t = top->when - now;
        if (!(t > 0)) {
            timeout_ns = 0;
        }
        else {
            if (t > RL_MAX_WAIT_SECONDS) {
                t = RL_MAX_WAIT_SECONDS;
            }
            timeout_ns = (int64_t)ceil(t * 1e9);
        }
    }
    else {
        timeout_ns = -1;
    }

    int rc;
    rl_reactor *r = self->reactor;
    Py_BEGIN_ALLOW_THREADS
    rc = rl_reactor_wait(r, timeout_ns);
    Py_END_ALLOW_THREADS
    if (rc < 0 && rc != -EINTR) {
        const char *why = rl_reactor_explain(r, rc);
        if (why != NULL) {
            rl_raise_errno_msg(rc, why);
        }
        else {
            rl_raise_errno(rc);
        }
        return -1;
    }
    /* Run Python's signal handlers now, not only on -EINTR: a signal that
     * lands while completions are also ready ends the wait normally.  Cheap
     * (one flag read) when none is pending.  KeyboardInterrupt leaves the
     * loop from here, as it leaves select() in asyncio. */
    if (PyErr_CheckSignals() < 0) {
        return -1;
    }
    rl_reactor_dispatch(r);
    /* Clear wake_pending (see wake_for_queued) here, after the dispatch:
     * the reactor consumes wake-ups there (io_uring reaps the eventfd
     * poll's completion, epoll reads the eventfd).  Cleared at the end of
     * the wait, as it was, a signal handler run above that posts a record
     * (asyncio.Runner's SIGINT handler calls call_soon_threadsafe()) set
     * the flag and wrote, the dispatch consumed the write, the record ran
     * in this pass, and the flag stayed set through the next blocking
     * wait: every later call_soon_threadsafe() skipped its write and the
     * loop slept with callbacks ready.  A record queued before this point
     * is seen by the next timeout; a call after it writes (at worst one
     * spurious wake-up).  The early returns above leave the flag set: no
     * dispatch ran since it was last cleared, so its write is pending. */
    atomic_store(&self->wake_pending, 0);
    if (RL_UNLIKELY(PyErr_Occurred())) {
        return -1;
    }

    /* Timers due now (within the clock's resolution) join the ready
     * queue, after the I/O callbacks of this iteration. */
    if (self->timers.len) {
        double end;
        if (loop_now(self, &end) < 0) {
            return -1;
        }
        end += self->clock_resolution;
        while (self->timers.len) {
            const rl_timer *t = rl_timerheap_peek(&self->timers);
            if (!(t->when < end)) {
                break;
            }
            RlHandle *h = rl_timerheap_pop(&self->timers);
            h->scheduled = 0;
            if (h->cancelled) {
                self->timers_cancelled--;
                Py_DECREF(h);
                continue;
            }
            if (rl_loop_push_handle(self, h) < 0) {
                return -1;
            }
        }
    }

    /* Run what was ready when this pass started; what those callbacks
     * schedule runs in the next iteration, after another poll. */
    size_t ntodo = self->ready.len;
    if (RL_UNLIKELY(self->debug)) {
        return run_ready_debug(self, ntodo);
    }
    while (ntodo-- && self->ready.len) {
        rl_callback c = rl_ready_pop(&self->ready);
        if (RL_UNLIKELY(c.fn(self, c.a, c.b) < 0)) {
            return -1;
        }
    }
    return 0;
}

static PyObject *
Loop__run_once(RlLoop *self, PyObject *Py_UNUSED(ignored))
{
    if (rl_loop_check_closed(self) < 0 || check_not_forked(self) < 0) {
        return NULL;
    }
    if (run_once(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* Iterate until stop(); run_forever's setup and cleanup are in Python. */
static PyObject *
Loop__run_until_stopped(RlLoop *self, PyObject *Py_UNUSED(ignored))
{
    if (rl_loop_check_closed(self) < 0 || check_not_forked(self) < 0) {
        return NULL;
    }
    Py_INCREF(self);
    for (;;) {
        if (run_once(self) < 0) {
            Py_DECREF(self);
            return NULL;
        }
        if (self->stopping || self->closed) {
            break;
        }
    }
    Py_DECREF(self);
    Py_RETURN_NONE;
}

static PyObject *
Loop_stop(RlLoop *self, PyObject *Py_UNUSED(ignored))
{
    self->stopping = 1;
    Py_RETURN_NONE;
}

static PyObject *
Loop_time(RlLoop *Py_UNUSED(self), PyObject *Py_UNUSED(ignored))
{
    return PyFloat_FromDouble(rl_loop_time());
}

static PyObject *
Loop_is_running(RlLoop *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->has_thread);
}

static PyObject *
Loop_is_closed(RlLoop *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->closed);
}

static PyObject *
Loop_get_debug(RlLoop *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->debug);
}

/* ---------------------------------------------------------------------- */
/* readers and writers */

static void
watch_unlink(RlLoop *loop, rl_watch *w)
{
    if (w->prev != NULL) {
        w->prev->next = w->next;
    }
    else {
        loop->watches = w->next;
    }
    if (w->next != NULL) {
        w->next->prev = w->prev;
    }
    w->next = w->prev = NULL;
}

static void
watch_cb(rl_op *op, int32_t res, uint32_t flags)
{
    (void)flags;
    rl_watch *w = (rl_watch *)op;
    RlLoop *loop = w->loop;
    if (w->handle == NULL) {
        /* Removed: this was the final completion of the cancelled poll. */
        watch_unlink(loop, w);
        PyMem_Free(w);
        return;
    }
    if (res < 0) {
        /* The poll failed (the fd went bad under us): stop watching, as
         * epoll silently forgets a closed fd.  remove_reader still works
         * and add_reader re-arms. */
        return;
    }
    if (!w->handle->cancelled) {
        if (rl_loop_push_handle(loop, (RlHandle *)Py_NewRef(w->handle)) <
            0) {
            PyErr_WriteUnraisable((PyObject *)loop);
        }
    }
    /* Re-arm now: the SQE reaches the kernel at the next wait, after the
     * callback ran, so an fd that is still ready fires again (level). */
    op->flags = RL_OPF_USER_FD;
    (void)rl_reactor_submit(loop->reactor, op);
}

/* selectors._fileobj_to_fd.  *fd is -1 (and 0 is returned) for an fd
 * number that does not fit an int: asyncio's selector takes it and epoll
 * then raises OverflowError, which the callers reproduce. */
static int
fileobj_to_fd(RlLoop *self, PyObject *fileobj, int *fd)
{
    PyObject *num;
    if (PyLong_Check(fileobj)) {
        num = Py_NewRef(fileobj);
    }
    else {
        PyObject *meth = NULL, *r = NULL;
        if (rl_getattr_optional(fileobj, self->st->str_fileno, &meth) < 0) {
            return -1;
        }
        if (meth != NULL) {
            r = PyObject_CallNoArgs(meth);
            Py_DECREF(meth);
            if (r != NULL) {
                PyObject *n = PyNumber_Long(r);
                Py_DECREF(r);
                r = n;
            }
        }
        if (r == NULL) {
            if (meth != NULL && !PyErr_ExceptionMatches(PyExc_TypeError) &&
                !PyErr_ExceptionMatches(PyExc_ValueError) &&
                !PyErr_ExceptionMatches(PyExc_AttributeError)) {
                return -1;
            }
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "Invalid file object: %R",
                         fileobj);
            return -1;
        }
        num = r;
    }
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(num, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        Py_DECREF(num);
        return -1;
    }
    if (overflow < 0 || (overflow == 0 && v < 0)) {
        PyErr_Format(PyExc_ValueError, "Invalid file descriptor: %S", num);
        Py_DECREF(num);
        return -1;
    }
    Py_DECREF(num);
    *fd = (overflow > 0 || v > INT_MAX) ? -1 : (int)v;
    return 0;
}

/* The slot of fd, or NULL if no fd of its page is watched. */
static rl_fdslot *
fd_slot(RlLoop *self, int fd)
{
    size_t pi = (size_t)fd >> RL_FDPAGE_SHIFT;
    if (pi >= self->nfdpages || self->fdpages[pi] == NULL) {
        return NULL;
    }
    return &self->fdpages[pi]->slot[fd & (RL_FDPAGE_SLOTS - 1)];
}

static rl_watch *
fd_watch(RlLoop *self, int fd, int dir)
{
    rl_fdslot *sl = fd_slot(self, fd);
    return sl != NULL ? sl->w[dir] : NULL;
}

/* Make room for fd's slot (the directory grows geometrically, the page is
 * allocated); -1 with MemoryError.  No Python code runs. */
static int
fd_slot_reserve(RlLoop *self, int fd)
{
    size_t pi = (size_t)fd >> RL_FDPAGE_SHIFT;
    if (pi >= self->nfdpages) {
        size_t n = self->nfdpages ? self->nfdpages : 4;
        while (n <= pi) {
            n *= 2;
        }
        rl_fdpage **nd = PyMem_Realloc(self->fdpages, n * sizeof(*nd));
        if (nd == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memset(nd + self->nfdpages, 0, (n - self->nfdpages) * sizeof(*nd));
        self->fdpages = nd;
        self->nfdpages = n;
    }
    if (self->fdpages[pi] == NULL) {
        self->fdpages[pi] = PyMem_Calloc(1, sizeof(rl_fdpage));
        if (self->fdpages[pi] == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    return 0;
}

/* Set fd's watch for dir (its page must exist); a page left empty is
 * freed. */
static void
fd_slot_set(RlLoop *self, int fd, int dir, rl_watch *w)
{
    size_t pi = (size_t)fd >> RL_FDPAGE_SHIFT;
    rl_fdpage *pg = self->fdpages[pi];
    rl_watch **sl = &pg->slot[fd & (RL_FDPAGE_SLOTS - 1)].w[dir];
    if (*sl == NULL && w != NULL) {
        pg->used++;
    }
    else if (*sl != NULL && w == NULL) {
        pg->used--;
    }
    *sl = w;
    if (pg->used == 0) {
        PyMem_Free(pg);
        self->fdpages[pi] = NULL;
    }
}

static void
fd_table_free(RlLoop *self)
{
    for (size_t i = 0; i < self->nfdpages; i++) {
        PyMem_Free(self->fdpages[i]);
    }
    PyMem_Free(self->fdpages);
    self->fdpages = NULL;
    self->nfdpages = 0;
}

static size_t
fd_table_bytes(RlLoop *self)
{
    size_t n = self->nfdpages * sizeof(rl_fdpage *);
    for (size_t i = 0; i < self->nfdpages; i++) {
        if (self->fdpages[i] != NULL) {
            n += sizeof(rl_fdpage);
        }
    }
    return n;
}

static PyObject *
add_watch(RlLoop *self, PyObject *const *args, Py_ssize_t nargs, int dir)
{
    const char *method = dir ? "add_writer" : "add_reader";
    int fd;
    if (nargs < 2) {
        PyErr_Format(PyExc_TypeError,
                     "%s() takes at least 2 positional arguments "
                     "(fd, callback)",
                     method);
        return NULL;
    }
    if (fileobj_to_fd(self, args[0], &fd) < 0) {
        return NULL;
    }
    if (fd >= 0 && rl_loop_check_fd_free(self, fd) < 0) {
        return NULL;
    }
    if (rl_loop_check_closed(self) < 0) {
        return NULL;
    }
    if (fd < 0) {
        /* what epoll.register() raises for such a number */
        PyErr_SetString(PyExc_OverflowError,
                        "Python int too large to convert to C int");
        return NULL;
    }
    RlHandle *h = rl_handle_new(self, 0, args[1], args + 2, nargs - 2, NULL);
    if (h == NULL) {
        return NULL;
    }
    /* Beware: rl_handle_new may have run Python code (context copy, GC),
     * which may have closed the loop or changed the watches: look now, and
     * run no Python code until the table is consistent again. */
    if (RL_UNLIKELY(self->closed || self->reactor == NULL)) {
        Py_DECREF(h);
        (void)rl_loop_check_closed(self);
        return NULL;
    }
    rl_watch *w = fd_watch(self, fd, dir);
    if (w != NULL) {
        /* Replace the callback, as asyncio does; the poll stays armed (and
         * the object first given stays the one remove_*() knows, as
         * asyncio's selector key keeps it). */
        RlHandle *old = w->handle;
        w->handle = h;
        int err = 0;
        if (w->op.state == RL_OPS_IDLE) {
            w->op.flags = RL_OPF_CHECK_FD | RL_OPF_USER_FD;
            err = rl_reactor_submit(self->reactor, &w->op);
        }
        int rc = rl_handle_cancel(old);
        Py_DECREF(old);
        if (err < 0) {
            return rl_raise_errno(err);
        }
        if (rc < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    /* Check that fd is open before it takes room in the table: asyncio's
     * epoll_ctl fails with EBADF for any number, 2**24 or 2**31 - 1, and
     * so must we, without growing anything first. */
    if (fcntl(fd, F_GETFD) < 0) {
        int e = errno;
        Py_DECREF(h);
        return rl_raise_errno(-e);
    }
    if (fd_slot_reserve(self, fd) < 0) {
        Py_DECREF(h);
        return NULL;
    }
    w = PyMem_Calloc(1, sizeof(rl_watch));
    if (w == NULL) {
        fd_slot_set(self, fd, dir, NULL); /* frees a page made for it */
        Py_DECREF(h);
        return PyErr_NoMemory();
    }
    w->op.cb = watch_cb;
    w->op.fd = fd;
    w->op.kind = RL_OP_POLL;
    /* The user owns the fd and may close it without remove_reader(): the
     * reactor must not keep its file open (reactor.h). */
    w->op.flags = RL_OPF_CHECK_FD | RL_OPF_USER_FD;
    w->op.u.poll.events = dir ? POLLOUT : POLLIN;
    w->loop = self;
    w->handle = h;
    w->fd = fd;
    w->dir = dir;
    int err = rl_reactor_submit(self->reactor, &w->op);
    if (err < 0) {
        PyMem_Free(w);
        fd_slot_set(self, fd, dir, NULL);
        Py_DECREF(h);
        return rl_raise_errno(err);
    }
    w->fileobj = Py_NewRef(args[0]);
    w->next = self->watches;
    if (w->next != NULL) {
        w->next->prev = w;
    }
    self->watches = w;
    fd_slot_set(self, fd, dir, w);
    Py_RETURN_NONE;
}

/* selectors' _fileobj_lookup fallback: the fd a watch was registered
 * with for this very object (a socket closed since: fileno() is -1). */
static int
fd_of_watched_object(RlLoop *self, PyObject *fileobj)
{
    for (rl_watch *w = self->watches; w != NULL; w = w->next) {
        if (w->fileobj == fileobj && w->handle != NULL) {
            return w->fd;
        }
    }
    return -1;
}

static PyObject *
remove_watch(RlLoop *self, PyObject *fileobj, int dir)
{
    int fd;
    if (fileobj_to_fd(self, fileobj, &fd) < 0) {
        if (!PyErr_ExceptionMatches(PyExc_ValueError) ||
            (fd = fd_of_watched_object(self, fileobj)) < 0) {
            return NULL;
        }
        PyErr_Clear();
    }
    else if (fd >= 0 && rl_loop_check_fd_free(self, fd) < 0) {
        return NULL;
    }
    if (self->closed || self->reactor == NULL) {
        Py_RETURN_FALSE;
    }
    rl_watch *w = fd < 0 ? NULL : fd_watch(self, fd, dir);
    if (w == NULL) {
        Py_RETURN_FALSE;
    }
    fd_slot_set(self, fd, dir, NULL);
    RlHandle *h = w->handle;
    PyObject *fobj = w->fileobj;
    w->handle = NULL;
    w->fileobj = NULL;
    int rc = rl_reactor_cancel(self->reactor, &w->op);
    if (rc == -ENOENT) {
        /* Not armed (its poll had failed): nothing will come back. */
        watch_unlink(self, w);
        PyMem_Free(w);
    }
    /* else watch_cb frees it at the final completion */
    rc = rl_handle_cancel(h);
    Py_DECREF(h);
    Py_XDECREF(fobj);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_TRUE;
}

static PyObject *
Loop_add_reader(RlLoop *self, PyObject *const *args, Py_ssize_t nargs)
{
    return add_watch(self, args, nargs, 0);
}

static PyObject *
Loop_add_writer(RlLoop *self, PyObject *const *args, Py_ssize_t nargs)
{
    return add_watch(self, args, nargs, 1);
}

static PyObject *
Loop_remove_reader(RlLoop *self, PyObject *fd)
{
    return remove_watch(self, fd, 0);
}

static PyObject *
Loop_remove_writer(RlLoop *self, PyObject *fd)
{
    return remove_watch(self, fd, 1);
}

/* ---------------------------------------------------------------------- */
/* futures (asyncio's until ringloop's native Future lands) */

static PyObject *
Loop_create_future(RlLoop *self, PyObject *Py_UNUSED(ignored))
{
    return rl_future_new(self);
}

/* create_task(coro, *, name=None, context=None) */
static PyObject *
Loop_create_task(RlLoop *self, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames)
{
    rl_state *st = self->st;
    PyObject *coro, *name = Py_None, *context = Py_None;
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError,
                     "create_task() takes exactly 1 positional argument "
                     "(%zd given)",
                     nargs);
        return NULL;
    }
    coro = args[0];
    if (kwnames != NULL) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            PyObject *k = PyTuple_GET_ITEM(kwnames, i);
            if (PyUnicode_CompareWithASCIIString(k, "name") == 0) {
                name = args[nargs + i];
            }
            else if (PyUnicode_CompareWithASCIIString(k, "context") == 0) {
                context = args[nargs + i];
            }
            else {
                PyErr_Format(PyExc_TypeError,
                             "create_task() got an unexpected keyword "
                             "argument '%S'",
                             k);
                return NULL;
            }
        }
    }
    if (rl_loop_check_closed(self) < 0) {
        return NULL;
    }
    if (self->task_factory == NULL) {
        if (self->native_tasks) {
            return rl_task_new(st, self, coro, name, context);
        }
        PyObject *kw = Py_BuildValue("{sOsOsO}", "loop", (PyObject *)self,
                                     "name", name, "context", context);
        if (kw == NULL) {
            return NULL;
        }
        PyObject *a = PyTuple_Pack(1, coro);
        PyObject *t = a ? PyObject_Call(st->asyncio_Task, a, kw) : NULL;
        Py_XDECREF(a);
        Py_DECREF(kw);
        return t;
    }
    PyObject *task;
    PyObject *factory = Py_NewRef(self->task_factory);
    if (context == Py_None) {
        /* the legacy factory signature when no context is needed */
        task = PyObject_CallFunctionObjArgs(factory, (PyObject *)self, coro,
                                            NULL);
    }
    else {
        PyObject *fargs[3] = {(PyObject *)self, coro, context};
        PyObject *kwn = PyTuple_Pack(1, st->str_context);
        task = kwn ? PyObject_Vectorcall(factory, fargs, 2, kwn) : NULL;
        Py_XDECREF(kwn);
    }
    Py_DECREF(factory);
    if (task == NULL || name == Py_None) {
        return task;
    }
    PyObject *r = PyObject_CallMethod(task, "set_name", "O", name);
    if (r == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
            Py_DECREF(task);
            return NULL;
        }
        /* asyncio (3.11/3.12) tolerates factories whose tasks lack it */
        PyErr_Clear();
        if (PyErr_WarnEx(PyExc_DeprecationWarning,
                         "Task.set_name() was added in Python 3.8, the "
                         "method support will be mandatory for third-party "
                         "task implementations since 3.13.",
                         1) < 0) {
            Py_DECREF(task);
            return NULL;
        }
    }
    Py_XDECREF(r);
    return task;
}

static PyObject *
Loop_set_task_factory(RlLoop *self, PyObject *factory)
{
    if (factory != Py_None && !PyCallable_Check(factory)) {
        PyErr_SetString(PyExc_TypeError,
                        "task factory must be a callable or None");
        return NULL;
    }
    Py_XSETREF(self->task_factory,
               factory == Py_None ? NULL : Py_NewRef(factory));
    Py_RETURN_NONE;
}

static PyObject *
Loop_get_task_factory(RlLoop *self, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(self->task_factory ? self->task_factory : Py_None);
}

static PyObject *
Loop_get_task_factory_attr(RlLoop *self, void *Py_UNUSED(c))
{
    return Py_NewRef(self->task_factory ? self->task_factory : Py_None);
}

static int
Loop_set_task_factory_attr(RlLoop *self, PyObject *v, void *Py_UNUSED(c))
{
    Py_XSETREF(self->task_factory,
               (v == NULL || v == Py_None) ? NULL : Py_NewRef(v));
    return 0;
}

static PyObject *
Loop_get_native_tasks(RlLoop *self, void *Py_UNUSED(c))
{
    return PyBool_FromLong(self->native_tasks);
}

/* ---------------------------------------------------------------------- */
/* lifecycle */

/* Drop everything the loop holds for the kernel and the queues.  Safe to
 * call more than once. */
static void
loop_release_core(RlLoop *self)
{
    /* 1. the kernel forgets every op; no callback comes any more */
    if (self->reactor != NULL) {
        rl_reactor_destroy(self->reactor);
        self->reactor = NULL;
        for (const rl_loop_part *const *p = rl_loop_parts; *p != NULL;
             p++) {
            if ((*p)->loop_after_reactor_destroy != NULL) {
                (*p)->loop_after_reactor_destroy(self);
            }
        }
    }
    /* 2. the watches (their ops were the kernel's until now) */
    while (self->watches != NULL) {
        rl_watch *w = self->watches;
        watch_unlink(self, w);
        RlHandle *h = w->handle;
        PyObject *fobj = w->fileobj;
        w->handle = NULL;
        w->fileobj = NULL;
        PyMem_Free(w);
        Py_XDECREF(h);
        Py_XDECREF(fobj);
    }
    fd_table_free(self);
    /* 3. queued callbacks are dropped, not run (asyncio clears _ready) */
    while (self->ready.len) {
        rl_callback c = rl_ready_pop(&self->ready);
        Py_XDECREF(c.a);
        Py_XDECREF(c.b);
    }
    PyMem_Free(self->ready.buf);
    self->ready.buf = NULL;
    self->ready.cap = 0;
    self->ready.head = 0;
    /* 4. timers */
    while (self->timers.len) {
        RlHandle *h = rl_timerheap_pop(&self->timers);
        h->scheduled = 0;
        Py_DECREF(h);
    }
    rl_timerheap_free(&self->timers);
    self->timers_cancelled = 0;
    rl_handle_freelist_clear(self);
}

static PyObject *
Loop__close(RlLoop *self, PyObject *Py_UNUSED(ignored))
{
    if (self->has_thread) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Cannot close a running event loop");
        return NULL;
    }
    if (self->closed) {
        Py_RETURN_NONE;
    }
    self->closed = 1;
    loop_release_core(self);
    Py_RETURN_NONE;
}

/* 1 if type(loop).time is not the C Loop.time (a subclass overrides it). */
static int
time_overridden_by_type(RlLoop *self)
{
    if (self->st == NULL) {
        return 0; /* __init__ has not run: Loop_init asks again */
    }
    PyObject *mine = PyObject_GetAttrString((PyObject *)self->st->LoopType,
                                            "time");
    PyObject *theirs = PyObject_GetAttrString((PyObject *)Py_TYPE(self),
                                              "time");
    int r = mine != NULL && theirs != NULL && mine != theirs;
    Py_XDECREF(mine);
    Py_XDECREF(theirs);
    if (PyErr_Occurred()) {
        PyErr_Clear();
    }
    return r;
}

/* A loop is "closed" until __init__ succeeds, so that a half-built one is
 * never used, closed twice or warned about. */
static PyObject *
Loop_new(PyTypeObject *tp, PyObject *args, PyObject *kwds)
{
    RlLoop *self = (RlLoop *)PyType_GenericNew(tp, args, kwds);
    if (self == NULL) {
        return NULL;
    }
    self->closed = 1;
    /* Every part's state exists as long as the object does: methods of a
     * loop whose __init__ failed or never ran find it. */
    for (const rl_loop_part *const *p = rl_loop_parts; *p != NULL; p++) {
        if ((*p)->loop_new != NULL && (*p)->loop_new(self) < 0) {
            Py_DECREF(self);
            return NULL;
        }
    }
    return (PyObject *)self;
}

static int
Loop_init(RlLoop *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"backend", "native_tasks", NULL};
    const char *backend = "auto";
    int native_tasks = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|sp:Loop", kwlist,
                                     &backend, &native_tasks)) {
        return -1;
    }
    if (self->module != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Loop is already initialized");
        return -1;
    }
    int want_uring = 0, want_epoll = 0;
    if (strcmp(backend, "auto") == 0) {
        want_uring = want_epoll = 1;
    }
    else if (strcmp(backend, "io_uring") == 0) {
        want_uring = 1;
    }
    else if (strcmp(backend, "epoll") == 0) {
        want_epoll = 1;
    }
    else {
        PyErr_Format(PyExc_ValueError,
                     "backend must be 'auto', 'io_uring' or 'epoll', not %R",
                     PyTuple_GET_SIZE(args) ? PyTuple_GET_ITEM(args, 0)
                                            : Py_None);
        return -1;
    }

    PyObject *module = PyType_GetModuleByDef(Py_TYPE(self), &rl_module_def);
    if (module == NULL) {
        return -1;
    }
    self->module = Py_NewRef(module);
    self->st = PyModule_GetState(module);

    int err = 0;
    char why[200] = "";
    rl_reactor *r = NULL;
    if (want_uring) {
        r = rl_uring_ops.create(&err, why, sizeof(why));
        if (r == NULL && !want_epoll) {
            char msg[300];
            snprintf(msg, sizeof(msg), "io_uring backend unavailable: %s",
                     why[0] ? why : strerror(-err));
            rl_raise_errno_msg(err ? err : -ENOSYS, msg);
            return -1;
        }
        if (r == NULL) {
            snprintf(self->backend_fallback, sizeof(self->backend_fallback),
                     "%s", why[0] ? why : strerror(-err));
        }
    }
    if (r == NULL && want_epoll) {
        why[0] = 0;
        r = rl_epoll_ops.create(&err, why, sizeof(why));
        if (r == NULL) {
            char msg[300];
            snprintf(msg, sizeof(msg), "epoll backend unavailable: %s",
                     why[0] ? why : strerror(-err));
            rl_raise_errno_msg(err ? err : -ENOSYS, msg);
            return -1;
        }
    }
    self->reactor = r;
    self->closed = 0;
    self->native_tasks = (char)native_tasks;
    self->fork_gen = rl_fork_generation;
    rl_timerheap_init(&self->timers);
    struct timespec res;
    self->clock_resolution =
        clock_getres(CLOCK_MONOTONIC, &res) == 0
            ? (double)res.tv_sec + (double)res.tv_nsec * 1e-9
            : 1e-9;
    self->slow_callback_duration = 0.1;
    atomic_init(&self->wake_pending, 0);
    self->time_patched = (char)time_overridden_by_type(self);
    return 0;
}

static int
Loop_traverse(RlLoop *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->module);
    Py_VISIT(self->current_handle);
    Py_VISIT(self->task_factory);
    for (size_t i = 0; i < self->ready.len; i++) {
        rl_callback *c =
            &self->ready.buf[(self->ready.head + i) & (self->ready.cap - 1)];
        Py_VISIT(c->a);
        Py_VISIT(c->b);
    }
    for (size_t i = 0; i < self->timers.len; i++) {
        Py_VISIT((PyObject *)self->timers.items[i].data);
    }
    for (rl_watch *w = self->watches; w != NULL; w = w->next) {
        Py_VISIT((PyObject *)w->handle);
        Py_VISIT(w->fileobj);
    }
    /* The free lists' handles are untracked (handle.c): not visited. */
    for (const rl_loop_part *const *p = rl_loop_parts; *p != NULL; p++) {
        if ((*p)->loop_traverse != NULL &&
            (*p)->loop_traverse(self, visit, arg) < 0) {
            return -1;
        }
    }
    return 0;
}

static int
Loop_clear(RlLoop *self)
{
    /* Break cycles through queued callbacks: the loop is unreachable, so
     * nothing can run them any more. */
    self->closed = 1;
    loop_release_core(self);
    Py_CLEAR(self->current_handle);
    Py_CLEAR(self->task_factory);
    return 0;
}

static void
Loop_dealloc(RlLoop *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    /* closed = 1 first: handles released below must not go to the free
     * list we are about to drop. */
    self->closed = 1;
    loop_release_core(self);
    Py_CLEAR(self->current_handle);
    Py_CLEAR(self->task_factory);
    for (const rl_loop_part *const *p = rl_loop_parts; *p != NULL; p++) {
        if ((*p)->loop_free != NULL) {
            (*p)->loop_free(self);
        }
    }
    Py_CLEAR(self->module);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* ---------------------------------------------------------------------- */
/* attributes */

static PyObject *
Loop_get_backend(RlLoop *self, void *Py_UNUSED(c))
{
    if (self->reactor == NULL) {
        Py_RETURN_NONE;
    }
    return PyUnicode_FromString(self->reactor->ops->name);
}

static PyObject *
Loop_get_backend_fallback(RlLoop *self, void *Py_UNUSED(c))
{
    if (self->backend_fallback[0] == 0) {
        Py_RETURN_NONE;
    }
    return PyUnicode_FromString(self->backend_fallback);
}

static PyObject *
Loop_get_thread_id(RlLoop *self, void *Py_UNUSED(c))
{
    if (!self->has_thread) {
        Py_RETURN_NONE;
    }
    return PyLong_FromUnsignedLong(self->thread_id);
}

static int
Loop_set_thread_id(RlLoop *self, PyObject *v, void *Py_UNUSED(c))
{
    if (v == NULL || v == Py_None) {
        self->has_thread = 0;
        self->thread_id = 0;
        return 0;
    }
    unsigned long id = PyLong_AsUnsignedLong(v);
    if (id == (unsigned long)-1 && PyErr_Occurred()) {
        return -1;
    }
    self->thread_id = id;
    self->has_thread = 1;
    return 0;
}

static PyObject *
Loop_get_debug_attr(RlLoop *self, void *Py_UNUSED(c))
{
    return PyBool_FromLong(self->debug);
}

static int
Loop_set_debug_attr(RlLoop *self, PyObject *v, void *Py_UNUSED(c))
{
    int b = v == NULL ? 0 : PyObject_IsTrue(v);
    if (b < 0) {
        return -1;
    }
    self->debug = (char)b;
    return 0;
}

static PyObject *
Loop_get_stopping(RlLoop *self, void *Py_UNUSED(c))
{
    return PyBool_FromLong(self->stopping);
}

static int
Loop_set_stopping(RlLoop *self, PyObject *v, void *Py_UNUSED(c))
{
    int b = v == NULL ? 0 : PyObject_IsTrue(v);
    if (b < 0) {
        return -1;
    }
    self->stopping = (char)b;
    return 0;
}

static PyObject *
Loop_get_closed(RlLoop *self, void *Py_UNUSED(c))
{
    return PyBool_FromLong(self->closed);
}

static PyObject *
Loop_get_current_handle(RlLoop *self, void *Py_UNUSED(c))
{
    return Py_NewRef(self->current_handle ? self->current_handle : Py_None);
}

static PyObject *
Loop_get_slow(RlLoop *self, void *Py_UNUSED(c))
{
    return PyFloat_FromDouble(self->slow_callback_duration);
}

static int
Loop_set_slow(RlLoop *self, PyObject *v, void *Py_UNUSED(c))
{
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete attribute");
        return -1;
    }
    double d = PyFloat_AsDouble(v);
    if (d == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    self->slow_callback_duration = d;
    return 0;
}

static PyObject *
Loop_get_clock_resolution(RlLoop *self, void *Py_UNUSED(c))
{
    return PyFloat_FromDouble(self->clock_resolution);
}

static PyObject *
Loop_get_timer_cancelled_count(RlLoop *self, void *Py_UNUSED(c))
{
    return PyLong_FromSsize_t(self->timers_cancelled);
}

/* Internal counters for tests and leak checks. */
static PyObject *
Loop__debug_counters(RlLoop *self, PyObject *Py_UNUSED(ignored))
{
    size_t nwatch = 0;
    for (rl_watch *w = self->watches; w != NULL; w = w->next) {
        nwatch++;
    }
    return Py_BuildValue(
        "{snsnsnsnsnsnsnsn}", "wake_pending",
        (Py_ssize_t)atomic_load(&self->wake_pending), "fd_table_bytes",
        (Py_ssize_t)fd_table_bytes(self), "ready",
        (Py_ssize_t)self->ready.len, "timers",
        (Py_ssize_t)self->timers.len, "timers_cancelled",
        self->timers_cancelled, "watches", (Py_ssize_t)nwatch, "ops_inflight",
        (Py_ssize_t)(self->reactor ? self->reactor->ops->inflight(
                                         self->reactor)
                                   : 0),
        "free_handles", (Py_ssize_t)(self->nfree[0] + self->nfree[1]));
}

#define FASTKW (METH_FASTCALL | METH_KEYWORDS)

static PyMethodDef Loop_methods[] = {
    {"time", (PyCFunction)Loop_time, METH_NOARGS,
     "time($self, /)\n--\n\nThe loop's clock: time.monotonic()."},
    {"call_soon", RL_CFUNC(Loop_call_soon), FASTKW,
     "call_soon($self, callback, /, *args, context=None)\n--\n\n"
     "Arrange for callback(*args) to be called soon."},
    {"call_soon_threadsafe", RL_CFUNC(Loop_call_soon_threadsafe), FASTKW,
     "call_soon_threadsafe($self, callback, /, *args, context=None)\n--\n\n"
     "call_soon() that may be called from any thread."},
    {"call_later", RL_CFUNC(Loop_call_later), FASTKW,
     "call_later($self, delay, callback, /, *args, context=None)\n--\n\n"
     "Arrange for callback(*args) to be called after delay seconds."},
    {"call_at", RL_CFUNC(Loop_call_at), FASTKW,
     "call_at($self, when, callback, /, *args, context=None)\n--\n\n"
     "Arrange for callback(*args) to be called at loop time `when`."},
    {"_add_callback", (PyCFunction)Loop__add_callback, METH_O, NULL},
    {"_add_callback_signalsafe", (PyCFunction)Loop__add_callback_signalsafe,
     METH_O, NULL},
    {"_write_to_self", (PyCFunction)Loop__write_to_self, METH_NOARGS, NULL},
    {"_make_handle", RL_CFUNC(Loop__make_handle), METH_FASTCALL, NULL},
    {"stop", (PyCFunction)Loop_stop, METH_NOARGS,
     "stop($self, /)\n--\n\nStop after the current iteration."},
    {"is_running", (PyCFunction)Loop_is_running, METH_NOARGS, NULL},
    {"is_closed", (PyCFunction)Loop_is_closed, METH_NOARGS, NULL},
    {"get_debug", (PyCFunction)Loop_get_debug, METH_NOARGS, NULL},
    {"_run_once", (PyCFunction)Loop__run_once, METH_NOARGS, NULL},
    {"_run_until_stopped", (PyCFunction)Loop__run_until_stopped, METH_NOARGS,
     NULL},
    {"_close", (PyCFunction)Loop__close, METH_NOARGS, NULL},
    {"add_reader", RL_CFUNC(Loop_add_reader), METH_FASTCALL,
     "add_reader($self, fd, callback, /, *args)\n--\n\n"
     "Call callback(*args) whenever fd is readable."},
    {"add_writer", RL_CFUNC(Loop_add_writer), METH_FASTCALL,
     "add_writer($self, fd, callback, /, *args)\n--\n\n"
     "Call callback(*args) whenever fd is writable."},
    {"remove_reader", (PyCFunction)Loop_remove_reader, METH_O,
     "remove_reader($self, fd, /)\n--\n\nTrue if a reader was removed."},
    {"remove_writer", (PyCFunction)Loop_remove_writer, METH_O,
     "remove_writer($self, fd, /)\n--\n\nTrue if a writer was removed."},
    {"create_future", (PyCFunction)Loop_create_future, METH_NOARGS,
     "create_future($self, /)\n--\n\nA Future attached to this loop."},
    {"create_task", RL_CFUNC(Loop_create_task), FASTKW,
     "create_task($self, coro, /, *, name=None, context=None)\n--\n\n"
     "Schedule the coroutine in a Task and return the Task."},
    {"set_task_factory", (PyCFunction)Loop_set_task_factory, METH_O,
     "set_task_factory($self, factory, /)\n--\n\n"
     "factory(loop, coro[, context=]) makes create_task's tasks; None "
     "restores the default."},
    {"get_task_factory", (PyCFunction)Loop_get_task_factory, METH_NOARGS,
     NULL},
    {"_debug_counters", (PyCFunction)Loop__debug_counters, METH_NOARGS,
     NULL},
    {NULL, NULL, 0, NULL},
};

#undef FASTKW

static PyGetSetDef Loop_getset[] = {
    {"backend", (getter)Loop_get_backend, NULL,
     "The reactor in use: 'io_uring' or 'epoll'.", NULL},
    {"_backend_fallback_reason", (getter)Loop_get_backend_fallback, NULL,
     "Why backend='auto' fell back to epoll, or None.", NULL},
    {"_thread_id", (getter)Loop_get_thread_id, (setter)Loop_set_thread_id,
     NULL, NULL},
    {"_debug", (getter)Loop_get_debug_attr, (setter)Loop_set_debug_attr, NULL,
     NULL},
    {"_stopping", (getter)Loop_get_stopping, (setter)Loop_set_stopping, NULL,
     NULL},
    {"_closed", (getter)Loop_get_closed, NULL, NULL, NULL},
    {"_current_handle", (getter)Loop_get_current_handle, NULL, NULL, NULL},
    {"slow_callback_duration", (getter)Loop_get_slow, (setter)Loop_set_slow,
     "Callbacks slower than this (seconds) are logged in debug mode.", NULL},
    {"_clock_resolution", (getter)Loop_get_clock_resolution, NULL, NULL,
     NULL},
    {"_timer_cancelled_count", (getter)Loop_get_timer_cancelled_count, NULL,
     NULL, NULL},
    {"_task_factory", (getter)Loop_get_task_factory_attr,
     (setter)Loop_set_task_factory_attr, NULL, NULL},
    {"native_tasks", (getter)Loop_get_native_tasks, NULL,
     "True if create_future/create_task make ringloop's native types.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef Loop_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(RlLoop, weakreflist),
     READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

/* Setting or deleting the instance attribute "time" switches the
 * scheduler to loop.time() (loop_now); anything else is generic. */
static int
Loop_setattro(PyObject *self, PyObject *name, PyObject *value)
{
    if (PyObject_GenericSetAttr(self, name, value) < 0) {
        return -1;
    }
    if (PyUnicode_Check(name) &&
        PyUnicode_CompareWithASCIIString(name, "time") == 0) {
        RlLoop *lp = (RlLoop *)self;
        lp->time_patched = value != NULL || time_overridden_by_type(lp);
    }
    return 0;
}

static PyType_Slot Loop_slots[] = {
    {Py_tp_setattro, Loop_setattro},
    {Py_tp_init, Loop_init},
    {Py_tp_new, Loop_new},
    {Py_tp_dealloc, Loop_dealloc},
    {Py_tp_traverse, Loop_traverse},
    {Py_tp_clear, Loop_clear},
    {Py_tp_methods, Loop_methods},
    {Py_tp_getset, Loop_getset},
    {Py_tp_members, Loop_members},
    {Py_tp_doc, "The native core of ringloop's event loop."},
    {0, NULL},
};

static PyType_Spec Loop_spec = {
    .name = "ringloop._core.Loop",
    .basicsize = sizeof(RlLoop),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = Loop_slots,
};

/* The Loop's methods: core's table and every part's (rl_loop_parts),
 * joined once into this array. */
static PyMethodDef *Loop_all_methods;

static int
join_method_tables(void)
{
    if (Loop_all_methods != NULL) {
        return 0;
    }
    size_t n = 0;
    for (PyMethodDef *m = Loop_methods; m->ml_name != NULL; m++) {
        n++;
    }
    for (const rl_loop_part *const *p = rl_loop_parts; *p != NULL; p++) {
        for (PyMethodDef *m = (*p)->methods; m && m->ml_name != NULL; m++) {
            n++;
        }
    }
    /* Never freed: the type keeps pointers into it for the process's
     * life, like a static table (shared by every interpreter). */
    PyMethodDef *all = PyMem_RawCalloc(n + 1, sizeof(PyMethodDef));
    if (all == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    n = 0;
    for (PyMethodDef *m = Loop_methods; m->ml_name != NULL; m++) {
        all[n++] = *m;
    }
    for (const rl_loop_part *const *p = rl_loop_parts; *p != NULL; p++) {
        for (PyMethodDef *m = (*p)->methods; m && m->ml_name != NULL; m++) {
            all[n++] = *m;
        }
    }
    Loop_all_methods = all;
    for (PyType_Slot *slot = Loop_slots; slot->slot != 0; slot++) {
        if (slot->slot == Py_tp_methods) {
            slot->pfunc = Loop_all_methods;
        }
    }
    return 0;
}

int
rl_loop_init_type(PyObject *module, rl_state *st)
{
    static int atfork_registered;
    if (!atfork_registered) {
        if (pthread_atfork(NULL, NULL, after_fork_child) != 0) {
            PyErr_SetString(PyExc_RuntimeError, "pthread_atfork failed");
            return -1;
        }
        atfork_registered = 1;
    }
    if (join_method_tables() < 0) {
        return -1;
    }
    st->LoopType = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &Loop_spec, NULL);
    if (st->LoopType == NULL) {
        return -1;
    }
    return PyModule_AddType(module, st->LoopType);
}

int
rl_loop_check_fd_free(RlLoop *loop, int fd)
{
    for (const rl_loop_part *const *p = rl_loop_parts; *p != NULL; p++) {
        if ((*p)->check_fd_free != NULL && (*p)->check_fd_free(loop, fd) < 0) {
            return -1;
        }
    }
    return 0;
}
