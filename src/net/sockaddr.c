/* sockaddr.c -- socket addresses between C and Python, as CPython's
 * socketmodule.c shapes them, for AF_INET, AF_INET6 and AF_UNIX.
 *
 * Receiving: rl_sockaddr_build gives exactly what socket.recvfrom() would
 * (makesockaddr).  Sending: rl_sockaddr_parse accepts only the plain,
 * unambiguous forms (numeric hosts, int ports in range, str/bytes Unix
 * paths); for anything else it answers 0 and the caller hands the address
 * to the socket's own method, so name resolution, idna, the odd types and
 * every error message stay CPython's. */
#include "internal.h"
#include "sockops.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

int
rl_sockaddr_native_family(int family)
{
    return family == AF_INET || family == AF_INET6 || family == AF_UNIX;
}

PyObject *
rl_sockaddr_build(const struct sockaddr *sa, socklen_t len)
{
    char buf[INET6_ADDRSTRLEN];
    if (len == 0) {
        /* No address: a stream socket's recvfrom(). */
        Py_RETURN_NONE;
    }
    switch (sa->sa_family) {
    case AF_INET: {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        if (inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf)) == NULL) {
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        return Py_BuildValue("si", buf, (int)ntohs(a->sin_port));
    }
    case AF_INET6: {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        if (inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf)) == NULL) {
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        return Py_BuildValue("siII", buf, (int)ntohs(a->sin6_port),
                             (unsigned int)ntohl(a->sin6_flowinfo),
                             (unsigned int)a->sin6_scope_id);
    }
    case AF_UNIX: {
        const struct sockaddr_un *a = (const struct sockaddr_un *)sa;
        size_t plen = (size_t)len > offsetof(struct sockaddr_un, sun_path)
                          ? (size_t)len - offsetof(struct sockaddr_un,
                                                   sun_path)
                          : 0;
        if (plen > sizeof(a->sun_path)) {
            plen = sizeof(a->sun_path);
        }
        if (plen > 0 && a->sun_path[0] == 0) {
            /* Linux abstract namespace: bytes, as CPython. */
            return PyBytes_FromStringAndSize(a->sun_path, (Py_ssize_t)plen);
        }
        /* A NUL-terminated path ('' for an unnamed socket). */
        return PyUnicode_DecodeFSDefaultAndSize(
            a->sun_path, (Py_ssize_t)strnlen(a->sun_path, plen));
    }
    default:
        /* Not reached: callers check rl_sockaddr_native_family first.
         * CPython's fallback shape, for safety. */
        return Py_BuildValue("iy#", sa->sa_family, sa->sa_data,
                             (Py_ssize_t)sizeof(sa->sa_data));
    }
}

/* A Python int in [lo, hi]: 1 and *out, else 0 (no error left). */
static int
small_int(PyObject *o, long lo, long hi, long *out)
{
    if (!PyLong_CheckExact(o)) {
        return 0;
    }
    int overflow = 0;
    long v = PyLong_AsLongAndOverflow(o, &overflow);
    if (overflow || (v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    if (v < lo || v > hi) {
        return 0;
    }
    *out = v;
    return 1;
}

/* An exact str host of printable ASCII: its UTF-8 (borrowed), else NULL. */
static const char *
ascii_host(PyObject *o)
{
    if (!PyUnicode_CheckExact(o) || !PyUnicode_IS_ASCII(o)) {
        return NULL;
    }
    Py_ssize_t n = 0;
    const char *s = PyUnicode_AsUTF8AndSize(o, &n);
    if (s == NULL) {
        PyErr_Clear();
        return NULL;
    }
    if (n == 0 || (size_t)n != strlen(s)) {
        return NULL; /* '' (INADDR_ANY via resolution) or embedded NUL */
    }
    return s;
}

static int
parse_inet(PyObject *addr, struct sockaddr_storage *ss, socklen_t *len)
{
    if (!PyTuple_CheckExact(addr) || PyTuple_GET_SIZE(addr) != 2) {
        return 0;
    }
    const char *host = ascii_host(PyTuple_GET_ITEM(addr, 0));
    long port;
    if (host == NULL || !small_int(PyTuple_GET_ITEM(addr, 1), 0, 65535,
                                   &port)) {
        return 0;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    memset(a, 0, sizeof(*a));
    if (inet_pton(AF_INET, host, &a->sin_addr) != 1) {
        return 0;
    }
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    *len = sizeof(*a);
    return 1;
}

static int
parse_inet6(PyObject *addr, struct sockaddr_storage *ss, socklen_t *len)
{
    if (!PyTuple_CheckExact(addr)) {
        return 0;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(addr);
    if (n < 2 || n > 4) {
        return 0;
    }
    const char *host = ascii_host(PyTuple_GET_ITEM(addr, 0));
    long port, flowinfo = 0, scope_id = 0;
    if (host == NULL || strchr(host, '%') != NULL ||
        !small_int(PyTuple_GET_ITEM(addr, 1), 0, 65535, &port)) {
        return 0;
    }
    if (n >= 3 && !small_int(PyTuple_GET_ITEM(addr, 2), 0, 0xfffff,
                             &flowinfo)) {
        return 0;
    }
    if (n >= 4 && !small_int(PyTuple_GET_ITEM(addr, 3), 0, 0xffffffffL,
                             &scope_id)) {
        return 0;
    }
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    memset(a, 0, sizeof(*a));
    if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) {
        return 0;
    }
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    a->sin6_flowinfo = htonl((uint32_t)flowinfo);
    a->sin6_scope_id = (uint32_t)scope_id;
    *len = sizeof(*a);
    return 1;
}

static int
parse_unix(PyObject *addr, struct sockaddr_storage *ss, socklen_t *len)
{
    PyObject *b;
    if (PyUnicode_CheckExact(addr)) {
        b = PyUnicode_EncodeFSDefault(addr);
        if (b == NULL) {
            PyErr_Clear();
            return 0;
        }
    }
    else if (PyBytes_CheckExact(addr)) {
        b = Py_NewRef(addr);
    }
    else {
        return 0;
    }
    struct sockaddr_un *a = (struct sockaddr_un *)ss;
    const char *p = PyBytes_AS_STRING(b);
    size_t plen = (size_t)PyBytes_GET_SIZE(b);
    int ok = 0;
    memset(a, 0, sizeof(*a));
    a->sun_family = AF_UNIX;
    if (plen == 0 || p[0] == 0) {
        /* Linux abstract namespace (or autobind): exactly plen bytes. */
        if (plen <= sizeof(a->sun_path)) {
            memcpy(a->sun_path, p, plen);
            *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
                               plen);
            ok = 1;
        }
    }
    else if (plen < sizeof(a->sun_path) && memchr(p, 0, plen) == NULL) {
        memcpy(a->sun_path, p, plen);
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen +
                           1);
        ok = 1;
    }
    Py_DECREF(b);
    return ok;
}

int
rl_sockaddr_parse(int family, PyObject *addr, struct sockaddr_storage *ss,
                  socklen_t *len)
{
    switch (family) {
    case AF_INET:
        return parse_inet(addr, ss, len);
    case AF_INET6:
        return parse_inet6(addr, ss, len);
    case AF_UNIX:
        return parse_unix(addr, ss, len);
    default:
        return 0;
    }
}
