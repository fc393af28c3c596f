/* edgebus._speedups: the common case of a region's batch fold, in one call.
 *
 * apply_run(records, start, fixed, batch) -> (next, duplicates, released, cascade)
 *
 * Folds records[start:] one after the other, exactly as
 * edgebus.region.applier.BatchApplier does, for as long as each record is of the
 * common kind: an event of this region's own writers, or a replicator's copy whose
 * origin position (eb-origin-pos) names a configured other region, the record's own
 * partition and an offset below that region's known end (no redrive, transaction or
 * watermark header), that decodes and passes every check, a set, delete or
 * increment whose dependencies are applied already, on a stream the causal gate holds
 * nothing of, and whose fold is the O(1) one (a key's first event, a set or delete
 * onto a state without retained ops, an increment newer than everything applied).
 * It stops before the first record of any other kind and returns its index: the
 * caller folds that record in Python (the reference) and calls again after it. When a
 * record it folded is one that blocked streams wait for, it stops after it and returns
 * its stream as cascade: the caller releases and folds what waited (the causal gate's
 * cascade, as offer() runs it), then calls again. So
 * the result is the Python fold's, record for record; a record is either folded here
 * whole or not touched at all.
 *
 * fixed (per applier): (region, prefix, loads, operations, KeyState, KeyState's slot
 *   descriptors, Stamp, KeyOp, AppliedEvent, AppliedEvent's slot descriptors,
 *   Position, allowed: {classification tuple: bool}, configured regions (a set, or
 *   None: not checked), partitions per topic (0: not checked))
 * batch (per batch): (frontier, queues, waiting, states, changes.states,
 *   changes.frontier, pending ops, applied list, consumed positions, known_dead set or
 *   None, poison dict or None, ends: {(region, partition): end offset} a copy's
 *   origin position must lie below (a region missing: the Python path reads its ends
 *   again), or None when origin positions are not checked against ends)
 */
#include <math.h>
#include <string.h>

#include "speedups.h"

#include "fold.h"

/* a new instance of a slotted class, its slots set through their descriptors (as
   object.__setattr__ does, past a frozen dataclass's __setattr__); steals nothing */
static PyObject *new_slotted(PyObject *cls, PyObject *slots, PyObject *const *values) {
    PyTypeObject *type = (PyTypeObject *)cls;
    PyObject *obj = type->tp_alloc(type, 0);
    if (obj == NULL)
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(slots);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *descr = PyTuple_GET_ITEM(slots, i);
        if (Py_TYPE(descr)->tp_descr_set(descr, obj, values[i]) < 0) {
            Py_DECREF(obj);
            return NULL;
        }
    }
    return obj;
}

/* a tuple subclass (NamedTuple) instance of n items; steals the items' references */
static PyObject *new_tuple_of(PyObject *cls, Py_ssize_t n, PyObject **items) {
    PyObject *out = ((PyTypeObject *)cls)->tp_alloc((PyTypeObject *)cls, n);
    if (out == NULL) {
        for (Py_ssize_t i = 0; i < n; i++)
            Py_XDECREF(items[i]);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        PyTuple_SET_ITEM(out, i, items[i]);
    return out;
}

static PyObject *slot(PyObject *obj, PyObject *slots, int i) {
    PyObject *descr = PyTuple_GET_ITEM(slots, i);
    return Py_TYPE(descr)->tp_descr_get(descr, obj, (PyObject *)Py_TYPE(obj));
}

static int is_int(PyObject *v) { return PyLong_Check(v) && !PyBool_Check(v); }
static int is_number(PyObject *v) { return is_int(v) || PyFloat_Check(v); }

/* a value the store can hold as the Python fold leaves it: 64-bit ints, finite floats */
static int storable(PyObject *v) {
    if (PyLong_CheckExact(v)) {
        int overflow;
        PyLong_AsLongLongAndOverflow(v, &overflow);
        return overflow == 0;
    }
    if (PyFloat_CheckExact(v))
        return isfinite(PyFloat_AS_DOUBLE(v));
    return 1;
}

typedef struct {
    PyObject *state;  /* the new KeyState */
    PyObject *retain; /* a KeyOp to retain, or NULL */
} Folded;

/* the O(1) fold of the Python apply(); 1 done, 0 not this path, -1 error */
static int fold_one(PyObject *const *fx, PyObject *state, const Parsed *p, PyObject *stamp,
                    PyObject *zero, Folded *out) {
    PyObject *ks = fx[F_KEYSTATE], *slots = fx[F_KS_SLOTS];
    PyObject *v[S_COUNT];
    PyObject *held[S_COUNT + 4];
    int nheld = 0, done = -1;
    out->state = out->retain = NULL;
#define HOLD(x) (held[nheld++] = (x))
    long long version = 1;
    PyObject *old[S_COUNT] = {NULL};
    if (state != Py_None) {
        for (int i = 0; i < S_COUNT; i++) {
            old[i] = slot(state, slots, i);
            if (old[i] == NULL)
                goto finish;
        }
        version = PyLong_AsLongLong(old[S_VERSION]) + 1;
        if (version == 0 && PyErr_Occurred())
            goto finish;
        if (old[S_BASE] != Py_None) {
            int older = PyObject_RichCompareBool(stamp, old[S_BASE], Py_LT);
            if (older != 0) { /* overwritten before it arrived (or an error) */
                done = older < 0 ? -1 : 0;
                goto finish;
            }
        }
    }
    PyObject *version_obj = HOLD(PyLong_FromLongLong(version));
    if (version_obj == NULL)
        goto finish;
    if (p->op == OP_SET || p->op == OP_DELETE) {
        if (state != Py_None) {
            long long n_ops = PyLong_AsLongLong(old[S_N_OPS]);
            if (n_ops != 0) { /* retained ops to drop or refold: the Python path */
                done = (n_ops == -1 && PyErr_Occurred()) ? -1 : 0;
                goto finish;
            }
        }
        int exists = p->op == OP_SET;
        PyObject *value = exists ? p->payload : Py_None;
        v[S_KEY] = p->key;
        v[S_EXISTS] = exists ? Py_True : Py_False;
        v[S_VALUE] = value;
        v[S_BASE] = stamp;
        v[S_TOP] = stamp;
        v[S_VERSION] = version_obj;
        v[S_N_OPS] = HOLD(PyLong_FromLong(0));
        v[S_INT_COUNTER] = (is_int(value) || !exists) ? Py_True : Py_False;
        v[S_OPS] = HOLD(PyTuple_New(0));
        v[S_BASE_EXISTS] = v[S_EXISTS];
        v[S_BASE_VALUE] = value;
        if (v[S_N_OPS] == NULL || v[S_OPS] == NULL)
            goto finish;
    } else { /* an increment */
        PyObject *op_items[3] = {Py_NewRef(stamp), Py_NewRef(PyTuple_GET_ITEM(fx[F_OPS], p->op)),
                                 Py_NewRef(p->payload)};
        PyObject *op = HOLD(new_tuple_of(fx[F_KEYOP], 3, op_items));
        if (op == NULL)
            goto finish;
        if (state == Py_None) { /* a key's first event */
            v[S_KEY] = p->key;
            v[S_EXISTS] = Py_True;
            v[S_VALUE] = HOLD(PyNumber_Add(zero, p->payload));
            v[S_BASE] = Py_None;
            v[S_TOP] = stamp;
            v[S_VERSION] = version_obj;
            v[S_N_OPS] = HOLD(PyLong_FromLong(1));
            v[S_INT_COUNTER] = is_int(p->payload) ? Py_True : Py_False;
            v[S_OPS] = HOLD(PyTuple_Pack(1, op));
            v[S_BASE_EXISTS] = Py_False;
            v[S_BASE_VALUE] = Py_None;
        } else {
            int later = PyObject_RichCompareBool(stamp, old[S_TOP], Py_GT);
            if (later <= 0) { /* a late increment (or an error): the Python path */
                done = later;
                goto finish;
            }
            long long n_ops = PyLong_AsLongLong(old[S_N_OPS]);
            if (n_ops == -1 && PyErr_Occurred())
                goto finish;
            int was = old[S_EXISTS] == Py_True;
            PyObject *start = (was && is_number(old[S_VALUE])) ? old[S_VALUE] : zero;
            v[S_KEY] = p->key;
            v[S_EXISTS] = Py_True;
            v[S_VALUE] = HOLD(PyNumber_Add(start, p->payload));
            v[S_BASE] = old[S_BASE];
            v[S_TOP] = stamp;
            v[S_VERSION] = version_obj;
            v[S_N_OPS] = HOLD(PyLong_FromLongLong(n_ops + 1));
            int int_incr = is_int(p->payload)
                && (old[S_VALUE] == Py_None || is_int(old[S_VALUE]));
            v[S_INT_COUNTER] = (old[S_INT_COUNTER] == Py_True && int_incr) ? Py_True : Py_False;
            if (old[S_OPS] == Py_None) {
                v[S_OPS] = Py_None;
            } else {
                PyObject *tail = HOLD(PyTuple_Pack(1, op));
                v[S_OPS] = tail == NULL ? NULL : HOLD(PySequence_Concat(old[S_OPS], tail));
            }
            int based = n_ops == 0; /* _base_pair: the value as the base left it */
            v[S_BASE_EXISTS] = based ? old[S_EXISTS] : old[S_BASE_EXISTS];
            v[S_BASE_VALUE] = based ? old[S_VALUE] : old[S_BASE_VALUE];
        }
        if (v[S_VALUE] == NULL || v[S_N_OPS] == NULL || v[S_OPS] == NULL)
            goto finish;
        out->retain = Py_NewRef(op);
    }
    if (!storable(v[S_VALUE])) { /* the Python path dead-letters it, with the reason */
        Py_CLEAR(out->retain);
        done = 0;
        goto finish;
    }
    out->state = new_slotted(ks, slots, v);
    if (out->state == NULL) {
        Py_CLEAR(out->retain);
        goto finish;
    }
    done = 1;
finish:
#undef HOLD
    for (int i = 0; i < nheld; i++)
        Py_XDECREF(held[i]);
    for (int i = 0; i < S_COUNT; i++)
        Py_XDECREF(old[i]);
    return done;
}

/* interned attribute names of a ConsumerRecord, and the constants apply_one uses */
typedef struct {
    PyObject *topic, *partition, *offset, *key, *value, *headers, *zero, *one;
    NameCache *regions;
} Names;

/* 2: folded; 3: folded, and blocked streams wait on its stream (*cascade: the stream,
   a new reference: the caller releases what they wait for); 1: a duplicate dropped;
   0: not this path (nothing touched); -1: an error */
static int apply_one(PyObject *const *fx, PyObject *const *bx, PyObject *record,
                     const Names *names, Py_ssize_t *duplicates, PyObject **cascade) {
    PyObject *zero = names->zero, *one = names->one;
    int result = -1;
    PyObject *topic = NULL, *partition = NULL, *offset = NULL, *rkey = NULL, *value = NULL;
    PyObject *headers = NULL, *stream = NULL, *tp = NULL, *next = NULL, *stamp = NULL;
    PyObject *position = NULL, *applied = NULL;
    PyObject *origin_region = NULL, *origin_offset = NULL; /* the stream's, owned */
    Parsed p;
    int parsed = 0;
    Folded f = {NULL, NULL};
    if ((partition = PyObject_GetAttr(record, names->partition)) == NULL
        || (offset = PyObject_GetAttr(record, names->offset)) == NULL)
        goto finish;
    if (bx[B_KNOWN_DEAD] != Py_None || bx[B_POISON] != Py_None) {
        PyObject *at = PyTuple_Pack(2, partition, offset);
        if (at == NULL)
            goto finish;
        int dead = 0;
        if (bx[B_KNOWN_DEAD] != Py_None)
            dead = PySequence_Contains(bx[B_KNOWN_DEAD], at);
        if (dead == 0 && bx[B_POISON] != Py_None)
            dead = PySequence_Contains(bx[B_POISON], at);
        Py_DECREF(at);
        if (dead != 0) {
            result = dead < 0 ? -1 : 0;
            goto finish;
        }
    }
    if ((headers = PyObject_GetAttr(record, names->headers)) == NULL)
        goto finish;
    Headers h;
    if (scan_headers(headers, &h) < 0)
        goto finish;
    result = 0;
    if (h.stop)
        goto finish;
    if ((value = PyObject_GetAttr(record, names->value)) == NULL
        || (rkey = PyObject_GetAttr(record, names->key)) == NULL) {
        result = -1;
        goto finish;
    }
    if (!parse_event(value, fx[F_PREFIX], fx[F_LOADS], &p))
        goto finish;
    parsed = 1;
    /* the record's key is the event's; the event is this region's own, or a copy from
       the origin its position names; it is placed here */
    if (!PyBytes_Check(rkey) || PyBytes_GET_SIZE(rkey) != p.key_len
        || memcmp(PyBytes_AS_STRING(rkey), p.key_utf8, (size_t)p.key_len) != 0)
        goto finish;
    if (h.origin_raw != NULL) {
        long long opart, ooff;
        if (!parse_origin(h.origin_raw, &origin_region, &opart, &ooff))
            goto finish;
        if (PyUnicode_Compare(p.origin, origin_region) != 0)
            goto finish;
        int trusted = origin_trusted(fx, bx, origin_region, opart, ooff, partition);
        if (trusted <= 0) {
            result = trusted;
            goto finish;
        }
        if ((origin_offset = PyLong_FromLongLong(ooff)) == NULL) {
            result = -1;
            goto finish;
        }
    } else {
        if (PyUnicode_Compare(p.origin, fx[F_REGION]) != 0)
            goto finish;
        origin_region = Py_NewRef(fx[F_REGION]);
        origin_offset = Py_NewRef(offset);
    }
    int placed = 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(p.placement) && !placed; i++)
        placed = PyUnicode_Compare(PyTuple_GET_ITEM(p.placement, i), fx[F_REGION]) == 0;
    if (!placed)
        goto finish;
    PyObject *allowed = PyDict_GetItemWithError(fx[F_ALLOWED], p.classification);
    if (allowed != Py_True || (p.op != OP_SET && p.op != OP_DELETE && p.op != OP_INCREMENT))
        goto finish;
    int has_deps = h.deps_raw != NULL && h.deps_raw != Py_None;
    /* the causal gate: nothing of the stream held back, nothing waits on it */
    result = -1;
    if ((stream = PyTuple_Pack(2, origin_region, partition)) == NULL)
        goto finish;
    int held = PyDict_Contains(bx[B_QUEUES], stream);
    int waited = held == 0 ? PyDict_Contains(bx[B_WAITING], stream) : held;
    if (held < 0 || waited < 0)
        goto finish;
    result = 0;
    if (held)
        goto finish;
    result = -1;
    if ((topic = PyObject_GetAttr(record, names->topic)) == NULL
        || (tp = PyTuple_Pack(2, topic, partition)) == NULL
        || (next = PyNumber_Add(offset, one)) == NULL)
        goto finish;
    PyObject *level = PyDict_GetItemWithError(bx[B_FRONTIER], stream);
    if (level == NULL && PyErr_Occurred())
        goto finish;
    if (level != NULL) {
        int dup = PyObject_RichCompareBool(origin_offset, level, Py_LE);
        if (dup < 0)
            goto finish;
        if (dup) { /* a replicator retry's second copy: dropped */
            if (PyDict_SetItem(bx[B_CONSUMED], tp, next) < 0)
                goto finish;
            (*duplicates)++;
            result = 1;
            goto finish;
        }
    }
    if (has_deps) {
        Py_ssize_t own = PyLong_AsSsize_t(partition);
        if (own == -1 && PyErr_Occurred())
            goto finish;
        int ok = deps_ready(fx, h.deps_raw, origin_region, own, bx[B_FRONTIER],
                            names->regions);
        if (ok <= 0) {
            result = ok;
            goto finish;
        }
    }
    /* the fold */
    PyObject *state = PyDict_GetItemWithError(bx[B_STATES], p.key);
    if (state == NULL) {
        if (PyErr_Occurred())
            goto finish;
        state = Py_None;
    }
    unsigned long long hlc = ((unsigned long long)p.wall << 16) | (unsigned long long)p.logical;
    PyObject *stamp_items[3] = {PyLong_FromUnsignedLongLong(hlc), Py_NewRef(p.origin),
                                Py_NewRef(p.event_id)};
    if (stamp_items[0] == NULL) {
        Py_DECREF(stamp_items[1]);
        Py_DECREF(stamp_items[2]);
        goto finish;
    }
    if ((stamp = new_tuple_of(fx[F_STAMP], 3, stamp_items)) == NULL)
        goto finish;
    int folded = fold_one(fx, state, &p, stamp, zero, &f);
    if (folded <= 0) {
        result = folded;
        goto finish;
    }
    PyObject *pos_items[3] = {Py_NewRef(origin_region), Py_NewRef(partition),
                              Py_NewRef(origin_offset)};
    if ((position = new_tuple_of(fx[F_POSITION], 3, pos_items)) == NULL)
        goto finish;
    PyObject *ae[4] = {p.key, p.event_id, position, PyTuple_GET_ITEM(stamp, 0)};
    if ((applied = new_slotted(fx[F_APPLIED], fx[F_AE_SLOTS], ae)) == NULL)
        goto finish;
    /* every check passed and every object is made: now the effects, none can fail
       half-way in a way the caller could observe (a failure is an error: the batch
       is abandoned and read again) */
    if (PyDict_SetItem(bx[B_CONSUMED], tp, next) < 0
        || PyDict_SetItem(bx[B_FRONTIER], stream, origin_offset) < 0
        || PyDict_SetItem(bx[B_CH_FRONTIER], stream, origin_offset) < 0
        || PyDict_SetItem(bx[B_STATES], p.key, f.state) < 0
        || PyDict_SetItem(bx[B_CH_STATES], p.key, f.state) < 0
        || PyList_Append(bx[B_APPLIED], applied) < 0)
        goto finish;
    if (f.retain != NULL) {
        PyObject *ops = PyDict_GetItemWithError(bx[B_PENDING], p.key);
        if (ops == NULL) {
            if (PyErr_Occurred())
                goto finish;
            PyObject *fresh = PyList_New(0);
            if (fresh == NULL)
                goto finish;
            int failed = PyDict_SetItem(bx[B_PENDING], p.key, fresh);
            Py_DECREF(fresh);
            if (failed < 0)
                goto finish;
            ops = fresh;
        }
        if (PyList_Append(ops, f.retain) < 0)
            goto finish;
    }
    result = 2;
    if (waited) { /* offer() would now release what waits on the stream: the caller does */
        *cascade = Py_NewRef(stream);
        result = 3;
    }
finish:
    if (parsed)
        parsed_clear(&p);
    Py_XDECREF(f.state);
    Py_XDECREF(f.retain);
    Py_XDECREF(topic);
    Py_XDECREF(partition);
    Py_XDECREF(offset);
    Py_XDECREF(rkey);
    Py_XDECREF(value);
    Py_XDECREF(headers);
    Py_XDECREF(stream);
    Py_XDECREF(tp);
    Py_XDECREF(next);
    Py_XDECREF(stamp);
    Py_XDECREF(position);
    Py_XDECREF(applied);
    Py_XDECREF(origin_region);
    Py_XDECREF(origin_offset);
    if (result == 0 && PyErr_Occurred())
        PyErr_Clear();
    return result;
}

PyObject *apply_run(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyList_Check(args[0]) || !PyTuple_Check(args[2])
        || PyTuple_GET_SIZE(args[2]) != F_COUNT || !PyTuple_Check(args[3])
        || PyTuple_GET_SIZE(args[3]) != B_COUNT) {
        PyErr_SetString(PyExc_TypeError,
                        "apply_run(records: list, start: int, fixed: tuple, batch: tuple)");
        return NULL;
    }
    PyObject *records = args[0];
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    if (start == -1 && PyErr_Occurred())
        return NULL;
    PyObject *const *fx = &PyTuple_GET_ITEM(args[2], 0);
    PyObject *const *bx = &PyTuple_GET_ITEM(args[3], 0);
    for (int i = B_FRONTIER; i <= B_PENDING; i++) {
        if (!PyDict_Check(bx[i])) {
            PyErr_SetString(PyExc_TypeError, "apply_run: the batch's maps must be dicts");
            return NULL;
        }
    }
    if (!PyList_Check(bx[B_APPLIED]) || !PyDict_Check(bx[B_CONSUMED])
        || !PyDict_Check(fx[F_ALLOWED]) || !PyLong_Check(fx[F_PARTITIONS])
        || (fx[F_REGIONS] != Py_None && !PyAnySet_Check(fx[F_REGIONS]))
        || (bx[B_ENDS] != Py_None && !PyDict_Check(bx[B_ENDS]))
        || !PyUnicode_Check(fx[F_REGION]) || !PyTuple_Check(fx[F_OPS])
        || PyTuple_GET_SIZE(fx[F_OPS]) != 5 || !PyTuple_Check(fx[F_KS_SLOTS])
        || PyTuple_GET_SIZE(fx[F_KS_SLOTS]) != S_COUNT || !PyTuple_Check(fx[F_AE_SLOTS])
        || PyTuple_GET_SIZE(fx[F_AE_SLOTS]) != 4) {
        PyErr_SetString(PyExc_TypeError, "apply_run: fixed or batch of the wrong shape");
        return NULL;
    }
    Names names = {
        PyUnicode_InternFromString("topic"), PyUnicode_InternFromString("partition"),
        PyUnicode_InternFromString("offset"), PyUnicode_InternFromString("key"),
        PyUnicode_InternFromString("value"), PyUnicode_InternFromString("headers"),
        PyLong_FromLong(0), PyLong_FromLong(1), NULL,
    };
    NameCache regions = {0};
    names.regions = &regions;
    PyObject **all = (PyObject **)&names;
    int ready = 1;
    for (size_t k = 0; k < 8; k++) /* the names and constants, not the cache */
        ready = ready && all[k] != NULL;
    Py_ssize_t duplicates = 0, released = 0, i = start;
    Py_ssize_t n = PyList_GET_SIZE(records);
    PyObject *cascade = NULL;
    int r = ready ? 0 : -1;
    for (; ready && i < n; i++) {
        r = apply_one(fx, bx, PyList_GET_ITEM(records, i), &names, &duplicates, &cascade);
        if (r <= 0)
            break;
        if (r >= 2)
            released++;
        if (r == 3) { /* the caller releases what waited, then calls again after it */
            i++;
            break;
        }
    }
    for (size_t k = 0; k < 8; k++)
        Py_XDECREF(all[k]);
    name_cache_clear(&regions);
    if (r < 0) {
        Py_XDECREF(cascade);
        return NULL;
    }
    PyObject *out = Py_BuildValue("(nnnO)", i, duplicates, released,
                                  cascade != NULL ? cascade : Py_None);
    Py_XDECREF(cascade);
    return out;
}
