/* tls.c -- the application-data phase of asyncio's SSLProtocol in C.
 *
 * ringloop runs TLS as asyncio does: the running Python's own
 * asyncio.sslproto.SSLProtocol (a BufferedProtocol driving an ssl.SSLObject
 * over two ssl.MemoryBIOs) is the protocol of the native StreamTransport
 * (see ARCHITECTURE.md "TLS").  _tls.py subclasses it and replaces the
 * methods a TLS round trip runs with the functions below; everything else
 * (handshake, shutdown, timeouts, error mapping, flow-control callbacks,
 * close_notify, set_protocol) stays stock asyncio's Python, on the same
 * instance attributes, so both halves see one state.
 *
 * Replaced: get_buffer, buffer_updated, _do_read (with _do_read__copied and
 * _do_read__buffered inlined), _write_appdata, _do_write, _process_outgoing.
 * Each does, step for step, what the stock method of the Python versions
 * we support does (3.11-3.13 share these methods); anything off the hot
 * path (a state other than WRAPPED, a flow-control change, EOF) calls the
 * stock Python method, which re-checks the same conditions.  The SSLObject
 * stays the source of truth: reads and writes go through its `_sslobj`
 * (the _ssl._SSLSocket that ssl.SSLObject.read/write delegate to) when the
 * object is exactly ssl.SSLObject, else through its own methods.
 *
 * The functions are METH_FASTCALL functions bound to one TlsAccel object
 * (the cached names and objects), wrapped in instancemethod so that a
 * class attribute binds like a Python method; _core._tls_accel() returns
 * them in a dict. */
#include "internal.h"
#include "tls.h"

typedef struct {
    PyObject_HEAD
    /* asyncio.sslproto.SSLProtocolState members */
    PyObject *st_handshake;
    PyObject *st_wrapped;
    PyObject *st_flushing;
    PyObject *st_shutdown;
    PyObject *again_errors;      /* sslproto.SSLAgainErrors */
    PyObject *sslobject_type;    /* ssl.SSLObject */
    PyObject *base_write_appdata;  /* SSLProtocol._write_appdata */
    PyObject *our_class;         /* _tls.SSLProtocol (whose methods these are) */
    PyObject *msg_fatal;         /* 'Fatal error on SSL protocol' */
    /* attribute and method names */
    PyObject *n_incoming, *n_outgoing, *n_ssl_buffer, *n_ssl_buffer_view;
    PyObject *n_state, *n_sslobj, *n_inner_sslobj, *n_app_reading_paused;
    PyObject *n_app_protocol_is_buffer, *n_write_backlog;
    PyObject *n_write_buffer_size, *n_max_size, *n_app_protocol;
    PyObject *n_data_received, *n_call_eof_received, *n_start_shutdown;
    PyObject *n_fatal_error, *n_do_handshake, *n_do_flush, *n_do_shutdown;
    PyObject *n_do_read, *n_ssl_writing_paused, *n_read, *n_write;
    PyObject *n_pending, *n_transport, *n_outgoing_high_water;
    PyObject *n_app_writing_paused, *n_control_app_writing;
    PyObject *n_incoming_high_water, *n_ssl_reading_paused;
    PyObject *n_control_ssl_reading, *n_app_protocol_get_buffer;
    PyObject *n_app_protocol_buffer_updated, *n_append, *n_ssl_protocol;
    PyObject *n_write_appdata, *n_loop, *n_call_soon;
} TlsAccel;

static void
accel_dealloc(TlsAccel *a)
{
    PyObject **first = &a->st_handshake;
    PyObject **last = &a->n_call_soon;
    for (PyObject **p = first; p <= last; p++) {
        Py_CLEAR(*p);
    }
    PyTypeObject *tp = Py_TYPE(a);
    tp->tp_free(a);
    Py_DECREF(tp);
}

static PyType_Slot accel_slots[] = {
    {Py_tp_dealloc, accel_dealloc},
    {0, NULL},
};

static PyType_Spec accel_spec = {
    .name = "ringloop._core._TlsAccel",
    .basicsize = sizeof(TlsAccel),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = accel_slots,
};

/* ------------------------------------------------------------------ */
/* small helpers                                                        */

/* exactly n positional arguments (with self), as a method would check */
static int
check_nargs(const char *name, Py_ssize_t nargs, Py_ssize_t want)
{
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd positional arguments but %zd were given",
                     name, want, nargs);
        return 0;
    }
    return 1;
}

static inline PyObject *
call0(PyObject *obj, PyObject *name)
{
    return PyObject_VectorcallMethod(name, &obj,
                                     1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

static inline PyObject *
call1(PyObject *obj, PyObject *name, PyObject *arg)
{
    PyObject *args[2] = {obj, arg};
    return PyObject_VectorcallMethod(name, args,
                                     2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* self.<name> for an instance attribute of an SSLProtocol or its app
 * transport: straight from the instance's __dict__ (materialized once),
 * which skips the type lookup of a generic getattr; none of these names is
 * a descriptor on those classes.  Anything not in the dict (a class
 * attribute such as max_size) takes the generic path.  New reference. */
static PyObject *
sget(PyObject *self, PyObject *name)
{
    PyObject *dict = PyObject_GenericGetDict(self, NULL);
    if (dict == NULL) {
        PyErr_Clear();
        return PyObject_GetAttr(self, name);
    }
    PyObject *v = PyDict_GetItemWithError(dict, name);
    Py_XINCREF(v);
    Py_DECREF(dict);
    if (v == NULL && !PyErr_Occurred()) {
        v = PyObject_GetAttr(self, name);
    }
    return v;
}

/* self.<name>() with the result dropped: 0 or -1. */
static int
callm0(PyObject *self, PyObject *name)
{
    PyObject *r = call0(self, name);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* truth value of self.<name>: 1, 0, -1 */
static int
attr_true(PyObject *self, PyObject *name)
{
    PyObject *v = sget(self, name);
    if (v == NULL) {
        return -1;
    }
    int r = PyObject_IsTrue(v);
    Py_DECREF(v);
    return r;
}

/* integer obj.<name> as Py_ssize_t; -1 with an error set; self: an
 * instance attribute (sget) */
static Py_ssize_t
attr_ssize_v(PyObject *v)
{
    if (v == NULL) {
        return -1;
    }
    Py_ssize_t r = PyNumber_AsSsize_t(v, PyExc_OverflowError);
    Py_DECREF(v);
    return r;
}

#define self_ssize(self, name) attr_ssize_v(sget(self, name))

static Py_ssize_t
attr_ssize(PyObject *obj, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL) {
        return -1;
    }
    Py_ssize_t r = PyNumber_AsSsize_t(v, PyExc_OverflowError);
    Py_DECREF(v);
    return r;
}

/* `except Exception as ex: self._fatal_error(ex, msg)` after a failed step;
 * anything not an Exception (KeyboardInterrupt, SystemExit, CancelledError
 * is an Exception subclass only before 3.8) stays raised.  0 or -1. */
static int
fatal_on_exception(TlsAccel *a, PyObject *self)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        return -1;
    }
    PyObject *exc = rl_err_get_raised();
    /* as inside an `except` block: what the handler raises chains to exc */
    PyObject *prev = PyErr_GetHandledException();
    PyErr_SetHandledException(exc);
    PyObject *args[3] = {self, exc, a->msg_fatal};
    PyObject *r = PyObject_VectorcallMethod(
        a->n_fatal_error, args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    PyErr_SetHandledException(prev);
    Py_XDECREF(prev);
    Py_DECREF(exc);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* The object SSLObject.read/write delegate to: sslobj._sslobj when sslobj
 * is exactly ssl.SSLObject (its read/write only forward), else sslobj
 * itself (a subclass may override them).  New reference. */
static PyObject *
ssl_target(TlsAccel *a, PyObject *self)
{
    PyObject *sslobj = sget(self, a->n_sslobj);
    if (sslobj == NULL) {
        return NULL;
    }
    if ((PyObject *)Py_TYPE(sslobj) != a->sslobject_type) {
        return sslobj;
    }
    PyObject *inner = sget(sslobj, a->n_inner_sslobj);
    Py_DECREF(sslobj);
    return inner;
}

/* ------------------------------------------------------------------ */
/* outgoing                                                             */

/* _control_app_writing(): only the stock method can change anything, and
 * only if the app is paused or the buffer reached the high-water mark. */
static int
control_app_writing(TlsAccel *a, PyObject *self, PyObject *outgoing)
{
    int paused = attr_true(self, a->n_app_writing_paused);
    if (paused < 0) {
        return -1;
    }
    if (!paused) {
        Py_ssize_t pending = attr_ssize(outgoing, a->n_pending);
        if (pending == -1 && PyErr_Occurred()) {
            return -1;
        }
        Py_ssize_t wsize = self_ssize(self, a->n_write_buffer_size);
        if (wsize == -1 && PyErr_Occurred()) {
            return -1;
        }
        Py_ssize_t high = self_ssize(self, a->n_outgoing_high_water);
        if (high == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (pending + wsize < high) {
            return 0;
        }
    }
    return callm0(self, a->n_control_app_writing);
}

/* _process_outgoing() */
static int
process_outgoing(TlsAccel *a, PyObject *self)
{
    int rc = -1;
    PyObject *outgoing = NULL, *data = NULL, *transport = NULL;
    int paused = attr_true(self, a->n_ssl_writing_paused);
    if (paused < 0) {
        return -1;
    }
    outgoing = sget(self, a->n_outgoing);
    if (outgoing == NULL) {
        goto done;
    }
    if (!paused) {
        data = call0(outgoing, a->n_read);
        if (data == NULL) {
            goto done;
        }
        Py_ssize_t n = PyObject_Size(data);
        if (n < 0) {
            goto done;
        }
        if (n > 0) {
            transport = sget(self, a->n_transport);
            if (transport == NULL) {
                goto done;
            }
            PyObject *r = call1(transport, a->n_write, data);
            if (r == NULL) {
                goto done;
            }
            Py_DECREF(r);
        }
    }
    rc = control_app_writing(a, self, outgoing);
done:
    Py_XDECREF(outgoing);
    Py_XDECREF(data);
    Py_XDECREF(transport);
    return rc;
}

/* self._write_buffer_size -= n */
static int
sub_write_buffer_size(TlsAccel *a, PyObject *self, Py_ssize_t n)
{
    Py_ssize_t size = self_ssize(self, a->n_write_buffer_size);
    if (size == -1 && PyErr_Occurred()) {
        return -1;
    }
    PyObject *v = PyLong_FromSsize_t(size - n);
    if (v == NULL) {
        return -1;
    }
    int r = PyObject_SetAttr(self, a->n_write_buffer_size, v);
    Py_DECREF(v);
    return r;
}

/* _do_write() */
static int
do_write(TlsAccel *a, PyObject *self)
{
    PyObject *target = NULL, *backlog = NULL;
    int rc = -1;
    backlog = sget(self, a->n_write_backlog);
    if (backlog == NULL) {
        return -1;
    }
    for (;;) {
        Py_ssize_t blen = PyObject_Size(backlog);
        if (blen < 0) {
            goto done;
        }
        if (blen == 0) {
            break;
        }
        PyObject *data = PySequence_GetItem(backlog, 0);
        if (data == NULL) {
            goto done;
        }
        if (target == NULL) {
            target = ssl_target(a, self);
            if (target == NULL) {
                Py_DECREF(data);
                goto done;
            }
        }
        PyObject *cnt = call1(target, a->n_write, data);
        if (cnt == NULL) {
            Py_DECREF(data);
            if (PyErr_ExceptionMatches(a->again_errors)) {
                PyErr_Clear();
                break;
            }
            goto done;
        }
        Py_ssize_t count = PyNumber_AsSsize_t(cnt, PyExc_OverflowError);
        Py_DECREF(cnt);
        Py_ssize_t dlen = count == -1 && PyErr_Occurred() ? -1 : PyObject_Size(data);
        if (dlen < 0) {
            Py_DECREF(data);
            goto done;
        }
        int r;
        if (count < dlen) {
            PyObject *rest = PySequence_GetSlice(data, count, PY_SSIZE_T_MAX);
            r = rest == NULL ? -1 : PySequence_SetItem(backlog, 0, rest);
            Py_XDECREF(rest);
            if (r == 0) {
                r = sub_write_buffer_size(a, self, count);
            }
        }
        else {
            r = PySequence_DelItem(backlog, 0);
            if (r == 0) {
                r = sub_write_buffer_size(a, self, dlen);
            }
        }
        Py_DECREF(data);
        if (r < 0) {
            goto done;
        }
    }
    rc = process_outgoing(a, self);
done:
    Py_XDECREF(target);
    Py_DECREF(backlog);
    return rc;
}

/* ------------------------------------------------------------------ */
/* incoming                                                             */

/* self._call_eof_received(); self._start_shutdown()  (close_notify) */
static int
on_close_notify(TlsAccel *a, PyObject *self)
{
    if (callm0(self, a->n_call_eof_received) < 0) {
        return -1;
    }
    return callm0(self, a->n_start_shutdown);
}

/* _do_read__copied(): every record that is there in one data_received() */
static int
read_copied(TlsAccel *a, PyObject *self)
{
    PyObject *target = NULL, *size = NULL, *first = NULL, *list = NULL;
    int rc = -1, eof = 0;
    target = ssl_target(a, self);
    if (target == NULL) {
        return -1;
    }
    size = PyObject_GetAttr(self, a->n_max_size);  /* a class attribute */
    if (size == NULL) {
        goto done;
    }
    for (;;) {
        PyObject *chunk = call1(target, a->n_read, size);
        if (chunk == NULL) {
            if (PyErr_ExceptionMatches(a->again_errors)) {
                PyErr_Clear();
                break;
            }
            goto done;
        }
        Py_ssize_t n = PyObject_Size(chunk);
        if (n <= 0) {
            Py_DECREF(chunk);
            if (n < 0) {
                goto done;
            }
            eof = 1;
            break;
        }
        if (first == NULL) {
            first = chunk;
            continue;
        }
        if (list == NULL) {
            list = PyList_New(0);
            if (list == NULL || PyList_Append(list, first) < 0) {
                Py_DECREF(chunk);
                goto done;
            }
        }
        int r = PyList_Append(list, chunk);
        Py_DECREF(chunk);
        if (r < 0) {
            goto done;
        }
    }
    if (first != NULL) {
        PyObject *data;
        if (list == NULL) {
            data = Py_NewRef(first);
        }
        else {
            /* b''.join(data) */
            Py_ssize_t total = 0, nitems = PyList_GET_SIZE(list);
            int all_bytes = 1;
            for (Py_ssize_t i = 0; i < nitems; i++) {
                PyObject *item = PyList_GET_ITEM(list, i);
                if (!PyBytes_CheckExact(item)) {
                    all_bytes = 0;
                    break;
                }
                total += PyBytes_GET_SIZE(item);
            }
            if (!all_bytes) {
                /* an SSLObject subclass's read() */
                PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
                data = empty == NULL ? NULL : PyObject_CallMethod(empty, "join", "O", list);
                Py_XDECREF(empty);
                if (data == NULL) {
                    goto done;
                }
                goto deliver;
            }
            data = PyBytes_FromStringAndSize(NULL, total);
            if (data == NULL) {
                goto done;
            }
            char *out = PyBytes_AS_STRING(data);
            for (Py_ssize_t i = 0; i < nitems; i++) {
                PyObject *item = PyList_GET_ITEM(list, i);
                memcpy(out, PyBytes_AS_STRING(item), (size_t)PyBytes_GET_SIZE(item));
                out += PyBytes_GET_SIZE(item);
            }
        }
    deliver:;
        PyObject *app = sget(self, a->n_app_protocol);
        if (app == NULL) {
            Py_DECREF(data);
            goto done;
        }
        PyObject *r = call1(app, a->n_data_received, data);
        Py_DECREF(app);
        Py_DECREF(data);
        if (r == NULL) {
            goto done;
        }
        Py_DECREF(r);
    }
    rc = eof ? on_close_notify(a, self) : 0;
done:
    Py_DECREF(target);
    Py_XDECREF(size);
    Py_XDECREF(first);
    Py_XDECREF(list);
    return rc;
}

/* _do_read__buffered(): decrypt straight into the app's get_buffer() */
static int
read_buffered(TlsAccel *a, PyObject *self)
{
    PyObject *target = NULL, *buf = NULL;
    Py_ssize_t offset = 0, count = 1;
    int rc = -1;

    PyObject *incoming = sget(self, a->n_incoming);
    if (incoming == NULL) {
        return -1;
    }
    PyObject *pending = PyObject_GetAttr(incoming, a->n_pending);
    Py_DECREF(incoming);
    if (pending == NULL) {
        return -1;
    }
    PyObject *get_buffer = sget(self, a->n_app_protocol_get_buffer);
    if (get_buffer == NULL) {
        Py_DECREF(pending);
        return -1;
    }
    buf = PyObject_CallOneArg(get_buffer, pending);
    Py_DECREF(get_buffer);
    Py_DECREF(pending);
    if (buf == NULL) {
        return -1;
    }
    Py_ssize_t wants = PyObject_Size(buf);
    if (wants < 0) {
        goto done;
    }
    target = ssl_target(a, self);
    if (target == NULL) {
        goto done;
    }
    /* count = sslobj.read(wants - offset, buf[offset:]) until full */
    for (;;) {
        PyObject *view = offset == 0 ? Py_NewRef(buf)
                                     : PySequence_GetSlice(buf, offset, PY_SSIZE_T_MAX);
        if (view == NULL) {
            goto done;
        }
        PyObject *want = PyLong_FromSsize_t(wants - offset);
        if (want == NULL) {
            Py_DECREF(view);
            goto done;
        }
        PyObject *args[3] = {target, want, view};
        PyObject *r = PyObject_VectorcallMethod(
            a->n_read, args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        Py_DECREF(want);
        Py_DECREF(view);
        if (r == NULL) {
            if (PyErr_ExceptionMatches(a->again_errors)) {
                PyErr_Clear();
                break;
            }
            goto done;
        }
        count = PyNumber_AsSsize_t(r, PyExc_OverflowError);
        Py_DECREF(r);
        if (count == -1 && PyErr_Occurred()) {
            goto done;
        }
        if (count <= 0) {
            break;
        }
        offset += count;
        if (offset >= wants) {
            /* the buffer is full: more may be waiting, read it later */
            PyObject *loop = sget(self, a->n_loop);
            if (loop == NULL) {
                goto done;
            }
            PyObject *again = sget(self, a->n_do_read);
            if (again == NULL) {
                Py_DECREF(loop);
                goto done;
            }
            PyObject *h = call1(loop, a->n_call_soon, again);
            Py_DECREF(again);
            Py_DECREF(loop);
            if (h == NULL) {
                goto done;
            }
            Py_DECREF(h);
            break;
        }
    }
    if (offset > 0) {
        PyObject *updated = sget(self, a->n_app_protocol_buffer_updated);
        if (updated == NULL) {
            goto done;
        }
        PyObject *n = PyLong_FromSsize_t(offset);
        if (n == NULL) {
            Py_DECREF(updated);
            goto done;
        }
        PyObject *r = PyObject_CallOneArg(updated, n);
        Py_DECREF(n);
        Py_DECREF(updated);
        if (r == NULL) {
            goto done;
        }
        Py_DECREF(r);
    }
    rc = count == 0 ? on_close_notify(a, self) : 0;
done:
    Py_XDECREF(target);
    Py_DECREF(buf);
    return rc;
}

/* _control_ssl_reading(): as control_app_writing */
static int
control_ssl_reading(TlsAccel *a, PyObject *self)
{
    int paused = attr_true(self, a->n_ssl_reading_paused);
    if (paused < 0) {
        return -1;
    }
    if (!paused) {
        PyObject *incoming = sget(self, a->n_incoming);
        if (incoming == NULL) {
            return -1;
        }
        Py_ssize_t pending = attr_ssize(incoming, a->n_pending);
        Py_DECREF(incoming);
        if (pending == -1 && PyErr_Occurred()) {
            return -1;
        }
        Py_ssize_t high = self_ssize(self, a->n_incoming_high_water);
        if (high == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (pending < high) {
            return 0;
        }
    }
    return callm0(self, a->n_control_ssl_reading);
}

/* the body of _do_read()'s try block */
static int
do_read_body(TlsAccel *a, PyObject *self)
{
    int paused = attr_true(self, a->n_app_reading_paused);
    if (paused < 0) {
        return -1;
    }
    if (!paused) {
        int is_buffer = attr_true(self, a->n_app_protocol_is_buffer);
        if (is_buffer < 0) {
            return -1;
        }
        if ((is_buffer ? read_buffered(a, self) : read_copied(a, self)) < 0) {
            return -1;
        }
        PyObject *backlog = sget(self, a->n_write_backlog);
        if (backlog == NULL) {
            return -1;
        }
        int pending = PyObject_IsTrue(backlog);
        Py_DECREF(backlog);
        if (pending < 0) {
            return -1;
        }
        if ((pending ? do_write(a, self) : process_outgoing(a, self)) < 0) {
            return -1;
        }
    }
    return control_ssl_reading(a, self);
}

/* _do_read() */
static int
do_read(TlsAccel *a, PyObject *self)
{
    PyObject *state = sget(self, a->n_state);
    if (state == NULL) {
        return -1;
    }
    int active = state == a->st_wrapped || state == a->st_flushing;
    Py_DECREF(state);
    if (!active) {
        return 0;
    }
    if (do_read_body(a, self) < 0) {
        return fatal_on_exception(a, self);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* the methods                                                          */

static PyObject *
m_do_read(TlsAccel *a, PyObject *const *args, Py_ssize_t nargs)
{
    if (!check_nargs("_do_read", nargs, 1)) {
        return NULL;
    }
    if (do_read(a, args[0]) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
m_do_write(TlsAccel *a, PyObject *const *args, Py_ssize_t nargs)
{
    if (!check_nargs("_do_write", nargs, 1)) {
        return NULL;
    }
    if (do_write(a, args[0]) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
m_process_outgoing(TlsAccel *a, PyObject *const *args, Py_ssize_t nargs)
{
    if (!check_nargs("_process_outgoing", nargs, 1)) {
        return NULL;
    }
    if (process_outgoing(a, args[0]) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* self._write_buffer_size += n */
static int
add_write_buffer_size(TlsAccel *a, PyObject *self, Py_ssize_t n)
{
    return sub_write_buffer_size(a, self, -n);
}

/* The WRAPPED branch of _write_appdata((data,)) with nothing queued in
 * the backlog: stock appends data, counts it, then _do_write() writes it
 * and takes it out again.  Here the SSLObject gets it first, and only
 * what it did not take goes to the backlog (and the count), so the state
 * after it is stock's: a partial write leaves data[count:], SSLAgainErrors
 * or a failure leave all of it (the failure then goes to _fatal_error). */
static int
write_one_direct(TlsAccel *a, PyObject *self, PyObject *backlog, PyObject *data)
{
    Py_ssize_t dlen = PyObject_Size(data);
    if (dlen < 0) {
        /* stock: the append happened, len() raised, nothing counted */
        PyObject *r = call1(backlog, a->n_append, data);
        Py_XDECREF(r);
        return -2;
    }
    PyObject *target = ssl_target(a, self);
    if (target == NULL) {
        goto fail_keep;
    }
    PyObject *cnt = call1(target, a->n_write, data);
    Py_DECREF(target);
    if (cnt == NULL) {
        if (PyErr_ExceptionMatches(a->again_errors)) {
            PyErr_Clear();
            PyObject *r = call1(backlog, a->n_append, data);
            if (r == NULL) {
                return -2;
            }
            Py_DECREF(r);
            if (add_write_buffer_size(a, self, dlen) < 0) {
                return -2;
            }
            return process_outgoing(a, self);
        }
        goto fail_keep;
    }
    Py_ssize_t count = PyNumber_AsSsize_t(cnt, PyExc_OverflowError);
    Py_DECREF(cnt);
    if (count == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (count < dlen) {
        PyObject *rest = PySequence_GetSlice(data, count, PY_SSIZE_T_MAX);
        if (rest == NULL) {
            return -1;
        }
        PyObject *r = call1(backlog, a->n_append, rest);
        Py_DECREF(rest);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
        if (add_write_buffer_size(a, self, dlen - count) < 0) {
            return -1;
        }
        /* stock's _do_write loop would now try the rest */
        return do_write(a, self);
    }
    return process_outgoing(a, self);

fail_keep:;
    /* as stock: the data stays queued and counted under the error */
    PyObject *exc = rl_err_get_raised();
    PyObject *r = call1(backlog, a->n_append, data);
    int ok = r != NULL && add_write_buffer_size(a, self, dlen) == 0;
    Py_XDECREF(r);
    if (!ok) {
        Py_XDECREF(exc);
        return -2;
    }
    rl_err_set_raised(exc);
    return -1;
}

/* the WRAPPED/else part of _write_appdata(list_of_data) for an iterable
 * (args tuple) or one data object (one != NULL) */
static PyObject *
write_appdata(TlsAccel *a, PyObject *self, PyObject *list_of_data, PyObject *one)
{
    PyObject *state = sget(self, a->n_state);
    if (state == NULL) {
        return NULL;
    }
    int wrapped = state == a->st_wrapped;
    Py_DECREF(state);
    if (!wrapped) {
        /* closing, closed or still handshaking: the stock method */
        PyObject *tuple = NULL;
        if (list_of_data == NULL) {
            tuple = PyTuple_Pack(1, one);
            if (tuple == NULL) {
                return NULL;
            }
            list_of_data = tuple;
        }
        PyObject *args[2] = {self, list_of_data};
        PyObject *r = PyObject_Vectorcall(a->base_write_appdata, args, 2, NULL);
        Py_XDECREF(tuple);
        return r;
    }
    PyObject *backlog = sget(self, a->n_write_backlog);
    if (backlog == NULL) {
        return NULL;
    }
    if (one != NULL && PyList_CheckExact(backlog) && PyList_GET_SIZE(backlog) == 0) {
        int rc = write_one_direct(a, self, backlog, one);
        Py_DECREF(backlog);
        if (rc == -2) {
            return NULL;  /* raised outside stock's try block */
        }
        if (rc < 0 && fatal_on_exception(a, self) < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    PyObject *it = one != NULL ? NULL : PyObject_GetIter(list_of_data);
    if (it == NULL && one == NULL) {
        Py_DECREF(backlog);
        return NULL;
    }
    PyObject *data;
    int err = 0;
    while ((data = one != NULL ? Py_NewRef(one) : PyIter_Next(it)) != NULL) {
        /* self._write_backlog.append(data); self._write_buffer_size += len(data) */
        PyObject *r = call1(backlog, a->n_append, data);
        Py_ssize_t n = r == NULL ? -1 : PyObject_Size(data);
        Py_XDECREF(r);
        Py_DECREF(data);
        if (n < 0 || add_write_buffer_size(a, self, n) < 0) {
            err = 1;
            break;
        }
        if (one != NULL) {
            break;
        }
    }
    Py_XDECREF(it);
    Py_DECREF(backlog);
    if (err || PyErr_Occurred()) {
        return NULL;
    }
    if (do_write(a, self) < 0 && fatal_on_exception(a, self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* _write_appdata(list_of_data) */
static PyObject *
m_write_appdata(TlsAccel *a, PyObject *const *args, Py_ssize_t nargs)
{
    if (!check_nargs("_write_appdata", nargs, 2)) {
        return NULL;
    }
    PyObject *list = args[1];
    if (PyTuple_CheckExact(list) && PyTuple_GET_SIZE(list) == 1) {
        return write_appdata(a, args[0], NULL, PyTuple_GET_ITEM(list, 0));
    }
    return write_appdata(a, args[0], list, NULL);
}

/* get_buffer(n) */
static PyObject *
m_get_buffer(TlsAccel *a, PyObject *const *args, Py_ssize_t nargs)
{
    if (!check_nargs("get_buffer", nargs, 2)) {
        return NULL;
    }
    PyObject *self = args[0];
    Py_ssize_t max = attr_ssize(self, a->n_max_size);  /* a class attribute */
    if (max == -1 && PyErr_Occurred()) {
        return NULL;
    }
    /* want = n; if want <= 0 or want > max_size: want = max_size */
    Py_ssize_t want = PyNumber_AsSsize_t(args[1], PyExc_OverflowError);
    if (want == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (want <= 0 || want > max) {
        want = max;
    }
    PyObject *buf = sget(self, a->n_ssl_buffer);
    if (buf == NULL) {
        return NULL;
    }
    Py_ssize_t have = PyObject_Size(buf);
    Py_DECREF(buf);
    if (have < 0) {
        return NULL;
    }
    if (have < want) {
        PyObject *nbuf = PyByteArray_FromStringAndSize(NULL, want);
        if (nbuf == NULL) {
            return NULL;
        }
        memset(PyByteArray_AS_STRING(nbuf), 0, (size_t)want);
        PyObject *view = PyMemoryView_FromObject(nbuf);
        int r = view == NULL ? -1 : PyObject_SetAttr(self, a->n_ssl_buffer, nbuf);
        Py_DECREF(nbuf);
        if (r < 0 || PyObject_SetAttr(self, a->n_ssl_buffer_view, view) < 0) {
            Py_XDECREF(view);
            return NULL;
        }
        Py_DECREF(view);
    }
    return sget(self, a->n_ssl_buffer_view);
}

/* buffer_updated(nbytes) */
static PyObject *
m_buffer_updated(TlsAccel *a, PyObject *const *args, Py_ssize_t nargs)
{
    if (!check_nargs("buffer_updated", nargs, 2)) {
        return NULL;
    }
    PyObject *self = args[0];
    /* self._incoming.write(self._ssl_buffer_view[:nbytes]) */
    PyObject *view = sget(self, a->n_ssl_buffer_view);
    if (view == NULL) {
        return NULL;
    }
    PyObject *slice = PySlice_New(NULL, args[1], NULL);
    PyObject *part = slice == NULL ? NULL : PyObject_GetItem(view, slice);
    Py_XDECREF(slice);
    Py_DECREF(view);
    if (part == NULL) {
        return NULL;
    }
    PyObject *incoming = sget(self, a->n_incoming);
    PyObject *r = incoming == NULL ? NULL : call1(incoming, a->n_write, part);
    Py_XDECREF(incoming);
    Py_DECREF(part);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);

    PyObject *state = sget(self, a->n_state);
    if (state == NULL) {
        return NULL;
    }
    int rc = 0;
    if (state == a->st_handshake) {
        rc = callm0(self, a->n_do_handshake);
    }
    else if (state == a->st_wrapped) {
        /* self._do_read(): ours unless a subclass replaced it */
        rc = do_read(a, self);
    }
    else if (state == a->st_flushing) {
        rc = callm0(self, a->n_do_flush);
    }
    else if (state == a->st_shutdown) {
        rc = callm0(self, a->n_do_shutdown);
    }
    Py_DECREF(state);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* _SSLProtocolTransport.write(data) */
static PyObject *
m_app_write(TlsAccel *a, PyObject *const *args, Py_ssize_t nargs)
{
    if (!check_nargs("write", nargs, 2)) {
        return NULL;
    }
    PyObject *data = args[1];
    if (!PyBytes_Check(data) && !PyByteArray_Check(data) && !PyMemoryView_Check(data)) {
        PyObject *tname = PyType_GetName(Py_TYPE(data));
        if (tname != NULL) {
            PyErr_Format(PyExc_TypeError, "data: expecting a bytes-like instance, got %U",
                         tname);
            Py_DECREF(tname);
        }
        return NULL;
    }
    int nonempty = PyObject_IsTrue(data);
    if (nonempty <= 0) {
        return nonempty < 0 ? NULL : Py_NewRef(Py_None);
    }
    /* self._ssl_protocol._write_appdata((data,)) */
    PyObject *proto = sget(args[0], a->n_ssl_protocol);
    if (proto == NULL) {
        return NULL;
    }
    PyObject *r;
    if ((PyObject *)Py_TYPE(proto) == a->our_class) {
        r = write_appdata(a, proto, NULL, data);
    }
    else {
        PyObject *tuple = PyTuple_Pack(1, data);
        r = tuple == NULL ? NULL : call1(proto, a->n_write_appdata, tuple);
        Py_XDECREF(tuple);
    }
    Py_DECREF(proto);
    return r;
}

static PyMethodDef accel_methods[] = {
    {"_app_write", RL_CFUNC(m_app_write), METH_FASTCALL, NULL},
    {"get_buffer", RL_CFUNC(m_get_buffer), METH_FASTCALL, NULL},
    {"buffer_updated", RL_CFUNC(m_buffer_updated), METH_FASTCALL, NULL},
    {"_do_read", RL_CFUNC(m_do_read), METH_FASTCALL, NULL},
    {"_write_appdata", RL_CFUNC(m_write_appdata), METH_FASTCALL, NULL},
    {"_do_write", RL_CFUNC(m_do_write), METH_FASTCALL, NULL},
    {"_process_outgoing", RL_CFUNC(m_process_outgoing), METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

/* _core._tls_accel(sslproto, ssl) -> {name: method} for a subclass of
 * sslproto.SSLProtocol. */
static PyObject *
tls_accel(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (!check_nargs("_tls_accel", nargs, 3)) {
        return NULL;
    }
    PyObject *sslproto = args[0], *ssl = args[1];
    PyObject *tp = PyType_FromModuleAndSpec(mod, &accel_spec, NULL);
    if (tp == NULL) {
        return NULL;
    }
    TlsAccel *a = PyObject_New(TlsAccel, (PyTypeObject *)tp);
    Py_DECREF(tp);  /* the instance holds its type */
    if (a == NULL) {
        return NULL;
    }
    {
        PyObject **first = &a->st_handshake;
        PyObject **last = &a->n_call_soon;
        for (PyObject **p = first; p <= last; p++) {
            *p = NULL;
        }
    }
    a->our_class = Py_NewRef(args[2]);
    PyObject *result = NULL, *states = NULL, *cls = NULL;

    states = PyObject_GetAttrString(sslproto, "SSLProtocolState");
    if (states == NULL ||
        (a->st_handshake = PyObject_GetAttrString(states, "DO_HANDSHAKE")) == NULL ||
        (a->st_wrapped = PyObject_GetAttrString(states, "WRAPPED")) == NULL ||
        (a->st_flushing = PyObject_GetAttrString(states, "FLUSHING")) == NULL ||
        (a->st_shutdown = PyObject_GetAttrString(states, "SHUTDOWN")) == NULL ||
        (a->again_errors = PyObject_GetAttrString(sslproto, "SSLAgainErrors")) == NULL ||
        (a->sslobject_type = PyObject_GetAttrString(ssl, "SSLObject")) == NULL ||
        (cls = PyObject_GetAttrString(sslproto, "SSLProtocol")) == NULL ||
        (a->base_write_appdata = PyObject_GetAttrString(cls, "_write_appdata")) == NULL ||
        (a->msg_fatal = PyUnicode_FromString("Fatal error on SSL protocol")) == NULL) {
        goto done;
    }
    if (!PyType_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "_tls_accel: a class expected");
        goto done;
    }
#define NAME(field, text)                                                     \
    if ((a->field = PyUnicode_InternFromString(text)) == NULL) {              \
        goto done;                                                            \
    }
    NAME(n_incoming, "_incoming")
    NAME(n_outgoing, "_outgoing")
    NAME(n_ssl_buffer, "_ssl_buffer")
    NAME(n_ssl_buffer_view, "_ssl_buffer_view")
    NAME(n_state, "_state")
    NAME(n_sslobj, "_sslobj")
    NAME(n_inner_sslobj, "_sslobj")
    NAME(n_app_reading_paused, "_app_reading_paused")
    NAME(n_app_protocol_is_buffer, "_app_protocol_is_buffer")
    NAME(n_write_backlog, "_write_backlog")
    NAME(n_write_buffer_size, "_write_buffer_size")
    NAME(n_max_size, "max_size")
    NAME(n_app_protocol, "_app_protocol")
    NAME(n_data_received, "data_received")
    NAME(n_call_eof_received, "_call_eof_received")
    NAME(n_start_shutdown, "_start_shutdown")
    NAME(n_fatal_error, "_fatal_error")
    NAME(n_do_handshake, "_do_handshake")
    NAME(n_do_flush, "_do_flush")
    NAME(n_do_shutdown, "_do_shutdown")
    NAME(n_do_read, "_do_read")
    NAME(n_ssl_writing_paused, "_ssl_writing_paused")
    NAME(n_read, "read")
    NAME(n_write, "write")
    NAME(n_pending, "pending")
    NAME(n_transport, "_transport")
    NAME(n_outgoing_high_water, "_outgoing_high_water")
    NAME(n_app_writing_paused, "_app_writing_paused")
    NAME(n_control_app_writing, "_control_app_writing")
    NAME(n_incoming_high_water, "_incoming_high_water")
    NAME(n_ssl_reading_paused, "_ssl_reading_paused")
    NAME(n_control_ssl_reading, "_control_ssl_reading")
    NAME(n_app_protocol_get_buffer, "_app_protocol_get_buffer")
    NAME(n_app_protocol_buffer_updated, "_app_protocol_buffer_updated")
    NAME(n_loop, "_loop")
    NAME(n_call_soon, "call_soon")
    NAME(n_append, "append")
    NAME(n_ssl_protocol, "_ssl_protocol")
    NAME(n_write_appdata, "_write_appdata")
#undef NAME

    result = PyDict_New();
    if (result == NULL) {
        goto done;
    }
    for (PyMethodDef *def = accel_methods; def->ml_name != NULL; def++) {
        PyObject *fn = PyCFunction_NewEx(def, (PyObject *)a, mod);
        if (fn == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyObject *meth = PyInstanceMethod_New(fn);
        Py_DECREF(fn);
        if (meth == NULL || PyDict_SetItemString(result, def->ml_name, meth) < 0) {
            Py_XDECREF(meth);
            Py_CLEAR(result);
            goto done;
        }
        Py_DECREF(meth);
    }
done:
    Py_XDECREF(states);
    Py_XDECREF(cls);
    Py_DECREF(a);
    return result;
}

static PyMethodDef tls_module_methods[] = {
    {"_tls_accel", RL_CFUNC(tls_accel), METH_FASTCALL,
     "_tls_accel(sslproto, ssl)\n--\n\n"
     "The C methods of ringloop's SSLProtocol subclass, as a dict."},
    {NULL, NULL, 0, NULL},
};

static int
tls_module_init(PyObject *module, rl_state *st)
{
    (void)st;
    return PyModule_AddFunctions(module, tls_module_methods);
}

/* The TLS part (rl_loop_part, internal.h): module functions only, no Loop
 * methods and no per-loop state (the SSLProtocol holds its own). */
const rl_loop_part rl_tls_part = {
    .name = "tls",
    .module_init = tls_module_init,
};
