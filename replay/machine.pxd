# Cython declarations for machine.py (see routing.pxd).
cimport cython

from replay.prefix_cache cimport PrefixCache
from replay.routing cimport Routing


cdef class Machine:
    cdef public Py_ssize_t idx, home, role, kind
    cdef public object spec, pf, queue, wait, incoming, spans, segs
    cdef public list done, fresh, rc, pbatch, pool_time, pool_busy
    cdef public Routing cl
    cdef public PrefixCache pc
    cdef public double a, b, c, q, t0, d0, inc, wake_t, role_since, busy_mark, o0, o1
    cdef public Py_ssize_t cap, wm, maxb, rc_tokens, ptoks, p_load, d_load, B, C, it, wake_n
    cdef public Py_ssize_t ver, nspans, max_c, max_b, kvu
    cdef public bint fused, ovh

    cpdef schedule(self, double t)
    @cython.locals(n=Py_ssize_t, kind=Py_ssize_t)
    cpdef notify(self, double t, double now)
    cpdef set_role(self, Py_ssize_t role, double now)
    @cython.locals(n=Py_ssize_t, B=Py_ssize_t, kind=Py_ssize_t, done=list, it=Py_ssize_t,
                   pc=PrefixCache, used=Py_ssize_t, room=Py_ssize_t)
    cpdef wake(self, double T)
    @cython.locals(t0=double, fresh=list, k0=Py_ssize_t, cl=Routing, first_end=double,
                   t_last=list, start=double)
    cpdef _record(self, Py_ssize_t n, double d0, double inc, Py_ssize_t B, Py_ssize_t ptok,
                  double T)
    @cython.locals(cl=Routing, ptok=list, otok=list, tm_of=list, gen=list, t_last=list,
                   machines=list, me=Py_ssize_t, t_start=double, p=Py_ssize_t, g=Py_ssize_t,
                   tm=Py_ssize_t, m=Machine, x=Py_ssize_t, k=Py_ssize_t, tx=double)
    cpdef _finish_prefill(self, double T)
    @cython.locals(cl=Routing, g=Py_ssize_t)
    cpdef _join(self, Py_ssize_t r, bint fresh=*)
    @cython.locals(cl=Routing, p=Py_ssize_t)
    cpdef _complete(self, Py_ssize_t r, double T)
    cpdef _cache_insert(self, Py_ssize_t r)
    @cython.locals(cl=Routing, wait=object, ptok=list, gen=list, recompute=list,
                   maxb=Py_ssize_t, cap=Py_ssize_t, r=Py_ssize_t, need=Py_ssize_t,
                   used=Py_ssize_t, nb=Py_ssize_t)
    cpdef _admit(self, double T)
    @cython.locals(cl=Routing, ptok=list, n=Py_ssize_t, tok=Py_ssize_t, sq=Py_ssize_t,
                   x=Py_ssize_t, p=Py_ssize_t, kv_need=Py_ssize_t, full=Py_ssize_t,
                   limit=Py_ssize_t, local_tokens=Py_ssize_t, nb=Py_ssize_t, maxb=Py_ssize_t,
                   cap=Py_ssize_t, k=Py_ssize_t, B=Py_ssize_t, C=Py_ssize_t, nf=Py_ssize_t,
                   ni=Py_ssize_t, me=Py_ssize_t, d0=double, inc=double, dur=double,
                   pc=PrefixCache, r=Py_ssize_t, tm_of=list, batch=list)
    cpdef _start(self, double T)
    cpdef _maybe_return(self, double T)
