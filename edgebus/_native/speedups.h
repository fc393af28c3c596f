/* Declarations shared by the C files of edgebus._speedups. */
#ifndef EDGEBUS_SPEEDUPS_H
#define EDGEBUS_SPEEDUPS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* An Event v2 record's fields, as parse_event reads them (new references). */
typedef struct {
    PyObject *event_id, *key, *payload, *origin, *placement, *classification, *writer;
    long long op, wall, logical, version;
    const char *key_utf8; /* the key's bytes inside the record value */
    Py_ssize_t key_len;
} Parsed;

/* Read value (an Avro single-object record starting with prefix, 10 bytes) into out:
   1 when it is a well-formed Event v2 record that passes every check of the Python
   reader (edgebus.wire.event_reader), 0 otherwise (nothing held, no exception set:
   the caller leaves the record to the Python reader). */
int parse_event(PyObject *value, PyObject *prefix, PyObject *loads, Parsed *out);
void parsed_clear(Parsed *p);
/* whether s[0:n] is valid UTF-8 */
int valid_utf8(const unsigned char *s, Py_ssize_t n);

PyObject *read_event_fast(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *apply_run(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *interleave(PyObject *self, PyObject *records);
PyObject *state_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

#endif
