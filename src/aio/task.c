/* task.c -- ringloop.Task: asyncio.Task's behaviour, native.
 *
 * The step follows asyncio/tasks.py (__step, __step_run_and_handle_result,
 * __wakeup, __eager_start) of the running version.  On a ringloop loop a
 * step and a wake-up are C records on the ready ring: (task_step_ready,
 * task, exc) and (task_wakeup_ready, task, future).  A native Task awaiting
 * a native Future registers itself as a callback entry with no context, so
 * the future's completion pushes the wake-up record directly.  On any other
 * loop (stock asyncio, uvloop) the same steps go through loop.call_soon
 * with a small callable (TaskCall) -- correct everywhere, fast on ours.
 *
 * Task bookkeeping is the one asyncio itself reads, per version: the
 * current task in tasks._current_tasks (the dict the C _enter_task uses),
 * registration in the WeakSet behind all_tasks() (3.11 _all_tasks, 3.12+
 * _scheduled_tasks) and, for eager tasks, tasks._eager_tasks. */
#include "internal.h"

#include <structmember.h>

void rl_future_finalize(PyObject *self);
int rl_future_traverse(RlFuture *self, visitproc visit, void *arg);
int rl_future_clear(RlFuture *self);
void rl_future_dealloc(RlFuture *self);

enum { TC_STEP = 0, TC_WAKEUP = 1 };

typedef struct {
    PyObject_HEAD
    RlTask *task;
    int kind;
} RlTaskCall;

static inline rl_state *
task_st(PyObject *self)
{
    return rl_get_state_by_type(Py_TYPE(self));
}

static int task_step(rl_state *st, RlTask *task, PyObject *exc);
static int task_wakeup(rl_state *st, RlTask *task, PyObject *fut);
static int task_cancel_impl(rl_state *st, RlTask *task, PyObject *msg);

/* ---------------------------------------------------------------------- */
/* current task and registries */

static int
enter_task(rl_state *st, PyObject *loop, PyObject *task)
{
    PyObject *item = PyDict_SetDefault(st->asyncio_current_tasks, loop, task);
    if (item == NULL) {
        return -1;
    }
    if (item != task) {
        PyErr_Format(PyExc_RuntimeError,
                     "Cannot enter into task %R while another task %R is "
                     "being executed.",
                     task, item);
        return -1;
    }
    return 0;
}

static int
leave_task(rl_state *st, PyObject *loop, PyObject *task)
{
    PyObject *item = PyDict_GetItemWithError(st->asyncio_current_tasks, loop);
    if (item == NULL && PyErr_Occurred()) {
        return -1;
    }
    if (item != task) {
        PyErr_Format(PyExc_RuntimeError,
                     "Leaving task %R does not match the current task %R.",
                     task, item ? item : Py_None);
        return -1;
    }
    return PyDict_DelItem(st->asyncio_current_tasks, loop);
}

/* _swap_current_task: returns the previous current task (new ref, or
 * None). */
static PyObject *
swap_current_task(rl_state *st, PyObject *loop, PyObject *task)
{
    PyObject *prev = PyDict_GetItemWithError(st->asyncio_current_tasks, loop);
    if (prev == NULL && PyErr_Occurred()) {
        return NULL;
    }
    prev = Py_NewRef(prev ? prev : Py_None);
    int rc;
    if (task == Py_None) {
        rc = PyDict_Contains(st->asyncio_current_tasks, loop);
        if (rc > 0) {
            rc = PyDict_DelItem(st->asyncio_current_tasks, loop);
        }
    }
    else {
        rc = PyDict_SetItem(st->asyncio_current_tasks, loop, task);
    }
    if (rc < 0) {
        Py_DECREF(prev);
        return NULL;
    }
    return prev;
}

static int
call_set_method(PyObject *set, PyObject *name, PyObject *arg)
{
    PyObject *r = PyObject_CallMethodOneArg(set, name, arg);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* all_tasks() reads a WeakSet (3.11 tasks._all_tasks, 3.12+
 * tasks._scheduled_tasks).  WeakSet.add is a Python call and so is the
 * removal callback it attaches to each weakref (WeakSet._remove, run when
 * the task dies): together they cost more than the rest of a short task.
 * We do what they do from C instead -- a weakref with a C callback into
 * WeakSet.data, honouring _pending_removals/_iterating exactly as
 * _weakrefset.py does -- and fall back to the method call if the WeakSet
 * does not look as expected. */
static PyObject *
ws_remove(PyObject *module, PyObject *wr)
{
    rl_state *st = PyModule_GetState(module);
    if (st->ws_data == NULL) {
        Py_RETURN_NONE;
    }
    if (PySet_GET_SIZE(st->ws_iterating) > 0) {
        if (PyList_Append(st->ws_pending, wr) < 0) {
            return NULL;
        }
    }
    else if (PySet_Discard(st->ws_data, wr) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef ws_remove_def = {"_task_registry_remove",
                                    (PyCFunction)ws_remove, METH_O, NULL};

int
rl_task_init_registry(PyObject *module, rl_state *st)
{
    PyObject *ws = st->asyncio_scheduled_tasks;
    PyObject *data = PyObject_GetAttrString(ws, "data");
    PyObject *pending = PyObject_GetAttrString(ws, "_pending_removals");
    PyObject *iterating = PyObject_GetAttrString(ws, "_iterating");
    PyErr_Clear();
    if (data != NULL && PySet_CheckExact(data) && pending != NULL &&
        PyList_CheckExact(pending) && iterating != NULL &&
        PySet_CheckExact(iterating)) {
        st->ws_remove_cb = PyCFunction_New(&ws_remove_def, module);
        if (st->ws_remove_cb == NULL) {
            Py_DECREF(data);
            Py_DECREF(pending);
            Py_DECREF(iterating);
            return -1;
        }
        st->ws_data = data;
        st->ws_pending = pending;
        st->ws_iterating = iterating;
        return 0;
    }
    Py_XDECREF(data);
    Py_XDECREF(pending);
    Py_XDECREF(iterating);
    return 0;
}

static int
register_task(rl_state *st, PyObject *task)
{
    if (st->ws_data == NULL) {
        return call_set_method(st->asyncio_scheduled_tasks, st->str_add,
                               task);
    }
    if (PyList_GET_SIZE(st->ws_pending) > 0) {
        /* WeakSet.add commits pending removals first */
        PyObject *r = PyObject_CallMethod(st->asyncio_scheduled_tasks,
                                          "_commit_removals", NULL);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
    }
    PyObject *wr = PyWeakref_NewRef(task, st->ws_remove_cb);
    if (wr == NULL) {
        return -1;
    }
    int rc = PySet_Add(st->ws_data, wr);
    Py_DECREF(wr);
    return rc;
}

static int
register_eager_task(rl_state *st, PyObject *task)
{
    if (st->asyncio_eager_tasks == NULL) {
        /* 3.11 has no eager set: all_tasks() only reads _all_tasks. */
        return register_task(st, task);
    }
    return PySet_Add(st->asyncio_eager_tasks, task);
}

static int
unregister_eager_task(rl_state *st, PyObject *task)
{
    if (st->asyncio_eager_tasks == NULL) {
        return 0;
    }
    return PySet_Discard(st->asyncio_eager_tasks, task) < 0 ? -1 : 0;
}

/* ---------------------------------------------------------------------- */
/* scheduling steps and wake-ups */

static int
task_step_ready(RlLoop *loop, PyObject *a, PyObject *b)
{
    RlTask *task = (RlTask *)a;
    rl_state *st = loop->st;
    int rc = 0;
    if (PyContext_Enter(task->task_context) == 0) {
        rc = task_step(st, task, b);
        if (PyContext_Exit(task->task_context) < 0 && rc == 0) {
            rc = -1;
        }
    }
    else {
        rc = -1;
    }
    if (rc < 0) {
        /* Like an exception escaping Handle._run: exits leave the loop,
         * anything else goes to the exception handler. */
        if (PyErr_ExceptionMatches(PyExc_SystemExit) ||
            PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
            rc = -1;
        }
        else {
            PyObject *exc = rl_err_get_raised();
            PyObject *ctx = Py_BuildValue(
                "{sNsO}", "message",
                PyUnicode_FromFormat("Exception in callback %R.__step()",
                                     (PyObject *)task),
                "exception", exc ? exc : Py_None);
            PyObject *r = NULL;
            if (ctx != NULL) {
                r = PyObject_CallMethodOneArg(
                    (PyObject *)loop, st->str_call_exception_handler, ctx);
                Py_DECREF(ctx);
            }
            Py_XDECREF(exc);
            rc = r == NULL ? -1 : 0;
            Py_XDECREF(r);
        }
    }
    Py_DECREF(a);
    Py_XDECREF(b);
    return rc;
}

static int
task_wakeup_ready(RlLoop *loop, PyObject *a, PyObject *b)
{
    RlTask *task = (RlTask *)a;
    rl_state *st = loop->st;
    int rc = 0;
    if (PyContext_Enter(task->task_context) == 0) {
        rc = task_wakeup(st, task, b);
        if (PyContext_Exit(task->task_context) < 0 && rc == 0) {
            rc = -1;
        }
    }
    else {
        rc = -1;
    }
    if (rc < 0 && !PyErr_ExceptionMatches(PyExc_SystemExit) &&
        !PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        PyObject *exc = rl_err_get_raised();
        PyObject *ctx = Py_BuildValue(
            "{sNsO}", "message",
            PyUnicode_FromFormat("Exception in callback %R.__wakeup(%R)",
                                 (PyObject *)task, b),
            "exception", exc ? exc : Py_None);
        PyObject *r = NULL;
        if (ctx != NULL) {
            r = PyObject_CallMethodOneArg((PyObject *)loop,
                                          st->str_call_exception_handler,
                                          ctx);
            Py_DECREF(ctx);
        }
        Py_XDECREF(exc);
        rc = r == NULL ? -1 : 0;
        Py_XDECREF(r);
    }
    Py_DECREF(a);
    Py_DECREF(b);
    return rc;
}

static PyObject *
taskcall_new(rl_state *st, RlTask *task, int kind)
{
    RlTaskCall *c = PyObject_GC_New(RlTaskCall, st->TaskCallType);
    if (c == NULL) {
        return NULL;
    }
    c->task = (RlTask *)Py_NewRef((PyObject *)task);
    c->kind = kind;
    PyObject_GC_Track(c);
    return (PyObject *)c;
}

/* Schedule task.__step(exc) soon (exc may be NULL; borrowed).
 * Beware: the closed check must stay right before the push, with nothing
 * that can run Python code in between (a context copy, a debug traceback,
 * an allocation that starts a GC pass): such code may close the loop, or
 * let another thread close it, and the ring is freed then (see
 * call_soon_common in loop.c, rl_call_soon_on in future.c).  Callers that
 * ran Python code before (task_init: its context copy and traceback) rely
 * on this check, not on an earlier one.  A closed loop takes the generic
 * path, whose call_soon() raises "Event loop is closed". */
static int
task_call_step_soon(rl_state *st, RlTask *task, PyObject *exc)
{
    RlLoop *rl = task->fut_rloop;
    if (rl != NULL && !rl->closed) {
        return rl_loop_call_soon_c(rl, task_step_ready,
                                   Py_NewRef((PyObject *)task),
                                   Py_XNewRef(exc));
    }
    PyObject *cb = taskcall_new(st, task, TC_STEP);
    if (cb == NULL) {
        return -1;
    }
    PyObject *meth = PyObject_GetAttr(task->fut_loop, st->str_call_soon);
    if (meth == NULL) {
        Py_DECREF(cb);
        return -1;
    }
    PyObject *kwn = PyTuple_Pack(1, st->str_context);
    PyObject *r = NULL;
    if (kwn != NULL) {
        if (exc != NULL) {
            PyObject *args[3] = {cb, exc, task->task_context};
            r = PyObject_Vectorcall(meth, args, 2, kwn);
        }
        else {
            PyObject *args[2] = {cb, task->task_context};
            r = PyObject_Vectorcall(meth, args, 1, kwn);
        }
        Py_DECREF(kwn);
    }
    Py_DECREF(meth);
    Py_DECREF(cb);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

int
rl_task_schedule_wakeup(rl_state *st, RlTask *task, PyObject *fut)
{
    /* The check right before the push, as in task_call_step_soon. */
    RlLoop *rl = task->fut_rloop;
    if (rl != NULL && !rl->closed) {
        return rl_loop_call_soon_c(rl, task_wakeup_ready,
                                   Py_NewRef((PyObject *)task),
                                   Py_NewRef(fut));
    }
    PyObject *cb = taskcall_new(st, task, TC_WAKEUP);
    if (cb == NULL) {
        return -1;
    }
    int rc = rl_call_soon_on(st, task->fut_loop, NULL, cb, fut,
                             task->task_context);
    Py_DECREF(cb);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* the step */

static PyObject *
fetch_stop_iteration_value(void)
{
    PyObject *exc = rl_err_get_raised();
    if (exc == NULL) {
        Py_RETURN_NONE;
    }
    PyObject *v = PyObject_GetAttrString(exc, "value");
    Py_DECREF(exc);
    return v;
}

/* futures._get_loop(fut): get_loop() if it has one, else ._loop */
static PyObject *
generic_get_loop(rl_state *st, PyObject *fut)
{
    PyObject *meth;
    int r = rl_getattr_optional(fut, st->str_get_loop, &meth);
    if (r < 0) {
        return NULL;
    }
    if (r == 1) {
        PyObject *loop = PyObject_CallNoArgs(meth);
        Py_DECREF(meth);
        return loop;
    }
    return PyObject_GetAttr(fut, st->str_loop_attr);
}

static int
step_error_soon(rl_state *st, RlTask *task, PyObject *fmt_exc)
{
    /* fmt_exc: a new RuntimeError instance (stolen) */
    if (fmt_exc == NULL) {
        return -1;
    }
    int rc = task_call_step_soon(st, task, fmt_exc);
    Py_DECREF(fmt_exc);
    return rc;
}

static PyObject *
runtime_error(const char *fmt, ...)
{
    va_list va;
    va_start(va, fmt);
    PyObject *msg = PyUnicode_FromFormatV(fmt, va);
    va_end(va);
    if (msg == NULL) {
        return NULL;
    }
    PyObject *e = PyObject_CallOneArg(PyExc_RuntimeError, msg);
    Py_DECREF(msg);
    return e;
}

/* The awaited thing was yielded: wire the task to it. */
static int
task_handle_yield(rl_state *st, RlTask *task, PyObject *result)
{
    PyTypeObject *rt = Py_TYPE(result);
    if (rt == st->FutureType || rt == st->TaskType) {
        /* Fast path: our own exact types (subclasses may override methods
         * and take the generic path, as in CPython). */
        RlFuture *f = (RlFuture *)result;
        if (f->fut_loop != task->fut_loop) {
            return step_error_soon(
                st, task,
                runtime_error("Task %R got Future %R attached to a "
                              "different loop",
                              (PyObject *)task, result));
        }
        if (!f->fut_blocking) {
            return step_error_soon(
                st, task,
                runtime_error("yield was used instead of yield from in "
                              "task %R with %R",
                              (PyObject *)task, result));
        }
        if (result == (PyObject *)task) {
            return step_error_soon(
                st, task,
                runtime_error("Task cannot await on itself: %R",
                              (PyObject *)task));
        }
        f->fut_blocking = 0;
        if (rl_fut_add_callback(st, f, (PyObject *)task, NULL) < 0) {
            return -1;
        }
        Py_XSETREF(task->task_fut_waiter, Py_NewRef(result));
        if (task->task_must_cancel) {
            int r = f->fut_is_task
                        ? task_cancel_impl(st, (RlTask *)f,
                                           task->fut_cancel_msg)
                        : rl_fut_cancel(st, f, task->fut_cancel_msg);
            if (r < 0) {
                return -1;
            }
            if (r) {
                task->task_must_cancel = 0;
            }
        }
        return 0;
    }

    if (result == Py_None) {
        /* Bare yield: give up the loop for one iteration. */
        return task_call_step_soon(st, task, NULL);
    }

    PyObject *blocking;
    int has = rl_getattr_optional(result, st->str_asyncio_future_blocking,
                                  &blocking);
    if (has < 0) {
        return -1;
    }
    if (has == 1 && blocking != Py_None) {
        PyObject *floop = generic_get_loop(st, result);
        if (floop == NULL) {
            Py_DECREF(blocking);
            return -1;
        }
        int same = floop == task->fut_loop;
        Py_DECREF(floop);
        if (!same) {
            Py_DECREF(blocking);
            return step_error_soon(
                st, task,
                runtime_error("Task %R got Future %R attached to a "
                              "different loop",
                              (PyObject *)task, result));
        }
        int b = PyObject_IsTrue(blocking);
        Py_DECREF(blocking);
        if (b < 0) {
            return -1;
        }
        if (!b) {
            return step_error_soon(
                st, task,
                runtime_error("yield was used instead of yield from in "
                              "task %R with %R",
                              (PyObject *)task, result));
        }
        if (result == (PyObject *)task) {
            return step_error_soon(
                st, task,
                runtime_error("Task cannot await on itself: %R",
                              (PyObject *)task));
        }
        if (PyObject_SetAttr(result, st->str_asyncio_future_blocking,
                             Py_False) < 0) {
            return -1;
        }
        PyObject *cb = taskcall_new(st, task, TC_WAKEUP);
        if (cb == NULL) {
            return -1;
        }
        PyObject *meth = PyObject_GetAttr(result, st->str_add_done_callback);
        PyObject *r = NULL;
        if (meth != NULL) {
            PyObject *kwn = PyTuple_Pack(1, st->str_context);
            if (kwn != NULL) {
                PyObject *args[2] = {cb, task->task_context};
                r = PyObject_Vectorcall(meth, args, 1, kwn);
                Py_DECREF(kwn);
            }
            Py_DECREF(meth);
        }
        Py_DECREF(cb);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
        Py_XSETREF(task->task_fut_waiter, Py_NewRef(result));
        if (task->task_must_cancel) {
            PyObject *msg = task->fut_cancel_msg ? task->fut_cancel_msg
                                                 : Py_None;
            PyObject *cr = PyObject_CallMethodOneArg(result, st->str_cancel,
                                                     msg);
            if (cr == NULL) {
                return -1;
            }
            int ok = PyObject_IsTrue(cr);
            Py_DECREF(cr);
            if (ok < 0) {
                return -1;
            }
            if (ok) {
                task->task_must_cancel = 0;
            }
        }
        return 0;
    }
    Py_XDECREF(blocking);
    if (PyGen_CheckExact(result)) {
        return step_error_soon(
            st, task,
            runtime_error("yield was used instead of yield from for "
                          "generator in task %R with %R",
                          (PyObject *)task, result));
    }
    return step_error_soon(
        st, task, runtime_error("Task got bad yield: %R", result));
}

/* __step_run_and_handle_result: drive the coroutine once.  exc borrowed.
 * -1: an exception that must propagate (SystemExit/KeyboardInterrupt, or
 * an internal error). */
static int
task_step_run(rl_state *st, RlTask *task, PyObject *exc)
{
    PyObject *coro = task->task_coro;
    PyObject *result = NULL;
    PySendResult status;

    if (coro == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Task has no coroutine");
        return -1;
    }
    Py_INCREF(coro);
    if (exc == NULL) {
        status = PyIter_Send(coro, Py_None, &result);
    }
    else {
        result = PyObject_CallMethodOneArg(coro, st->str_throw, exc);
        if (result != NULL) {
            status = PYGEN_NEXT;
        }
        else if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
            result = fetch_stop_iteration_value();
            status = result != NULL ? PYGEN_RETURN : PYGEN_ERROR;
        }
        else {
            status = PYGEN_ERROR;
        }
    }
    Py_DECREF(coro);

    if (status == PYGEN_RETURN) {
        int rc;
        if (task->task_must_cancel) {
            /* Cancelled right before the coroutine returned. */
            task->task_must_cancel = 0;
            rc = rl_fut_cancel(st, (RlFuture *)task, task->fut_cancel_msg);
            rc = rc < 0 ? -1 : 0;
        }
        else {
            rc = rl_fut_set_result(st, (RlFuture *)task, result);
        }
        Py_DECREF(result);
        return rc;
    }
    if (status == PYGEN_ERROR) {
        if (PyErr_ExceptionMatches(st->asyncio_CancelledError)) {
            /* Keep the original for chaining; then Future.cancel(). */
            PyObject *ce = rl_err_get_raised();
            Py_XSETREF(task->fut_cancelled_exc, ce);
            return rl_fut_cancel(st, (RlFuture *)task, NULL) < 0 ? -1 : 0;
        }
        PyObject *e = rl_err_get_raised();
        if (e == NULL) {
            PyErr_SetString(PyExc_SystemError, "coroutine failed without "
                                               "an exception");
            return -1;
        }
        int fatal = PyErr_GivenExceptionMatches(e, PyExc_KeyboardInterrupt) ||
                    PyErr_GivenExceptionMatches(e, PyExc_SystemExit);
        if (rl_fut_set_exception(st, (RlFuture *)task, e) < 0) {
            Py_DECREF(e);
            return -1;
        }
        if (fatal) {
            rl_err_set_raised(e); /* steals */
            return -1;
        }
        Py_DECREF(e);
        return 0;
    }
    int rc = task_handle_yield(st, task, result);
    Py_DECREF(result);
    return rc;
}

static int
task_step(rl_state *st, RlTask *task, PyObject *exc)
{
    PyObject *own = NULL;
    if (task->fut_state != RL_FUT_PENDING) {
        PyErr_Format(st->asyncio_InvalidStateError,
                     "_step(): already done: %R, %R", (PyObject *)task,
                     exc ? exc : Py_None);
        return -1;
    }
    if (task->task_must_cancel) {
        if (exc == NULL ||
            !PyErr_GivenExceptionMatches(exc, st->asyncio_CancelledError)) {
            own = rl_fut_make_cancelled_error(st, (RlFuture *)task);
            if (own == NULL) {
                return -1;
            }
            exc = own;
        }
        task->task_must_cancel = 0;
    }
    Py_CLEAR(task->task_fut_waiter);

    Py_INCREF(task); /* Beware: the step may drop the last other ref. */
    int rc = -1;
    if (enter_task(st, task->fut_loop, (PyObject *)task) == 0) {
        rc = task_step_run(st, task, exc);
        PyObject *saved = rc < 0 ? rl_err_get_raised() : NULL;
        if (leave_task(st, task->fut_loop, (PyObject *)task) < 0) {
            Py_XDECREF(saved); /* the leave error wins, as in CPython */
            rc = -1;
        }
        else if (saved != NULL) {
            rl_err_set_raised(saved);
        }
    }
    Py_XDECREF(own);
    Py_DECREF(task);
    return rc;
}

/* __wakeup(future) */
static int
task_wakeup(rl_state *st, RlTask *task, PyObject *fut)
{
    if (Py_IS_TYPE(fut, st->FutureType) || Py_IS_TYPE(fut, st->TaskType)) {
        RlFuture *f = (RlFuture *)fut;
        if (f->fut_state == RL_FUT_FINISHED) {
            f->fut_log_tb = 0; /* result() retrieves the exception */
            if (f->fut_exception == NULL) {
                return task_step(st, task, NULL);
            }
            PyObject *e = Py_NewRef(f->fut_exception);
            PyException_SetTraceback(
                e, f->fut_exception_tb ? f->fut_exception_tb : Py_None);
            int rc = task_step(st, task, e);
            Py_DECREF(e);
            return rc;
        }
        if (f->fut_state == RL_FUT_CANCELLED) {
            PyObject *e = rl_fut_make_cancelled_error(st, f);
            if (e == NULL) {
                return -1;
            }
            int rc = task_step(st, task, e);
            Py_DECREF(e);
            return rc;
        }
        /* Pending (the task was woken early): step without an error. */
        return task_step(st, task, NULL);
    }
    PyObject *r = PyObject_CallMethodNoArgs(fut, st->str_result);
    if (r != NULL) {
        Py_DECREF(r);
        return task_step(st, task, NULL);
    }
    PyObject *e = rl_err_get_raised();
    int rc = task_step(st, task, e);
    Py_XDECREF(e);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* creation */

static int
is_coroutine(rl_state *st, PyObject *coro)
{
    if (PyCoro_CheckExact(coro)) {
        return 1;
    }
    int cached = PySet_Contains(st->iscoroutine_typecache,
                                (PyObject *)Py_TYPE(coro));
    if (cached != 0) {
        return cached;
    }
    PyObject *r = PyObject_CallOneArg(st->asyncio_iscoroutine, coro);
    if (r == NULL) {
        return -1;
    }
    int is = PyObject_IsTrue(r);
    Py_DECREF(r);
    if (is == 1 && PySet_GET_SIZE(st->iscoroutine_typecache) < 100) {
        if (PySet_Add(st->iscoroutine_typecache, (PyObject *)Py_TYPE(coro)) <
            0) {
            return -1;
        }
    }
    return is;
}

static int
loop_is_running(rl_state *st, RlTask *task)
{
    if (task->fut_rloop != NULL) {
        return task->fut_rloop->has_thread;
    }
    (void)st;
    PyObject *r = PyObject_CallMethod(task->fut_loop, "is_running", NULL);
    if (r == NULL) {
        return -1;
    }
    int b = PyObject_IsTrue(r);
    Py_DECREF(r);
    return b;
}

static int
task_eager_start(rl_state *st, RlTask *task)
{
    PyObject *loop = task->fut_loop;
    PyObject *prev = swap_current_task(st, loop, (PyObject *)task);
    if (prev == NULL) {
        return -1;
    }
    int rc = register_eager_task(st, (PyObject *)task);
    if (rc == 0) {
        if (PyContext_Enter(task->task_context) == 0) {
            rc = task_step_run(st, task, NULL);
            if (PyContext_Exit(task->task_context) < 0) {
                rc = -1;
            }
        }
        else {
            rc = -1;
        }
        PyObject *saved = rc < 0 ? rl_err_get_raised() : NULL;
        if (unregister_eager_task(st, (PyObject *)task) < 0 &&
            saved == NULL) {
            rc = -1;
            saved = rl_err_get_raised();
        }
        rl_err_set_raised(saved);
    }
    PyObject *saved = rc < 0 ? rl_err_get_raised() : NULL;
    PyObject *cur = swap_current_task(st, loop, prev);
    Py_DECREF(prev);
    if (cur == NULL) {
        Py_XDECREF(saved);
        return -1;
    }
    if (cur != (PyObject *)task && saved == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "eager task start: current task changed");
        Py_DECREF(cur);
        return -1;
    }
    Py_DECREF(cur);
    if (task->fut_state != RL_FUT_PENDING) {
        Py_CLEAR(task->task_coro);
    }
    else if (register_task(st, (PyObject *)task) < 0 && saved == NULL) {
        return -1;
    }
    if (saved != NULL) {
        rl_err_set_raised(saved);
        return -1;
    }
    return rc;
}

static int
task_init(rl_state *st, RlTask *task, PyObject *coro, PyObject *loop,
          PyObject *name, PyObject *context, int eager_start)
{
    task->fut_is_task = 1;
    if (rl_fut_init(st, (RlFuture *)task, loop) < 0) {
        return -1;
    }
    int is = is_coroutine(st, coro);
    if (is < 0) {
        return -1;
    }
    if (!is) {
        /* no "destroyed but pending" for this half-made task */
        task->task_log_destroy_pending = 0;
        PyErr_Format(PyExc_TypeError, "a coroutine was expected, got %R",
                     coro);
        return -1;
    }
    if (name == NULL || name == Py_None) {
        Py_CLEAR(task->task_name);
        task->task_name_id = ++st->task_name_counter;
    }
    else if (PyUnicode_CheckExact(name)) {
        Py_XSETREF(task->task_name, Py_NewRef(name));
    }
    else {
        PyObject *s = PyObject_Str(name);
        if (s == NULL) {
            return -1;
        }
        Py_XSETREF(task->task_name, s);
    }
    task->task_num_cancels_requested = 0;
    task->task_must_cancel = 0;
    task->task_log_destroy_pending = 1;
    Py_CLEAR(task->task_fut_waiter);
    Py_XSETREF(task->task_coro, Py_NewRef(coro));
    if (context == NULL || context == Py_None) {
        context = PyContext_CopyCurrent();
        if (context == NULL) {
            return -1;
        }
    }
    else {
        Py_INCREF(context);
    }
    Py_XSETREF(task->task_context, context);

    if (eager_start) {
        int running = loop_is_running(st, task);
        if (running < 0) {
            return -1;
        }
        if (running) {
            return task_eager_start(st, task);
        }
    }
    if (task->fut_rloop != NULL && task->fut_rloop->closed) {
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return -1;
    }
    if (task_call_step_soon(st, task, NULL) < 0) {
        return -1;
    }
    return register_task(st, (PyObject *)task);
}

PyObject *
rl_task_new(rl_state *st, RlLoop *loop, PyObject *coro, PyObject *name,
            PyObject *context)
{
    RlTask *task = (RlTask *)st->TaskType->tp_alloc(st->TaskType, 0);
    if (task == NULL) {
        return NULL;
    }
    if (task_init(st, task, coro, (PyObject *)loop, name, context, 0) < 0) {
        Py_DECREF(task);
        return NULL;
    }
    return (PyObject *)task;
}

/* ---------------------------------------------------------------------- */
/* Python methods */

static int
Task_init(RlTask *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"coro",    "loop",        "name",
                             "context", "eager_start", NULL};
    PyObject *coro, *loop = NULL, *name = NULL, *context = NULL;
    int eager = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|$OOOp:Task", kwlist,
                                     &coro, &loop, &name, &context, &eager)) {
        return -1;
    }
    rl_state *st = task_st((PyObject *)self);
    if (st == NULL) {
        return -1;
    }
    return task_init(st, self, coro, loop, name, context, eager);
}

static int
task_cancel_impl(rl_state *st, RlTask *task, PyObject *msg)
{
    task->fut_log_tb = 0;
    if (task->fut_state != RL_FUT_PENDING) {
        return 0;
    }
    task->task_num_cancels_requested++;
    PyObject *waiter = task->task_fut_waiter;
    if (waiter != NULL) {
        Py_INCREF(waiter);
        int r;
        if (Py_IS_TYPE(waiter, st->FutureType)) {
            r = rl_fut_cancel(st, (RlFuture *)waiter, msg);
        }
        else if (Py_IS_TYPE(waiter, st->TaskType)) {
            r = task_cancel_impl(st, (RlTask *)waiter, msg);
        }
        else {
            PyObject *res = PyObject_CallMethodOneArg(
                waiter, st->str_cancel, msg ? msg : Py_None);
            r = res == NULL ? -1 : PyObject_IsTrue(res);
            Py_XDECREF(res);
        }
        Py_DECREF(waiter);
        if (r < 0) {
            return -1;
        }
        if (r) {
            /* Leave the waiter: it may be a Task that catches and ignores
             * the cancellation, so we may have to cancel it again. */
            return 1;
        }
    }
    task->task_must_cancel = 1;
    Py_XSETREF(task->fut_cancel_msg, Py_XNewRef(msg));
    return 1;
}

static PyObject *
Task_cancel(RlTask *self, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    rl_state *st = task_st((PyObject *)self);
    PyObject *msg;
    if (rl_parse_cancel_args(st, args, nargs, kwnames, &msg) < 0) {
        return NULL;
    }
    int r = task_cancel_impl(st, self, msg == Py_None ? NULL : msg);
    if (r < 0) {
        return NULL;
    }
    return PyBool_FromLong(r);
}

static PyObject *
Task_cancelling(RlTask *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(self->task_num_cancels_requested);
}

static PyObject *
Task_uncancel(RlTask *self, PyObject *Py_UNUSED(ignored))
{
    if (self->task_num_cancels_requested > 0) {
        self->task_num_cancels_requested--;
#if RL_PY313
        /* 3.13: a fully uncancelled task forgets a pending cancel. */
        if (self->task_num_cancels_requested == 0) {
            self->task_must_cancel = 0;
        }
#endif
    }
    return PyLong_FromLong(self->task_num_cancels_requested);
}

static PyObject *
Task_get_coro(RlTask *self, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(self->task_coro ? self->task_coro : Py_None);
}

static PyObject *
Task_get_context(RlTask *self, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(self->task_context ? self->task_context : Py_None);
}

static PyObject *
Task_get_name(RlTask *self, PyObject *Py_UNUSED(ignored))
{
    if (self->task_name == NULL) {
        if (self->task_name_id == 0) {
            Py_RETURN_NONE;
        }
        self->task_name = PyUnicode_FromFormat(
            "Task-%llu", (unsigned long long)self->task_name_id);
        if (self->task_name == NULL) {
            return NULL;
        }
    }
    return Py_NewRef(self->task_name);
}

static PyObject *
Task_set_name(RlTask *self, PyObject *value)
{
    if (!PyUnicode_CheckExact(value)) {
        value = PyObject_Str(value);
        if (value == NULL) {
            return NULL;
        }
    }
    else {
        Py_INCREF(value);
    }
    Py_XSETREF(self->task_name, value);
    Py_RETURN_NONE;
}

static PyObject *
Task_set_result(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(arg))
{
    PyErr_SetString(PyExc_RuntimeError,
                    "Task does not support set_result operation");
    return NULL;
}

static PyObject *
Task_set_exception(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(arg))
{
    PyErr_SetString(PyExc_RuntimeError,
                    "Task does not support set_exception operation");
    return NULL;
}

static PyObject *
Task_get_stack(RlTask *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"limit", NULL};
    PyObject *limit = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$O:get_stack", kwlist,
                                     &limit)) {
        return NULL;
    }
    rl_state *st = task_st((PyObject *)self);
    return PyObject_CallFunctionObjArgs(st->asyncio_task_get_stack, self,
                                        limit, NULL);
}

static PyObject *
Task_print_stack(RlTask *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"limit", "file", NULL};
    PyObject *limit = Py_None, *file = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$OO:print_stack", kwlist,
                                     &limit, &file)) {
        return NULL;
    }
    rl_state *st = task_st((PyObject *)self);
    return PyObject_CallFunctionObjArgs(st->asyncio_task_print_stack, self,
                                        limit, file, NULL);
}

static PyObject *
Task_get_log_destroy_pending(RlTask *self, void *Py_UNUSED(c))
{
    return PyBool_FromLong(self->task_log_destroy_pending);
}

static int
Task_set_log_destroy_pending(RlTask *self, PyObject *v, void *Py_UNUSED(c))
{
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete attribute");
        return -1;
    }
    int b = PyObject_IsTrue(v);
    if (b < 0) {
        return -1;
    }
    self->task_log_destroy_pending = (uint8_t)b;
    return 0;
}

static PyObject *
Task_get_must_cancel(RlTask *self, void *Py_UNUSED(c))
{
    return PyBool_FromLong(self->task_must_cancel);
}

static PyObject *
Task_get_coro_attr(RlTask *self, void *Py_UNUSED(c))
{
    return Py_NewRef(self->task_coro ? self->task_coro : Py_None);
}

static PyObject *
Task_get_fut_waiter(RlTask *self, void *Py_UNUSED(c))
{
    return Py_NewRef(self->task_fut_waiter ? self->task_fut_waiter
                                           : Py_None);
}

static PyObject *
Task_get_num_cancels(RlTask *self, void *Py_UNUSED(c))
{
    return PyLong_FromLong(self->task_num_cancels_requested);
}

/* "Task was destroyed but it is pending!", then the Future's message. */
static void
Task_finalize(PyObject *obj)
{
    RlTask *task = (RlTask *)obj;
    if (task->fut_state == RL_FUT_PENDING && task->task_log_destroy_pending &&
        task->fut_loop != NULL) {
        PyObject *exc = rl_err_get_raised();
        rl_state *st = task_st(obj);
        PyObject *ctx = NULL, *r = NULL;
        if (st != NULL) {
            ctx = Py_BuildValue("{sOss}", "task", obj, "message",
                                "Task was destroyed but it is pending!");
            if (ctx != NULL && task->fut_source_tb != NULL &&
                PyDict_SetItemString(ctx, "source_traceback",
                                     task->fut_source_tb) < 0) {
                Py_CLEAR(ctx);
            }
            if (ctx != NULL) {
                r = PyObject_CallMethodOneArg(
                    task->fut_loop, st->str_call_exception_handler, ctx);
            }
        }
        if (r == NULL && PyErr_Occurred()) {
            PyErr_WriteUnraisable(obj);
        }
        Py_XDECREF(r);
        Py_XDECREF(ctx);
        rl_err_set_raised(exc);
    }
    rl_future_finalize(obj);
}

static PyMethodDef Task_methods[] = {
    {"cancel", RL_CFUNC(Task_cancel), METH_FASTCALL | METH_KEYWORDS,
     "cancel($self, /, msg=None)\n--\n\nRequest that the task cancel "
     "itself."},
    {"cancelling", (PyCFunction)Task_cancelling, METH_NOARGS, NULL},
    {"uncancel", (PyCFunction)Task_uncancel, METH_NOARGS, NULL},
    {"get_coro", (PyCFunction)Task_get_coro, METH_NOARGS, NULL},
    {"get_context", (PyCFunction)Task_get_context, METH_NOARGS, NULL},
    {"get_name", (PyCFunction)Task_get_name, METH_NOARGS, NULL},
    {"set_name", (PyCFunction)Task_set_name, METH_O, NULL},
    {"set_result", (PyCFunction)Task_set_result, METH_O, NULL},
    {"set_exception", (PyCFunction)Task_set_exception, METH_O, NULL},
    {"get_stack", (PyCFunction)(void (*)(void))Task_get_stack,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"print_stack", (PyCFunction)(void (*)(void))Task_print_stack,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Task_getset[] = {
    {"_log_destroy_pending", (getter)Task_get_log_destroy_pending,
     (setter)Task_set_log_destroy_pending, NULL, NULL},
    {"_must_cancel", (getter)Task_get_must_cancel, NULL, NULL, NULL},
    {"_coro", (getter)Task_get_coro_attr, NULL, NULL, NULL},
    {"_fut_waiter", (getter)Task_get_fut_waiter, NULL, NULL, NULL},
    {"_num_cancels_requested", (getter)Task_get_num_cancels, NULL, NULL,
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Task_slots[] = {
    {Py_tp_init, Task_init},
    {Py_tp_dealloc, rl_future_dealloc},
    {Py_tp_traverse, rl_future_traverse},
    {Py_tp_clear, rl_future_clear},
    {Py_tp_finalize, Task_finalize},
    {Py_tp_methods, Task_methods},
    {Py_tp_getset, Task_getset},
    {Py_tp_doc, "Task(coro, *, loop=None, name=None, context=None)\n--\n\n"
                "asyncio.Task, native: isinstance(t, asyncio.Task) holds."},
    {0, NULL},
};

static PyType_Spec Task_spec = {
    .name = "ringloop.Task",
    .basicsize = sizeof(RlTask),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = Task_slots,
};

/* ---------------------------------------------------------------------- */
/* TaskCall: task.__step / task.__wakeup as a callable, for foreign loops
 * and for Python code that looks at a future's _callbacks. */

static PyObject *
TaskCall_new(PyTypeObject *tp, PyObject *args, PyObject *kwds)
{
    PyObject *task;
    int kind;
    rl_state *st = rl_get_state_by_type(tp);
    if (st == NULL || !PyArg_ParseTuple(args, "O!i", st->TaskType, &task,
                                        &kind)) {
        return NULL;
    }
    (void)kwds;
    return taskcall_new(st, (RlTask *)task, kind ? TC_WAKEUP : TC_STEP);
}

static PyObject *
TaskCall_call(RlTaskCall *self, PyObject *args, PyObject *kwds)
{
    rl_state *st = task_st((PyObject *)self->task);
    PyObject *arg = NULL;
    if (kwds != NULL && PyDict_GET_SIZE(kwds) != 0) {
        PyErr_SetString(PyExc_TypeError, "no keyword arguments expected");
        return NULL;
    }
    if (!PyArg_UnpackTuple(args, "TaskCall", self->kind == TC_WAKEUP ? 1 : 0,
                           1, &arg)) {
        return NULL;
    }
    RlTask *task = self->task;
    Py_INCREF(task);
    int rc = self->kind == TC_WAKEUP ? task_wakeup(st, task, arg)
                                     : task_step(st, task, arg);
    Py_DECREF(task);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
TaskCall_richcompare(RlTaskCall *a, PyObject *b, int op)
{
    if ((op != Py_EQ && op != Py_NE) || !Py_IS_TYPE(b, Py_TYPE(a))) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    RlTaskCall *o = (RlTaskCall *)b;
    int eq = a->task == o->task && a->kind == o->kind;
    return PyBool_FromLong(op == Py_EQ ? eq : !eq);
}

static Py_hash_t
TaskCall_hash(RlTaskCall *self)
{
    Py_hash_t h = PyObject_Hash((PyObject *)self->task);
    if (h == -1) {
        return -1;
    }
    h ^= self->kind;
    return h == -1 ? -2 : h;
}

/* Shown like a bound method's qualname ("Task.__wakeup"), never with
 * the task's repr inside: a task's repr shows its waiter's callbacks,
 * which show this, which must not recurse. */
static PyObject *
TaskCall_repr(RlTaskCall *self)
{
    return PyUnicode_FromFormat("<%s of Task object at %p>",
                                self->kind == TC_WAKEUP ? "Task.__wakeup"
                                                        : "Task.__step",
                                (void *)self->task);
}

static PyObject *
TaskCall_get_self(RlTaskCall *self, void *Py_UNUSED(c))
{
    return Py_NewRef((PyObject *)self->task);
}

static PyObject *
TaskCall_get_qualname(RlTaskCall *self, void *Py_UNUSED(c))
{
    return PyUnicode_FromString(self->kind == TC_WAKEUP ? "Task.__wakeup"
                                                        : "Task.__step");
}

static int
TaskCall_traverse(RlTaskCall *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->task);
    return 0;
}

static int
TaskCall_clear(RlTaskCall *self)
{
    Py_CLEAR(self->task);
    return 0;
}

static void
TaskCall_dealloc(RlTaskCall *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->task);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyGetSetDef TaskCall_getset[] = {
    {"__self__", (getter)TaskCall_get_self, NULL, NULL, NULL},
    {"__qualname__", (getter)TaskCall_get_qualname, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot TaskCall_slots[] = {
    {Py_tp_new, TaskCall_new},
    {Py_tp_call, TaskCall_call},
    {Py_tp_richcompare, TaskCall_richcompare},
    {Py_tp_hash, TaskCall_hash},
    {Py_tp_repr, TaskCall_repr},
    {Py_tp_getset, TaskCall_getset},
    {Py_tp_traverse, TaskCall_traverse},
    {Py_tp_clear, TaskCall_clear},
    {Py_tp_dealloc, TaskCall_dealloc},
    {0, NULL},
};

static PyType_Spec TaskCall_spec = {
    .name = "ringloop._TaskCall",
    .basicsize = sizeof(RlTaskCall),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = TaskCall_slots,
};

int
rl_task_init_types(PyObject *module, rl_state *st)
{
    st->TaskType = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &Task_spec, (PyObject *)st->FutureType);
    if (st->TaskType == NULL) {
        return -1;
    }
    st->TaskCallType = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &TaskCall_spec, NULL);
    if (st->TaskCallType == NULL) {
        return -1;
    }
    return PyModule_AddType(module, st->TaskType);
}
