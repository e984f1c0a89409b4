# Cython declarations for event_loop.py (see routing.pxd).
cimport cython

from replay.machine cimport Machine
from replay.routing cimport Routing


cdef class Cluster(Routing):
    @cython.locals(heap=list, arr=list, n=Py_ssize_t, i=Py_ssize_t, nxt=double,
                   step=Py_ssize_t, mark=Py_ssize_t, now=double, t=double, m=Machine,
                   ver=Py_ssize_t, order=list)
    cpdef run(self, progress=*)
