"""Point cache: keys over the full config, atomic one-file-per-point records, resume, errors."""

from __future__ import annotations

import json

import pytest

from experiments.cache import PointCache, canonical_json, point_key
from experiments.provision import Budget, Pool, RateGrid, max_rate_under_budget


def _point(**kw):
    base = {
        "design": {"name": "splitwise-hh", "prompt_machines": 3, "token_machines": 2},
        "trace": {"name": "azure-conv-2023", "resample_rate": 2.0, "seed": 0},
        "scheduler": {"policy": "jsq"},
        "slo": {"ttft": [2, 3, 6]},
        "profiles": "reference",
        "model": "llama2-70b",
        "code_version": "x",
    }
    base.update(kw)
    return base


def test_key_is_canonical_and_covers_every_field():
    a = _point()
    b = json.loads(json.dumps(a))
    b = dict(reversed(list(b.items())))  # key order does not matter
    assert point_key(a) == point_key(b)
    assert point_key(a) != point_key(_point(code_version="y"))
    assert point_key(a) != point_key(_point(trace={**a["trace"], "seed": 1}))
    assert point_key(a) != point_key(_point(profiles="/tmp/p.csv"))
    assert canonical_json({"x": (1, 2), "y": float("nan")}) == '{"x":[1,2],"y":null}'


def test_cache_resume_evaluates_nothing_twice(tmp_path):
    calls = []

    def ev(point):
        calls.append(point["design"]["prompt_machines"])
        return {"slo_met": point["design"]["prompt_machines"] >= 2, "x": 1.5}

    c1 = PointCache(tmp_path)
    recs = [c1.evaluate(_point(design={"prompt_machines": n}), ev) for n in range(4)]
    assert calls == [0, 1, 2, 3] and c1.stats.evaluated == 4 and c1.stats.hits == 0
    files = sorted(tmp_path.rglob("*.json"))
    assert len(files) == 4 and not list(tmp_path.rglob("*.tmp"))
    c2 = PointCache(tmp_path)
    again = [c2.evaluate(_point(design={"prompt_machines": n}), ev) for n in range(4)]
    assert calls == [0, 1, 2, 3]  # nothing recomputed
    assert c2.stats.evaluated == 0 and c2.stats.hits == 4
    assert again == recs  # byte-identical content, fresh or cached
    disabled = PointCache(tmp_path, enabled=False)
    disabled.evaluate(_point(design={"prompt_machines": 0}), ev)
    assert calls[-1] == 0 and disabled.stats.evaluated == 1


def test_failing_point_is_recorded_and_sweep_goes_on(tmp_path):
    def ev(point):
        n = point["design"]["prompt_machines"]
        if n == 2:
            raise RuntimeError("simulator exploded\nsecond line")
        return {"slo_met": True}

    cache = PointCache(tmp_path)
    recs = [cache.evaluate(_point(design={"prompt_machines": n}), ev) for n in range(4)]
    assert [r["status"] for r in recs] == ["ok", "ok", "error", "ok"]
    assert recs[2]["error"] == "RuntimeError: simulator exploded"
    assert cache.stats.errors == 1
    # A rerun does not retry it (it is a result) unless asked to.
    calls = []

    def ev2(point):
        calls.append(1)
        return {"slo_met": True}

    PointCache(tmp_path).evaluate(_point(design={"prompt_machines": 2}), ev2)
    assert calls == []
    rec = PointCache(tmp_path, retry_errors=True).evaluate(
        _point(design={"prompt_machines": 2}), ev2
    )
    assert calls == [1] and rec["status"] == "ok"


def test_interrupted_search_resumes_from_cache(tmp_path):
    """A search killed half-way recomputes only what it had not finished."""
    seen = []

    class Interrupt(BaseException):
        pass

    def make(limit):
        def ev(point):
            if limit is not None and len(seen) >= limit:
                raise Interrupt
            seen.append(1)
            p, t = point["design"]["prompt_machines"], point["design"]["token_machines"]
            return {"slo_met": point["trace"]["resample_rate"] <= min(1.0 * p, 0.7 * t)}

        return ev

    pools = [Pool("prompt", 5600.0, 38.0, 1, 10), Pool("token", 5600.0, 38.0, 1, 10)]

    def search(limit):
        cache = PointCache(tmp_path)

        def evaluate(counts, rate):
            pt = _point(
                design={"prompt_machines": counts[0], "token_machines": counts[1]},
                trace={"resample_rate": rate},
            )
            rec = cache.evaluate(pt, make(limit))
            return rec["result"] or {"slo_met": False}

        res = max_rate_under_budget(
            evaluate, pools, Budget(power_w=8 * 5600.0), RateGrid(0.5, 16.0, 0.1), rate_start=1.0
        )
        return res, cache

    try:
        search(limit=5)
    except Interrupt:
        pass
    assert len(seen) == 5
    res, cache = search(limit=None)
    assert cache.stats.hits == 5  # the finished points came from disk
    total = len(seen)
    res2, cache2 = search(limit=None)
    assert len(seen) == total and cache2.stats.evaluated == 0
    assert (res2.best, res2.rate) == (res.best, res.rate)


def _stored(tmp_path, text_of):
    """A cache with one good record, then the file rewritten by ``text_of(record) -> str``."""
    cache = PointCache(tmp_path)
    p = _point()
    cache.evaluate(p, lambda pt: {"slo_met": True, "throughput_rps": 1.0})
    path = cache.path(point_key(p))
    rec = json.loads(path.read_text())
    path.write_text(text_of(rec))
    return p, path


BAD_RECORDS = {
    "a list": lambda rec: "[]",
    "a number": lambda rec: "3",
    "no slo_met": lambda rec: json.dumps({**rec, "result": {"throughput_rps": 1.0}}),
    "slo_met not a bool": lambda rec: json.dumps({**rec, "result": {"slo_met": "yes"}}),
    "result a list": lambda rec: json.dumps({**rec, "result": []}),
    "no status": lambda rec: json.dumps({k: v for k, v in rec.items() if k != "status"}),
    "another key": lambda rec: json.dumps({**rec, "key": "0" * 64}),
    "quantiles not lists": lambda rec: json.dumps(
        {**rec, "result": {"slo_met": True, "quantiles": {"ttft_s": 1}}}
    ),
    "error without message": lambda rec: json.dumps({**rec, "status": "error", "error": None}),
}


@pytest.mark.parametrize("bad", list(BAD_RECORDS), ids=list(BAD_RECORDS))
def test_a_record_of_the_wrong_shape_is_recomputed(tmp_path, bad):
    from experiments.cache import record_problem

    p, path = _stored(tmp_path, BAD_RECORDS[bad])
    assert record_problem(json.loads(path.read_text()), point_key(p)) is not None
    cache = PointCache(tmp_path)
    calls = []
    rec = cache.evaluate(p, lambda pt: calls.append(1) or {"slo_met": False})
    assert calls == [1] and rec["status"] == "ok" and rec["result"]["slo_met"] is False
    assert cache.stats.invalid == 1 and cache.stats.hits == 0
    assert record_problem(json.loads(path.read_text()), point_key(p)) is None  # rewritten whole


def test_a_good_record_passes_the_shape_check(tmp_path):
    from experiments.cache import record_problem

    p, path = _stored(tmp_path, json.dumps)
    assert record_problem(json.loads(path.read_text()), point_key(p)) is None
    cache = PointCache(tmp_path)
    assert cache.evaluate(p, lambda pt: 1 / 0)["status"] == "ok" and cache.stats.hits == 1
