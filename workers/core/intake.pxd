# Cython's declarations for intake.py (setup.py compiles it): the intake as a C type, so
# that the identity stage reads each record through a C call to a typed parser; pure
# Python runs the .py unchanged.
from workers.core.touchpoints cimport TouchpointParser

cdef class Intake:
    cdef public TouchpointParser parser
    cdef public object formats
    cdef public str _format
    cpdef list read(self, raw, topic=*, fmt=*)
