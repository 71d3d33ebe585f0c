# Cython's declarations for repair.py (setup.py compiles it): a typed dict is looked up
# by the C API, without a method call per field; pure Python runs the .py unchanged.
cimport cython

cdef class OptionalFields:
    cdef public str amount_key
    cdef public dict dropped, coerced

    cpdef repair(self, dict data)
    cpdef _context(self, dict context)
    cpdef _device(self, dict device)
    cpdef _amount(self, dict properties)
    cpdef _geo(self, dict geo)
    @cython.locals(key=str, fields=frozenset)
    cpdef _strings(self, dict obj, str name)
    cpdef _number(self, dict obj, str key, str name)
    cpdef _drop(self, dict obj, str key, str name)

cdef bint _is_country(str value)
