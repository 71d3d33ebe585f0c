# Cython's declarations for identity.py (setup.py compiles it): the graph's maps as C
# fields, each event's lookups on typed dicts; pure Python runs the .py unchanged.
cimport cython

cdef class IdentityGraph:
    cdef public object rules
    cdef public set changed  # None: untracked
    cdef public tuple _junk
    cdef public list _types
    cdef public dict _rank, _limit, _owners, _members

    @cython.locals(owners_by_type=dict, owners=dict, found=list, new=list, first=object,
                   blocked=Py_ssize_t)
    cpdef resolve(self, identity)
    cpdef bint is_junk(self, str value) except -1

cdef class Resolution:
    cdef public object profile_id, merged, refused
    cdef public Py_ssize_t blocked, dropped
    cdef public bint linked
