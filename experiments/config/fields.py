"""The one way a schema field is declared: its default and its help text (``metadata["help"]``,
what ``--cfg job`` readers and the docs see)."""

from __future__ import annotations

from dataclasses import field
from typing import Any


def opt(default: Any, help: str) -> Any:  # noqa: A002 - "help" is the documented name
    """A dataclass field with a default and its help text."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help})
    return field(default=default, metadata={"help": help})
