"""Traces shipped inside the package (``traces/data/``), loaded by name.

The Azure LLM inference traces 2023 (Patel et al., Splitwise, ISCA 2024; CC BY 4.0, see
``traces/data/azure-llm-2023/README.md`` for attribution and checksums) and two Mooncake
FAST'25 traces (Qin et al., Mooncake, USENIX FAST 2025; Apache-2.0, see
``traces/data/mooncake-fast25/README.md`` and its ``LICENSE-APACHE``) are bundled
unchanged. The Mooncake tables carry ``block_hashes`` (512-token blocks,
``attrs["block_tokens"]``). Parsed tables are cached in-process; callers get copies.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import pandas as pd

from traces.errors import TraceError


@dataclass(frozen=True)
class BundledTrace:
    """One bundled trace: its name, file (relative to ``traces/data``), format, summary."""

    name: str
    file: str
    fmt: str
    description: str


BUNDLED: dict[str, BundledTrace] = {
    t.name: t
    for t in (
        BundledTrace(
            "azure-code-2023",
            "azure-llm-2023/AzureLLMInferenceTrace_code.csv",
            "azure",
            "Azure LLM inference trace 2023, coding: 8,819 requests over ~1 h (CC BY 4.0)",
        ),
        BundledTrace(
            "azure-conv-2023",
            "azure-llm-2023/AzureLLMInferenceTrace_conv.csv",
            "azure",
            "Azure LLM inference trace 2023, conversation: 19,366 requests over ~1 h (CC BY 4.0)",
        ),
        BundledTrace(
            "mooncake-conversation",
            "mooncake-fast25/conversation_trace.jsonl",
            "mooncake",
            "Mooncake FAST'25 conversation trace (Kimi): 12,031 requests over ~1 h, "
            "512-token block hashes (Apache-2.0)",
        ),
        BundledTrace(
            "mooncake-synthetic",
            "mooncake-fast25/synthetic_trace.jsonl",
            "mooncake",
            "Mooncake FAST'25 synthetic trace: 3,993 requests over ~17 min, "
            "512-token block hashes (Apache-2.0)",
        ),
    )
}


def list_traces() -> list[str]:
    """Names of the bundled traces."""
    return list(BUNDLED)


def data_file(name: str):
    """The packaged file of a bundled trace (an ``importlib.resources`` Traversable)."""
    trace = _get(name)
    node = resources.files("traces").joinpath("data")
    for part in trace.file.split("/"):
        node = node.joinpath(part)
    return node


def _get(name: str) -> BundledTrace:
    try:
        return BUNDLED[name]
    except KeyError:
        raise TraceError(
            f"unknown trace name {name!r}; known traces: {', '.join(BUNDLED)} "
            "(or give a path to a trace file)"
        ) from None


@functools.cache
def _parsed(name: str) -> pd.DataFrame:
    from traces.formats import read_trace

    trace = _get(name)
    with resources.as_file(data_file(name)) as path:
        return read_trace(path, trace.fmt, source=name)


def load_bundled(name: str) -> pd.DataFrame:
    """Contract-1 table of a bundled trace (a fresh copy of the cached parse)."""
    return _parsed(name).copy()
