/* handle.c -- Handle and TimerHandle: what call_soon/call_later return.
 *
 * Behaves like asyncio.events.Handle/TimerHandle (cancel, cancelled,
 * get_context, when, repr, ordering) but stores up to three arguments
 * inline, runs the callback with vectorcall inside the context entered
 * through the C-API, and is recycled through a per-loop free list when the
 * loop holds its only reference. */
#include "internal.h"

#include <structmember.h>

static PyObject *Handle_repr(RlHandle *h);

/* ---------------------------------------------------------------------- */
/* creation and recycling */

static inline int
freelist_index(int is_timer)
{
    return is_timer ? 1 : 0;
}

RlHandle *
rl_handle_new(RlLoop *loop, int is_timer, PyObject *callback,
              PyObject *const *args, Py_ssize_t nargs, PyObject *context)
{
    rl_state *st = loop->st;
    RlHandle *h;
    int fi = freelist_index(is_timer);

    if (context == NULL) {
        context = PyContext_CopyCurrent();
        if (context == NULL) {
            return NULL;
        }
    }
    else {
        Py_INCREF(context);
    }

    PyObject *argtuple = NULL;
    if (nargs > RL_HANDLE_INLINE_ARGS) {
        argtuple = PyTuple_New(nargs);
        if (argtuple == NULL) {
            Py_DECREF(context);
            return NULL;
        }
        for (Py_ssize_t i = 0; i < nargs; i++) {
            PyTuple_SET_ITEM(argtuple, i, Py_NewRef(args[i]));
        }
    }

    if (loop->freelist[fi] != NULL) {
        /* Recycled objects keep refcount 1; they are untracked while on
         * the free list (not in gc.get_objects()) and tracked again below,
         * once their fields are valid. */
        h = loop->freelist[fi];
        loop->freelist[fi] = (RlHandle *)h->callback;
        loop->nfree[fi]--;
    }
    else {
        PyTypeObject *tp = is_timer ? st->TimerHandleType : st->HandleType;
        h = PyObject_GC_New(RlHandle, tp);
        if (h == NULL) {
            Py_DECREF(context);
            Py_XDECREF(argtuple);
            return NULL;
        }
        h->weakreflist = NULL;
    }
    h->callback = Py_NewRef(callback);
    h->argtuple = argtuple;
    if (argtuple == NULL) {
        for (Py_ssize_t i = 0; i < nargs; i++) {
            h->args[i] = Py_NewRef(args[i]);
        }
    }
    h->nargs = nargs;
    h->context = context;
    h->loop = (RlLoop *)Py_NewRef((PyObject *)loop);
    h->source_traceback = NULL;
    h->repr = NULL;
    h->when_obj = NULL;
    h->cancelled = 0;
    h->scheduled = 0;
    h->is_timer = (char)is_timer;
    h->when = 0;
    PyObject_GC_Track((PyObject *)h);
    if (RL_UNLIKELY(loop->debug)) {
        /* Stack of the Python caller (C functions have no frame). */
        h->source_traceback =
            PyObject_CallNoArgs(st->asyncio_extract_stack);
        if (h->source_traceback == NULL) {
            Py_DECREF(h);
            return NULL;
        }
    }
    return h;
}

/* Move every owned reference out of h into out[]; returns how many. */
static int
handle_steal_fields(RlHandle *h, PyObject **out)
{
    int n = 0;
    out[n++] = h->callback;
    h->callback = NULL;
    if (h->argtuple != NULL) {
        out[n++] = h->argtuple;
        h->argtuple = NULL;
    }
    else {
        for (Py_ssize_t i = 0; i < h->nargs; i++) {
            out[n++] = h->args[i];
            h->args[i] = NULL;
        }
    }
    h->nargs = 0;
    out[n++] = h->context;
    h->context = NULL;
    out[n++] = (PyObject *)h->loop;
    h->loop = NULL;
    out[n++] = h->source_traceback;
    h->source_traceback = NULL;
    out[n++] = h->repr;
    h->repr = NULL;
    out[n++] = h->when_obj;
    h->when_obj = NULL;
    return n;
}

void
rl_handle_release(RlLoop *loop, RlHandle *h)
{
    int fi = freelist_index(h->is_timer);
    if (Py_REFCNT(h) == 1 && h->weakreflist == NULL && !loop->closed &&
        loop->nfree[fi] < RL_FREELIST_MAX && h->loop == loop) {
        PyObject *old[RL_HANDLE_INLINE_ARGS + 7];
        int n = handle_steal_fields(h, old);
        /* On the free list the handle is loop-internal memory, not a live
         * object: the collector must not see it (gc.get_objects()). */
        PyObject_GC_UnTrack((PyObject *)h);
        /* Beware: h->loop was a reference to loop; the caller still holds
         * one (it is running us), so the decref below cannot free it. */
        h->callback = (PyObject *)loop->freelist[fi];
        loop->freelist[fi] = h;
        loop->nfree[fi]++;
        for (int i = 0; i < n; i++) {
            Py_XDECREF(old[i]);
        }
        return;
    }
    Py_DECREF(h);
}

void
rl_handle_freelist_clear(RlLoop *loop)
{
    for (int fi = 0; fi < 2; fi++) {
        while (loop->freelist[fi] != NULL) {
            RlHandle *h = loop->freelist[fi];
            loop->freelist[fi] = (RlHandle *)h->callback;
            h->callback = NULL;
            loop->nfree[fi]--;
            Py_DECREF(h);
        }
    }
}

/* ---------------------------------------------------------------------- */
/* running */

/* Run h's callback in its context.  0 ok (errors reported), -1 propagate. */
static int
handle_run(RlHandle *h)
{
    RlLoop *loop = h->loop;
    PyObject *inl[RL_HANDLE_INLINE_ARGS];
    PyObject *const *argv;
    Py_ssize_t nargs = h->nargs;
    int rc = 0;

    /* Beware: the callback may cancel h, which drops h's references to the
     * callback and arguments; hold our own for the call. */
    Py_INCREF(loop);
    PyObject *cb = Py_NewRef(h->callback);
    PyObject *ctx = Py_NewRef(h->context);
    PyObject *argtuple = Py_XNewRef(h->argtuple);
    if (argtuple != NULL) {
        argv = &PyTuple_GET_ITEM(argtuple, 0);
    }
    else {
        for (Py_ssize_t i = 0; i < nargs; i++) {
            inl[i] = Py_NewRef(h->args[i]);
        }
        argv = inl;
    }

    PyObject *res = NULL;
    if (PyContext_Enter(ctx) == 0) {
        res = PyObject_Vectorcall(cb, argv, (size_t)nargs, NULL);
        if (PyContext_Exit(ctx) < 0) {
            Py_CLEAR(res);
        }
    }
    if (res != NULL) {
        Py_DECREF(res);
    }
    else {
        rc = rl_loop_report_callback_error(loop, h);
        if (rc == 0 && PyErr_Occurred()) {
            rc = -1;
        }
    }

    Py_DECREF(cb);
    Py_DECREF(ctx);
    if (argtuple != NULL) {
        Py_DECREF(argtuple);
    }
    else {
        for (Py_ssize_t i = 0; i < nargs; i++) {
            Py_DECREF(inl[i]);
        }
    }
    Py_DECREF(loop);
    return rc;
}

/* Ready-queue record for a public Handle: a = the handle (owned). */
int
rl_handle_ready_fn(RlLoop *loop, PyObject *a, PyObject *b)
{
    (void)b;
    RlHandle *h = (RlHandle *)a;
    int rc = 0;
    if (!h->cancelled) {
        if (RL_UNLIKELY(loop->debug)) {
            Py_XSETREF(loop->current_handle, Py_NewRef(a));
            rc = handle_run(h);
            Py_CLEAR(loop->current_handle);
        }
        else {
            rc = handle_run(h);
        }
    }
    rl_handle_release(loop, h);
    return rc;
}

/* Build the asyncio-style `_args` tuple (None when cancelled). */
static PyObject *
handle_args_tuple(RlHandle *h)
{
    if (h->callback == NULL) {
        Py_RETURN_NONE;
    }
    if (h->argtuple != NULL) {
        return Py_NewRef(h->argtuple);
    }
    PyObject *t = PyTuple_New(h->nargs);
    if (t == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < h->nargs; i++) {
        PyTuple_SET_ITEM(t, i, Py_NewRef(h->args[i]));
    }
    return t;
}

/* Called by the loop after `callback` raised (exception set). */
int
rl_loop_report_callback_error(RlLoop *loop, RlHandle *h)
{
    rl_state *st = loop->st;
    if (PyErr_ExceptionMatches(PyExc_SystemExit) ||
        PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        return -1;
    }
    PyObject *exc = rl_err_get_raised();
    PyObject *args = NULL, *cbtext = NULL, *msg = NULL, *ctx = NULL;
    PyObject *res = NULL;
    int rc = -1;

    /* h may have been cancelled by its own callback: then it no longer
     * knows its callback, as asyncio's Handle. */
    args = handle_args_tuple(h);
    if (args == NULL) {
        goto done;
    }
    cbtext = PyObject_CallFunction(st->hook_format_cb, "OOO",
                                   h->callback ? h->callback : Py_None, args,
                                   loop->debug ? Py_True : Py_False);
    if (cbtext == NULL) {
        goto done;
    }
    msg = PyUnicode_FromFormat("Exception in callback %U", cbtext);
    if (msg == NULL) {
        goto done;
    }
    ctx = PyDict_New();
    if (ctx == NULL || PyDict_SetItem(ctx, st->str_message, msg) < 0 ||
        PyDict_SetItem(ctx, st->str_exception, exc) < 0 ||
        PyDict_SetItem(ctx, st->str_handle, (PyObject *)h) < 0) {
        goto done;
    }
    if (h->source_traceback != NULL &&
        PyObject_IsTrue(h->source_traceback) == 1 &&
        PyDict_SetItem(ctx, st->str_source_traceback, h->source_traceback) <
            0) {
        goto done;
    }
    res = PyObject_CallMethodOneArg((PyObject *)loop,
                                    st->str_call_exception_handler, ctx);
    if (res != NULL) {
        rc = 0;
    }
done:
    Py_XDECREF(exc);
    Py_XDECREF(args);
    Py_XDECREF(cbtext);
    Py_XDECREF(msg);
    Py_XDECREF(ctx);
    Py_XDECREF(res);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* type slots */

static int
Handle_traverse(RlHandle *h, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(h));
    if (h->loop == NULL) {
        /* On a free list: callback links the list, not a reference. */
        return 0;
    }
    Py_VISIT(h->callback);
    if (h->argtuple != NULL) {
        Py_VISIT(h->argtuple);
    }
    else {
        for (Py_ssize_t i = 0; i < h->nargs; i++) {
            Py_VISIT(h->args[i]);
        }
    }
    Py_VISIT(h->context);
    Py_VISIT(h->loop);
    Py_VISIT(h->source_traceback);
    Py_VISIT(h->repr);
    Py_VISIT(h->when_obj);
    return 0;
}

static int
Handle_clear(RlHandle *h)
{
    if (h->loop == NULL) {
        /* On a free list: callback links the list, not a reference. */
        return 0;
    }
    PyObject *old[RL_HANDLE_INLINE_ARGS + 7];
    int n = handle_steal_fields(h, old);
    for (int i = 0; i < n; i++) {
        Py_XDECREF(old[i]);
    }
    return 0;
}

static void
Handle_dealloc(RlHandle *h)
{
    PyTypeObject *tp = Py_TYPE(h);
    PyObject_GC_UnTrack(h);
    if (h->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)h);
    }
    (void)Handle_clear(h);
    tp->tp_free((PyObject *)h);
    Py_DECREF(tp);
}

static PyObject *
Handle_repr(RlHandle *h)
{
    if (h->repr != NULL) {
        return Py_NewRef(h->repr);
    }
    if (h->loop == NULL) {
        return PyUnicode_FromFormat("<%s>", Py_TYPE(h)->tp_name);
    }
    return PyObject_CallOneArg(h->loop->st->hook_handle_repr, (PyObject *)h);
}

/* cancel() for both types: TimerHandle also tells the loop, which then
 * counts a cancelled timer still in its heap. */
int
rl_handle_cancel(RlHandle *h)
{
    if (h->cancelled) {
        return 0;
    }
    if (h->is_timer && h->scheduled && h->loop != NULL) {
        h->loop->timers_cancelled++;
    }
    h->cancelled = 1;
    if (h->loop == NULL) {
        return 0;
    }
    if (h->loop->debug) {
        /* Keep a representation so that "Executing <Handle...>" and the
         * repr stay informative after the callback is dropped. */
        PyObject *r = Handle_repr(h);
        if (r == NULL) {
            return -1;
        }
        Py_XSETREF(h->repr, r);
    }
    /* Drop the callback and its arguments now, as asyncio does, so that
     * they are not kept alive by a cancelled timer sitting in the heap. */
    PyObject *cb = h->callback;
    PyObject *at = h->argtuple;
    PyObject *inl[RL_HANDLE_INLINE_ARGS];
    Py_ssize_t n = at == NULL ? h->nargs : 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        inl[i] = h->args[i];
        h->args[i] = NULL;
    }
    h->callback = NULL;
    h->argtuple = NULL;
    h->nargs = 0;
    Py_XDECREF(cb);
    Py_XDECREF(at);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_XDECREF(inl[i]);
    }
    return 0;
}

static PyObject *
Handle_cancel(RlHandle *h, PyObject *Py_UNUSED(ignored))
{
    if (rl_handle_cancel(h) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Handle_cancelled(RlHandle *h, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(h->cancelled);
}

static PyObject *
Handle_get_context(RlHandle *h, PyObject *Py_UNUSED(ignored))
{
    if (h->context == NULL) {
        Py_RETURN_NONE;
    }
    return Py_NewRef(h->context);
}

/* _run(): asyncio's Handle has it and some code calls it directly. */
static PyObject *
Handle__run(RlHandle *h, PyObject *Py_UNUSED(ignored))
{
    if (h->callback == NULL || h->loop == NULL) {
        Py_RETURN_NONE;
    }
    if (handle_run(h) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* isinstance(h, asyncio.Handle / asyncio.TimerHandle) holds, as the docs
 * promise for what call_soon/call_later return; type(h) stays native. */
static PyObject *
Handle_get_class(RlHandle *h, void *Py_UNUSED(c))
{
    rl_state *st = rl_get_state_by_type(Py_TYPE(h));
    if (st == NULL) {
        return NULL;
    }
    if (Py_IS_TYPE(h, st->TimerHandleType)) {
        return Py_NewRef(st->asyncio_TimerHandle);
    }
    if (Py_IS_TYPE(h, st->HandleType)) {
        return Py_NewRef(st->asyncio_Handle);
    }
    return Py_NewRef((PyObject *)Py_TYPE(h));
}

static PyObject *
Handle_get_callback(RlHandle *h, void *Py_UNUSED(c))
{
    return Py_NewRef(h->callback ? h->callback : Py_None);
}

static PyObject *
Handle_get_args(RlHandle *h, void *Py_UNUSED(c))
{
    return handle_args_tuple(h);
}

static PyObject *
Handle_get_loop(RlHandle *h, void *Py_UNUSED(c))
{
    return Py_NewRef(h->loop ? (PyObject *)h->loop : Py_None);
}

static PyObject *
Handle_get_cancelled_attr(RlHandle *h, void *Py_UNUSED(c))
{
    return PyBool_FromLong(h->cancelled);
}

static PyObject *
Handle_get_context_attr(RlHandle *h, void *Py_UNUSED(c))
{
    return Py_NewRef(h->context ? h->context : Py_None);
}

static PyObject *
Handle_get_source_traceback(RlHandle *h, void *Py_UNUSED(c))
{
    return Py_NewRef(h->source_traceback ? h->source_traceback : Py_None);
}

static int
Handle_set_source_traceback(RlHandle *h, PyObject *v, void *Py_UNUSED(c))
{
    Py_XSETREF(h->source_traceback, v == Py_None ? NULL : Py_XNewRef(v));
    return 0;
}

static PyObject *
Handle_get_repr_attr(RlHandle *h, void *Py_UNUSED(c))
{
    return Py_NewRef(h->repr ? h->repr : Py_None);
}

/* asyncio's TimerHandle._when: the object itself, made once from the
 * double when the loop computed a plain float (so that when() is when()). */
static PyObject *
timer_when_obj(RlHandle *h)
{
    if (h->when_obj == NULL) {
        h->when_obj = PyFloat_FromDouble(h->when);
        if (h->when_obj == NULL) {
            return NULL;
        }
    }
    return Py_NewRef(h->when_obj);
}

static PyObject *
TimerHandle_when(RlHandle *h, PyObject *Py_UNUSED(ignored))
{
    return timer_when_obj(h);
}

static PyObject *
TimerHandle_get_when(RlHandle *h, void *Py_UNUSED(c))
{
    return timer_when_obj(h);
}

static PyObject *
TimerHandle_get_scheduled(RlHandle *h, void *Py_UNUSED(c))
{
    return PyBool_FromLong(h->scheduled);
}

static Py_hash_t
TimerHandle_hash(RlHandle *h)
{
    PyObject *f = timer_when_obj(h);
    if (f == NULL) {
        return -1;
    }
    Py_hash_t hv = PyObject_Hash(f);
    Py_DECREF(f);
    return hv;
}

static int
timer_eq(RlHandle *a, RlHandle *b)
{
    if (a->when != b->when || a->cancelled != b->cancelled) {
        return 0;
    }
    int r = PyObject_RichCompareBool(a->callback ? a->callback : Py_None,
                                     b->callback ? b->callback : Py_None,
                                     Py_EQ);
    if (r != 1) {
        return r;
    }
    PyObject *ta = handle_args_tuple(a);
    if (ta == NULL) {
        return -1;
    }
    PyObject *tb = handle_args_tuple(b);
    if (tb == NULL) {
        Py_DECREF(ta);
        return -1;
    }
    r = PyObject_RichCompareBool(ta, tb, Py_EQ);
    Py_DECREF(ta);
    Py_DECREF(tb);
    return r;
}

static PyObject *
TimerHandle_richcompare(RlHandle *a, PyObject *other, int op)
{
    rl_state *st = rl_get_state_by_type(Py_TYPE(a));
    if (st == NULL) {
        return NULL;
    }
    if (!PyObject_TypeCheck(other, st->TimerHandleType)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    RlHandle *b = (RlHandle *)other;
    int r;
    switch (op) {
    case Py_LT:
        return PyBool_FromLong(a->when < b->when);
    case Py_GT:
        return PyBool_FromLong(a->when > b->when);
    case Py_LE:
    case Py_GE:
        if (op == Py_LE ? a->when < b->when : a->when > b->when) {
            Py_RETURN_TRUE;
        }
        r = timer_eq(a, b);
        return r < 0 ? NULL : PyBool_FromLong(r);
    case Py_EQ:
    case Py_NE:
        r = timer_eq(a, b);
        if (r < 0) {
            return NULL;
        }
        return PyBool_FromLong(op == Py_EQ ? r : !r);
    }
    Py_RETURN_NOTIMPLEMENTED;
}

static PyMethodDef Handle_methods[] = {
    {"cancel", (PyCFunction)Handle_cancel, METH_NOARGS,
     "cancel($self, /)\n--\n\nCancel the call; does nothing if it ran."},
    {"cancelled", (PyCFunction)Handle_cancelled, METH_NOARGS,
     "cancelled($self, /)\n--\n\nTrue if cancel() was called."},
    {"get_context", (PyCFunction)Handle_get_context, METH_NOARGS,
     "get_context($self, /)\n--\n\nThe contextvars.Context of the call."},
    {"_run", (PyCFunction)Handle__run, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Handle_getset[] = {
    {"__class__", (getter)Handle_get_class, NULL, NULL, NULL},
    {"_callback", (getter)Handle_get_callback, NULL, NULL, NULL},
    {"_args", (getter)Handle_get_args, NULL, NULL, NULL},
    {"_loop", (getter)Handle_get_loop, NULL, NULL, NULL},
    {"_cancelled", (getter)Handle_get_cancelled_attr, NULL, NULL, NULL},
    {"_context", (getter)Handle_get_context_attr, NULL, NULL, NULL},
    {"_source_traceback", (getter)Handle_get_source_traceback,
     (setter)Handle_set_source_traceback, NULL, NULL},
    {"_repr", (getter)Handle_get_repr_attr, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef Handle_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(RlHandle, weakreflist),
     READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot Handle_slots[] = {
    {Py_tp_dealloc, Handle_dealloc},
    {Py_tp_traverse, Handle_traverse},
    {Py_tp_clear, Handle_clear},
    {Py_tp_repr, Handle_repr},
    {Py_tp_methods, Handle_methods},
    {Py_tp_getset, Handle_getset},
    {Py_tp_members, Handle_members},
    {Py_tp_doc, "Object returned by call_soon() and add_reader()."},
    {0, NULL},
};

static PyType_Spec Handle_spec = {
    .name = "ringloop.Handle",
    .basicsize = sizeof(RlHandle),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_BASETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Handle_slots,
};

static PyMethodDef TimerHandle_methods[] = {
    {"when", (PyCFunction)TimerHandle_when, METH_NOARGS,
     "when($self, /)\n--\n\nThe loop time at which the call is scheduled."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef TimerHandle_getset[] = {
    {"_when", (getter)TimerHandle_get_when, NULL, NULL, NULL},
    {"_scheduled", (getter)TimerHandle_get_scheduled, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot TimerHandle_slots[] = {
    {Py_tp_dealloc, Handle_dealloc},
    {Py_tp_traverse, Handle_traverse},
    {Py_tp_clear, Handle_clear},
    {Py_tp_methods, TimerHandle_methods},
    {Py_tp_getset, TimerHandle_getset},
    {Py_tp_hash, TimerHandle_hash},
    {Py_tp_richcompare, TimerHandle_richcompare},
    {Py_tp_doc, "Object returned by call_later() and call_at()."},
    {0, NULL},
};

static PyType_Spec TimerHandle_spec = {
    .name = "ringloop.TimerHandle",
    .basicsize = sizeof(RlHandle),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_DISALLOW_INSTANTIATION | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = TimerHandle_slots,
};

int
rl_handle_init_types(PyObject *module, rl_state *st)
{
    st->HandleType = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &Handle_spec, NULL);
    if (st->HandleType == NULL) {
        return -1;
    }
    st->TimerHandleType = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &TimerHandle_spec, (PyObject *)st->HandleType);
    if (st->TimerHandleType == NULL) {
        return -1;
    }
    if (PyModule_AddType(module, st->HandleType) < 0 ||
        PyModule_AddType(module, st->TimerHandleType) < 0) {
        return -1;
    }
    return 0;
}
