# Cython's declarations for segments.py (setup.py compiles it): the loops an assessment
# and a learn run per profile (scaling, placing, explaining, river's k-means step) over
# C doubles; the .py stays the one source, and pure Python runs it unchanged
# (tests/core/test_same_outputs.py compares the two).
cimport cython
# ``math.sqrt`` and the like are libm's C functions (the same doubles as Python's
# math module, which calls them; arguments here never reach its range errors); the
# names libc.math lacks (``math.dist``) stay Python's
from libc cimport math

@cython.locals(n=Py_ssize_t, i=Py_ssize_t, g=cython.double, o=cython.double, out=list)
cpdef list _transform(values, tuple lo, tuple hi, tuple gain, tuple offset)

# stays()'s and _quote()'s constants, as C doubles
cdef double _UP, _TINY, _HUGE, _QUOTE_FAST

@cython.locals(scaled=cython.double, low=cython.double, fraction=cython.double)
cpdef double _quote(double value)

@cython.locals(y=cython.double)
cdef inline double _clip(double x, double low, double high)

cpdef assign(snapshot, list z, current, double hysteresis)

@cython.locals(nearest_d=cython.double, d=cython.double)
cpdef choose(list dists, current, double hysteresis)

@cython.locals(i=Py_ssize_t, zi=cython.double, ci=cython.double,
               contribution=cython.double, counted=list, shares=list, out=list,
               centroid=tuple, best=Py_ssize_t, j=Py_ssize_t, greatest=cython.double,
               value=cython.double)
cpdef list explain(snapshot, list z, segment_id, values, list names, Py_ssize_t size)

@cython.locals(n=Py_ssize_t, i=Py_ssize_t, c=cython.double, s=cython.double,
               w=cython.double, out=list, lo=tuple, hi=tuple,
               center=tuple, scale=tuple, active=tuple)
cpdef list _scaled(tuple weights, x, ref)

cdef class LearnedWindow:
    cdef public Py_ssize_t maxlen
    cdef public object rows
    cdef double[:, :] _view
    cdef Py_ssize_t _next, _count

    @cython.locals(view="double[:, :]", at=Py_ssize_t, j=Py_ssize_t)
    cpdef append(self, tuple x)

cdef class Placement:
    cdef double[:] lo, hi, gain, offset, centroids, z, sums
    cdef dict rows
    cdef Py_ssize_t columns

    @cython.locals(n=Py_ssize_t, k=Py_ssize_t, j=Py_ssize_t, i=Py_ssize_t, at=Py_ssize_t,
                   own=Py_ssize_t, first=cython.double, second=cython.double,
                   total=cython.double, diff=cython.double, limit=cython.double,
                   centroids="double[:]", sums="double[:]", scaled="double[:]")
    cpdef list deciding(self, list z, current)

    @cython.locals(own=Py_ssize_t, n=Py_ssize_t, j=Py_ssize_t, i=Py_ssize_t, at=Py_ssize_t,
                   bound=cython.double, enough=cython.double, total=cython.double,
                   diff=cython.double, lo="double[:]", hi="double[:]",
                   gain="double[:]", offset="double[:]", centroids="double[:]", z="double[:]")
    cpdef bint stays(self, double[:] values, current, double hysteresis) except -1
