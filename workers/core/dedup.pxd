# Cython's declarations for dedup.py (setup.py compiles it): the id set and buckets as
# C fields; pure Python runs the .py unchanged.
cdef class Deduplicator:
    cdef public object window, _width, _oldest, _now, _bucket
    cdef public double _bucket_lo, _bucket_hi, _quiet_until
    cdef public Py_ssize_t beyond_window
    cdef public set _ids
    cdef public dict _buckets, _saved, _last_chunk
    cdef public list _gone

    cpdef bint seen(self, str event_id, double ts) except -1
    cpdef expire(self, double newest_ts)
    cpdef _file_under(self, bucket)
    cpdef _set_oldest(self, oldest)
