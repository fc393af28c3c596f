/* Shared by fold.c and fold_checks.c: the layout of apply_run's arguments and the
   checks of a record's control data. */
#ifndef EDGEBUS_FOLD_H
#define EDGEBUS_FOLD_H

#include "speedups.h"

enum { F_REGION, F_PREFIX, F_LOADS, F_OPS, F_KEYSTATE, F_KS_SLOTS, F_STAMP, F_KEYOP,
       F_APPLIED, F_AE_SLOTS, F_POSITION, F_ALLOWED, F_REGIONS, F_PARTITIONS, F_COUNT };
enum { B_FRONTIER, B_QUEUES, B_WAITING, B_STATES, B_CH_STATES, B_CH_FRONTIER, B_PENDING,
       B_APPLIED, B_CONSUMED, B_KNOWN_DEAD, B_POISON, B_ENDS, B_COUNT };
/* KeyState's fields, in order */
enum { S_KEY, S_EXISTS, S_VALUE, S_BASE, S_TOP, S_VERSION, S_N_OPS, S_INT_COUNTER, S_OPS,
       S_BASE_EXISTS, S_BASE_VALUE, S_COUNT };

enum { OP_SET, OP_DELETE, OP_INCREMENT };


typedef struct {
    PyObject *deps_raw;   /* borrowed */
    PyObject *origin_raw; /* borrowed: eb-origin-pos, a replicator's copy */
    int stop;
} Headers;

/* region names met in a call's dependency clocks, as str, and whether each is a
   configured region (most clocks name the same few regions) */
#define NAME_CACHE_SIZE 16
typedef struct {
    int n;
    PyObject *names[NAME_CACHE_SIZE];
    int known[NAME_CACHE_SIZE];
} NameCache;
void name_cache_clear(NameCache *cache);

/* the edgebus headers of a record: eb-deps and eb-origin-pos kept, stop set for a
   redrive, a transaction or a watermark (the Python path takes those) */
int scan_headers(PyObject *headers, Headers *h);
/* 1 when an eb-deps clock decodes, passes RecordChecks.deps_problem and every entry
   outside the stream (own_region, own_partition) is within frontier; 0 not; -1 error */
int deps_ready(PyObject *const *fx, PyObject *raw, PyObject *own_region,
               Py_ssize_t own_partition, PyObject *frontier, NameCache *cache);
/* an eb-origin-pos header: 1 with *region a new str, 0 when not one */
int parse_origin(PyObject *raw, PyObject **region, long long *partition, long long *offset);
/* 1 when a copy's origin position may be taken (RecordChecks.origin_problem has
   nothing to say and SourceEnds need not be read again), 0 not, -1 error */
int origin_trusted(PyObject *const *fx, PyObject *const *bx, PyObject *region,
                   long long partition, long long offset, PyObject *record_partition);

#endif
