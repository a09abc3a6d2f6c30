/* errors.c -- the one place where -errno becomes a Python exception. */
#include "internal.h"

#include <errno.h>
#include <string.h>

PyObject *
rl_raise_errno(int neg_errno)
{
    errno = -neg_errno;
    return PyErr_SetFromErrno(PyExc_OSError);
}

PyObject *
rl_raise_errno_msg(int neg_errno, const char *msg)
{
    int err = -neg_errno;
    /* OSError(errno, msg) maps errno to the right subclass itself. */
    PyObject *exc = PyObject_CallFunction(PyExc_OSError, "is", err, msg);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}
