# Cython declarations for kv_transfer.py (see routing.pxd).
cimport cython


cdef class KVLinks:
    cdef public list bw, exposed, tx_free, rx_free
    cdef public object kvb, layers, threshold, per_token
    cdef public bint enabled
    cdef public double fixed

    @cython.locals(bw=double, free=double, start=double, end=double, tail=double)
    cpdef double transfer(self, Py_ssize_t src, Py_ssize_t dst, tokens, double prefill_start,
                          double prefill_end) except? -1.0
