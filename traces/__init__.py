"""traces: request traces for splitbench (contract 1 of DESIGN.md).

A trace is a pandas DataFrame, one row per request, sorted by arrival, with columns
``request_id`` (int, unique), ``arrival_s`` (float seconds from trace start),
``prompt_tokens`` and ``output_tokens`` (int >= 1).

- :func:`load` reads a bundled trace by name (``azure-code-2023``, ``azure-conv-2023``,
  ``mooncake-conversation``, ``mooncake-synthetic``) or a file in one of the public formats
  (see :mod:`traces.formats`); :func:`save` writes CSV or Parquet atomically;
  :class:`TraceError` is the one-line error of bad input.
- Optional column ``block_hashes`` (Mooncake's ``hash_ids``: the prompt's prefix-block ids,
  block size in ``df.attrs["block_tokens"]``), kept by every transform.
- :mod:`traces.transforms`: window, rate scaling, Poisson/gamma re-sampling, context limits,
  and :func:`traces.transforms.prepare` composing them.
- :mod:`traces.stats`: :func:`traces.stats.describe`.
- ``splitbench-traces`` / ``python -m traces``: the command line (:mod:`traces.cli`).

Imports only numpy and pandas (no torch, no plotting libraries).
"""

from __future__ import annotations

from traces.bundled import list_traces
from traces.errors import TraceError
from traces.formats import FORMAT_NAMES, save
from traces.loading import load
from traces.schema import COLUMNS, check_table

__all__ = ["COLUMNS", "FORMAT_NAMES", "TraceError", "check_table", "list_traces", "load", "save"]
