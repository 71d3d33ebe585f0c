# Cython's declarations for reference.py (setup.py compiles it): the squares a refit sums
# (each check refits the reference on its window) as C doubles; pure Python runs the .py
# unchanged.
cimport cython
# ``math.pow`` is libm's pow(), the function Python's ``**`` and math.pow call
from libc cimport math

@cython.locals(v=cython.double)
cpdef list _squares(list values, double mean)
