# Cython's declarations for touchpoints.py (setup.py compiles it): the validation of
# every event on typed dicts and strings; pure Python runs the .py unchanged.
cimport cython
from workers.core.repair cimport OptionalFields

cdef frozenset _IDENTIFIER_KEYS

cdef class Touchpoint:
    cdef public object data, event_id, identity, raw, type
    cdef public double ts

cdef class TimeParser:
    cdef dict _days
    cdef str _last
    cdef object _last_day

    @cython.locals(size=Py_ssize_t, clock=Py_ssize_t)
    cpdef double read(self, str value) except? -1

cdef class TouchpointParser:
    cdef public object limits
    cdef public OptionalFields optional
    cdef set _known_types
    cdef TimeParser _time
    cdef double _earliest, _latest, _max_amount
    cdef Py_ssize_t _max_keys
    cdef str _amount_key

    cpdef parse(self, raw)
    @cython.locals(identity=object, key=object, value=object)
    cpdef check(self, dict data, bytes raw=*, vouched=*)
    cpdef _check_bounds(self, dict data)

cpdef check_size(raw, limits)
cpdef dict decode_object(raw, limits)

@cython.locals(child=object)
cdef bint _nests_within(object node, Py_ssize_t levels) except -1

@cython.locals(value=object)
cdef str _required_str(dict data, str key, Py_ssize_t max_len)

@cython.locals(hour=Py_ssize_t, minute=Py_ssize_t, second=Py_ssize_t, millis=Py_ssize_t)
cdef Py_ssize_t _clock(str value, Py_ssize_t size)

@cython.locals(number=Py_ssize_t, i=Py_ssize_t, c=Py_UCS4)
cdef Py_ssize_t _digits(str value, Py_ssize_t start, Py_ssize_t end)

@cython.locals(z=cython.longlong, era=cython.longlong, of_era=cython.longlong,
               year_of_era=cython.longlong, of_year=cython.longlong, shifted=cython.longlong,
               day=cython.longlong, month=cython.longlong)
cdef tuple _civil(long long days)

@cython.locals(days=cython.longlong, in_day=cython.longlong, year=cython.longlong,
               month=cython.longlong, day=cython.longlong, seconds=cython.longlong,
               millis=cython.longlong, minutes=cython.longlong, second=cython.longlong,
               hour=cython.longlong, minute=cython.longlong)
cpdef str format_time(ts)
