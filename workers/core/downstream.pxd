# Cython's declarations for downstream.py (setup.py compiles it): the identity stage's
# downstream as an extension type, so that each event and tick end is a C call through
# its method table (a subclass written in Python still overrides them).
from workers.core.identity cimport Resolution

cdef class Downstream:
    cdef public list out

    cpdef event(self, tp, Resolution res)
    cpdef run_tick(self, bint final=*)
