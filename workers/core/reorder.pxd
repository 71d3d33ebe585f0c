# Cython's declarations for reorder.py (setup.py compiles it): an event's way in and out
# of the reorder window as C calls on C fields; pure Python runs the .py unchanged.
cimport cython
from workers.core.touchpoints cimport Touchpoint

cdef class ReorderBuffer:
    cdef object _run
    cdef list _late

    @cython.locals(last=Touchpoint)
    cpdef push(self, Touchpoint tp)
    @cython.locals(late=list, head=Touchpoint, ts=cython.double, tp=Touchpoint)
    cpdef pop(self, double until)
    cpdef Py_ssize_t drop(self, unwanted) except -1
