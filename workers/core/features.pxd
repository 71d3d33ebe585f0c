# Cython's declarations for features.py (setup.py compiles it): C fields and typed
# locals on the per-event path; the .py stays the one source, and pure Python runs it
# unchanged (tests/core/test_same_outputs.py compares the two).
cimport cython
# ``math.exp`` and the like are libm's C functions (the same doubles as Python's
# math module, which calls them; arguments here never reach its range errors); the
# names libc.math lacks (``math.inf``, ``math.dist``) stay Python's
from libc cimport math
from workers.core.touchpoints cimport Touchpoint

# constants of the per-event fold, as C values
cdef double _REBASE_EXPONENT
cdef Py_ssize_t _RECENT_IDS

cdef class FeatureSpec:
    cdef public object cfg
    cdef public double lam, recent_lam, rebase_rate, session_gap
    cdef public dict types, channels, devices, payments, index, _plans
    cdef public Py_ssize_t channel_base, device_base, payment_base, size, recent_base
    cdef public frozenset conversions, engagements, every, trait_columns
    cdef public str product_view, product_property, revenue_property, payment_property
    cdef public Py_ssize_t max_traits
    cdef public list names, blank
    cdef public tuple groups

cdef class ProfileState:
    cdef public object counts
    cdef public double base, closed_seconds, first_seen, last_seen, revenue, last_learned
    cdef public Py_ssize_t closed_sessions, conversions, engaged, event_count, orders
    cdef public Py_ssize_t product_views, repeat_views
    cdef public bytes recent_ids
    cdef public list spans
    cdef public object recent_products, traits, segment

    @cython.locals(ring=bytes, at=Py_ssize_t, first=cython.int)
    cpdef bint seen(self, bytes id_hash) except -1

    # the counts as a buffer read in place, not a typed memoryview: taking one of those
    # from the array makes a memoryview object, at every event (about 750 instructions)
    @cython.locals(ts=cython.double, age=cython.double, w=cython.double, r=cython.double,
                   i=Py_ssize_t, size=Py_ssize_t, counts="object[double, ndim=1, mode='c']",
                   data=dict, device=dict, props=dict, traits=dict, event=Touchpoint)
    cpdef int update(self, FeatureSpec spec, tp, bytes id_hash=*) except? -1

    @cython.locals(spans=list, begin=cython.double, latest=cython.double)
    cpdef _session(self, double ts, double gap)

    @cython.locals(spans=list)
    cpdef _close_oldest(self)

    @cython.locals(counts="double[:]", size=Py_ssize_t, i=Py_ssize_t)
    cpdef _purchase(self, FeatureSpec spec, props, double r)

    @cython.locals(recent=tuple)
    cpdef _product_view(self, product)

    @cython.locals(want=frozenset, slow=tuple, fast=tuple, traits_wanted=bint,
                   c="double[:]", out=list, t=Py_ssize_t, traits=dict)
    cpdef list vector(self, FeatureSpec spec, wanted=*)

    @cython.locals(held=dict, dropped=Py_ssize_t)
    cpdef Py_ssize_t _declare(self, dict traits, double ts, Py_ssize_t limit) except? -1

cdef class ColumnReader:
    cdef public FeatureSpec spec
    cdef public tuple columns
    cdef public frozenset wanted
    cdef public bint direct
    cdef public object scratch
    cdef readonly long long[:] group_of, count_of, group_lo, group_hi
    cdef readonly double[:] view, inverses

    @cython.locals(counts="double[:]", out="double[:]", inverses="double[:]",
                   total=cython.double, group=Py_ssize_t, n=Py_ssize_t,
                   group_lo="long long[:]", group_hi="long long[:]",
                   group_of="long long[:]", count_of="long long[:]")
    cpdef void fill(self, ProfileState state) except *

@cython.locals(total=cython.double, i=Py_ssize_t)
cpdef double _total(double[:] counts, Py_ssize_t lo, Py_ssize_t hi) except? -1

cpdef double _basket(double[:] c, Py_ssize_t size) except? -1

@cython.locals(lo=Py_ssize_t, hi=Py_ssize_t, i=Py_ssize_t, total=cython.double,
               inverse=cython.double)
cpdef void _shares(list out, Py_ssize_t at, double[:] c, Py_ssize_t offset,
                   tuple groups) except *
