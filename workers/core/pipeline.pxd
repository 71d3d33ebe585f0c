# Cython's declarations for pipeline.py (setup.py compiles it): the learner in process as
# an extension type, so that reading the version in force (every tick) is a C getter,
# not a Python property's call; pure Python runs the .py unchanged.
cdef class InlineLearner:
    cdef public object model
