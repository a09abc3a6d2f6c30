/* module.c -- ringloop._core: multi-phase init, module state, cached
 * imports.  traverse and clear mirror rl_state (internal.h) line for line. */
#include "internal.h"

/* The parts of the Loop outside core/ (internal.h, rl_loop_part): this
 * file is where they meet, so it alone includes their headers. */
#include "fs.h"
#include "net.h"
#include "sockops.h"
#include "tls.h"

const rl_loop_part *const rl_loop_parts[] = {
    &rl_net_part,  /* transports, servers; st->net first: others use it */
    &rl_sock_part, /* sock_*, datagram endpoints */
    &rl_fs_part,   /* ringloop.fs: file requests on the ring */
    &rl_tls_part,  /* the TLS record layer's C methods */
    NULL,
};

rl_state *
rl_get_state_by_type(PyTypeObject *tp)
{
    PyObject *mod = PyType_GetModuleByDef(tp, &rl_module_def);
    if (mod == NULL) {
        return NULL;
    }
    return PyModule_GetState(mod);
}

static int
module_traverse(PyObject *mod, visitproc visit, void *arg)
{
    rl_state *st = PyModule_GetState(mod);
    Py_VISIT(st->LoopType);
    Py_VISIT(st->HandleType);
    Py_VISIT(st->TimerHandleType);
    Py_VISIT(st->asyncio_Future);
    Py_VISIT(st->asyncio_extract_stack);
    Py_VISIT(st->asyncio_iscoroutinefunction);
    Py_VISIT(st->asyncio_events_get_running_loop);
    Py_VISIT(st->hook_handle_repr);
    Py_VISIT(st->hook_format_cb);
    Py_VISIT(st->hook_slow_cb);
    Py_VISIT(st->str_call_exception_handler);
    Py_VISIT(st->str_message);
    Py_VISIT(st->str_exception);
    Py_VISIT(st->str_handle);
    Py_VISIT(st->str_source_traceback);
    Py_VISIT(st->str_fileno);
    Py_VISIT(st->str_context);
    Py_VISIT(st->str_set_result);
    Py_VISIT(st->str_set_exception);
    Py_VISIT(st->str_done);
    Py_VISIT(st->FutureType);
    Py_VISIT(st->TaskType);
    Py_VISIT(st->FutureIterType);
    Py_VISIT(st->TaskCallType);
    Py_VISIT(st->asyncio_Task);
    Py_VISIT(st->asyncio_Handle);
    Py_VISIT(st->asyncio_TimerHandle);
    Py_VISIT(st->asyncio_CancelledError);
    Py_VISIT(st->asyncio_InvalidStateError);
    Py_VISIT(st->asyncio_get_event_loop);
    Py_VISIT(st->asyncio_future_repr);
    Py_VISIT(st->asyncio_task_repr);
    Py_VISIT(st->asyncio_task_get_stack);
    Py_VISIT(st->asyncio_task_print_stack);
    Py_VISIT(st->asyncio_iscoroutine);
    Py_VISIT(st->asyncio_current_tasks);
    Py_VISIT(st->asyncio_scheduled_tasks);
    Py_VISIT(st->asyncio_eager_tasks);
    Py_VISIT(st->iscoroutine_typecache);
    Py_VISIT(st->ws_remove_cb);
    Py_VISIT(st->ws_iterating);
    Py_VISIT(st->ws_pending);
    Py_VISIT(st->ws_data);
    Py_VISIT(st->str_add);
    Py_VISIT(st->str_discard);
    Py_VISIT(st->str_cancel);
    Py_VISIT(st->str_throw);
    Py_VISIT(st->str_result);
    Py_VISIT(st->str_get_loop);
    Py_VISIT(st->str_loop_attr);
    Py_VISIT(st->str_add_done_callback);
    Py_VISIT(st->str_call_soon);
    Py_VISIT(st->str_asyncio_future_blocking);
    Py_VISIT(st->str_msg);
    Py_VISIT(st->str_get_debug);
    for (const rl_loop_part *const *p = rl_loop_parts; *p != NULL; p++) {
        if ((*p)->module_traverse != NULL &&
            (*p)->module_traverse(st, visit, arg) < 0) {
            return -1;
        }
    }
    return 0;
}

void rl_future_freelist_clear(rl_state *st);

static int
module_clear(PyObject *mod)
{
    rl_state *st = PyModule_GetState(mod);
    rl_future_freelist_clear(st);
    Py_CLEAR(st->LoopType);
    Py_CLEAR(st->HandleType);
    Py_CLEAR(st->TimerHandleType);
    Py_CLEAR(st->asyncio_Future);
    Py_CLEAR(st->asyncio_extract_stack);
    Py_CLEAR(st->asyncio_iscoroutinefunction);
    Py_CLEAR(st->asyncio_events_get_running_loop);
    Py_CLEAR(st->hook_handle_repr);
    Py_CLEAR(st->hook_format_cb);
    Py_CLEAR(st->hook_slow_cb);
    Py_CLEAR(st->str_call_exception_handler);
    Py_CLEAR(st->str_message);
    Py_CLEAR(st->str_exception);
    Py_CLEAR(st->str_handle);
    Py_CLEAR(st->str_source_traceback);
    Py_CLEAR(st->str_fileno);
    Py_CLEAR(st->str_context);
    Py_CLEAR(st->str_set_result);
    Py_CLEAR(st->str_set_exception);
    Py_CLEAR(st->str_done);
    Py_CLEAR(st->FutureType);
    Py_CLEAR(st->TaskType);
    Py_CLEAR(st->FutureIterType);
    Py_CLEAR(st->TaskCallType);
    Py_CLEAR(st->asyncio_Task);
    Py_CLEAR(st->asyncio_Handle);
    Py_CLEAR(st->asyncio_TimerHandle);
    Py_CLEAR(st->asyncio_CancelledError);
    Py_CLEAR(st->asyncio_InvalidStateError);
    Py_CLEAR(st->asyncio_get_event_loop);
    Py_CLEAR(st->asyncio_future_repr);
    Py_CLEAR(st->asyncio_task_repr);
    Py_CLEAR(st->asyncio_task_get_stack);
    Py_CLEAR(st->asyncio_task_print_stack);
    Py_CLEAR(st->asyncio_iscoroutine);
    Py_CLEAR(st->asyncio_current_tasks);
    Py_CLEAR(st->asyncio_scheduled_tasks);
    Py_CLEAR(st->asyncio_eager_tasks);
    Py_CLEAR(st->iscoroutine_typecache);
    Py_CLEAR(st->ws_remove_cb);
    Py_CLEAR(st->ws_iterating);
    Py_CLEAR(st->ws_pending);
    Py_CLEAR(st->ws_data);
    Py_CLEAR(st->str_add);
    Py_CLEAR(st->str_discard);
    Py_CLEAR(st->str_cancel);
    Py_CLEAR(st->str_throw);
    Py_CLEAR(st->str_result);
    Py_CLEAR(st->str_get_loop);
    Py_CLEAR(st->str_loop_attr);
    Py_CLEAR(st->str_add_done_callback);
    Py_CLEAR(st->str_call_soon);
    Py_CLEAR(st->str_asyncio_future_blocking);
    Py_CLEAR(st->str_msg);
    Py_CLEAR(st->str_get_debug);
    for (const rl_loop_part *const *p = rl_loop_parts; *p != NULL; p++) {
        if ((*p)->module_clear != NULL) {
            (*p)->module_clear(st);
        }
    }
    return 0;
}

static void
module_free(void *mod)
{
    (void)module_clear((PyObject *)mod);
    rl_state *st = PyModule_GetState((PyObject *)mod);
    if (st == NULL) {
        return;
    }
    for (const rl_loop_part *const *p = rl_loop_parts; *p != NULL; p++) {
        if ((*p)->module_free != NULL) {
            (*p)->module_free(st);
        }
    }
}

static PyObject *
import_attr(const char *modname, const char *attr)
{
    PyObject *m = PyImport_ImportModule(modname);
    if (m == NULL) {
        return NULL;
    }
    PyObject *v = PyObject_GetAttrString(m, attr);
    Py_DECREF(m);
    return v;
}

/* _set_hooks(handle_repr, format_cb, slow_cb): the Python package hands
 * over the cold formatting helpers once, at import. */
static PyObject *
module_set_hooks(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "_set_hooks() takes 3 arguments");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < 3; i++) {
        if (!PyCallable_Check(args[i])) {
            PyErr_SetString(PyExc_TypeError, "hooks must be callable");
            return NULL;
        }
    }
    rl_state *st = PyModule_GetState(mod);
    Py_XSETREF(st->hook_handle_repr, Py_NewRef(args[0]));
    Py_XSETREF(st->hook_format_cb, Py_NewRef(args[1]));
    Py_XSETREF(st->hook_slow_cb, Py_NewRef(args[2]));
    Py_RETURN_NONE;
}

static PyObject *
module_io_uring_probe(PyObject *Py_UNUSED(mod), PyObject *Py_UNUSED(arg))
{
    int err = 0;
    char why[200] = "";
    rl_reactor *r = rl_uring_ops.create(&err, why, sizeof(why));
    if (r != NULL) {
        rl_reactor_destroy(r);
        Py_RETURN_NONE;
    }
    return PyUnicode_FromString(why[0] ? why : "io_uring unavailable");
}

static PyMethodDef module_methods[] = {
    {"_set_hooks", RL_CFUNC(module_set_hooks), METH_FASTCALL, NULL},
    {"io_uring_unavailable_reason", (PyCFunction)module_io_uring_probe,
     METH_NOARGS,
     "io_uring_unavailable_reason()\n--\n\n"
     "None if an io_uring ring can be set up here, else why not."},
    {NULL, NULL, 0, NULL},
};

static int
module_exec(PyObject *mod)
{
    rl_state *st = PyModule_GetState(mod);

#define INTERN(field, text)                                                   \
    do {                                                                      \
        st->field = PyUnicode_InternFromString(text);                         \
        if (st->field == NULL) {                                              \
            return -1;                                                        \
        }                                                                     \
    } while (0)
    INTERN(str_call_exception_handler, "call_exception_handler");
    INTERN(str_message, "message");
    INTERN(str_exception, "exception");
    INTERN(str_handle, "handle");
    INTERN(str_source_traceback, "source_traceback");
    INTERN(str_fileno, "fileno");
    INTERN(str_context, "context");
    INTERN(str_set_result, "set_result");
    INTERN(str_set_exception, "set_exception");
    INTERN(str_done, "done");
    INTERN(str_add, "add");
    INTERN(str_discard, "discard");
    INTERN(str_cancel, "cancel");
    INTERN(str_throw, "throw");
    INTERN(str_result, "result");
    INTERN(str_get_loop, "get_loop");
    INTERN(str_loop_attr, "_loop");
    INTERN(str_add_done_callback, "add_done_callback");
    INTERN(str_call_soon, "call_soon");
    INTERN(str_asyncio_future_blocking, "_asyncio_future_blocking");
    INTERN(str_msg, "msg");
    INTERN(str_get_debug, "get_debug");
#undef INTERN

#define IMPORT(field, modname, attr)                                          \
    do {                                                                      \
        st->field = import_attr(modname, attr);                               \
        if (st->field == NULL) {                                              \
            return -1;                                                        \
        }                                                                     \
    } while (0)
    IMPORT(asyncio_Future, "asyncio", "Future");
    IMPORT(asyncio_extract_stack, "asyncio.format_helpers", "extract_stack");
    IMPORT(asyncio_iscoroutinefunction, "asyncio", "iscoroutinefunction");
    IMPORT(asyncio_events_get_running_loop, "asyncio.events",
           "_get_running_loop");
    IMPORT(asyncio_Task, "asyncio", "Task");
    IMPORT(asyncio_Handle, "asyncio", "Handle");
    IMPORT(asyncio_TimerHandle, "asyncio", "TimerHandle");
    IMPORT(asyncio_CancelledError, "asyncio", "CancelledError");
    IMPORT(asyncio_InvalidStateError, "asyncio", "InvalidStateError");
#if RL_PY312
    IMPORT(asyncio_get_event_loop, "asyncio.events", "get_event_loop");
    IMPORT(asyncio_scheduled_tasks, "asyncio.tasks", "_scheduled_tasks");
    IMPORT(asyncio_eager_tasks, "asyncio.tasks", "_eager_tasks");
#else
    IMPORT(asyncio_get_event_loop, "asyncio.events", "_get_event_loop");
    IMPORT(asyncio_scheduled_tasks, "asyncio.tasks", "_all_tasks");
#endif
    IMPORT(asyncio_future_repr, "asyncio.base_futures", "_future_repr");
    IMPORT(asyncio_task_repr, "asyncio.base_tasks", "_task_repr");
    IMPORT(asyncio_task_get_stack, "asyncio.base_tasks", "_task_get_stack");
    IMPORT(asyncio_task_print_stack, "asyncio.base_tasks",
           "_task_print_stack");
    IMPORT(asyncio_iscoroutine, "asyncio.coroutines", "iscoroutine");
    IMPORT(asyncio_current_tasks, "asyncio.tasks", "_current_tasks");
    st->iscoroutine_typecache = PySet_New(NULL);
    if (st->iscoroutine_typecache == NULL) {
        return -1;
    }
    /* Until _set_hooks() runs, format with repr(). */
    IMPORT(hook_handle_repr, "builtins", "repr");
    IMPORT(hook_format_cb, "builtins", "repr");
    IMPORT(hook_slow_cb, "builtins", "print");
#undef IMPORT

    if (rl_handle_init_types(mod, st) < 0) {
        return -1;
    }
    if (rl_loop_init_type(mod, st) < 0) {
        return -1;
    }
    if (rl_future_init_types(mod, st) < 0) {
        return -1;
    }
    if (rl_task_init_types(mod, st) < 0) {
        return -1;
    }
    if (rl_task_init_registry(mod, st) < 0) {
        return -1;
    }
    for (const rl_loop_part *const *p = rl_loop_parts; *p != NULL; p++) {
        if ((*p)->module_init != NULL && (*p)->module_init(mod, st) < 0) {
            return -1;
        }
    }
    /* ringloop.info(): the liburing version setup.py found at build time */
#ifdef RL_LIBURING_VERSION
    if (PyModule_AddStringConstant(mod, "_liburing_version",
                                   RL_LIBURING_VERSION) < 0) {
        return -1;
    }
#else
    if (PyModule_AddObjectRef(mod, "_liburing_version", Py_None) < 0) {
        return -1;
    }
#endif
    return 0;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

PyModuleDef rl_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "ringloop._core",
    .m_doc = "ringloop's native core: loop, handles and reactors.",
    .m_size = sizeof(rl_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__core(void);

PyMODINIT_FUNC
PyInit__core(void)
{
    return PyModuleDef_Init(&rl_module_def);
}
