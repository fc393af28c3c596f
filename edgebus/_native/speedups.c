/* edgebus._speedups: the producer's per-write encoding and the consumer's reader in C.
 *
 * Optional: edgebus works without it (the same functions exist in pure Python, in
 * edgebus/wire/event_codec.py and edgebus/core/envelope.py), and the test suite
 * checks that both give identical results. Built by setuptools (setup.py, an optional
 * Extension) when a C compiler is available. Public C API only, multi-phase init.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "speedups.h"

/* zig-zag varint of a signed 64-bit value into out; returns its length (<= 10) */
static Py_ssize_t put_long(unsigned char *out, long long n) {
    unsigned long long z = ((unsigned long long)n << 1) ^ (unsigned long long)(n >> 63);
    Py_ssize_t i = 0;
    while (z > 0x7F) {
        out[i++] = (unsigned char)((z & 0x7F) | 0x80);
        z >>= 7;
    }
    out[i++] = (unsigned char)z;
    return i;
}

/* the length put_long writes for n */
static Py_ssize_t long_size(long long n) {
    unsigned long long z = ((unsigned long long)n << 1) ^ (unsigned long long)(n >> 63);
    Py_ssize_t i = 1;
    while (z > 0x7F) {
        i++;
        z >>= 7;
    }
    return i;
}

static const char HEX[] = "0123456789abcdef";

/* uuid4_texts(random: bytes) -> list[str]: one UUID version 4 text per 16 bytes */
static PyObject *uuid4_texts(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (view.len % 16 != 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "uuid4_texts needs a multiple of 16 random bytes");
        return NULL;
    }
    Py_ssize_t count = view.len / 16;
    PyObject *out = PyList_New(count);
    if (out == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    const unsigned char *raw = (const unsigned char *)view.buf;
    for (Py_ssize_t k = 0; k < count; k++) {
        unsigned char b[16];
        memcpy(b, raw + 16 * k, 16);
        b[6] = (unsigned char)((b[6] & 0x0F) | 0x40);
        b[8] = (unsigned char)((b[8] & 0x3F) | 0x80);
        PyObject *text = PyUnicode_New(36, 127);
        if (text == NULL) {
            Py_DECREF(out);
            PyBuffer_Release(&view);
            return NULL;
        }
        Py_UCS1 *p = PyUnicode_1BYTE_DATA(text);
        int j = 0;
        for (int i = 0; i < 16; i++) {
            if (i == 4 || i == 6 || i == 8 || i == 10)
                p[j++] = '-';
            p[j++] = (Py_UCS1)HEX[b[i] >> 4];
            p[j++] = (Py_UCS1)HEX[b[i] & 0x0F];
        }
        PyList_SET_ITEM(out, k, text);
    }
    PyBuffer_Release(&view);
    return out;
}

/* encode_event(cls, names, route_headers, prefix, event_id, key, op_byte, op_header,
 *              payload, chunk, wall_ms, logical, deps_avro, deps_header, tail)
 *   -> cls(key_bytes, value, headers)
 *
 * value = prefix, event id (Avro string), key (Avro string), operation (enum byte),
 * payload (union: 0x00 null | 0x02 then Avro bytes), chunk (origin, placement,
 * classification), hlc wall and logical (Avro longs), deps_avro, tail;
 * headers = route headers, then (names[0], event id), (names[1], op_header),
 * (names[2], 8-byte big-endian wall << 16 | logical), (names[3], deps_header).
 */
static PyObject *encode_event(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 15) {
        PyErr_SetString(PyExc_TypeError, "encode_event takes 15 arguments");
        return NULL;
    }
    PyObject *cls = args[0], *names = args[1], *route_headers = args[2];
    PyObject *prefix = args[3], *event_id = args[4], *key = args[5];
    PyObject *op_byte = args[6], *op_header = args[7], *payload = args[8];
    PyObject *chunk = args[9], *deps_avro = args[12], *deps_header = args[13];
    PyObject *tail = args[14];
    if (!PyTuple_Check(names) || PyTuple_GET_SIZE(names) != 4 || !PyTuple_Check(route_headers)
        || !PyBytes_Check(prefix) || !PyUnicode_Check(event_id) || !PyUnicode_Check(key)
        || !PyBytes_Check(op_byte) || !PyBytes_Check(op_header)
        || (payload != Py_None && !PyBytes_Check(payload)) || !PyBytes_Check(chunk)
        || !PyBytes_Check(deps_avro) || !PyBytes_Check(deps_header) || !PyBytes_Check(tail)) {
        PyErr_SetString(PyExc_TypeError, "encode_event: argument of the wrong type");
        return NULL;
    }
    long long wall = PyLong_AsLongLong(args[10]);
    if (wall == -1 && PyErr_Occurred())
        return NULL;
    long long logical = PyLong_AsLongLong(args[11]);
    if (logical == -1 && PyErr_Occurred())
        return NULL;
    if (wall < 0 || wall >= (1LL << 48) || logical < 0 || logical > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "encode_event: HLC out of range");
        return NULL;
    }
    Py_ssize_t id_len, key_len;
    const char *id_utf8 = PyUnicode_AsUTF8AndSize(event_id, &id_len);
    if (id_utf8 == NULL)
        return NULL;
    const char *key_utf8 = PyUnicode_AsUTF8AndSize(key, &key_len);
    if (key_utf8 == NULL)
        return NULL;
    Py_ssize_t payload_len = payload == Py_None ? 0 : PyBytes_GET_SIZE(payload);
    /* the exact size, so the bytes object is allocated once and never resized */
    Py_ssize_t size = PyBytes_GET_SIZE(prefix) + long_size(id_len) + id_len
        + long_size(key_len) + key_len + PyBytes_GET_SIZE(op_byte) + 1
        + (payload == Py_None ? 0 : long_size(payload_len) + payload_len)
        + PyBytes_GET_SIZE(chunk) + long_size(wall) + long_size(logical)
        + PyBytes_GET_SIZE(deps_avro) + PyBytes_GET_SIZE(tail);
    PyObject *value = PyBytes_FromStringAndSize(NULL, size);
    if (value == NULL)
        return NULL;
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(value);
    Py_ssize_t at = 0;
#define COPY(obj) do { memcpy(p + at, PyBytes_AS_STRING(obj), PyBytes_GET_SIZE(obj)); \
                       at += PyBytes_GET_SIZE(obj); } while (0)
    COPY(prefix);
    at += put_long(p + at, id_len);
    memcpy(p + at, id_utf8, id_len);
    at += id_len;
    at += put_long(p + at, key_len);
    memcpy(p + at, key_utf8, key_len);
    at += key_len;
    COPY(op_byte);
    if (payload == Py_None) {
        p[at++] = 0x00;
    } else {
        p[at++] = 0x02;
        at += put_long(p + at, payload_len);
        COPY(payload);
    }
    COPY(chunk);
    at += put_long(p + at, wall);
    at += put_long(p + at, logical);
    COPY(deps_avro);
    COPY(tail);
#undef COPY
    if (at != size) { /* cannot happen: size counts what is written above */
        Py_DECREF(value);
        PyErr_SetString(PyExc_SystemError, "encode_event: record size miscounted");
        return NULL;
    }

    PyObject *key_bytes = NULL, *id_bytes = NULL, *hlc_bytes = NULL, *headers = NULL;
    PyObject *result = NULL;
    key_bytes = PyBytes_FromStringAndSize(key_utf8, key_len);
    id_bytes = PyBytes_FromStringAndSize(id_utf8, id_len);
    unsigned char hlc[8];
    unsigned long long packed = ((unsigned long long)wall << 16) | (unsigned long long)logical;
    for (int i = 7; i >= 0; i--) {
        hlc[i] = (unsigned char)(packed & 0xFF);
        packed >>= 8;
    }
    hlc_bytes = PyBytes_FromStringAndSize((const char *)hlc, 8);
    if (key_bytes == NULL || id_bytes == NULL || hlc_bytes == NULL)
        goto done;
    Py_ssize_t route_count = PyTuple_GET_SIZE(route_headers);
    headers = PyList_New(route_count + 4);
    if (headers == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < route_count; i++) {
        PyObject *item = PyTuple_GET_ITEM(route_headers, i);
        Py_INCREF(item);
        PyList_SET_ITEM(headers, i, item);
    }
    PyObject *values[4] = {id_bytes, op_header, hlc_bytes, deps_header};
    for (int i = 0; i < 4; i++) {
        PyObject *pair = PyTuple_Pack(2, PyTuple_GET_ITEM(names, i), values[i]);
        if (pair == NULL)
            goto done;
        PyList_SET_ITEM(headers, route_count + i, pair);
    }
    /* cls is a NamedTuple (a tuple subclass without instance dict): allocate it as
       tuple.__new__(cls, (key, value, headers)) does */
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "encode_event: cls must be a tuple subclass");
        goto done;
    }
    result = ((PyTypeObject *)cls)->tp_alloc((PyTypeObject *)cls, 3);
    if (result == NULL)
        goto done;
    Py_INCREF(key_bytes);
    PyTuple_SET_ITEM(result, 0, key_bytes);
    Py_INCREF(value);
    PyTuple_SET_ITEM(result, 1, value);
    Py_INCREF(headers);
    PyTuple_SET_ITEM(result, 2, headers);
done:
    Py_XDECREF(key_bytes);
    Py_XDECREF(id_bytes);
    Py_XDECREF(hlc_bytes);
    Py_XDECREF(headers);
    Py_DECREF(value);
    return result;
}

static PyMethodDef methods[] = {
    {"uuid4_texts", (PyCFunction)uuid4_texts, METH_O,
     "uuid4_texts(random: bytes) -> list[str]: one UUID v4 text per 16 random bytes."},
    {"encode_event", (PyCFunction)(void (*)(void))encode_event, METH_FASTCALL,
     "encode_event(...) -> EncodedEvent: one Event v2 record (see the C source)."},
    {"read_event", (PyCFunction)(void (*)(void))read_event_fast, METH_FASTCALL,
     "read_event(...) -> ReadEvent | None: the common case of the Event v2 reader."},
    {"apply_run", (PyCFunction)(void (*)(void))apply_run, METH_FASTCALL,
     "apply_run(records, start, fixed, batch) -> (next, duplicates, released, cascade)."},
    {"interleave", (PyCFunction)interleave, METH_O,
     "interleave(records) -> list: the records merged by timestamp across partitions."},
    {"state_rows", (PyCFunction)(void (*)(void))state_rows, METH_FASTCALL,
     "state_rows(states, slots, dumps) -> list[tuple]: a SQLite store's key_states rows."},
    {NULL, NULL, 0, NULL},
};

/* multi-phase initialization (PEP 489); the module keeps no state, so it needs no
   Py_mod_exec slot and can be loaded in any (sub)interpreter */
static PyModuleDef_Slot slots[] = {
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "edgebus._speedups",
    .m_doc = "The producer's encoding and the consumer's reader in C (optional; pure Python otherwise).",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC PyInit__speedups(void) { return PyModuleDef_Init(&module); }
