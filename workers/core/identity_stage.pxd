# Cython's declarations for identity_stage.py (setup.py compiles it): the stage's parts
# as C fields, so that each event's de-dup, clock and buffer steps are C calls; pure
# Python runs the .py unchanged. An event is typed only where its ``data`` is not read
# (a CarriedTouchpoint reads it lazily, through a property a C field access would skip).
cimport cython
from workers.core.clock cimport StreamClock
from workers.core.dedup cimport Deduplicator
from workers.core.downstream cimport Downstream
from workers.core.identity cimport IdentityGraph, Resolution
from workers.core.intake cimport Intake
from workers.core.reorder cimport ReorderBuffer
from workers.core.touchpoints cimport Touchpoint

cdef class IdentityStage:
    cdef public object config, pseudonymiser, forgotten, stats
    cdef public Downstream downstream
    cdef public Intake intake
    cdef public IdentityGraph graph
    cdef public object _far
    cdef public bint _redact
    cdef public Deduplicator dedup
    cdef public StreamClock clock
    cdef public list _out
    cdef public ReorderBuffer _held
    cdef public double _window, _tick, _tick_end
    cdef public dict positions

    cpdef bint _redelivered(self, origin) except -1
    cpdef _admit_read(self, list items, origin)
    cpdef accept(self, Touchpoint tp, origin=*)
    cpdef list _take(self)
    cpdef _clock_moved(self)
    @cython.locals(ts=cython.double, watermark=cython.double, held=ReorderBuffer,
                   ready=Touchpoint)
    cpdef _admit(self, Touchpoint tp, bint observed=*)
    @cython.locals(ts=cython.double, ticks=cython.double, res=Resolution)
    cpdef _process(self, Touchpoint tp)
