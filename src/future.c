/* future.c -- futures handed out by C code.  See internal.h. */
#include "internal.h"

PyObject *
rl_future_new(RlLoop *loop)
{
    PyObject *kw = Py_BuildValue("{sO}", "loop", (PyObject *)loop);
    if (kw == NULL) {
        return NULL;
    }
    PyObject *args = PyTuple_New(0);
    if (args == NULL) {
        Py_DECREF(kw);
        return NULL;
    }
    PyObject *f = PyObject_Call(loop->st->asyncio_Future, args, kw);
    Py_DECREF(args);
    Py_DECREF(kw);
    return f;
}

int
rl_future_is_done(PyObject *fut)
{
    PyObject *r = PyObject_CallMethod(fut, "done", NULL);
    if (r == NULL) {
        return -1;
    }
    int v = PyObject_IsTrue(r);
    Py_DECREF(r);
    return v;
}

static int
set_unless_done(PyObject *fut, const char *meth, PyObject *value)
{
    int done = rl_future_is_done(fut);
    if (done != 0) {
        return done < 0 ? -1 : 0;
    }
    /* "(O)": with "O", a tuple value would be taken as the argument
     * tuple (Py_BuildValue's rule) and set_result((a, b)) would fail. */
    PyObject *r = PyObject_CallMethod(fut, meth, "(O)", value);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

int
rl_future_set_result_unless_done(PyObject *fut, PyObject *result)
{
    return set_unless_done(fut, "set_result", result);
}

int
rl_future_set_exception_unless_done(PyObject *fut, PyObject *exc)
{
    return set_unless_done(fut, "set_exception", exc);
}
