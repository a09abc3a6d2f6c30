/* future.c -- ringloop.Future: asyncio.Future's behaviour, native.
 *
 * Semantics follow asyncio/futures.py and CPython's C Future of the running
 * version (3.11-3.13): states, result/exception/cancel, callbacks scheduled
 * with the loop in registration order, cancellation messages and chaining,
 * "exception was never retrieved", __await__/__iter__ through FutureIter.
 *
 * What is different inside:
 *  - callbacks are a C array (the first one inline), and a native Task
 *    waiting on the future is an entry with ctx == NULL: waking it is a C
 *    record on the loop's ready ring, not a bound method plus a Handle;
 *  - on a ringloop loop, ordinary callbacks are scheduled as recycled
 *    Handles straight onto the ready ring (no call_soon method call);
 *  - `__class__` answers asyncio.Future (asyncio.Task for tasks), so
 *    isinstance(f, asyncio.Future) holds while type(f) stays native.  A
 *    Python subclass keeps its own __class__ (see ARCHITECTURE.md). */
#include "internal.h"

#include <structmember.h>

static inline rl_state *
fut_state_of(PyObject *self)
{
    return rl_get_state_by_type(Py_TYPE(self));
}

static int
future_ensure_alive(RlFuture *fut)
{
    if (RL_UNLIKELY(fut->fut_loop == NULL)) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Future object is not initialized.");
        return -1;
    }
    return 0;
}

static PyObject *
state_name(int state)
{
    switch (state) {
    case RL_FUT_PENDING:
        return PyUnicode_FromString("PENDING");
    case RL_FUT_CANCELLED:
        return PyUnicode_FromString("CANCELLED");
    default:
        return PyUnicode_FromString("FINISHED");
    }
}

/* ---------------------------------------------------------------------- */
/* scheduling on the future's loop */

int
rl_call_soon_on(rl_state *st, PyObject *loop, RlLoop *rloop, PyObject *fn,
                PyObject *arg, PyObject *ctx)
{
    if (rloop != NULL && !rloop->closed) {
        RlHandle *h = rl_handle_new(rloop, 0, fn, &arg, 1, ctx);
        if (h == NULL) {
            return -1;
        }
        /* Beware: rl_handle_new may run Python code (the debug traceback,
         * a GC pass running finalizers), which may close the loop or let
         * another thread take the GIL and close it: the ready ring is
         * freed then, and a handle pushed now would never run.  Check
         * again (as call_soon_common in loop.c does); from here to the
         * push nothing runs Python. */
        if (RL_UNLIKELY(rloop->closed || rloop->reactor == NULL)) {
            Py_DECREF(h);
            (void)rl_loop_check_closed(rloop);
            return -1;
        }
        return rl_loop_push_handle(rloop, h);
    }
    /* A foreign loop (or a closed ringloop loop, which then raises the
     * proper "Event loop is closed"): loop.call_soon(fn, arg, context=ctx) */
    PyObject *meth = PyObject_GetAttr(loop, st->str_call_soon);
    if (meth == NULL) {
        return -1;
    }
    PyObject *r;
    if (ctx != NULL) {
        PyObject *args[3] = {fn, arg, ctx};
        PyObject *kwn = PyTuple_Pack(1, st->str_context);
        if (kwn == NULL) {
            Py_DECREF(meth);
            return -1;
        }
        r = PyObject_Vectorcall(meth, args, 2, kwn);
        Py_DECREF(kwn);
    }
    else {
        PyObject *args[2] = {fn, arg};
        r = PyObject_Vectorcall(meth, args, 2, NULL);
    }
    Py_DECREF(meth);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* Beware: scheduling may run arbitrary code (a foreign loop's call_soon,
 * a finalizer); the callbacks are moved out of the future first. */
static int
future_schedule_callbacks(rl_state *st, RlFuture *fut)
{
    if (fut->fut_cb0.fn == NULL && fut->fut_ncbs == 0) {
        return 0;
    }
    rl_fut_cb first = fut->fut_cb0;
    rl_fut_cb *rest = fut->fut_cbs;
    uint32_t nrest = fut->fut_ncbs;
    fut->fut_cb0.fn = NULL;
    fut->fut_cb0.ctx = NULL;
    fut->fut_cbs = NULL;
    fut->fut_ncbs = 0;
    fut->fut_cbcap = 0;

    PyObject *loop = Py_NewRef(fut->fut_loop);
    RlLoop *rloop = fut->fut_rloop;
    int rc = 0;
    for (uint32_t i = 0; i <= nrest; i++) {
        rl_fut_cb cb;
        if (i == 0) {
            if (first.fn == NULL) {
                continue;
            }
            cb = first;
        }
        else {
            cb = rest[i - 1];
        }
        if (rc == 0) {
            if (cb.ctx == NULL) {
                rc = rl_task_schedule_wakeup(st, (RlTask *)cb.fn,
                                             (PyObject *)fut);
            }
            else {
                rc = rl_call_soon_on(st, loop, rloop, cb.fn, (PyObject *)fut,
                                     cb.ctx);
            }
        }
        Py_DECREF(cb.fn);
        Py_XDECREF(cb.ctx);
    }
    PyMem_Free(rest);
    Py_DECREF(loop);
    return rc;
}

/* Append a callback entry (references stolen on success). */
static int
future_push_cb(RlFuture *fut, PyObject *fn, PyObject *ctx)
{
    if (fut->fut_cb0.fn == NULL && fut->fut_ncbs == 0) {
        fut->fut_cb0.fn = fn;
        fut->fut_cb0.ctx = ctx;
        return 0;
    }
    if (fut->fut_ncbs == fut->fut_cbcap) {
        uint32_t ncap = fut->fut_cbcap ? fut->fut_cbcap * 2 : 4;
        rl_fut_cb *n = PyMem_Realloc(fut->fut_cbs, ncap * sizeof(rl_fut_cb));
        if (n == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        fut->fut_cbs = n;
        fut->fut_cbcap = ncap;
    }
    fut->fut_cbs[fut->fut_ncbs].fn = fn;
    fut->fut_cbs[fut->fut_ncbs].ctx = ctx;
    fut->fut_ncbs++;
    return 0;
}

/* ctx NULL means "native task waiter" (fn is the task): only task.c passes
 * that.  Python-level add_done_callback always passes a context. */
int
rl_fut_add_callback(rl_state *st, RlFuture *fut, PyObject *fn, PyObject *ctx)
{
    if (fut->fut_state != RL_FUT_PENDING) {
        if (ctx == NULL) {
            return rl_task_schedule_wakeup(st, (RlTask *)fn,
                                           (PyObject *)fut);
        }
        return rl_call_soon_on(st, fut->fut_loop, fut->fut_rloop, fn,
                               (PyObject *)fut, ctx);
    }
    Py_INCREF(fn);
    Py_XINCREF(ctx);
    if (future_push_cb(fut, fn, ctx) < 0) {
        Py_DECREF(fn);
        Py_XDECREF(ctx);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* core operations */

int
rl_fut_init(rl_state *st, RlFuture *fut, PyObject *loop)
{
    /* Re-initialization resets everything but the dict, as CPython's. */
    Py_CLEAR(fut->fut_loop);
    fut->fut_rloop = NULL;
    Py_CLEAR(fut->fut_result);
    Py_CLEAR(fut->fut_exception);
    Py_CLEAR(fut->fut_exception_tb);
    Py_CLEAR(fut->fut_cancel_msg);
    Py_CLEAR(fut->fut_cancelled_exc);
    Py_CLEAR(fut->fut_source_tb);
    Py_CLEAR(fut->fut_cb0.fn);
    Py_CLEAR(fut->fut_cb0.ctx);
    for (uint32_t i = 0; i < fut->fut_ncbs; i++) {
        Py_DECREF(fut->fut_cbs[i].fn);
        Py_XDECREF(fut->fut_cbs[i].ctx);
    }
    PyMem_Free(fut->fut_cbs);
    fut->fut_cbs = NULL;
    fut->fut_ncbs = fut->fut_cbcap = 0;
    fut->fut_state = RL_FUT_PENDING;
    fut->fut_log_tb = 0;
    fut->fut_blocking = 0;

    if (loop == NULL || loop == Py_None) {
        loop = PyObject_CallNoArgs(st->asyncio_get_event_loop);
        if (loop == NULL) {
            return -1;
        }
    }
    else {
        Py_INCREF(loop);
    }
    fut->fut_loop = loop;
    if (PyObject_TypeCheck(loop, st->LoopType)) {
        fut->fut_rloop = (RlLoop *)loop;
    }

    int debug;
    if (fut->fut_rloop != NULL) {
        debug = fut->fut_rloop->debug;
    }
    else {
        PyObject *r = PyObject_CallMethodNoArgs(loop, st->str_get_debug);
        if (r == NULL) {
            return -1;
        }
        debug = PyObject_IsTrue(r);
        Py_DECREF(r);
        if (debug < 0) {
            return -1;
        }
    }
    if (debug) {
        fut->fut_source_tb = PyObject_CallNoArgs(st->asyncio_extract_stack);
        if (fut->fut_source_tb == NULL) {
            return -1;
        }
    }
    return 0;
}

int
rl_fut_set_result(rl_state *st, RlFuture *fut, PyObject *res)
{
    if (future_ensure_alive(fut) < 0) {
        return -1;
    }
    if (fut->fut_state != RL_FUT_PENDING) {
        PyObject *name = state_name(fut->fut_state);
        if (name != NULL) {
            PyErr_Format(st->asyncio_InvalidStateError, "%U: %R", name,
                         (PyObject *)fut);
            Py_DECREF(name);
        }
        return -1;
    }
    fut->fut_result = Py_NewRef(res);
    fut->fut_state = RL_FUT_FINISHED;
    return future_schedule_callbacks(st, fut);
}

int
rl_fut_set_exception(rl_state *st, RlFuture *fut, PyObject *exc)
{
    PyObject *exc_val = NULL;
    if (future_ensure_alive(fut) < 0) {
        return -1;
    }
    if (fut->fut_state != RL_FUT_PENDING) {
        PyObject *name = state_name(fut->fut_state);
        if (name != NULL) {
            PyErr_Format(st->asyncio_InvalidStateError, "%U: %R", name,
                         (PyObject *)fut);
            Py_DECREF(name);
        }
        return -1;
    }
    if (PyExceptionClass_Check(exc)) {
        exc_val = PyObject_CallNoArgs(exc);
        if (exc_val == NULL) {
            return -1;
        }
        if (fut->fut_state != RL_FUT_PENDING) {
            /* The exception's constructor completed the future. */
            Py_DECREF(exc_val);
            PyErr_SetString(st->asyncio_InvalidStateError, "invalid state");
            return -1;
        }
    }
    else {
        exc_val = Py_NewRef(exc);
    }
    if (!PyExceptionInstance_Check(exc_val)) {
        Py_DECREF(exc_val);
        PyErr_SetString(PyExc_TypeError, "invalid exception object");
        return -1;
    }
#if RL_PY313
    if (PyErr_GivenExceptionMatches(exc_val, PyExc_StopIteration)) {
        /* 3.13+: wrap it in a RuntimeError chained to it. */
        const char *msg = "StopIteration interacts badly with generators "
                          "and cannot be raised into a Future";
        PyObject *wrapped = PyObject_CallFunction(PyExc_RuntimeError, "s",
                                                  msg);
        if (wrapped == NULL) {
            Py_DECREF(exc_val);
            return -1;
        }
        PyException_SetCause(wrapped, Py_NewRef(exc_val));
        PyException_SetContext(wrapped, exc_val); /* steals exc_val */
        exc_val = wrapped;
    }
#else
    if (Py_IS_TYPE(exc_val, (PyTypeObject *)PyExc_StopIteration)) {
        Py_DECREF(exc_val);
        PyErr_SetString(PyExc_TypeError,
                        "StopIteration interacts badly with generators "
                        "and cannot be raised into a Future");
        return -1;
    }
#endif
    fut->fut_exception = exc_val;
    fut->fut_exception_tb = PyException_GetTraceback(exc_val);
    fut->fut_state = RL_FUT_FINISHED;
    if (future_schedule_callbacks(st, fut) < 0) {
        return -1;
    }
    fut->fut_log_tb = 1;
    return 0;
}

PyObject *
rl_fut_make_cancelled_error(rl_state *st, RlFuture *fut)
{
    if (fut->fut_cancelled_exc != NULL) {
        PyObject *exc = fut->fut_cancelled_exc;
        fut->fut_cancelled_exc = NULL;
        return exc;
    }
    PyObject *exc;
    if (fut->fut_cancel_msg == NULL || fut->fut_cancel_msg == Py_None) {
        exc = PyObject_CallNoArgs(st->asyncio_CancelledError);
    }
    else {
        exc = PyObject_CallOneArg(st->asyncio_CancelledError,
                                  fut->fut_cancel_msg);
    }
    return exc;
}

/* 1 cancelled now, 0 already done, -1 error */
int
rl_fut_cancel(rl_state *st, RlFuture *fut, PyObject *msg)
{
    fut->fut_log_tb = 0;
    if (fut->fut_state != RL_FUT_PENDING) {
        return 0;
    }
    fut->fut_state = RL_FUT_CANCELLED;
    Py_XSETREF(fut->fut_cancel_msg, Py_XNewRef(msg));
    if (future_schedule_callbacks(st, fut) < 0) {
        return -1;
    }
    return 1;
}

/* result(): new reference, or NULL with the exception set. */
static PyObject *
future_result(rl_state *st, RlFuture *fut)
{
    if (fut->fut_state == RL_FUT_CANCELLED) {
        PyObject *exc = rl_fut_make_cancelled_error(st, fut);
        if (exc != NULL) {
            PyErr_SetObject(st->asyncio_CancelledError, exc);
            Py_DECREF(exc);
        }
        return NULL;
    }
    if (fut->fut_state != RL_FUT_FINISHED) {
        PyErr_SetString(st->asyncio_InvalidStateError,
                        "Result is not ready.");
        return NULL;
    }
    fut->fut_log_tb = 0;
    if (fut->fut_exception != NULL) {
        PyObject *exc = fut->fut_exception;
        PyObject *tb = fut->fut_exception_tb;
        PyException_SetTraceback(exc, tb != NULL ? tb : Py_None);
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        return NULL;
    }
    return Py_NewRef(fut->fut_result);
}

/* ---------------------------------------------------------------------- */
/* Python methods */

static int
Future_init(RlFuture *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"loop", NULL};
    PyObject *loop = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$O:Future", kwlist,
                                     &loop)) {
        return -1;
    }
    rl_state *st = fut_state_of((PyObject *)self);
    if (st == NULL) {
        return -1;
    }
    return rl_fut_init(st, self, loop);
}

static PyObject *
Future_result(RlFuture *self, PyObject *Py_UNUSED(ignored))
{
    return future_result(fut_state_of((PyObject *)self), self);
}

static PyObject *
Future_exception(RlFuture *self, PyObject *Py_UNUSED(ignored))
{
    rl_state *st = fut_state_of((PyObject *)self);
    if (self->fut_state == RL_FUT_CANCELLED) {
        PyObject *exc = rl_fut_make_cancelled_error(st, self);
        if (exc != NULL) {
            PyErr_SetObject(st->asyncio_CancelledError, exc);
            Py_DECREF(exc);
        }
        return NULL;
    }
    if (self->fut_state != RL_FUT_FINISHED) {
        PyErr_SetString(st->asyncio_InvalidStateError,
                        "Exception is not set.");
        return NULL;
    }
    self->fut_log_tb = 0;
    return Py_NewRef(self->fut_exception ? self->fut_exception : Py_None);
}

static PyObject *
Future_set_result(RlFuture *self, PyObject *result)
{
    if (rl_fut_set_result(fut_state_of((PyObject *)self), self, result) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Future_set_exception(RlFuture *self, PyObject *exc)
{
    if (rl_fut_set_exception(fut_state_of((PyObject *)self), self, exc) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Future_add_done_callback(RlFuture *self, PyObject *const *args,
                         Py_ssize_t nargs, PyObject *kwnames)
{
    rl_state *st = fut_state_of((PyObject *)self);
    PyObject *fn, *ctx = NULL;
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError,
                     "add_done_callback() takes exactly 1 positional "
                     "argument (%zd given)",
                     nargs);
        return NULL;
    }
    fn = args[0];
    if (kwnames != NULL) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            PyObject *k = PyTuple_GET_ITEM(kwnames, i);
            if (PyUnicode_Compare(k, st->str_context) != 0) {
                if (!PyErr_Occurred()) {
                    PyErr_Format(PyExc_TypeError,
                                 "add_done_callback() got an unexpected "
                                 "keyword argument '%S'",
                                 k);
                }
                return NULL;
            }
            ctx = args[nargs + i];
        }
    }
    if (future_ensure_alive(self) < 0) {
        return NULL;
    }
    if (ctx == NULL || ctx == Py_None) {
        ctx = PyContext_CopyCurrent();
        if (ctx == NULL) {
            return NULL;
        }
    }
    else {
        Py_INCREF(ctx);
    }
    int rc = rl_fut_add_callback(st, self, fn, ctx);
    Py_DECREF(ctx);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* The Python-visible callable for an entry (a native task waiter shows
 * as a TaskCall wake-up object, which compares equal to its twins). */
static PyObject *
cb_entry_callable(rl_state *st, rl_fut_cb *cb)
{
    if (cb->ctx != NULL) {
        return Py_NewRef(cb->fn);
    }
    return PyObject_CallFunction((PyObject *)st->TaskCallType, "Oi", cb->fn,
                                 1);
}

static PyObject *
Future_remove_done_callback(RlFuture *self, PyObject *fn)
{
    rl_state *st = fut_state_of((PyObject *)self);
    if (future_ensure_alive(self) < 0) {
        return NULL;
    }
    /* Beware: __eq__ may mutate the future.  Collect the entries first,
     * compare, then rebuild from what is still there. */
    Py_ssize_t n = (self->fut_cb0.fn ? 1 : 0) + self->fut_ncbs;
    if (n == 0) {
        return PyLong_FromLong(0);
    }
    rl_fut_cb *snap = PyMem_Malloc(n * sizeof(rl_fut_cb));
    char *drop = PyMem_Calloc(n, 1);
    if (snap == NULL || drop == NULL) {
        PyMem_Free(snap);
        PyMem_Free(drop);
        return PyErr_NoMemory();
    }
    Py_ssize_t k = 0;
    if (self->fut_cb0.fn) {
        snap[k++] = self->fut_cb0;
    }
    for (uint32_t i = 0; i < self->fut_ncbs; i++) {
        snap[k++] = self->fut_cbs[i];
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_INCREF(snap[i].fn);
        Py_XINCREF(snap[i].ctx);
    }
    Py_ssize_t removed = 0;
    int err = 0;
    for (Py_ssize_t i = 0; i < n && !err; i++) {
        PyObject *c = cb_entry_callable(st, &snap[i]);
        if (c == NULL) {
            err = 1;
            break;
        }
        int eq = PyObject_RichCompareBool(c, fn, Py_NE);
        Py_DECREF(c);
        if (eq < 0) {
            err = 1;
        }
        else if (eq == 0) {
            drop[i] = 1;
            removed++;
        }
    }
    if (!err && removed) {
        /* Rebuild: keep every current entry that is not a dropped one
         * (identity of the fn/ctx pair). */
        rl_fut_cb *cur = PyMem_Malloc(
            ((self->fut_cb0.fn ? 1 : 0) + self->fut_ncbs + 1) *
            sizeof(rl_fut_cb));
        if (cur == NULL) {
            err = 1;
            PyErr_NoMemory();
        }
        else {
            Py_ssize_t m = 0;
            if (self->fut_cb0.fn) {
                cur[m++] = self->fut_cb0;
            }
            for (uint32_t i = 0; i < self->fut_ncbs; i++) {
                cur[m++] = self->fut_cbs[i];
            }
            self->fut_cb0.fn = NULL;
            self->fut_cb0.ctx = NULL;
            self->fut_ncbs = 0;
            for (Py_ssize_t i = 0; i < m; i++) {
                int gone = 0;
                for (Py_ssize_t j = 0; j < n; j++) {
                    if (drop[j] && snap[j].fn == cur[i].fn &&
                        snap[j].ctx == cur[i].ctx) {
                        drop[j] = 0; /* one entry per match */
                        gone = 1;
                        break;
                    }
                }
                if (gone) {
                    Py_DECREF(cur[i].fn);
                    Py_XDECREF(cur[i].ctx);
                }
                else if (future_push_cb(self, cur[i].fn, cur[i].ctx) < 0) {
                    Py_DECREF(cur[i].fn);
                    Py_XDECREF(cur[i].ctx);
                    err = 1;
                }
            }
            PyMem_Free(cur);
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_DECREF(snap[i].fn);
        Py_XDECREF(snap[i].ctx);
    }
    PyMem_Free(snap);
    PyMem_Free(drop);
    if (err) {
        return NULL;
    }
    return PyLong_FromSsize_t(removed);
}

/* cancel(msg=None)'s arguments, for Future.cancel and Task.cancel: *msg is
 * borrowed (Py_None when not given).  0, or -1 with TypeError. */
int
rl_parse_cancel_args(rl_state *st, PyObject *const *args, Py_ssize_t nargs,
                     PyObject *kwnames, PyObject **msg)
{
    *msg = Py_None;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError,
                        "cancel() takes at most 1 argument");
        return -1;
    }
    if (nargs == 1) {
        *msg = args[0];
    }
    if (kwnames != NULL) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            PyObject *k = PyTuple_GET_ITEM(kwnames, i);
            if (nargs == 1 || PyUnicode_Compare(k, st->str_msg) != 0) {
                if (!PyErr_Occurred()) {
                    PyErr_Format(PyExc_TypeError,
                                 "cancel() got an unexpected keyword "
                                 "argument '%S'",
                                 k);
                }
                return -1;
            }
            *msg = args[nargs + i];
        }
    }
    return 0;
}

static PyObject *
Future_cancel(RlFuture *self, PyObject *const *args, Py_ssize_t nargs,
              PyObject *kwnames)
{
    rl_state *st = fut_state_of((PyObject *)self);
    PyObject *msg;
    if (rl_parse_cancel_args(st, args, nargs, kwnames, &msg) < 0) {
        return NULL;
    }
    if (future_ensure_alive(self) < 0) {
        return NULL;
    }
    int r = rl_fut_cancel(st, self, msg == Py_None ? NULL : msg);
    if (r < 0) {
        return NULL;
    }
    return PyBool_FromLong(r);
}

static PyObject *
Future_cancelled(RlFuture *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->fut_state == RL_FUT_CANCELLED);
}

static PyObject *
Future_done(RlFuture *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->fut_state != RL_FUT_PENDING);
}

static PyObject *
Future_get_loop(RlFuture *self, PyObject *Py_UNUSED(ignored))
{
    if (future_ensure_alive(self) < 0) {
        return NULL;
    }
    return Py_NewRef(self->fut_loop);
}

static PyObject *
Future__make_cancelled_error(RlFuture *self, PyObject *Py_UNUSED(ignored))
{
    return rl_fut_make_cancelled_error(fut_state_of((PyObject *)self), self);
}

static PyObject *
Future_repr(RlFuture *self)
{
    rl_state *st = fut_state_of((PyObject *)self);
    if (st == NULL) {
        return NULL;
    }
    return PyObject_CallOneArg(self->fut_is_task ? st->asyncio_task_repr
                                                 : st->asyncio_future_repr,
                               (PyObject *)self);
}

static PyObject *
Future_class_getitem(PyObject *cls, PyObject *args)
{
    return Py_GenericAlias(cls, args);
}

/* --- attributes --- */

static PyObject *
Future_get_class(RlFuture *self, void *Py_UNUSED(c))
{
    rl_state *st = fut_state_of((PyObject *)self);
    if (st == NULL) {
        return NULL;
    }
    if (Py_IS_TYPE(self, st->FutureType)) {
        return Py_NewRef(st->asyncio_Future);
    }
    if (Py_IS_TYPE(self, st->TaskType)) {
        return Py_NewRef(st->asyncio_Task);
    }
    return Py_NewRef((PyObject *)Py_TYPE(self));
}

static PyObject *
Future_get_blocking(RlFuture *self, void *Py_UNUSED(c))
{
    if (future_ensure_alive(self) < 0) {
        return NULL;
    }
    return PyBool_FromLong(self->fut_blocking);
}

static int
Future_set_blocking(RlFuture *self, PyObject *v, void *Py_UNUSED(c))
{
    if (future_ensure_alive(self) < 0) {
        return -1;
    }
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete attribute");
        return -1;
    }
    int b = PyObject_IsTrue(v);
    if (b < 0) {
        return -1;
    }
    self->fut_blocking = (uint8_t)b;
    return 0;
}

static PyObject *
Future_get_log_traceback(RlFuture *self, void *Py_UNUSED(c))
{
    if (future_ensure_alive(self) < 0) {
        return NULL;
    }
    return PyBool_FromLong(self->fut_log_tb);
}

static int
Future_set_log_traceback(RlFuture *self, PyObject *v, void *Py_UNUSED(c))
{
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete attribute");
        return -1;
    }
    int b = PyObject_IsTrue(v);
    if (b < 0) {
        return -1;
    }
    if (b) {
        PyErr_SetString(PyExc_ValueError,
                        "_log_traceback can only be set to False");
        return -1;
    }
    self->fut_log_tb = 0;
    return 0;
}

static PyObject *
Future_get_loop_attr(RlFuture *self, void *Py_UNUSED(c))
{
    return Py_NewRef(self->fut_loop ? self->fut_loop : Py_None);
}

static PyObject *
Future_get_callbacks(RlFuture *self, void *Py_UNUSED(c))
{
    rl_state *st = fut_state_of((PyObject *)self);
    if (st == NULL) {
        return NULL;
    }
    Py_ssize_t n = (self->fut_cb0.fn ? 1 : 0) + self->fut_ncbs;
    if (n == 0) {
        Py_RETURN_NONE;
    }
    PyObject *list = PyList_New(0);
    if (list == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        rl_fut_cb *cb;
        if (self->fut_cb0.fn) {
            cb = i == 0 ? &self->fut_cb0 : &self->fut_cbs[i - 1];
        }
        else {
            cb = &self->fut_cbs[i];
        }
        PyObject *c = cb_entry_callable(st, cb);
        if (c == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyObject *ctx = cb->ctx;
        if (ctx == NULL) {
            ctx = ((RlTask *)cb->fn)->task_context;
        }
        PyObject *t = PyTuple_Pack(2, c, ctx ? ctx : Py_None);
        Py_DECREF(c);
        if (t == NULL || PyList_Append(list, t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(t);
        /* the list may be stale if __eq__ etc ran: bounds were re-read */
        n = (self->fut_cb0.fn ? 1 : 0) + self->fut_ncbs;
    }
    return list;
}

static PyObject *
Future_get_result_attr(RlFuture *self, void *Py_UNUSED(c))
{
    return Py_NewRef(self->fut_result ? self->fut_result : Py_None);
}

static PyObject *
Future_get_exception_attr(RlFuture *self, void *Py_UNUSED(c))
{
    return Py_NewRef(self->fut_exception ? self->fut_exception : Py_None);
}

static PyObject *
Future_get_source_tb(RlFuture *self, void *Py_UNUSED(c))
{
    return Py_NewRef(self->fut_source_tb ? self->fut_source_tb : Py_None);
}

static PyObject *
Future_get_cancel_message(RlFuture *self, void *Py_UNUSED(c))
{
    return Py_NewRef(self->fut_cancel_msg ? self->fut_cancel_msg : Py_None);
}

static int
Future_set_cancel_message(RlFuture *self, PyObject *v, void *Py_UNUSED(c))
{
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete attribute");
        return -1;
    }
    Py_XSETREF(self->fut_cancel_msg, v == Py_None ? NULL : Py_NewRef(v));
    return 0;
}

static PyObject *
Future_get_state(RlFuture *self, void *Py_UNUSED(c))
{
    if (future_ensure_alive(self) < 0) {
        return NULL;
    }
    return state_name(self->fut_state);
}

static PyObject *
Future_get_cancelled_exc(RlFuture *self, void *Py_UNUSED(c))
{
    return Py_NewRef(self->fut_cancelled_exc ? self->fut_cancelled_exc
                                             : Py_None);
}

static int
Future_set_cancelled_exc(RlFuture *self, PyObject *v, void *Py_UNUSED(c))
{
    Py_XSETREF(self->fut_cancelled_exc,
               (v == NULL || v == Py_None) ? NULL : Py_NewRef(v));
    return 0;
}

/* --- lifecycle slots --- */

int rl_future_traverse(RlFuture *self, visitproc visit, void *arg);
int rl_future_clear(RlFuture *self);
void rl_future_dealloc(RlFuture *self);

int
rl_future_traverse(RlFuture *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->fut_loop);
    Py_VISIT(self->fut_result);
    Py_VISIT(self->fut_exception);
    Py_VISIT(self->fut_exception_tb);
    Py_VISIT(self->fut_cancel_msg);
    Py_VISIT(self->fut_cancelled_exc);
    Py_VISIT(self->fut_source_tb);
    Py_VISIT(self->fut_dict);
    Py_VISIT(self->fut_cb0.fn);
    Py_VISIT(self->fut_cb0.ctx);
    for (uint32_t i = 0; i < self->fut_ncbs; i++) {
        Py_VISIT(self->fut_cbs[i].fn);
        Py_VISIT(self->fut_cbs[i].ctx);
    }
    if (self->fut_is_task) {
        RlTask *t = (RlTask *)self;
        Py_VISIT(t->task_coro);
        Py_VISIT(t->task_context);
        Py_VISIT(t->task_name);
        Py_VISIT(t->task_fut_waiter);
    }
    return 0;
}

int
rl_future_clear(RlFuture *self)
{
    Py_CLEAR(self->fut_loop);
    self->fut_rloop = NULL;
    Py_CLEAR(self->fut_result);
    Py_CLEAR(self->fut_exception);
    Py_CLEAR(self->fut_exception_tb);
    Py_CLEAR(self->fut_cancel_msg);
    Py_CLEAR(self->fut_cancelled_exc);
    Py_CLEAR(self->fut_source_tb);
    Py_CLEAR(self->fut_dict);
    Py_CLEAR(self->fut_cb0.fn);
    Py_CLEAR(self->fut_cb0.ctx);
    rl_fut_cb *cbs = self->fut_cbs;
    uint32_t n = self->fut_ncbs;
    self->fut_cbs = NULL;
    self->fut_ncbs = self->fut_cbcap = 0;
    for (uint32_t i = 0; i < n; i++) {
        Py_DECREF(cbs[i].fn);
        Py_XDECREF(cbs[i].ctx);
    }
    PyMem_Free(cbs);
    if (self->fut_is_task) {
        RlTask *t = (RlTask *)self;
        Py_CLEAR(t->task_coro);
        Py_CLEAR(t->task_context);
        Py_CLEAR(t->task_name);
        Py_CLEAR(t->task_fut_waiter);
    }
    return 0;
}

/* "exception was never retrieved" (Future) -- Task adds its own message
 * in task.c and then calls this. */
void rl_future_finalize(PyObject *self);

void
rl_future_finalize(PyObject *obj)
{
    RlFuture *self = (RlFuture *)obj;
    if (!self->fut_log_tb || self->fut_loop == NULL) {
        return;
    }
    self->fut_log_tb = 0;
    PyObject *exc = rl_err_get_raised();
    PyObject *ctx = NULL, *msg = NULL, *r = NULL, *cls = NULL, *name = NULL;
    rl_state *st = fut_state_of(obj);
    if (st == NULL) {
        goto done;
    }
    cls = PyObject_GetAttrString(obj, "__class__");
    if (cls == NULL) {
        goto done;
    }
    name = PyObject_GetAttrString(cls, "__name__");
    if (name == NULL) {
        goto done;
    }
    msg = PyUnicode_FromFormat("%U exception was never retrieved", name);
    if (msg == NULL) {
        goto done;
    }
    ctx = PyDict_New();
    if (ctx == NULL ||
        PyDict_SetItemString(ctx, "message", msg) < 0 ||
        PyDict_SetItemString(ctx, "exception",
                             self->fut_exception ? self->fut_exception
                                                 : Py_None) < 0 ||
        PyDict_SetItemString(ctx, "future", obj) < 0) {
        goto done;
    }
    if (self->fut_source_tb != NULL &&
        PyDict_SetItemString(ctx, "source_traceback", self->fut_source_tb) <
            0) {
        goto done;
    }
    r = PyObject_CallMethodOneArg(self->fut_loop,
                                  st->str_call_exception_handler, ctx);
done:
    if (r == NULL && PyErr_Occurred()) {
        PyErr_WriteUnraisable(obj);
    }
    Py_XDECREF(r);
    Py_XDECREF(ctx);
    Py_XDECREF(msg);
    Py_XDECREF(name);
    Py_XDECREF(cls);
    rl_err_set_raised(exc);
}

void
rl_future_dealloc(RlFuture *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (PyObject_CallFinalizerFromDealloc((PyObject *)self) < 0) {
        return; /* resurrected */
    }
    PyObject_GC_UnTrack(self);
    if (self->fut_weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    (void)rl_future_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* ---------------------------------------------------------------------- */
/* FutureIter: what __await__/__iter__ return */

static PyObject *
future_new_iter(RlFuture *fut)
{
    rl_state *st = fut_state_of((PyObject *)fut);
    if (st == NULL || future_ensure_alive(fut) < 0) {
        return NULL;
    }
    RlFutureIter *it;
    if (st->fi_freelist != NULL) {
        it = st->fi_freelist;
        st->fi_freelist = (RlFutureIter *)it->future;
        st->fi_freelist_len--;
        _Py_NewReference((PyObject *)it);
    }
    else {
        it = PyObject_GC_New(RlFutureIter, st->FutureIterType);
        if (it == NULL) {
            return NULL;
        }
    }
    it->future = (RlFuture *)Py_NewRef(fut);
    PyObject_GC_Track(it);
    return (PyObject *)it;
}

static PySendResult
FutureIter_am_send(RlFutureIter *it, PyObject *Py_UNUSED(arg),
                   PyObject **result)
{
    RlFuture *fut = it->future;
    *result = NULL;
    if (fut == NULL) {
        return PYGEN_ERROR;
    }
    if (fut->fut_state == RL_FUT_PENDING) {
        if (!fut->fut_blocking) {
            fut->fut_blocking = 1;
            *result = Py_NewRef(fut);
            return PYGEN_NEXT;
        }
        PyErr_SetString(PyExc_RuntimeError, "await wasn't used with future");
        return PYGEN_ERROR;
    }
    it->future = NULL;
    PyObject *res = future_result(fut_state_of((PyObject *)fut), fut);
    Py_DECREF(fut);
    if (res != NULL) {
        *result = res;
        return PYGEN_RETURN;
    }
    return PYGEN_ERROR;
}

static PyObject *
FutureIter_iternext(RlFutureIter *it)
{
    PyObject *result;
    switch (FutureIter_am_send(it, Py_None, &result)) {
    case PYGEN_RETURN:
        (void)rl_set_stop_iteration(result);
        Py_DECREF(result);
        return NULL;
    case PYGEN_NEXT:
        return result;
    case PYGEN_ERROR:
    default:
        return NULL;
    }
}

static PyObject *
FutureIter_send(RlFutureIter *it, PyObject *Py_UNUSED(unused))
{
    /* Future.__iter__ doesn't care about values that are pushed to the
     * generator, it just returns self.result(). */
    return FutureIter_iternext(it);
}

static PyObject *
FutureIter_throw(RlFutureIter *it, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *type, *val = NULL, *tb = NULL;
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "throw() takes 1 to 3 arguments");
        return NULL;
    }
    type = args[0];
    if (nargs >= 2) {
        val = args[1];
    }
    if (nargs == 3) {
        tb = args[2];
    }
#if RL_PY312
    if (nargs > 1) {
        if (PyErr_WarnEx(PyExc_DeprecationWarning,
                         "the (type, exc, tb) signature of throw() is "
                         "deprecated, use the single-arg signature instead.",
                         1) < 0) {
            return NULL;
        }
    }
#endif
    if (val == Py_None) {
        val = NULL;
    }
    if (tb == Py_None) {
        tb = NULL;
    }
    else if (tb != NULL && !PyTraceBack_Check(tb)) {
        PyErr_SetString(PyExc_TypeError,
                        "throw() third argument must be a traceback");
        return NULL;
    }
    Py_INCREF(type);
    Py_XINCREF(val);
    Py_XINCREF(tb);
    if (PyExceptionClass_Check(type)) {
        PyErr_NormalizeException(&type, &val, &tb);
    }
    else if (PyExceptionInstance_Check(type)) {
        if (val) {
            PyErr_SetString(PyExc_TypeError,
                            "instance exception may not have a separate "
                            "value");
            goto fail;
        }
        val = type;
        type = (PyObject *)Py_TYPE(val);
        Py_INCREF(type);
        if (tb == NULL) {
            tb = PyException_GetTraceback(val);
        }
    }
    else {
        PyErr_SetString(PyExc_TypeError,
                        "exceptions must be classes deriving BaseException "
                        "or instances of such a class");
        goto fail;
    }
    Py_CLEAR(it->future);
    PyErr_Restore(type, val, tb);
    return NULL;
fail:
    Py_DECREF(type);
    Py_XDECREF(val);
    Py_XDECREF(tb);
    return NULL;
}

static PyObject *
FutureIter_close(RlFutureIter *it, PyObject *Py_UNUSED(arg))
{
    Py_CLEAR(it->future);
    Py_RETURN_NONE;
}

static int
FutureIter_traverse(RlFutureIter *it, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(it));
    Py_VISIT(it->future);
    return 0;
}

static void
FutureIter_dealloc(RlFutureIter *it)
{
    PyTypeObject *tp = Py_TYPE(it);
    PyObject_GC_UnTrack(it);
    Py_CLEAR(it->future);
    /* PyType_GetModule cannot fail for this (final, heap) type, so no
     * pending exception is disturbed here. */
    PyObject *mod = PyType_GetModule(tp);
    rl_state *st = mod != NULL ? PyModule_GetState(mod) : NULL;
    if (st != NULL && st->fi_freelist_len < 256) {
        /* Keep the memory (and the type reference) for the next await. */
        it->future = (RlFuture *)st->fi_freelist;
        st->fi_freelist = it;
        st->fi_freelist_len++;
        return;
    }
    tp->tp_free((PyObject *)it);
    Py_DECREF(tp);
}

static PyObject *
FutureIter_iter(PyObject *self)
{
    return Py_NewRef(self);
}

static PyMethodDef FutureIter_methods[] = {
    {"send", (PyCFunction)FutureIter_send, METH_O, NULL},
    {"throw", RL_CFUNC(FutureIter_throw), METH_FASTCALL, NULL},
    {"close", (PyCFunction)FutureIter_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot FutureIter_slots[] = {
    {Py_tp_dealloc, FutureIter_dealloc},
    {Py_tp_traverse, FutureIter_traverse},
    {Py_tp_iter, FutureIter_iter},
    {Py_tp_iternext, FutureIter_iternext},
    {Py_tp_methods, FutureIter_methods},
    {Py_am_send, FutureIter_am_send},
    {0, NULL},
};

static PyType_Spec FutureIter_spec = {
    .name = "ringloop.FutureIter",
    .basicsize = sizeof(RlFutureIter),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = FutureIter_slots,
};

void rl_future_freelist_clear(rl_state *st);

void
rl_future_freelist_clear(rl_state *st)
{
    while (st->fi_freelist != NULL) {
        RlFutureIter *it = st->fi_freelist;
        st->fi_freelist = (RlFutureIter *)it->future;
        st->fi_freelist_len--;
        PyTypeObject *tp = Py_TYPE(it);
        tp->tp_free((PyObject *)it);
        Py_DECREF(tp);
    }
}

static PyObject *
Future_await(RlFuture *self)
{
    return future_new_iter(self);
}

/* ---------------------------------------------------------------------- */
/* type */

static PyMethodDef Future_methods[] = {
    {"result", (PyCFunction)Future_result, METH_NOARGS,
     "result($self, /)\n--\n\nThe future's result; raises its exception, "
     "CancelledError, or InvalidStateError when not done."},
    {"exception", (PyCFunction)Future_exception, METH_NOARGS,
     "exception($self, /)\n--\n\nThe exception set on the future, or None."},
    {"set_result", (PyCFunction)Future_set_result, METH_O,
     "set_result($self, result, /)\n--\n\nMark done with a result."},
    {"set_exception", (PyCFunction)Future_set_exception, METH_O,
     "set_exception($self, exception, /)\n--\n\nMark done with an "
     "exception."},
    {"add_done_callback", RL_CFUNC(Future_add_done_callback),
     METH_FASTCALL | METH_KEYWORDS,
     "add_done_callback($self, fn, /, *, context=None)\n--\n\n"
     "Call fn(future) through the loop once the future is done."},
    {"remove_done_callback", (PyCFunction)Future_remove_done_callback, METH_O,
     "remove_done_callback($self, fn, /)\n--\n\nRemove every entry of fn; "
     "return how many."},
    {"cancel", RL_CFUNC(Future_cancel), METH_FASTCALL | METH_KEYWORDS,
     "cancel($self, /, msg=None)\n--\n\nCancel; False if already done."},
    {"cancelled", (PyCFunction)Future_cancelled, METH_NOARGS, NULL},
    {"done", (PyCFunction)Future_done, METH_NOARGS, NULL},
    {"get_loop", (PyCFunction)Future_get_loop, METH_NOARGS, NULL},
    {"_make_cancelled_error", (PyCFunction)Future__make_cancelled_error,
     METH_NOARGS, NULL},
    {"__class_getitem__", Future_class_getitem, METH_O | METH_CLASS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Future_getset[] = {
    {"__class__", (getter)Future_get_class, NULL, NULL, NULL},
    {"_asyncio_future_blocking", (getter)Future_get_blocking,
     (setter)Future_set_blocking, NULL, NULL},
    {"_log_traceback", (getter)Future_get_log_traceback,
     (setter)Future_set_log_traceback, NULL, NULL},
    {"_loop", (getter)Future_get_loop_attr, NULL, NULL, NULL},
    {"_callbacks", (getter)Future_get_callbacks, NULL, NULL, NULL},
    {"_result", (getter)Future_get_result_attr, NULL, NULL, NULL},
    {"_exception", (getter)Future_get_exception_attr, NULL, NULL, NULL},
    {"_source_traceback", (getter)Future_get_source_tb, NULL, NULL, NULL},
    {"_cancel_message", (getter)Future_get_cancel_message,
     (setter)Future_set_cancel_message, NULL, NULL},
    {"_state", (getter)Future_get_state, NULL, NULL, NULL},
    {"_cancelled_exc", (getter)Future_get_cancelled_exc,
     (setter)Future_set_cancelled_exc, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef Future_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(RlFuture, fut_weakreflist),
     READONLY, NULL},
    {"__dictoffset__", T_PYSSIZET, offsetof(RlFuture, fut_dict), READONLY,
     NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot Future_slots[] = {
    {Py_tp_init, Future_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, rl_future_dealloc},
    {Py_tp_finalize, rl_future_finalize},
    {Py_tp_traverse, rl_future_traverse},
    {Py_tp_clear, rl_future_clear},
    {Py_tp_repr, Future_repr},
    {Py_tp_iter, Future_await},
    {Py_am_await, Future_await},
    {Py_tp_methods, Future_methods},
    {Py_tp_getset, Future_getset},
    {Py_tp_members, Future_members},
    {Py_tp_doc, "Future(*, loop=None)\n--\n\n"
                "asyncio.Future, native: isinstance(f, asyncio.Future) "
                "holds."},
    {0, NULL},
};

static PyType_Spec Future_spec = {
    .name = "ringloop.Future",
    .basicsize = sizeof(RlFuture),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = Future_slots,
};

/* ---------------------------------------------------------------------- */
/* helpers for the rest of the C code */

PyObject *
rl_future_new(RlLoop *loop)
{
    rl_state *st = loop->st;
    if (!loop->native_tasks) {
        PyObject *kw = Py_BuildValue("{sO}", "loop", (PyObject *)loop);
        if (kw == NULL) {
            return NULL;
        }
        PyObject *args = PyTuple_New(0);
        if (args == NULL) {
            Py_DECREF(kw);
            return NULL;
        }
        PyObject *f = PyObject_Call(st->asyncio_Future, args, kw);
        Py_DECREF(args);
        Py_DECREF(kw);
        return f;
    }
    RlFuture *fut = (RlFuture *)st->FutureType->tp_alloc(st->FutureType, 0);
    if (fut == NULL) {
        return NULL;
    }
    if (rl_fut_init(st, fut, (PyObject *)loop) < 0) {
        Py_DECREF(fut);
        return NULL;
    }
    return (PyObject *)fut;
}

/* Is o a ringloop.Future (or Task, or a subclass)?  Without raising: asks
 * the type chain for our dealloc. */
static int
is_native_future(PyObject *o)
{
    for (PyTypeObject *tp = Py_TYPE(o); tp != NULL; tp = tp->tp_base) {
        if (tp->tp_dealloc == (destructor)rl_future_dealloc) {
            return 1;
        }
    }
    return 0;
}

int
rl_future_is_done(PyObject *fut)
{
    if (is_native_future(fut)) {
        return ((RlFuture *)fut)->fut_state != RL_FUT_PENDING;
    }
    PyObject *r = PyObject_CallMethod(fut, "done", NULL);
    if (r == NULL) {
        return -1;
    }
    int v = PyObject_IsTrue(r);
    Py_DECREF(r);
    return v;
}

static int
set_unless_done(PyObject *fut, const char *meth, PyObject *value, int exc)
{
    int done = rl_future_is_done(fut);
    if (done != 0) {
        return done < 0 ? -1 : 0;
    }
    if (is_native_future(fut)) {
        rl_state *st = rl_get_state_by_type(Py_TYPE(fut));
        if (st == NULL) {
            return -1;
        }
        return exc ? rl_fut_set_exception(st, (RlFuture *)fut, value)
                   : rl_fut_set_result(st, (RlFuture *)fut, value);
    }
    /* one argument even when value is a tuple */
    PyObject *name = PyUnicode_FromString(meth);
    if (name == NULL) {
        return -1;
    }
    PyObject *r = PyObject_CallMethodOneArg(fut, name, value);
    Py_DECREF(name);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

int
rl_future_set_result_unless_done(PyObject *fut, PyObject *result)
{
    return set_unless_done(fut, "set_result", result, 0);
}

int
rl_future_set_exception_unless_done(PyObject *fut, PyObject *exc)
{
    return set_unless_done(fut, "set_exception", exc, 1);
}

int
rl_future_init_types(PyObject *module, rl_state *st)
{
    st->FutureType = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &Future_spec, NULL);
    if (st->FutureType == NULL) {
        return -1;
    }
    st->FutureIterType = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &FutureIter_spec, NULL);
    if (st->FutureIterType == NULL) {
        return -1;
    }
    return PyModule_AddType(module, st->FutureType);
}
