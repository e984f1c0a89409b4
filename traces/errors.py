"""The one error class of the trace layer.

Every message is one line and names the file (or trace name), and where it applies the
data row and the column. Row convention, everywhere in this package: ``data row N`` is the
N-th data record, 1-based, not counting a CSV header line (so data row 1 of a CSV file is
its second line; data row 1 of a JSONL file is its first non-blank line; data row N of an
in-memory DataFrame is its N-th row by position).
"""

from __future__ import annotations


class TraceError(ValueError):
    """Bad trace input (file, name, column, value, or transform argument); one-line message."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
