"""One-line user errors for the console scripts (torch-free leaf module)."""

from __future__ import annotations


def error_line(e: BaseException) -> str:
    """A user error as one line: an OSError as ``PATH: reason``, else its first message line."""
    if isinstance(e, OSError) and e.filename not in (None, ""):
        return f"{e.filename}: {e.strerror or e}"
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
