"""Errors of the replay package: one-line messages, raised before a simulation starts."""

from __future__ import annotations


class ReplayError(ValueError):
    """A replay cannot run as configured (bad trace, bad scheduler option, missing phase model)."""


class DesignError(ReplayError):
    """A cluster design cannot run (no machines in a pool, model does not fit, unknown name)."""


def need(cond: bool, key: str, msg: str, error: type[ReplayError] = ReplayError) -> None:
    """Raise ``error("key: msg")`` (one line, starting with the dotted config key) unless cond."""
    if not cond:
        raise error(f"{key}: {msg}")
