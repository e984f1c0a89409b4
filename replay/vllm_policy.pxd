# Cython declarations for vllm_policy.py (see routing.pxd).
cimport cython

from replay.machine cimport Machine
from replay.prefix_cache cimport PrefixCache
from replay.routing cimport Routing


cdef class VLLMMachine(Machine):
    cdef public dict run
    cdef public list hist, pieces
    cdef public Py_ssize_t part, pdone, pn, pblk, bs, nblocks, used, budget, maxseqs
    cdef public bint preempted_step, split, whole
    cdef public double kl0, kl1, ks0, ks1, dw0, dw1

    @cython.locals(n=Py_ssize_t, kind=Py_ssize_t)
    cpdef notify(self, double t, double now)
    @cython.locals(n=Py_ssize_t, kind=Py_ssize_t)
    cpdef receive(self, double t, double now)
    @cython.locals(kind=Py_ssize_t, n=Py_ssize_t, B=Py_ssize_t, bs=Py_ssize_t, h=list,
                   base=Py_ssize_t, s=Py_ssize_t, k=Py_ssize_t, done=list, it=Py_ssize_t,
                   pc=PrefixCache, used=Py_ssize_t, inc=list)
    cpdef wake(self, double T)
    @cython.locals(bs=Py_ssize_t, h=list, s=Py_ssize_t, base=Py_ssize_t, k=Py_ssize_t)
    cpdef Py_ssize_t _cum(self, Py_ssize_t n) except? -1
    @cython.locals(bs=Py_ssize_t, h=list, m=Py_ssize_t, s=Py_ssize_t, base=Py_ssize_t,
                   k=Py_ssize_t)
    cpdef Py_ssize_t _fit(self, Py_ssize_t free) except? -1
    @cython.locals(cl=Routing, g=Py_ssize_t, p=Py_ssize_t, it=Py_ssize_t)
    cpdef _join(self, Py_ssize_t r, bint fresh=*)
    @cython.locals(cl=Routing, p=Py_ssize_t, o=Py_ssize_t, bs=Py_ssize_t)
    cpdef _complete(self, Py_ssize_t r, double T)
    @cython.locals(cl=Routing)
    cpdef _finished(self, Py_ssize_t r, double T, Py_ssize_t p, Py_ssize_t g)
    @cython.locals(cl=Routing, ptok=list, otok=list, gen=list, t_last=list, r=Py_ssize_t,
                   x=Py_ssize_t, o=Py_ssize_t, tot=Py_ssize_t, p=Py_ssize_t, g=Py_ssize_t)
    cpdef _finish_pieces(self, double T)
    @cython.locals(cl=Routing, tm=Py_ssize_t, ready=double, leg=double, m=VLLMMachine)
    cpdef _hand_over(self, Py_ssize_t r, double T, Py_ssize_t p)
    @cython.locals(B=Py_ssize_t, cl=Routing, bs=Py_ssize_t, free=Py_ssize_t,
                   need_now=Py_ssize_t, blocked=bint, r=Py_ssize_t, x=Py_ssize_t,
                   room=Py_ssize_t, n=Py_ssize_t, C=Py_ssize_t, d0=double, inc=double,
                   budget=Py_ssize_t, pieces=list, tok=Py_ssize_t, sq=Py_ssize_t,
                   o=Py_ssize_t, nb=Py_ssize_t, ptok=list, gen=list, recompute=list,
                   t_start=list, run=dict, pc=PrefixCache, p=Py_ssize_t, total=Py_ssize_t,
                   s=Py_ssize_t, k=Py_ssize_t, kv=Py_ssize_t, dur=double, ho=bint,
                   nload=Py_ssize_t, loaded=Py_ssize_t, nho=Py_ssize_t, hop=Py_ssize_t)
    cpdef _start(self, double T)
