"""Provisioning search: machine counts and request rates that meet the SLO.

Generic over an evaluator ``evaluate(counts, rate) -> dict`` whose dict has a boolean
``slo_met`` (a missing or false value, or an ``error`` key, counts as not met). ``counts``
is a tuple with one machine count per pool: ``(machines,)`` for a baseline,
``(prompt_machines, token_machines)`` for Splitwise.

The smart mode uses that SLO attainment is monotone: never worse with more machines in any
pool, never better at a higher rate. So

* the minimal machine counts for a rate form a staircase, found column by column with
  bisection, each column bounded by the previous one (``min_machines``);
* under a budget only the maximal affordable configurations matter, and a configuration is
  pruned with ONE simulation when it cannot beat the best rate found so far
  (``max_rate_under_budget``);
* a full-grid mode evaluates everything (heatmaps, and a check of the smart mode).

Rates live on a geometric grid (``RateGrid``) so that searches share simulated points.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

Counts = tuple[int, ...]
Evaluator = Callable[[Counts, float], dict]


@dataclass(frozen=True)
class Pool:
    """One machine pool of a design: per-machine provisioned power (W) and cost ($/h)."""

    name: str
    power_w: float
    cost_per_hour: float
    min_count: int = 1
    max_count: int = 40

    def __post_init__(self) -> None:
        if self.min_count < 0 or self.max_count < self.min_count:
            raise ValueError(
                f"pool {self.name}: machine range [{self.min_count}, {self.max_count}] is empty"
            )


@dataclass(frozen=True)
class Budget:
    """Provisioned power (W) and/or cost ($/h) a configuration may not exceed (None: no limit)."""

    power_w: float | None = None
    cost_per_hour: float | None = None

    def fits(self, power_w: float, cost_per_hour: float) -> bool:
        ok = True
        if self.power_w is not None:
            ok &= power_w <= self.power_w * (1 + 1e-9)
        if self.cost_per_hour is not None:
            ok &= cost_per_hour <= self.cost_per_hour * (1 + 1e-9)
        return ok


def power_of(pools: Sequence[Pool], counts: Counts) -> float:
    """Provisioned power of a configuration, W."""
    return float(sum(p.power_w * n for p, n in zip(pools, counts, strict=True)))


def cost_of(pools: Sequence[Pool], counts: Counts) -> float:
    """Cost of a configuration, $/h."""
    return float(sum(p.cost_per_hour * n for p, n in zip(pools, counts, strict=True)))


@dataclass(frozen=True)
class RateGrid:
    """Geometric request-rate grid: ``rate_min * (1 + step)**i`` up to ``rate_max`` (req/s).

    Rates are rounded to 4 significant digits so the same rate always has the same cache key.
    """

    rate_min: float
    rate_max: float
    step: float

    def __post_init__(self) -> None:
        if not (self.rate_min > 0 and self.rate_max >= self.rate_min and self.step > 0):
            raise ValueError(
                f"rate grid: need 0 < rate_min <= rate_max and step > 0, got "
                f"{self.rate_min}, {self.rate_max}, {self.step}"
            )

    @property
    def rates(self) -> tuple[float, ...]:
        n = int(math.floor(math.log(self.rate_max / self.rate_min) / math.log1p(self.step) + 1e-9))
        return tuple(float(f"{self.rate_min * (1 + self.step) ** i:.4g}") for i in range(n + 1))

    def index_near(self, rate: float) -> int:
        """Index of the grid rate closest to ``rate`` (log distance)."""
        rs = self.rates
        return min(range(len(rs)), key=lambda i: abs(math.log(rs[i] / rate)))


@dataclass
class SearchLog:
    """Every (counts, rate) a search asked about, with its result, in order; memoized."""

    evaluate: Evaluator
    points: list[dict] = field(default_factory=list)
    _memo: dict = field(default_factory=dict)

    def met(self, counts: Counts, rate: float) -> bool:
        key = (tuple(int(c) for c in counts), float(rate))
        if key not in self._memo:
            res = self.evaluate(key[0], key[1])
            ok = bool(res.get("slo_met", False)) and not res.get("error")
            self._memo[key] = ok
            self.points.append({"counts": key[0], "rate": key[1], "slo_met": ok, "result": res})
        return self._memo[key]

    def error(self, counts: Counts, rate: float) -> str | None:
        """The error of a point this log evaluated (None: it ran, or was never asked)."""
        key = (tuple(int(c) for c in counts), float(rate))
        for p in self.points:
            if (tuple(p["counts"]), p["rate"]) == key:
                return p["result"].get("error") or None
        return None

    @property
    def evaluations(self) -> int:
        return len(self.points)


def _first_true(pred: Callable[[int], bool], lo: int, hi: int) -> int | None:
    """Smallest i in [lo, hi] with pred(i), pred monotone False..True; None if pred(hi) fails.

    ``pred(hi)`` is checked first.
    """
    if lo > hi or not pred(hi):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _last_true(pred: Callable[[int], bool], lo: int, hi: int, start: int | None = None) -> int:
    """Largest i in [lo, hi] with pred(i), pred monotone True..False; lo - 1 if none.

    Gallops from ``start`` (default lo) before bisecting, so a good guess costs few calls.
    """
    if lo > hi:
        return lo - 1
    s = min(max(lo if start is None else start, lo), hi)
    step = 1
    if pred(s):
        good, bad = s, hi + 1
        while good + step <= hi:
            if not pred(good + step):
                bad = good + step
                break
            good += step
            step *= 2
    else:
        good, bad = lo - 1, s
        while bad - step >= lo:
            if pred(bad - step):
                good = bad - step
                break
            bad -= step
            step *= 2
    while bad - good > 1:
        mid = (good + bad) // 2
        if pred(mid):
            good = mid
        else:
            bad = mid
    return good


# ---------------------------------------------------------------------------------------------
# Minimal machine counts for a rate (and iso-throughput)


@dataclass
class MinMachinesResult:
    """Minimal SLO-meeting configurations for one rate, and the best by each objective."""

    rate: float
    frontier: list[Counts]  # minimal feasible configurations (none dominates another)
    cheapest: Counts | None
    lowest_power: Counts | None
    smallest: Counts | None
    evaluations: int
    points: list[dict]


def _minimal(points: Sequence[Counts]) -> list[Counts]:
    """Configurations not dominated (component-wise >=) by another one of ``points``."""
    pts = sorted(set(points))
    out = []
    for c in pts:
        if not any(o != c and all(a <= b for a, b in zip(o, c, strict=True)) for o in pts):
            out.append(c)
    return out


def _pick(pools: Sequence[Pool], frontier: list[Counts]) -> tuple:
    if not frontier:
        return None, None, None
    cheapest = min(frontier, key=lambda c: (cost_of(pools, c), power_of(pools, c), c))
    lowest = min(frontier, key=lambda c: (power_of(pools, c), cost_of(pools, c), c))
    smallest = min(frontier, key=lambda c: (sum(c), cost_of(pools, c), c))
    return cheapest, lowest, smallest


def min_machines(
    evaluate: Evaluator,
    pools: Sequence[Pool],
    rate: float,
    mode: str = "bisect",
    full_frontier: bool = False,
) -> MinMachinesResult:
    """The machine counts per pool that meet the SLO at ``rate``: the minimal ones, and
    among them the cheapest, the lowest-power and the smallest (fewest machines).

    ``mode="bisect"``: 1 pool: bisection; 2 pools: for each prompt count (ascending) the
    minimal token count by bisection below the previous column's, stopping once the token
    count reaches its minimum or (unless ``full_frontier``) once no further column can beat
    the best cost, power and machine count found. ``mode="grid"``: every configuration.
    """
    log = SearchLog(evaluate)
    if mode == "grid":
        grid = _all_counts(pools)
        feasible = [c for c in grid if log.met(c, rate)]
        frontier = _minimal(feasible)
    elif mode == "bisect":
        frontier = _staircase(log, pools, rate, objectives_only=not full_frontier)
    else:
        raise ValueError(f"search.mode: unknown mode '{mode}' (bisect or grid)")
    ch, lp, sm = _pick(pools, frontier)
    return MinMachinesResult(rate, frontier, ch, lp, sm, log.evaluations, log.points)


def _all_counts(pools: Sequence[Pool]) -> list[Counts]:
    out: list[Counts] = [()]
    for p in pools:
        out = [(*c, n) for c in out for n in range(p.min_count, p.max_count + 1)]
    return out


def _staircase(
    log: SearchLog, pools: Sequence[Pool], rate: float, objectives_only: bool = False
) -> list[Counts]:
    """Minimal feasible configurations, column by column (see :func:`min_machines`).

    ``objectives_only``: stop once no later column can beat the best cost, power or machine
    count found so far even with the fewest token machines (exact for the three objectives;
    the frontier is then cut where it no longer matters).
    """
    if len(pools) == 1:
        p = pools[0]
        n = _first_true(lambda k: log.met((k,), rate), p.min_count, p.max_count)
        return [] if n is None else [(n,)]
    if len(pools) != 2:
        raise ValueError("min_machines: designs have one or two pools")
    pp, tp = pools
    # The first prompt count that works with the most token machines (monotone in prompt).
    p0 = _first_true(lambda k: log.met((k, tp.max_count), rate), pp.min_count, pp.max_count)
    if p0 is None:
        return []
    frontier: list[Counts] = []
    t_hi = tp.max_count  # known feasible for column p0
    for p in range(p0, pp.max_count + 1):
        # (p, t_hi) is feasible: it holds for p0 by construction, later by monotonicity.
        t = _first_true(lambda k, p=p: log.met((p, k), rate), tp.min_count, t_hi - 1)
        t = t_hi if t is None else t
        if not frontier or t < frontier[-1][1]:
            frontier.append((p, t))
        t_hi = t
        if t == tp.min_count:
            break
        if objectives_only and p + 1 <= pp.max_count:
            nxt = (p + 1, tp.min_count)
            ch, lp, sm = _pick(pools, frontier)
            if (
                cost_of(pools, nxt) >= cost_of(pools, ch)
                and power_of(pools, nxt) >= power_of(pools, lp)
                and sum(nxt) >= sum(sm)
            ):
                break
    return frontier


def heatmap(
    evaluate: Evaluator, pools: Sequence[Pool], rate: float, mode: str = "bisect"
) -> list[dict]:
    """SLO met or not over every (prompt, token) configuration at ``rate``.

    Rows: ``prompt, token, slo_met, evaluated`` (False where monotonicity decided the cell
    without a simulation), ``status`` ("simulated", "inferred", or "failed": the simulation
    raised, ``slo_met`` None and ``error`` its message), ``cost_per_hour``, ``power_w``.
    """
    if len(pools) != 2:
        raise ValueError("heatmap: needs a two-pool (Splitwise) design")
    log = SearchLog(evaluate)
    res_frontier = _staircase(log, pools, rate) if mode == "bisect" else None
    rows = []
    for c in _all_counts(pools):
        if mode == "grid":
            met = log.met(c, rate)
        else:
            met = any(c[0] >= f[0] and c[1] >= f[1] for f in res_frontier)
        evaluated = (c, float(rate)) in log._memo
        error = log.error(c, rate) if evaluated else None
        rows.append(
            {
                "prompt": c[0],
                "token": c[1],
                "slo_met": None if error else met,
                "evaluated": evaluated,
                "status": "failed" if error else ("simulated" if evaluated else "inferred"),
                "error": error,
                "cost_per_hour": cost_of(pools, c),
                "power_w": power_of(pools, c),
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------
# Highest rate under a budget (iso-power, iso-cost)


@dataclass
class BudgetResult:
    """The highest rate any configuration within a budget sustains, and that configuration."""

    best: Counts | None
    rate: float | None  # req/s, a grid rate; None when nothing meets the SLO
    candidates: list[Counts]  # the maximal affordable configurations
    config_rates: dict  # counts -> max rate found for it (None: pruned/never met)
    evaluations: int
    points: list[dict]


def affordable_frontier(pools: Sequence[Pool], budget: Budget) -> list[Counts]:
    """The maximal configurations within the budget (adding any machine would exceed it)."""
    if len(pools) == 1:
        p = pools[0]
        ok = [
            n
            for n in range(p.min_count, p.max_count + 1)
            if budget.fits(p.power_w * n, p.cost_per_hour * n)
        ]
        return [(max(ok),)] if ok else []
    pp, tp = pools
    cols = []
    for p in range(pp.min_count, pp.max_count + 1):
        ts = [
            t
            for t in range(tp.min_count, tp.max_count + 1)
            if budget.fits(power_of(pools, (p, t)), cost_of(pools, (p, t)))
        ]
        if ts:
            cols.append((p, max(ts)))
    # (p, t) is dominated when (p + 1, t) also fits.
    return [c for i, c in enumerate(cols) if i + 1 >= len(cols) or cols[i + 1][1] < c[1]]


def max_rate_under_budget(
    evaluate: Evaluator,
    pools: Sequence[Pool],
    budget: Budget,
    grid: RateGrid,
    *,
    frontier: str = "exhaustive",
    coarse_points: int = 5,
    rate_start: float | None = None,
    mode: str = "bisect",
) -> BudgetResult:
    """Highest grid rate some configuration within ``budget`` sustains under the SLO.

    Only maximal affordable configurations are tried (more machines never hurt). With
    ``mode="bisect"`` each configuration is first asked the next rate above the best so far:
    one simulation prunes it unless it wins, and only winners are bisected further.
    ``frontier="exhaustive"`` tries every maximal configuration (exact under monotonicity);
    ``"refine"`` tries ``coarse_points`` evenly spaced ones, then halves the spacing around
    the best (exact when the rate along the frontier is unimodal). ``mode="grid"`` finds
    every configuration's own maximal rate (no pruning).
    """
    cands = affordable_frontier(pools, budget)
    rates = grid.rates
    log = SearchLog(evaluate)
    start = grid.index_near(rate_start) if rate_start else 0
    config_rates: dict = {}
    best_idx, best_c = -1, None

    def met(c: Counts, i: int) -> bool:
        return log.met(c, rates[i])

    def try_config(pos: int) -> None:
        nonlocal best_idx, best_c
        c = cands[pos]
        if c in config_rates:
            return
        if mode == "bisect" and best_idx >= 0:
            if best_idx + 1 >= len(rates) or not met(c, best_idx + 1):
                config_rates[c] = None  # pruned: cannot beat the best
                return
            i = _last_true(lambda k: met(c, k), best_idx + 1, len(rates) - 1, best_idx + 2)
        else:
            i = _last_true(lambda k: met(c, k), 0, len(rates) - 1, max(start, 0))
        config_rates[c] = rates[i] if i >= 0 else None
        if i > best_idx:
            best_idx, best_c = i, c

    if mode not in ("bisect", "grid"):
        raise ValueError(f"search.mode: unknown mode '{mode}' (bisect or grid)")
    if frontier not in ("exhaustive", "refine"):
        raise ValueError(f"search.frontier: unknown value '{frontier}' (exhaustive or refine)")
    n = len(cands)
    if n:
        if frontier == "exhaustive" or mode == "grid" or n <= coarse_points:
            order = _middle_out(n)
            for pos in order:
                try_config(pos)
        else:
            k = max(2, coarse_points)
            coarse = sorted({round(j * (n - 1) / (k - 1)) for j in range(k)})
            for pos in _middle_out_of(coarse):
                try_config(pos)
            spacing = max(1, (n - 1) // (k - 1))
            step = max(1, spacing // 2)
            while True:
                bpos = cands.index(best_c) if best_c is not None else n // 2
                for pos in (bpos - step, bpos + step):
                    if 0 <= pos < n:
                        try_config(pos)
                new_pos = cands.index(best_c) if best_c is not None else n // 2
                if new_pos != bpos:
                    continue  # moved: look around the new best at the same step
                if step == 1:
                    break
                step = max(1, step // 2)
    rate = rates[best_idx] if best_idx >= 0 else None
    return BudgetResult(best_c, rate, cands, config_rates, log.evaluations, log.points)


def max_rate_of(
    evaluate: Evaluator, counts: Counts, grid: RateGrid, rate_start: float | None = None
) -> tuple[float | None, list[dict]]:
    """Highest grid rate one configuration sustains under the SLO (galloping from the grid rate
    nearest ``rate_start``, then bisecting), and every point asked; None when even the lowest
    rate fails."""
    rates = grid.rates
    log = SearchLog(evaluate)
    start = grid.index_near(rate_start) if rate_start else 0
    i = _last_true(lambda k: log.met(counts, rates[k]), 0, len(rates) - 1, start)
    return (rates[i] if i >= 0 else None), log.points


def _middle_out(n: int) -> list[int]:
    return _middle_out_of(list(range(n)))


def _middle_out_of(positions: Sequence[int]) -> list[int]:
    """Positions ordered from the middle outwards (balanced splits first: usually best)."""
    mid = (len(positions) - 1) / 2
    return [p for _, p in sorted((abs(i - mid), p) for i, p in enumerate(positions))]
