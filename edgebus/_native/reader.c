/* edgebus._speedups: the consumer's Event v2 reader.
 *
 * read_event(value, prefix, ops, event_cls, hlc_cls, loads) -> ReadEvent | None
 *
 * The common case of edgebus.wire.event_reader.read_event in one call: value is an
 * Avro single-object record whose first 10 bytes equal prefix (magic + fingerprint of
 * io.edgebus.Event v2). Returns event_cls(event_id, key, ops[op], payload, origin,
 * placement, classification, hlc_cls(wall_ms, logical), schema_version, writer) when
 * the record is well formed and passes every check of the Python reader; returns None
 * for anything else (another schema, a corrupt body, a non-canonical event id, a
 * failed check, a payload long enough to need the nesting check), and the caller then
 * runs the Python reader, which gives the same event or the DecodeError with its
 * reason. So both paths give identical results; this one never raises for bad input.
 */
#include <string.h>

#include "speedups.h"

typedef struct {
    const unsigned char *p;
    Py_ssize_t pos, len;
} Cursor;

/* one zig-zag varint; 0 on success, -1 when corrupt or beyond 64 bits */
static int get_long(Cursor *c, long long *out) {
    unsigned long long n = 0;
    int shift = 0;
    while (1) {
        if (c->pos >= c->len)
            return -1;
        unsigned char b = c->p[c->pos++];
        if (shift == 63 && (b & 0x7E))  /* bits beyond 64 */
            return -1;
        n |= (unsigned long long)(b & 0x7F) << shift;
        if (!(b & 0x80))
            break;
        shift += 7;
        if (shift > 63)
            return -1;
    }
    *out = (long long)(n >> 1) ^ -(long long)(n & 1);
    return 0;
}

/* a string's bytes (length checked against the end); 0 on success */
static int get_span(Cursor *c, const unsigned char **start, Py_ssize_t *size) {
    long long n;
    if (get_long(c, &n) < 0 || n < 0 || n > c->len - c->pos)
        return -1;
    *start = c->p + c->pos;
    *size = (Py_ssize_t)n;
    c->pos += (Py_ssize_t)n;
    return 0;
}

/* a string as str (strict UTF-8); NULL without an exception set when corrupt */
static PyObject *get_str(Cursor *c) {
    const unsigned char *s;
    Py_ssize_t n;
    if (get_span(c, &s, &n) < 0)
        return NULL;
    PyObject *out = PyUnicode_DecodeUTF8((const char *)s, n, NULL);
    if (out == NULL)
        PyErr_Clear();
    return out;
}

/* an array block's count (and skipped size when negative); -1 when corrupt */
static int get_block(Cursor *c, long long *count) {
    if (get_long(c, count) < 0)
        return -1;
    if (*count < 0) {
        long long size;
        if (get_long(c, &size) < 0 || size < 0 || size > c->len - c->pos)
            return -1;
        *count = -*count;
    }
    if (*count > c->len - c->pos)
        return -1;
    return 0;
}

/* an array of strings as a tuple; NULL (no exception) when corrupt */
static PyObject *get_str_array(Cursor *c) {
    PyObject *items = PyList_New(0);
    if (items == NULL) {
        PyErr_Clear();
        return NULL;
    }
    while (1) {
        long long count;
        if (get_block(c, &count) < 0)
            goto bad;
        if (count == 0)
            break;
        for (long long i = 0; i < count; i++) {
            PyObject *item = get_str(c);
            if (item == NULL)
                goto bad;
            int failed = PyList_Append(items, item);
            Py_DECREF(item);
            if (failed < 0) {
                PyErr_Clear();
                goto bad;
            }
        }
    }
    PyObject *out = PyList_AsTuple(items);
    Py_DECREF(items);
    if (out == NULL)
        PyErr_Clear();
    return out;
bad:
    Py_DECREF(items);
    return NULL;
}

/* whether s[0:n] is valid UTF-8 (ASCII checked in place, the rest by Python) */
int valid_utf8(const unsigned char *s, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        if (s[i] & 0x80) {
            PyObject *text = PyUnicode_DecodeUTF8((const char *)s, n, NULL);
            if (text == NULL) {
                PyErr_Clear();
                return 0;
            }
            Py_DECREF(text);
            return 1;
        }
    }
    return 1;
}

/* skip the dependency array, checking each entry as the Python reader does */
static int skip_dependencies(Cursor *c) {
    while (1) {
        long long count;
        long long size = -1;
        if (get_long(c, &count) < 0)
            return -1;
        if (count < 0) {
            if (get_long(c, &size) < 0 || size < 0 || size > c->len - c->pos)
                return -1;
            count = -count;
        }
        if (count > c->len - c->pos)
            return -1;
        if (count == 0)
            return 0;
        if (size >= 0) {
            c->pos += (Py_ssize_t)size;
            continue;
        }
        for (long long i = 0; i < count; i++) {
            const unsigned char *s;
            Py_ssize_t n;
            long long partition, offset;
            if (get_span(c, &s, &n) < 0 || n == 0 || !valid_utf8(s, n))
                return -1;
            if (get_long(c, &partition) < 0 || get_long(c, &offset) < 0)
                return -1;
            if (partition < 0 || partition > 0x7FFFFFFFLL || offset < 0)
                return -1;
        }
    }
}

static int is_canonical_uuid(const unsigned char *s, Py_ssize_t n) {
    if (n != 36)
        return 0;
    for (int i = 0; i < 36; i++) {
        unsigned char ch = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (ch != '-')
                return 0;
        } else if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

/* the smallest JSON text that nests deeper than the 250 levels readers allow */
#define SHORTEST_TOO_DEEP 502
#define MAX_KEY_BYTES 4096

void parsed_clear(Parsed *p) {
    Py_CLEAR(p->event_id);
    Py_CLEAR(p->key);
    Py_CLEAR(p->payload);
    Py_CLEAR(p->origin);
    Py_CLEAR(p->placement);
    Py_CLEAR(p->classification);
    Py_CLEAR(p->writer);
}

static int parse_body(Cursor *c, PyObject *loads, Parsed *out) {
    const unsigned char *s;
    Py_ssize_t n;
    long long branch;
    if (get_span(c, &s, &n) < 0 || !is_canonical_uuid(s, n))
        return 0;
    out->event_id = PyUnicode_DecodeUTF8((const char *)s, n, NULL);
    if (out->event_id == NULL)
        return 0;
    if (get_span(c, &s, &n) < 0 || n == 0 || n > MAX_KEY_BYTES)
        return 0;
    out->key = PyUnicode_DecodeUTF8((const char *)s, n, NULL);
    if (out->key == NULL)
        return 0;
    out->key_utf8 = (const char *)s;
    out->key_len = n;
    if (get_long(c, &out->op) < 0 || out->op < 0 || out->op > 4)
        return 0;
    if (get_long(c, &branch) < 0)
        return 0;
    if (branch == 1) {
        if (get_span(c, &s, &n) < 0 || n >= SHORTEST_TOO_DEEP)
            return 0;
        PyObject *raw = PyBytes_FromStringAndSize((const char *)s, n);
        if (raw == NULL)
            return 0;
        out->payload = PyObject_CallOneArg(loads, raw);
        Py_DECREF(raw);
        if (out->payload == NULL)
            return 0;
    } else if (branch == 0) {
        out->payload = Py_NewRef(Py_None);
    } else {
        return 0;
    }
    out->origin = get_str(c);
    if (out->origin == NULL || PyUnicode_GET_LENGTH(out->origin) == 0)
        return 0;
    out->placement = get_str_array(c);
    if (out->placement == NULL)
        return 0;
    out->classification = get_str_array(c);
    if (out->classification == NULL)
        return 0;
    if (get_long(c, &out->wall) < 0 || get_long(c, &out->logical) < 0)
        return 0;
    if (skip_dependencies(c) < 0)
        return 0;
    if (get_long(c, &out->version) < 0 || out->version < -2147483648LL
        || out->version > 2147483647LL)
        return 0;
    if (get_long(c, &branch) < 0)
        return 0;
    if (branch == 1) {
        out->writer = get_str(c);
        if (out->writer == NULL)
            return 0;
    } else if (branch == 0) {
        out->writer = Py_NewRef(Py_None);
    } else {
        return 0;
    }
    return c->pos == c->len;
}

/* the envelope's checks (edgebus.wire.event_reader._check and read_event's own) */
static int checked(const Parsed *p) {
    Py_ssize_t places = PyTuple_GET_SIZE(p->placement);
    if (places == 0 || p->wall < 0 || p->wall >= (1LL << 48) || p->logical < 0
        || p->logical > 0xFFFF)
        return 0;
    if (PyUnicode_Compare(PyTuple_GET_ITEM(p->placement, 0), p->origin) != 0)
        return 0;
    for (Py_ssize_t i = 1; i < places; i++) {
        for (Py_ssize_t j = 0; j < i; j++) {
            int cmp = PyUnicode_Compare(PyTuple_GET_ITEM(p->placement, i),
                                        PyTuple_GET_ITEM(p->placement, j));
            if (cmp != 1 && cmp != -1) /* equal, or an error */
                return 0;
        }
    }
    /* an operation's payload (delete: none; increment: a number, not a bool) */
    if (p->op == 1 && p->payload != Py_None)
        return 0;
    if (p->op == 2 && !(PyLong_CheckExact(p->payload) || PyFloat_CheckExact(p->payload)))
        return 0;
    return 1;
}

int parse_event(PyObject *value, PyObject *prefix, PyObject *loads, Parsed *out) {
    memset(out, 0, sizeof(*out));
    if (!PyBytes_Check(value) || !PyBytes_Check(prefix) || PyBytes_GET_SIZE(prefix) != 10)
        return 0;
    Cursor c = {(const unsigned char *)PyBytes_AS_STRING(value), 10, PyBytes_GET_SIZE(value)};
    if (c.len < 10 || memcmp(c.p, PyBytes_AS_STRING(prefix), 10) != 0)
        return 0;
    if (parse_body(&c, loads, out) && checked(out))
        return 1;
    if (PyErr_Occurred())
        PyErr_Clear();
    parsed_clear(out);
    return 0;
}

static PyObject *new_long_pair(PyObject *cls, long long a, long long b) {
    PyObject *out = ((PyTypeObject *)cls)->tp_alloc((PyTypeObject *)cls, 2);
    if (out == NULL)
        return NULL;
    PyObject *x = PyLong_FromLongLong(a), *y = PyLong_FromLongLong(b);
    if (x == NULL || y == NULL) {
        Py_XDECREF(x);
        Py_XDECREF(y);
        Py_DECREF(out);
        return NULL;
    }
    PyTuple_SET_ITEM(out, 0, x);
    PyTuple_SET_ITEM(out, 1, y);
    return out;
}

PyObject *read_event_fast(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "read_event takes 6 arguments");
        return NULL;
    }
    PyObject *value = args[0], *prefix = args[1], *ops = args[2];
    PyObject *event_cls = args[3], *hlc_cls = args[4], *loads = args[5];
    if (!PyTuple_Check(ops) || PyTuple_GET_SIZE(ops) != 5
        || !PyType_Check(event_cls) || !PyType_IsSubtype((PyTypeObject *)event_cls, &PyTuple_Type)
        || !PyType_Check(hlc_cls) || !PyType_IsSubtype((PyTypeObject *)hlc_cls, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "read_event: argument of the wrong type");
        return NULL;
    }
    Parsed p;
    if (!parse_event(value, prefix, loads, &p))
        Py_RETURN_NONE;
    PyObject *hlc = new_long_pair(hlc_cls, p.wall, p.logical);
    PyObject *version = PyLong_FromLongLong(p.version);
    PyObject *result = ((PyTypeObject *)event_cls)->tp_alloc((PyTypeObject *)event_cls, 10);
    if (hlc == NULL || version == NULL || result == NULL) {
        Py_XDECREF(hlc);
        Py_XDECREF(version);
        Py_XDECREF(result);
        parsed_clear(&p);
        return NULL;
    }
    /* the references parse_event took move into the tuple */
    PyTuple_SET_ITEM(result, 0, p.event_id);
    PyTuple_SET_ITEM(result, 1, p.key);
    PyTuple_SET_ITEM(result, 2, Py_NewRef(PyTuple_GET_ITEM(ops, p.op)));
    PyTuple_SET_ITEM(result, 3, p.payload);
    PyTuple_SET_ITEM(result, 4, p.origin);
    PyTuple_SET_ITEM(result, 5, p.placement);
    PyTuple_SET_ITEM(result, 6, p.classification);
    PyTuple_SET_ITEM(result, 7, hlc);
    PyTuple_SET_ITEM(result, 8, version);
    PyTuple_SET_ITEM(result, 9, p.writer);
    return result;
}
