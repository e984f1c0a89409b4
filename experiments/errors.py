"""The one error class of the experiments layer: a bad config value, a bad run directory."""

from __future__ import annotations


class ExperimentError(ValueError):
    """A config, override or input directory is invalid.

    The message is ONE line and names the offending key (``design.prompt_machines``), file or
    field; the apps print it as ``error: <message>`` and exit with status 2.
    """


class Interrupted(Exception):  # noqa: N818 - it is a stop, not an error
    """Raised on Ctrl-C with the one line to print (``N points cached, ...``); the doors
    (``experiments/apps/``) print it and exit with status 130."""
