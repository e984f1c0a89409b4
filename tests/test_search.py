"""Provisioning search: the smart (bisect + prune) mode against brute force, on cheap
synthetic monotone evaluators (the real simulator is in test_study.py)."""

from __future__ import annotations

import itertools

import pytest
from _search_reference import brute_force_max_rate
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.provision import (
    Budget,
    Pool,
    RateGrid,
    _first_true,
    _last_true,
    _minimal,
    affordable_frontier,
    heatmap,
    max_rate_under_budget,
    min_machines,
)

H = Pool("prompt", power_w=5600.0, cost_per_hour=38.0, min_count=1, max_count=12)
A = Pool("token", power_w=3200.0, cost_per_hour=17.6, min_count=1, max_count=16)


def capacity_evaluator(a: float, b: float, exp: float = 1.0):
    """SLO met iff rate <= min(a * p**exp, b * t): monotone in counts, anti-monotone in rate."""
    calls = []

    def ev(counts, rate):
        calls.append((counts, rate))
        cap = a * counts[0] ** exp if len(counts) == 1 else min(a * counts[0] ** exp, b * counts[1])
        return {"slo_met": rate <= cap, "cap": cap}

    return ev, calls


def test_bisection_helpers():
    for k in range(0, 12):
        assert _first_true(lambda i, k=k: i >= k, 0, 10) == (k if k <= 10 else None)
        for start in (0, 3, 10):
            assert _last_true(lambda i, k=k: i < k, 0, 10, start) == min(k, 11) - 1


def test_min_machines_matches_grid_and_saves_simulations():
    ev, calls = capacity_evaluator(1.0, 0.6)
    smart = min_machines(ev, [H, A], rate=4.5, mode="bisect")
    n_smart = len(calls)
    brute = min_machines(ev, [H, A], rate=4.5, mode="grid")
    assert smart.frontier == brute.frontier == [(5, 8)]
    assert smart.cheapest == brute.cheapest == (5, 8)
    assert n_smart < len(calls) - n_smart  # fewer than the full grid (12 x 16 = 192)
    assert brute.evaluations == 12 * 16


def test_min_machines_staircase_objectives():
    # met iff p * t >= 24: a real staircase, so cheapest / lowest power / smallest differ.
    def ev(counts, rate):
        return {"slo_met": counts[0] * counts[1] >= rate}

    smart = min_machines(ev, [H, A], rate=24.0, full_frontier=True)
    brute = min_machines(ev, [H, A], rate=24.0, mode="grid")
    assert smart.frontier == brute.frontier
    assert (smart.cheapest, smart.lowest_power, smart.smallest) == (
        brute.cheapest,
        brute.lowest_power,
        brute.smallest,
    )
    # 10 machines: (4, 6), (5, 5), (6, 4); cost breaks the tie (token machines are cheaper)
    assert smart.smallest == (4, 6)
    assert smart.cheapest[0] < smart.cheapest[1]
    assert smart.evaluations < brute.evaluations / 3


def test_objective_pruning_stops_early():
    # prompt machines are the expensive ones and the token side saturates at 3 machines:
    # columns past the cheapest cannot win, so the walk stops long before prompt_max.
    def ev(counts, rate):
        return {"slo_met": counts[0] >= 2 and counts[1] >= 3}

    pools = [Pool("prompt", 5600.0, 38.0, 1, 40), Pool("token", 3200.0, 17.6, 1, 40)]
    full = min_machines(ev, pools, 1.0, full_frontier=True)
    smart = min_machines(ev, pools, 1.0)
    assert smart.cheapest == full.cheapest == (2, 3)
    assert smart.evaluations < full.evaluations / 3


def test_min_machines_baseline_and_infeasible():
    ev, _ = capacity_evaluator(0.5, 0.0)
    base = Pool("machines", 5600.0, 38.0, 1, 100)
    res = min_machines(ev, [base], rate=10.0)
    assert res.frontier == [(20,)] and res.evaluations <= 8
    none = min_machines(ev, [base], rate=1000.0)
    assert none.frontier == [] and none.cheapest is None and none.evaluations == 1


@settings(max_examples=40, deadline=None)
@given(
    a=st.floats(0.2, 3.0),
    b=st.floats(0.2, 3.0),
    exp=st.sampled_from([0.5, 1.0, 1.3]),
    rate=st.floats(0.5, 20.0),
)
def test_min_machines_property(a, b, exp, rate):
    ev, _ = capacity_evaluator(a, b, exp)
    full = min_machines(ev, [H, A], rate, full_frontier=True)
    smart = min_machines(ev, [H, A], rate)
    brute = min_machines(ev, [H, A], rate, mode="grid")
    assert full.frontier == brute.frontier
    assert set(smart.frontier) <= set(brute.frontier)
    for obj in ("cheapest", "lowest_power", "smallest"):
        assert getattr(smart, obj) == getattr(brute, obj) == getattr(full, obj)
    assert smart.evaluations <= full.evaluations


def test_affordable_frontier_iso_power():
    budget = Budget(power_w=40 * 5600.0)
    hh = [Pool("prompt", 5600.0, 38.0, 1, 60), Pool("token", 5600.0, 38.0, 1, 60)]
    fr = affordable_frontier(hh, budget)
    assert fr == [(p, 40 - p) for p in range(1, 40)]
    base = affordable_frontier([Pool("m", 3200.0, 17.6, 1, 100)], budget)
    assert base == [(70,)]  # iso-power: 40 DGX-H100 ~ 70 DGX-A100
    cost = affordable_frontier([Pool("m", 3200.0, 17.6, 1, 100)], Budget(cost_per_hour=1520.0))
    assert cost == [(86,)]
    for p, t in affordable_frontier([H, A], budget):
        assert 5600.0 * p + 3200.0 * t <= 224000.0
        assert t == A.max_count or 5600.0 * p + 3200.0 * (t + 1) > 224000.0


@pytest.mark.parametrize("frontier", ["exhaustive", "refine"])
@pytest.mark.parametrize("ab", [(1.0, 0.6), (0.3, 2.0), (2.5, 0.25)])
def test_max_rate_under_budget_matches_brute_force(frontier, ab):
    ev, calls = capacity_evaluator(*ab)
    grid = RateGrid(0.25, 64.0, 0.1)
    budget = Budget(power_w=10 * 5600.0)
    pools = [Pool("prompt", 5600.0, 38.0, 1, 12), Pool("token", 3200.0, 17.6, 1, 20)]
    res = max_rate_under_budget(ev, pools, budget, grid, frontier=frontier, rate_start=2.0)
    n_smart = len(calls)
    best, who = brute_force_max_rate(ev, pools, budget, grid)
    assert res.rate == best
    assert res.best in who
    assert n_smart < (len(calls) - n_smart) / 4  # far fewer than brute force


@settings(max_examples=40, deadline=None)
@given(
    a=st.floats(0.1, 4.0),
    b=st.floats(0.1, 4.0),
    exp=st.sampled_from([0.6, 1.0, 1.4]),
    n=st.integers(2, 14),
)
def test_exhaustive_budget_search_is_exact(a, b, exp, n):
    ev, _ = capacity_evaluator(a, b, exp)
    grid = RateGrid(0.25, 64.0, 0.15)
    budget = Budget(power_w=n * 5600.0, cost_per_hour=n * 30.0)
    pools = [Pool("prompt", 5600.0, 38.0, 1, 30), Pool("token", 3200.0, 17.6, 1, 30)]
    res = max_rate_under_budget(ev, pools, budget, grid, frontier="exhaustive", rate_start=4.0)
    best, who = brute_force_max_rate(ev, pools, budget, grid)
    assert res.rate == best
    assert (res.best in who) if best is not None else res.best is None


def test_max_rate_grid_mode_reports_every_config():
    ev, _ = capacity_evaluator(1.0, 0.5)
    grid = RateGrid(0.5, 32.0, 0.2)
    pools = [Pool("prompt", 5600.0, 38.0, 1, 10), Pool("token", 5600.0, 38.0, 1, 10)]
    res = max_rate_under_budget(ev, pools, Budget(power_w=6 * 5600.0), grid, mode="grid")
    assert set(res.config_rates) == set(res.candidates)
    assert all(r is not None for r in res.config_rates.values())
    best, _ = brute_force_max_rate(ev, pools, Budget(power_w=6 * 5600.0), grid)
    assert res.rate == best == max(res.config_rates.values())


def test_nothing_meets_slo():
    ev, _ = capacity_evaluator(0.0, 0.0)
    res = max_rate_under_budget(
        ev, [H, A], Budget(power_w=5 * 5600.0), RateGrid(1.0, 8.0, 0.5), rate_start=2.0
    )
    assert res.rate is None and res.best is None


def test_heatmap_inferred_equals_grid():
    def ev(counts, rate):
        return {"slo_met": counts[0] * counts[1] >= rate}

    pools = [Pool("prompt", 5600.0, 38.0, 1, 6), Pool("token", 3200.0, 17.6, 1, 7)]
    smart = heatmap(ev, pools, 12.0)
    full = heatmap(ev, pools, 12.0, mode="grid")
    key = [(r["prompt"], r["token"], r["slo_met"]) for r in smart]
    assert key == [(r["prompt"], r["token"], r["slo_met"]) for r in full]
    assert sum(r["evaluated"] for r in smart) < sum(r["evaluated"] for r in full) == 42
    assert all(r["slo_met"] == (r["prompt"] * r["token"] >= 12) for r in smart)


def test_minimal_and_validation():
    assert _minimal([(1, 5), (2, 5), (3, 2), (3, 3)]) == [(1, 5), (3, 2)]
    with pytest.raises(ValueError):
        Pool("x", 1.0, 1.0, 5, 2)
    with pytest.raises(ValueError):
        RateGrid(0.0, 1.0, 0.1)
    with pytest.raises(ValueError, match="search.mode"):
        min_machines(lambda c, r: {"slo_met": True}, [H], 1.0, mode="nope")
    rates = RateGrid(1.0, 2.0, 0.1).rates
    assert rates[0] == 1.0 and rates[-1] <= 2.0 and len(rates) == 8
    assert list(itertools.pairwise(rates)) and all(a < b for a, b in itertools.pairwise(rates))
