/* edgebus._speedups: a batch's records merged by timestamp across partitions.
 *
 * interleave(records) -> list
 *
 * What edgebus.region.applier.interleaved returns in pure Python: the records (each
 * partition's in offset order) merged by record timestamp, each partition's order
 * kept, ties to the partition that appears first in records (heapq.merge's order).
 */
#include "speedups.h"

#define MAX_RUNS 64

typedef struct {
    Py_ssize_t next, end; /* positions in the grouped array */
} Run;

PyObject *interleave(PyObject *self, PyObject *records) {
    if (!PyList_Check(records)) {
        PyErr_SetString(PyExc_TypeError, "interleave: records must be a list");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(records);
    PyObject *name_p = PyUnicode_InternFromString("partition");
    PyObject *name_t = PyUnicode_InternFromString("timestamp");
    long long *parts = PyMem_Malloc(sizeof(long long) * (size_t)(n ? n : 1));
    long long *stamps = PyMem_Malloc(sizeof(long long) * (size_t)(n ? n : 1));
    PyObject *out = NULL;
    if (name_p == NULL || name_t == NULL || parts == NULL || stamps == NULL) {
        if (parts == NULL || stamps == NULL)
            PyErr_NoMemory();
        goto done;
    }
    /* the runs: maximal stretches of one partition (a partition appearing twice, or
       more than MAX_RUNS runs, is left as it is: it was not grouped by partition) */
    Run runs[MAX_RUNS];
    int nruns = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *r = PyList_GET_ITEM(records, i);
        PyObject *p = PyObject_GetAttr(r, name_p), *t = PyObject_GetAttr(r, name_t);
        if (p == NULL || t == NULL) {
            Py_XDECREF(p);
            Py_XDECREF(t);
            goto done;
        }
        parts[i] = PyLong_AsLongLong(p);
        stamps[i] = PyLong_AsLongLong(t);
        Py_DECREF(p);
        Py_DECREF(t);
        if (PyErr_Occurred())
            goto done;
        if (i == 0 || parts[i] != parts[i - 1]) {
            for (int k = 0; k < nruns; k++) {
                if (parts[runs[k].next] == parts[i]) { /* not grouped: keep the order */
                    out = PyList_GetSlice(records, 0, n);
                    goto done;
                }
            }
            if (nruns == MAX_RUNS) {
                out = PyList_GetSlice(records, 0, n);
                goto done;
            }
            runs[nruns].next = i;
            nruns++;
        }
        runs[nruns - 1].end = i + 1;
    }
    out = PyList_New(n);
    if (out == NULL)
        goto done;
    for (Py_ssize_t k = 0; k < n; k++) {
        int best = -1;
        for (int j = 0; j < nruns; j++) {
            if (runs[j].next < runs[j].end
                && (best < 0 || stamps[runs[j].next] < stamps[runs[best].next]))
                best = j;
        }
        PyObject *r = PyList_GET_ITEM(records, runs[best].next);
        runs[best].next++;
        PyList_SET_ITEM(out, k, Py_NewRef(r));
    }
done:
    PyMem_Free(parts);
    PyMem_Free(stamps);
    return out;
}
