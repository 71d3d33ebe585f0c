# Cython's declarations for clock.py (setup.py compiles it); pure Python runs the .py
# unchanged.
cdef class StreamClock:
    cdef public list _top
    cdef public object limit, tolerance

    cpdef bint observe(self, double ts) except -1
