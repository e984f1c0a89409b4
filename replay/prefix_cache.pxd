# Cython declarations for prefix_cache.py (see routing.pxd).
cimport cython


cdef class PrefixCache:
    cdef public Py_ssize_t block_tokens, capacity, lookups, hits, lookup_blocks, hit_blocks
    cdef public Py_ssize_t saved_tokens, inserted_blocks, evicted_blocks
    cdef public dict _blocks
    cdef public object _segs

    @cython.locals(blocks=dict, n=Py_ssize_t)
    cpdef Py_ssize_t peek(self, hashes) except -1
    @cython.locals(n=Py_ssize_t)
    cpdef Py_ssize_t match(self, hashes, prompt_tokens=*) except -1
    @cython.locals(s=Py_ssize_t)
    cpdef Py_ssize_t record(self, Py_ssize_t blocks, Py_ssize_t hit_blocks,
                            prompt_tokens=*) except -1
    @cython.locals(s=Py_ssize_t)
    cpdef Py_ssize_t saved(self, Py_ssize_t blocks, prompt_tokens=*) except -1
    @cython.locals(cap=Py_ssize_t, added=Py_ssize_t, over=Py_ssize_t)
    cpdef Py_ssize_t insert(self, hashes) except -1
    @cython.locals(blocks=dict, seg=list, old=list, j=Py_ssize_t, before=Py_ssize_t,
                   added=Py_ssize_t)
    cpdef Py_ssize_t _touch(self, chain) except -1
    @cython.locals(blocks=dict, seg=list, lo=Py_ssize_t, hi=Py_ssize_t)
    cpdef _evict(self, Py_ssize_t over)
    @cython.locals(cap=Py_ssize_t, over=Py_ssize_t)
    cpdef Py_ssize_t resize(self, capacity_blocks) except -1
