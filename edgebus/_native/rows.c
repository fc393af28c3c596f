/* edgebus._speedups: a SQLite store's key_states rows, made in one call.
 *
 * state_rows(states, slots, dumps) -> list[tuple]
 *
 * The rows connectors.sqlite.SQLiteStore._state_row makes, one per KeyState of
 * states (a sequence), read through the KeyState slot descriptors slots (its fields
 * in order): (key, exists, value JSON, version, top hlc, top origin, top event id,
 * base hlc, base origin, base event id, n_ops, int_counter, base_exists, base JSON),
 * the last two None without retained ops; JSON is dumps(value) as text. An exception
 * of dumps (a value JSON cannot hold) is raised as it is.
 */
#include "speedups.h"

enum { S_KEY, S_EXISTS, S_VALUE, S_BASE, S_TOP, S_VERSION, S_N_OPS, S_INT_COUNTER, S_OPS,
       S_BASE_EXISTS, S_BASE_VALUE, S_COUNT };

static PyObject *json_text(PyObject *dumps, PyObject *value) {
    PyObject *raw = PyObject_CallOneArg(dumps, value);
    if (raw == NULL)
        return NULL;
    if (!PyBytes_Check(raw)) {
        Py_DECREF(raw);
        PyErr_SetString(PyExc_TypeError, "state_rows: dumps must return bytes");
        return NULL;
    }
    PyObject *text = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), NULL);
    Py_DECREF(raw);
    return text;
}

static PyObject *stamp_item(PyObject *stamp, Py_ssize_t i) {
    if (stamp == Py_None)
        return Py_NewRef(Py_None);
    if (!PyTuple_Check(stamp) || PyTuple_GET_SIZE(stamp) != 3) {
        PyErr_SetString(PyExc_TypeError, "state_rows: a stamp must be a 3-tuple");
        return NULL;
    }
    return Py_NewRef(PyTuple_GET_ITEM(stamp, i));
}

static PyObject *state_row(PyObject *state, PyObject *slots, PyObject *dumps) {
    PyObject *f[S_COUNT] = {NULL};
    PyObject *row = NULL;
    for (int i = 0; i < S_COUNT; i++) {
        PyObject *descr = PyTuple_GET_ITEM(slots, i);
        f[i] = Py_TYPE(descr)->tp_descr_get(descr, state, (PyObject *)Py_TYPE(state));
        if (f[i] == NULL)
            goto done;
    }
    int with_ops = PyObject_IsTrue(f[S_N_OPS]);
    int exists = PyObject_IsTrue(f[S_EXISTS]);
    int counter = PyObject_IsTrue(f[S_INT_COUNTER]);
    int base_exists = PyObject_IsTrue(f[S_BASE_EXISTS]);
    if (with_ops < 0 || exists < 0 || counter < 0 || base_exists < 0)
        goto done;
    row = PyTuple_New(14);
    if (row == NULL)
        goto done;
    PyObject *items[14] = {
        Py_NewRef(f[S_KEY]), PyLong_FromLong(exists), json_text(dumps, f[S_VALUE]),
        Py_NewRef(f[S_VERSION]), stamp_item(f[S_TOP], 0), stamp_item(f[S_TOP], 1),
        stamp_item(f[S_TOP], 2), stamp_item(f[S_BASE], 0), stamp_item(f[S_BASE], 1),
        stamp_item(f[S_BASE], 2), Py_NewRef(f[S_N_OPS]), PyLong_FromLong(counter),
        with_ops ? PyLong_FromLong(base_exists) : Py_NewRef(Py_None),
        with_ops ? json_text(dumps, f[S_BASE_VALUE]) : Py_NewRef(Py_None),
    };
    int failed = 0;
    for (int i = 0; i < 14; i++) {
        if (items[i] == NULL)
            failed = 1;
        PyTuple_SET_ITEM(row, i, items[i]); /* NULL is fine in a tuple being dropped */
    }
    if (failed)
        Py_CLEAR(row);
done:
    for (int i = 0; i < S_COUNT; i++)
        Py_XDECREF(f[i]);
    return row;
}

PyObject *state_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyTuple_Check(args[1]) || PyTuple_GET_SIZE(args[1]) != S_COUNT) {
        PyErr_SetString(PyExc_TypeError, "state_rows(states, slots: tuple of 11, dumps)");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(args[0], "state_rows: states must be a sequence");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *out = PyList_New(n);
    if (out == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *row = state_row(PySequence_Fast_GET_ITEM(seq, i), args[1], args[2]);
        if (row == NULL) {
            Py_DECREF(out);
            Py_DECREF(seq);
            return NULL;
        }
        PyList_SET_ITEM(out, i, row);
    }
    Py_DECREF(seq);
    return out;
}
