# Cython's declarations for profile_work.py (setup.py compiles it): the work's parts as
# C fields, a profile's state typed, so that folding an event in and assessing a
# profile call their steps in C; pure Python runs the .py unchanged. The event is typed
# where its ``data`` is not read (a CarriedTouchpoint reads it lazily, through a property).
cimport cython
from workers.core.downstream cimport Downstream
from workers.core.features cimport ColumnReader, FeatureSpec, ProfileState
from workers.core.identity cimport Resolution
from workers.core.segments cimport Placement
from workers.core.touchpoints cimport Touchpoint

cdef class Dirty:
    cdef public object trigger
    cdef public double ts
    cdef public bint merged

cdef class ProfileWork(Downstream):
    cdef public object config, learner, who, stats, audience_keys
    cdef public object _profiles, _get, _sync
    cdef public ColumnReader _reader
    cdef public Placement _placement
    cdef public object _held
    cdef public set changed_profiles  # None: untracked
    cdef public FeatureSpec spec
    cdef public frozenset _wanted
    cdef public bint _announces
    cdef public dict names, sizes, dirty, _chosen
    cdef public Py_ssize_t _min_events, _learn_min_events
    cdef public double _learn_interval, _hysteresis

    cpdef event(self, tp, Resolution res)
    cdef void _touch(self, pid) except *
    @cython.locals(state=ProfileState, ts=cython.double, merged=bint, id_hash=bytes,
                   previous=Dirty, dropped=Py_ssize_t)
    cpdef apply(self, pid, Touchpoint tp, absorbed, moved=*)
    @cython.locals(state=ProfileState, dirty=dict, reader=ColumnReader, placement=Placement,
                   trigger=Dirty, min_events=Py_ssize_t, learn_min_events=Py_ssize_t,
                   learn_interval=cython.double, hysteresis=cython.double)
    cpdef run_tick(self, bint final=*)
    @cython.locals(z=list)
    cpdef _assess(self, pid, ProfileState state, list values, snapshot, str reason, trigger,
                  double ts, bint announce)
    @cython.locals(state=ProfileState, read=ColumnReader, placement=Placement,
                   hysteresis=cython.double, min_events=Py_ssize_t, moving=list)
    cpdef _reassess(self, snapshot, set known, bint first, double ts)
    @cython.locals(reader=ColumnReader, placement=Placement)
    cpdef tuple _assessing(self, snapshot)
    cpdef str _name(self, segment_id)

@cython.locals(data=bytes)
cpdef bytes _id_hash(str event_id)
