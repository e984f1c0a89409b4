# Cython declarations for spans.py (see routing.pxd). The iteration count n stays a Python
# integer (math.ceil's exact result, whatever its size).
cimport cython


@cython.locals(t0=double, x=double, d0=double, inc=double, h=double)
cpdef boundary_at_or_after(span, double t)
