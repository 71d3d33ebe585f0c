# Cython's declarations for clock.py (setup.py compiles it); pure Python runs the .py
# unchanged.
cimport cython

cdef class StreamClock:
    cdef public list _top
    cdef public object limit, tolerance

    @cython.locals(top=list, i=Py_ssize_t, n=Py_ssize_t)
    cpdef bint observe(self, double ts) except -1

# an extension type: the stage asks whether any event waits at every clock move, and the
# length of a C type is a C call
cdef class FarFuture:
    cdef public dict _held
