# Cython declarations for routing.py (the compiled core: replay/_core.py, setup.py). The .py file
# is the source and the reference; this file only gives types, so the compiled module runs the
# same Python code with C-level attribute access. Keep it in step with the .py (the test
# tests/test_core.py compares both builds' replays byte for byte).
cimport cython

from replay.kv_transfer cimport KVLinks
from replay.machine cimport Machine


cdef class Routing:
    # the cluster's state (replay.event_loop.Cluster sets it; declared here, on the base)
    cdef public object cfg, rid, pm_of, tm_of, t_start, t_first, t_done, t_last, kvx, npre
    cdef public object gen, jit, jseg, recompute, rejected, gap_req, gap_val, seq
    cdef public KVLinks links
    cdef public object rng, max_tokens
    cdef public list arrival, ptok, otok, heap, role_changes, machines, rr, hashes, cached
    cdef public list prompt_capable, token_capable, prompt_pool, token_pool
    cdef public bint jsq, split, mixed_pool, cache_route, tx_uncached
    cdef public Py_ssize_t n, completed, preemptions, n_rejected, tx_saved
    cdef public double end_time, leg0, leg1
    cdef public list order, reach

    cpdef repool(self)
    cpdef Machine _pick(self, list pool, Py_ssize_t which, key)
    @cython.locals(pm=Machine, tm=Machine, m=Machine, p=Py_ssize_t, h=tuple)
    cpdef _arrive(self, Py_ssize_t r, double now)


@cython.locals(best=Machine, m=Machine, bv=Py_ssize_t, v=Py_ssize_t, k=Py_ssize_t,
               cap=Py_ssize_t, bt=Py_ssize_t, lru=dict)
cpdef Machine _cache_pick(list pool, tuple hashes, Py_ssize_t p, bint with_decode)
