# Cython's declarations for kmeans_step.py (setup.py compiles it): the centres as one
# array of C doubles, each learned profile's distances summed in C; pure Python runs the
# .py unchanged.
cimport cython
# ``math.pow`` is libm's pow() (Python's ``**`` on floats calls it too)
from libc cimport math

cdef class KMeansStep:
    cdef public object model, centers
    cdef public list keys
    cdef list _dicts
    cdef public object values
    cdef double[:] _view

    @cython.locals(n=Py_ssize_t, j=Py_ssize_t, i=Py_ssize_t, at=Py_ssize_t,
                   step=cython.double, c=cython.double, v=cython.double, moved=cython.double,
                   values="double[:]", keys=list)
    cpdef learn(self, list x)
    @cython.locals(values="double[:]", n=Py_ssize_t, j=Py_ssize_t, i=Py_ssize_t,
                   at=Py_ssize_t, closest=Py_ssize_t, best=cython.double, d=cython.double,
                   v=cython.double)
    cpdef Py_ssize_t _nearest(self, list x, double p) except? -2
    @cython.locals(values="double[:]", n=Py_ssize_t, j=Py_ssize_t, i=Py_ssize_t,
                   at=Py_ssize_t, closest=Py_ssize_t, best=cython.double,
                   second=cython.double, d=cython.double, diff=cython.double,
                   v=cython.double)
    cpdef Py_ssize_t _clearly_nearest(self, list x) except? -2
