/* compat.h -- every CPython version difference lives here (3.11-3.13).
 *
 * Named gates, and backports written for ringloop, so the logic never tests
 * PY_VERSION_HEX itself.  Each shim has a test in tests/test_compat.py. */
#ifndef RL_COMPAT_H
#define RL_COMPAT_H

#include <Python.h>

#define RL_PY312 (PY_VERSION_HEX >= 0x030C0000)
#define RL_PY313 (PY_VERSION_HEX >= 0x030D0000)
#define RL_PY314 (PY_VERSION_HEX >= 0x030E0000)

/* asyncio 3.13 computes _run_once's timeout without max(0, ...), so a NaN
 * deadline heading the heap reaches the selector, which raises ValueError
 * (3.11/3.12: the timer runs at once).  tasks.sleep(nan) raises on 3.13 by
 * itself. */
#define RL_NAN_DEADLINE_RAISES RL_PY313

/* A METH_FASTCALL function stored in a PyMethodDef: cast through
 * void (*)(void) so -Wcast-function-type stays quiet. */
#define RL_CFUNC(fn) ((PyCFunction)(void (*)(void))(fn))

#if !RL_PY312
/* PyErr_GetRaisedException / PyErr_SetRaisedException (3.12). */
static inline PyObject *
rl_err_get_raised(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL) {
        return NULL;
    }
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(value, tb);
        Py_DECREF(tb);
    }
    Py_DECREF(type);
    return value;
}

static inline void
rl_err_set_raised(PyObject *exc)
{
    if (exc == NULL) {
        PyErr_Clear();
        return;
    }
    PyObject *type = Py_NewRef((PyObject *)Py_TYPE(exc));
    PyObject *tb = PyException_GetTraceback(exc);
    PyErr_Restore(type, exc, tb);
}
#else
#define rl_err_get_raised() PyErr_GetRaisedException()
#define rl_err_set_raised(exc) PyErr_SetRaisedException(exc)
#endif

#if !RL_PY313
/* PyObject_GetOptionalAttr (3.13): 1 found, 0 missing (no error), -1. */
static inline int
rl_getattr_optional(PyObject *obj, PyObject *name, PyObject **result)
{
    *result = PyObject_GetAttr(obj, name);
    if (*result != NULL) {
        return 1;
    }
    if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
        PyErr_Clear();
        return 0;
    }
    return -1;
}

/* PyModule_Add (3.13): steals value, also on failure. */
static inline int
rl_module_add(PyObject *mod, const char *name, PyObject *value)
{
    if (value == NULL) {
        return -1;
    }
    int rc = PyModule_AddObjectRef(mod, name, value);
    Py_DECREF(value);
    return rc;
}
#else
#define rl_getattr_optional(o, n, r) PyObject_GetOptionalAttr(o, n, r)
#define rl_module_add(m, n, v) PyModule_Add(m, n, v)
#endif

/* raise StopIteration(value) -- what a "return value" from an iterator
 * is (the private _PyGen_SetStopIterationValue is gone from 3.13's public
 * headers).  Wrapping in an instance keeps tuples and exceptions intact. */
static inline int
rl_set_stop_iteration(PyObject *value)
{
    PyObject *e = PyObject_CallOneArg(PyExc_StopIteration, value);
    if (e == NULL) {
        return -1;
    }
    PyErr_SetObject(PyExc_StopIteration, e);
    Py_DECREF(e);
    return 0;
}

#endif /* RL_COMPAT_H */
