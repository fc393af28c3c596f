/* edgebus._speedups: the checks of a record's control data for the compiled fold
 * (fold.c): its edgebus headers, the dependencies in eb-deps, a copy's eb-origin-pos.
 * Each says yes only where edgebus.region.applier / record_checks would have nothing
 * to say; anything else is left to them.
 */
#include <string.h>

#include "fold.h"

/* whether a header name (str) is the ASCII text lit */
static int name_is(PyObject *name, const char *lit, Py_ssize_t len) {
    return PyUnicode_GET_LENGTH(name) == len && PyUnicode_IS_COMPACT_ASCII(name)
        && memcmp(PyUnicode_DATA(name), lit, (size_t)len) == 0;
}



int scan_headers(PyObject *headers, Headers *h) {
    h->deps_raw = NULL;
    h->origin_raw = NULL;
    h->stop = 0;
    if (headers == Py_None)
        return 0;
    PyObject *seq = PySequence_Fast(headers, "headers");
    if (seq == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < n && !h->stop; i++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2
            || !PyUnicode_Check(PyTuple_GET_ITEM(pair, 0))) {
            h->stop = 1; /* not what aiokafka hands over: the Python path decides */
            break;
        }
        PyObject *name = PyTuple_GET_ITEM(pair, 0);
        if (name_is(name, "eb-deps", 7))
            h->deps_raw = PyTuple_GET_ITEM(pair, 1);
        else if (name_is(name, "eb-origin-pos", 13))
            h->origin_raw = PyTuple_GET_ITEM(pair, 1);
        else if (name_is(name, "eb-redrive-of", 13) || name_is(name, "eb-txn", 6)
                 || name_is(name, "eb-once", 7) || name_is(name, "eb-watermark", 12))
            h->stop = 1; /* applied once, or no event: the Python path decides */
    }
    Py_DECREF(seq);
    return 0;
}

/* an unsigned LEB128 varint of a vector clock: minimal, at most 9 bytes */
static int get_uvarint(const unsigned char *p, Py_ssize_t len, Py_ssize_t *pos,
                       unsigned long long *out) {
    unsigned long long v = 0;
    for (int shift = 0; shift < 63; shift += 7) {
        if (*pos >= len)
            return -1;
        unsigned char b = p[(*pos)++];
        v |= (unsigned long long)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            if (b == 0 && shift)
                return -1;
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* Whether the dependencies in an eb-deps header (edgebus.core.clock_codec's canonical
   form) are applied here: 1 when the clock decodes, passes RecordChecks.deps_problem
   and every entry outside the record's own stream is within the frontier; 0 for
   anything else (the Python path decides); -1 on an error. */
/* a region name as str, and whether it is a configured region (1, 0, -1 error): from
   the cache (the same str object again, its hash computed once) or decoded and kept */
static PyObject *cached_name(NameCache *cache, PyObject *configured,
                             const unsigned char *name, Py_ssize_t len, int *known) {
    for (int i = 0; i < cache->n; i++) {
        Py_ssize_t size;
        const char *text = PyUnicode_AsUTF8AndSize(cache->names[i], &size);
        if (text != NULL && size == len && memcmp(text, name, (size_t)len) == 0) {
            *known = cache->known[i];
            return Py_NewRef(cache->names[i]);
        }
    }
    PyObject *text = PyUnicode_DecodeUTF8((const char *)name, len, NULL);
    if (text == NULL)
        return NULL;
    *known = configured == Py_None ? 1 : PySet_Contains(configured, text);
    if (*known < 0) {
        Py_DECREF(text);
        return NULL;
    }
    if (cache->n < NAME_CACHE_SIZE) {
        cache->names[cache->n] = Py_NewRef(text);
        cache->known[cache->n] = *known;
        cache->n++;
    }
    return text;
}

void name_cache_clear(NameCache *cache) {
    for (int i = 0; i < cache->n; i++)
        Py_CLEAR(cache->names[i]);
    cache->n = 0;
}

int deps_ready(PyObject *const *fx, PyObject *raw, PyObject *own_region,
               Py_ssize_t own_partition, PyObject *frontier, NameCache *cache) {
    if (!PyBytes_Check(raw))
        return 0;
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(raw);
    Py_ssize_t len = PyBytes_GET_SIZE(raw), pos = 1;
    if (len < 2 || p[0] != 1)
        return 0;
    Py_ssize_t region_len;
    const char *region = PyUnicode_AsUTF8AndSize(own_region, &region_len);
    if (region == NULL)
        return -1;
    long partitions = PyLong_AsLong(fx[F_PARTITIONS]);
    if (partitions == -1 && PyErr_Occurred())
        return -1;
    PyObject *configured = fx[F_REGIONS];
    unsigned long long regions;
    if (get_uvarint(p, len, &pos, &regions) < 0)
        return 0;
    const unsigned char *previous = NULL;
    Py_ssize_t previous_len = 0;
    for (unsigned long long r = 0; r < regions; r++) {
        unsigned long long name_len, count;
        if (get_uvarint(p, len, &pos, &name_len) < 0 || name_len == 0
            || name_len > (unsigned long long)(len - pos))
            return 0;
        const unsigned char *name = p + pos;
        pos += (Py_ssize_t)name_len;
        if (previous != NULL) { /* strictly increasing names */
            Py_ssize_t common = previous_len < (Py_ssize_t)name_len ? previous_len
                                                                     : (Py_ssize_t)name_len;
            int cmp = memcmp(previous, name, (size_t)common);
            if (cmp > 0 || (cmp == 0 && previous_len >= (Py_ssize_t)name_len))
                return 0;
        }
        previous = name;
        previous_len = (Py_ssize_t)name_len;
        if (!valid_utf8(name, (Py_ssize_t)name_len))
            return 0;
        int own = (Py_ssize_t)name_len == region_len
            && memcmp(name, region, (size_t)region_len) == 0;
        int known;
        PyObject *text = cached_name(cache, configured, name, (Py_ssize_t)name_len, &known);
        if (text == NULL)
            return -1;
        {
            if (known <= 0) {
                Py_DECREF(text);
                return known;
            }
        }
        if (get_uvarint(p, len, &pos, &count) < 0 || count == 0) {
            Py_DECREF(text);
            return 0;
        }
        long long last = -1;
        for (unsigned long long e = 0; e < count; e++) {
            unsigned long long partition, offset;
            if (get_uvarint(p, len, &pos, &partition) < 0 || (long long)partition <= last
                || partition > 0x7FFFFFFFULL || get_uvarint(p, len, &pos, &offset) < 0
                || (partitions > 0 && partition >= (unsigned long long)partitions)) {
                Py_DECREF(text);
                return 0;
            }
            last = (long long)partition;
            if (own && (Py_ssize_t)partition == own_partition)
                continue; /* the record's own stream is FIFO: not a dependency */
            PyObject *number = PyLong_FromUnsignedLongLong(partition);
            PyObject *key = number == NULL ? NULL : PyTuple_Pack(2, text, number);
            Py_XDECREF(number);
            if (key == NULL) {
                Py_DECREF(text);
                return -1;
            }
            PyObject *level = PyDict_GetItemWithError(frontier, key);
            Py_DECREF(key);
            if (level == NULL) {
                Py_DECREF(text);
                return PyErr_Occurred() ? -1 : 0;
            }
            long long applied = PyLong_AsLongLong(level);
            if (applied == -1 && PyErr_Occurred()) {
                Py_DECREF(text);
                return -1;
            }
            if (applied < (long long)offset) {
                Py_DECREF(text);
                return 0;
            }
        }
        Py_DECREF(text);
    }
    return pos == len;
}

/* an eb-origin-pos header, "region:partition:offset" (edgebus.wire.headers
   parse_position, or stricter): 1 with *region a new str, 0 when not so */
int parse_origin(PyObject *raw, PyObject **region, long long *partition,
                        long long *offset) {
    if (!PyBytes_Check(raw))
        return 0;
    const char *s = PyBytes_AS_STRING(raw);
    Py_ssize_t n = PyBytes_GET_SIZE(raw), second = -1, first = -1;
    if (n > 300)
        return 0;
    for (Py_ssize_t i = n - 1; i >= 0 && first < 0; i--) {
        if (s[i] == ':') {
            if (second < 0)
                second = i;
            else
                first = i;
        }
    }
    if (first <= 0)
        return 0; /* no region, or not three parts */
    long long values[2];
    Py_ssize_t starts[2] = {first + 1, second + 1}, ends[2] = {second, n};
    long long limits[2] = {0x7FFFFFFFLL, 0x7FFFFFFFFFFFFFFFLL};
    for (int k = 0; k < 2; k++) {
        Py_ssize_t len = ends[k] - starts[k];
        if (len <= 0 || len > 19)
            return 0;
        unsigned long long v = 0;
        for (Py_ssize_t i = starts[k]; i < ends[k]; i++) {
            if (s[i] < '0' || s[i] > '9')
                return 0;
            v = v * 10 + (unsigned long long)(s[i] - '0');
        }
        if (v > (unsigned long long)limits[k])
            return 0;
        values[k] = (long long)v;
    }
    for (Py_ssize_t i = 0; i < first; i++) {
        if ((unsigned char)s[i] >= 0x80)
            return 0;
    }
    *region = PyUnicode_DecodeASCII(s, first, NULL);
    if (*region == NULL) {
        PyErr_Clear();
        return 0;
    }
    *partition = values[0];
    *offset = values[1];
    return 1;
}

/* whether a copy's origin position may be taken: another configured region, the
   record's own partition, an offset below the region's known end (ends None: not
   checked against ends); 1 yes, 0 no (the Python path decides), -1 error */
int origin_trusted(PyObject *const *fx, PyObject *const *bx, PyObject *region,
                          long long partition, long long offset, PyObject *record_partition) {
    if (fx[F_REGIONS] == Py_None || PyUnicode_Compare(region, fx[F_REGION]) == 0)
        return 0;
    int known = PySet_Contains(fx[F_REGIONS], region);
    if (known <= 0)
        return known;
    long long own = PyLong_AsLongLong(record_partition);
    if (own == -1 && PyErr_Occurred())
        return -1;
    if (own != partition)
        return 0;
    if (bx[B_ENDS] == Py_None)
        return 1;
    PyObject *key = Py_BuildValue("(OL)", region, partition);
    if (key == NULL)
        return -1;
    PyObject *end = PyDict_GetItemWithError(bx[B_ENDS], key);
    Py_DECREF(key);
    if (end == NULL)
        return PyErr_Occurred() ? -1 : 0;
    long long known_end = PyLong_AsLongLong(end);
    if (known_end == -1 && PyErr_Occurred())
        return -1;
    return offset < known_end;
}
